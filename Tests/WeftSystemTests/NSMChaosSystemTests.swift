import Foundation
import GRPCCore
import SwiftProtobuf
import WeftAdmin
import WeftModel
import WeftNSMProto
import XCTest

/// A seeded random walk through the NSM lifecycle against one real weftd: requests
/// (KERNEL into four client pods, MEMIF in both socket forms), refreshes, closes,
/// expiries, `kill -9` with a restart and heal, reloads of the YAML file, NSMgr
/// restarts, traffic. After every step the kernel, the dataplane and weftd's fds are
/// compared with the test's model of what should be live; at the end everything is
/// closed and nothing may be left.
///
/// `WEFT_CHAOS_SEED=<n>` replays a run, `WEFT_CHAOS_STEPS=<n>` makes it longer
/// (the seed and the step count are printed at the start and in every failure).
final class NSMChaosSystemTests: SystemTestCase {
    /// The suite's default: 300 steps ran in 150 s on the 2-core machine.
    static let defaultSteps = 300

    func testChaosRandomSeed() async throws {
        let env = ProcessInfo.processInfo.environment
        let seed = env["WEFT_CHAOS_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64(UInt32.max))
        let steps = env["WEFT_CHAOS_STEPS"].flatMap { Int($0) } ?? Self.defaultSteps
        try await ChaosRun(seed: seed, steps: steps).run()
    }
}

extension NSMChaosSystemTests {
    /// Found by seed 1 (step 71): a MEMIF connection in NSM v1.1's form (Weft's socket
    /// file) carries, in Weft's own answer, `inodeURL` = the socket file (an inode URL
    /// once grpcfd has passed it). A refresh or a heal that sends that answer back must
    /// keep the socket file form; Weft took the URL for the pod's namespace.
    func testMemifSocketFileRefreshAndHealKeepTheirForm() async throws {
        let n = NSMSystemTests.Node()
        try await n.start()
        addTeardownBlock { await n.stop() }
        let req = nsmRequest(service: "icmp-responder", mechanism: "MEMIF", params: [:])
        let conn = try await n.request(req)
        let path = try XCTUnwrap(conn.mechanism.parameters["socketfile"])
        XCTAssertTrue(path.hasPrefix(n.weftd.dir + "/memif/"), path)
        XCTAssertTrue(conn.mechanism.parameters["inodeURL"]?.hasPrefix("inode://") ?? false, "\(conn.mechanism.parameters)")
        let ports = try n.weftd.interfaces().map { "\($0.name)=\($0.port ?? 0)" }.sorted()

        // Refresh with the answer as it came: nothing rebuilt.
        var again = Networkservice_NetworkServiceRequest()
        again.connection = conn
        again.mechanismPreferences = req.mechanismPreferences
        let refreshed = try await n.request(again)
        XCTAssertEqual(refreshed.mechanism.parameters["socketfile"], path)
        XCTAssertEqual(try n.weftd.interfaces().map { "\($0.name)=\($0.port ?? 0)" }.sorted(), ports, "the refresh rebuilt the memif")
        XCTAssertFalse(n.weftd.log.contains("mechanism changed"), n.weftd.log)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))

        // kill -9, restart, heal with the old path and mechanism: the same socket file again.
        let regs = n.registry.rec.registrations.count
        n.weftd.kill9()
        XCTAssertTrue(n.weftd.start(), n.weftd.log)
        try await NSMSystemTests.waitFor("the NSM API after the restart") { n.registry.rec.registrations.count > regs }
        again.connection = refreshed
        let healed = try await n.request(again)
        XCTAssertEqual(healed.mechanism.parameters["socketfile"], path)
        XCTAssertEqual(try n.weftd.interfaces().filter { $0.type == "memif" }.count, 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        try await n.close(healed)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        XCTAssertEqual(try n.weftd.interfaces().count, 0)
    }
}

extension NSMChaosSystemTests {
    /// The walk that found the v1.1 memif refresh/heal bug (step 71), replayed.
    func testChaosSeed1() async throws {
        try await ChaosRun(seed: 1, steps: 75).run()
    }

    /// A v1.1 memif connection left to expire while weftd is down (kill -9) is never
    /// healed: the restart removes its socket file with the stale veths.
    func testKill9RestartRemovesUnhealedMemifSocketFiles() async throws {
        let n = NSMSystemTests.Node()
        try await n.start()
        addTeardownBlock { await n.stop() }
        let conn = try await n.request(nsmRequest(service: "icmp-responder", mechanism: "MEMIF", params: [:],
                                                  callerExpires: Date().addingTimeInterval(3)))
        let path = try XCTUnwrap(conn.mechanism.parameters["socketfile"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        let regs = n.registry.rec.registrations.count
        n.weftd.kill9()
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), "what a crash leaves")
        XCTAssertTrue(n.weftd.start(), n.weftd.log)
        try await NSMSystemTests.waitFor("the NSM API after the restart") { n.registry.rec.registrations.count > regs }
        XCTAssertFalse(FileManager.default.fileExists(atPath: (path as NSString).deletingLastPathComponent), n.weftd.log)
        XCTAssertEqual(n.weftLinks, [])
    }
}

/// SplitMix64: a run is its seed.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct ChaosFailure: Error, CustomStringConvertible {
    var description: String
}

/// One connection as the test (the NSMgr and the client) knows it.
final class ChaosConnection {
    enum Kind: Equatable {
        /// A veth into client pod `pod`, named nsm-<slot % 3>.
        case kernel(pod: Int, slot: Int)
        /// Weft's memif; `pod` nil: NSM v1.1's socket file under runtime_dir, else
        /// v1.2's abstract socket inside that pod.
        case memif(pod: Int?, slot: Int)
    }
    let key: Int
    let kind: Kind
    let preferences: [Connection_Mechanism]
    /// The caller's view of the last answer (path index 1).
    var conn: Connection_Connection
    /// Requested with a short caller expiry and never refreshed.
    var expiresAt: Date?
    let src: String, dst: String

    init(key: Int, kind: Kind, preferences: [Connection_Mechanism], conn: Connection_Connection, expiresAt: Date?,
         src: String, dst: String) {
        self.key = key; self.kind = kind; self.preferences = preferences; self.conn = conn
        self.expiresAt = expiresAt; self.src = src; self.dst = dst
    }

    /// Weft's own path segment's id ("?" while a request is in flight).
    var weftID: String { conn.path.pathSegments.count > 2 ? conn.path.pathSegments[2].id : "?" }
    var firstID: String { conn.path.pathSegments.first?.id ?? "?" }
    var isKernel: Bool { if case .kernel = kind { return true } else { return false } }
    var slot: Int { switch kind { case .kernel(_, let s), .memif(_, let s): return s } }
    var pod: Int? { switch kind { case .kernel(let p, _): return p; case .memif(let p, _): return p } }
    var podIfName: String? { if case .kernel(_, let s) = kind { return "nsm-\(s % 3)" } else { return nil } }
    /// Weft's names (Sources/WeftNSM/Mechanisms.swift `Names`: FNV-1a of Weft's segment id).
    var hash: String { ChaosRun.fnv(weftID) }
    var interfaces: [String] { ["nsm-\(hash)-s", "nsm-\(hash)-c"] }
    var crossConnect: String { "nsm-\(hash)" }
    /// Host-end aliases of the veths (server side only for KERNEL).
    func hostAliases(_ forwarder: String) -> [String] {
        (isKernel ? ["server"] : []).map { "weft-nsm:\(forwarder):\($0)-\(weftID)" } + ["weft-nsm:\(forwarder):client-\(weftID)"]
    }
    var socketfile: String? { conn.mechanism.parameters["socketfile"] }
    var description: String { "#\(key) \(kind) \(weftID.prefix(8))\(expiresAt.map { " expires \($0.timeIntervalSinceNow)s" } ?? "")" }
}

/// A MonitorConnections subscriber (all connections): the ids its events leave.
final class MonitorWatcher: @unchecked Sendable {
    private let lock = NSLock()
    private var _ids: Set<String> = []
    private var _initial = false
    private var _ended: String?
    private var task: Task<Void, Never>?

    init(socket: String) {
        let weakSelf = WeakBox(self)
        task = Task {
            let this = weakSelf
            do {
                _ = try await withNSM(socket) { c in
                    try await Connection_MonitorConnection.Client(wrapping: c).monitorConnections(Connection_MonitorScopeSelector()) { resp in
                        for try await e in resp.messages { this.value?.apply(e) }
                        return 0
                    }
                }
                this.value?.end("the stream ended")
            } catch { this.value?.end("\(error)") }
        }
    }

    private func apply(_ e: Connection_ConnectionEvent) {
        lock.withLock {
            let keys = Set(e.connections.keys)
            switch e.type {
            case .initialStateTransfer: _ids = keys; _initial = true
            case .update: _ids.formUnion(keys)
            case .delete: _ids.subtract(keys)
            default: break
            }
        }
    }
    private func end(_ why: String) { lock.withLock { if _ended == nil { _ended = why } } }

    /// nil until the initial state arrived.
    var ids: Set<String>? { lock.withLock { _initial ? _ids : nil } }
    var ended: String? { lock.withLock { _ended } }
    func stop() { task?.cancel() }
}

final class WeakBox<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
    init(_ v: T) { value = v }
}

final class ChaosRun {
    let seed: UInt64
    let steps: Int
    var rng: SeededRandom
    let n: NSMSystemTests.Node
    let pods: [String]
    var podProcesses: [Process] = []
    var yamlPods: [PodNamespace] = []
    /// The YAML file's own interfaces and cross-connect are in the file.
    var yamlOn = false
    var live: [ChaosConnection] = []
    var nextKey = 0
    var history: [String] = []
    var stepNo = 0
    var fdBase = 0
    var fdMaxOver = 0
    var counts: [String: Int] = [:]
    var seconds: [String: Double] = [:]
    var lastOp = ""
    var monitor: MonitorWatcher?
    let started = Date()

    static let kernelSlots = 12 // 3 per pod
    static let memifSlots = 4
    /// An expiring connection is surely there until this long before its deadline, and
    /// surely gone this long after it. The margin covers a check's own duration: a
    /// check that began 0.5 s before the deadline read the endpoint pod after Weft had
    /// expired the connection (seed 4242, step 148, on a machine busy with two fuzzers;
    /// with 1.5 s, seed 2292754180 step 111 under a suite and three fuzzers).
    static let expiryMarginBefore: TimeInterval = 3
    /// Removing a connection took 3 s once on a machine loaded with a test suite and three
    /// fuzzers (seed 2756441672 step 124: its host veth still there 3.5 s after expiry).
    static let expiryGraceAfter: TimeInterval = 6
    /// weftd's fds: at most base + per live connection (two AF_PACKET sockets per
    /// kernel interface, so four for a KERNEL connection) + slack (gRPC streams in flight).
    static let fdsPerConnection = 5
    static let fdSlack = 12
    /// The YAML file's two af_packet interfaces: two AF_PACKET sockets each, and a netlink socket.
    static let yamlFDs = 6

    init(seed: UInt64, steps: Int) {
        self.seed = seed
        self.steps = steps
        rng = SeededRandom(seed: seed)
        // Registration every 2 s: an NSMgr restart is noticed quickly.
        let node = NSMSystemTests.Node(registryExpiry: 3)
        n = node
        pods = (0..<4).map { "wt\(node.tag)c\($0)" }
    }

    static func fnv(_ s: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(format: "%016llx", h)
    }

    // MARK: set-up and tear-down

    func setUp() async throws {
        for p in pods { podProcesses.append(try startPod(p)) }
        yamlPods = [PodNamespace(tag: n.tag, index: 1), PodNamespace(tag: n.tag, index: 2)]
        try await n.start()
        writeConfig()
        try await watch()
    }

    /// A pod: a namespace of that name with a process in it (weftd closes the
    /// connections of a pod whose namespace it saw with one and then without: NetnsMonitor).
    func startPod(_ p: String) throws -> Process {
        _ = sh("ip netns del \(p) 2>/dev/null; ip netns add \(p) && ip -n \(p) link set lo up")
        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        proc.arguments = ["netns", "exec", p, "sleep", "infinity"]
        proc.standardInput = FileHandle.nullDevice
        proc.standardOutput = FileHandle.nullDevice
        proc.standardError = FileHandle.nullDevice
        try proc.run()
        return proc
    }

    /// Subscribe to MonitorConnections (again, after a restart) and wait for its initial state.
    func watch() async throws {
        monitor?.stop()
        let m = MonitorWatcher(socket: n.nsmSocket)
        monitor = m
        try await waitFor("the monitor's initial state") { m.ids != nil }
    }

    func tearDown() async {
        monitor?.stop()
        await n.stop()
        for p in podProcesses where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        for p in pods { _ = sh("ip netns del \(p) 2>/dev/null") }
        yamlPods = []
    }

    var nsmSection: String {
        """
        nsm:
          name: \(n.name)
          listen_on: [unix://\(n.nsmSocket)]
          insecure: true
          connect_to: unix://\(n.registrySocket)

        """
    }

    func writeConfig() {
        var body = nsmSection
        if yamlOn {
            body += """
            interfaces:
              - {name: chaos-p1, type: af_packet, iface: \(yamlPods[0].hostEnd)}
              - {name: chaos-p2, type: af_packet, iface: \(yamlPods[1].hostEnd)}
            cross_connects:
              - {name: chaos-x, a: chaos-p1, b: chaos-p2}

            """
        }
        n.weftd.write(body)
    }

    // MARK: the run

    func run() async throws {
        print("NSM chaos: seed \(seed), \(steps) steps (replay: WEFT_CHAOS_SEED=\(seed) WEFT_CHAOS_STEPS=\(steps))")
        try await setUp()
        do {
            fdBase = try fdCount()
            print("NSM chaos: weftd's fds at the start: \(fdBase): \(fdKinds())")
            try await check("start")
            for i in 1...max(1, steps) {
                stepNo = i
                let t0 = Date()
                try await step()
                let t1 = Date()
                try await check("after step \(i)")
                seconds[lastOp, default: 0] += t1.timeIntervalSince(t0)
                seconds["(checks)", default: 0] += Date().timeIntervalSince(t1)
                if i % 50 == 0 {
                    print("NSM chaos: step \(i)/\(steps), \(live.count) live, \(Int(Date().timeIntervalSince(started))) s, fds \(try fdCount()) (base \(fdBase))")
                }
            }
            stepNo = steps + 1
            try await closeEverything()
        } catch {
            let msg = "NSM chaos seed \(seed) (WEFT_CHAOS_SEED=\(seed) WEFT_CHAOS_STEPS=\(steps)) failed at step \(stepNo): \(error)\nlast steps:\n  "
                + history.suffix(ProcessInfo.processInfo.environment["WEFT_CHAOS_TRACE_FDS"] != nil ? 200 : 15).joined(separator: "\n  ") + "\nweftd log (tail):\n" + String(n.weftd.log.suffix(6000))
            await tearDown()
            XCTFail(msg)
            return
        }
        await tearDown()
        let ops = counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value) (\(String(format: "%.1f", seconds[$0.key] ?? 0)) s)" }.joined(separator: ", ")
            + ", checks \(String(format: "%.1f", seconds["(checks)"] ?? 0)) s"
        print("NSM chaos: seed \(seed), \(steps) steps passed in \(Int(Date().timeIntervalSince(started))) s; \(ops); fds at most \(fdMaxOver) over base + \(Self.fdsPerConnection) per live connection (slack \(Self.fdSlack))")
    }

    func note(_ s: String) {
        history.append("\(stepNo): \(s)")
        if history.count > 200 { history.removeFirst(100) }
    }

    func fail(_ s: String) -> ChaosFailure { ChaosFailure(description: s) }

    func pick(_ weights: [(String, Int)]) -> String {
        let total = weights.reduce(0) { $0 + $1.1 }
        var r = Int.random(in: 0..<total, using: &rng)
        for (k, w) in weights { if r < w { return k }; r -= w }
        return weights[0].0
    }

    /// Connections that are not waiting to expire (refresh, close and traffic pick among these).
    var steady: [ChaosConnection] { live.filter { $0.expiresAt == nil } }

    func step() async throws {
        let op = pick([("kernel", 22), ("memif", 6), ("refresh", 18), ("close", 14), ("expire", 6), ("ping", 12),
                       ("transfer", 2), ("kill9", 2), ("reload", 4), ("nsmgr", 2), ("burst", 6),
                       ("memifpeer", 5), ("poddeath", 2)])
        counts[op, default: 0] += 1
        lastOp = op
        switch op {
        case "kernel": try await requestNew(kernel: true, expires: nil)
        case "memif": try await requestNew(kernel: false, expires: nil)
        case "refresh":
            guard let c = steady.randomElement(using: &rng) else { return try await requestNew(kernel: true, expires: nil) }
            try await refresh(c)
        case "close":
            guard let c = steady.randomElement(using: &rng) else { return try await requestNew(kernel: true, expires: nil) }
            try await close(c)
        case "expire":
            try await requestNew(kernel: Int.random(in: 0..<4, using: &rng) > 0,
                                 expires: Date().addingTimeInterval(Double.random(in: 4...7, using: &rng)))
        case "ping": try await traffic(transfer: false)
        case "transfer": try await traffic(transfer: true)
        case "kill9": try await killAndHeal()
        case "reload": try await reload()
        case "nsmgr": try await restartNSMgr()
        case "burst": try await burst()
        case "memifpeer": try await memifPeer()
        case "poddeath": try await podDeath()
        default: break
        }
    }

    // MARK: steps

    func freeSlot(kernel: Bool) -> (pod: Int?, slot: Int)? {
        let used = Set(live.filter { $0.isKernel == kernel }.map(\.slot))
        let free = (0..<(kernel ? Self.kernelSlots : Self.memifSlots)).filter { !used.contains($0) }
        guard let s = free.randomElement(using: &rng) else { return nil }
        if kernel { return (s / 3, s) }
        // MEMIF: half of them v1.1 (a socket file), half v1.2 (abstract, in a pod).
        return (Bool.random(using: &rng) ? nil : Int.random(in: 0..<pods.count, using: &rng), s)
    }

    /// A new request as the NSMgr forwards it; the addresses are the slot's own.
    func newRequest(kernel: Bool, pod: Int?, slot: Int, expires: Date?) -> (Networkservice_NetworkServiceRequest, ChaosConnection.Kind, String, String) {
        var params: [String: String] = [:]
        if let pod { params["inodeURL"] = "file:///var/run/netns/\(pods[pod])" }
        if kernel { params["name"] = "nsm-\(slot % 3)" }
        var r = nsmRequest(service: "icmp-responder", mechanism: kernel ? "KERNEL" : "MEMIF", params: params,
                           callerExpires: expires ?? Date().addingTimeInterval(600))
        let net = kernel ? "172.17.\(slot)" : "172.18.\(slot)"
        let src = "\(net).2/32", dst = "\(net).1/32"
        r.connection.context.ipContext.srcIpAddrs = [src]
        r.connection.context.ipContext.dstIpAddrs = [dst]
        return (r, kernel ? .kernel(pod: pod!, slot: slot) : .memif(pod: pod, slot: slot), src, dst)
    }

    func requestNew(kernel: Bool, expires: Date?) async throws {
        guard let free = freeSlot(kernel: kernel) else {
            // Full: make room instead.
            if let c = steady.randomElement(using: &rng) { try await close(c) }
            return
        }
        let (r, kind, src, dst) = newRequest(kernel: kernel, pod: free.pod, slot: free.slot, expires: expires)
        note("request \(kind)\(expires.map { " expiring in \(String(format: "%.1f", $0.timeIntervalSinceNow)) s" } ?? "")")
        let answer: Connection_Connection
        do { answer = try await n.request(r) } catch { throw fail("request \(kind): \(error)") }
        let c = ChaosConnection(key: nextKey, kind: kind, preferences: r.mechanismPreferences, conn: answer,
                                expiresAt: expires, src: src, dst: dst)
        nextKey += 1
        guard answer.path.pathSegments.count == 4, answer.path.pathSegments[2].name == n.name else {
            throw fail("request \(kind): unexpected path \(answer.path.pathSegments.map(\.name))")
        }
        live.append(c)
        note("  -> \(c.description)")
    }

    /// The same path again with a fresh expiry (the caller's refresh). Weft's answer
    /// names the pod's namespace (and a v1.1 memif's socket file) by inode URL, its fd
    /// passed with it (NSM's sendfd); this NSMgr passes no fds, so sending the answer's
    /// mechanism back makes Weft wait 1 s for an fd that never comes before it looks the
    /// inode up in /proc. A quarter of the refreshes and heals do that; the rest send
    /// the mechanism as first requested (file:// URLs).
    func refreshRequest(_ c: ChaosConnection) -> Networkservice_NetworkServiceRequest {
        var again = Networkservice_NetworkServiceRequest()
        again.connection = c.conn
        if Int.random(in: 0..<4, using: &rng) > 0 { again.connection.mechanism = c.preferences[0] }
        let exp = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(600))
        again.connection.path.pathSegments[0].expires = exp
        again.connection.path.pathSegments[1].expires = exp
        again.mechanismPreferences = c.preferences
        return again
    }

    func refresh(_ c: ChaosConnection) async throws {
        note("refresh \(c.description)")
        let answer: Connection_Connection
        do { answer = try await n.request(refreshRequest(c)) } catch { throw fail("refresh \(c.description): \(error)") }
        guard answer.path.pathSegments.count == 4, answer.path.pathSegments[2].id == c.weftID else {
            throw fail("refresh \(c.description) changed Weft's segment: \(answer.path.pathSegments.map(\.id))")
        }
        c.conn = answer
    }

    func close(_ c: ChaosConnection) async throws {
        note("close \(c.description)")
        let before = endpointCloses(c)
        do { try await n.close(c.conn) } catch { throw fail("close \(c.description): \(error)") }
        live.removeAll { $0 === c }
        if endpointCloses(c) <= before { throw fail("close \(c.description) did not reach the endpoint") }
    }

    func endpointCloses(_ c: ChaosConnection) -> Int {
        n.endpoint.rec.closes.filter { $0.path.pathSegments.count > 2 && $0.path.pathSegments[2].id == c.weftID }.count
    }

    func traffic(transfer: Bool) async throws {
        guard let c = steady.filter(\.isKernel).randomElement(using: &rng), let pod = c.pod else {
            return try await requestNew(kernel: true, expires: nil)
        }
        let target = String(c.dst.split(separator: "/")[0])
        if transfer {
            note("transfer tcp 256 KiB over \(c.description)")
            let t = Transfer.run(fromNS: pods[pod], toNS: n.nse, target: target, proto: "tcp", bytes: 256 << 10,
                                 port: 5600 + c.slot, size: 1200, rate: 0, timeout: 20)
            if !t.intact { throw fail("TCP over \(c.description): \(t)") }
        } else {
            note("ping over \(c.description)")
            var out = sh("ip netns exec \(pods[pod]) ping -n -q -c 3 -i 0.2 -W 2 \(target)", timeout: 30).out
            if pingCounts(out)?.received != 3 {
                // Seen once in a suite run on a loaded machine (seed 477657619, step 131:
                // 0 of 3; the same seed passed when replayed). Look once more, and leave
                // what the node says about its queues and counters in the log.
                let queues = n.weftd.ctl(["show", "workers"]).out, itfs = n.weftd.ctl(["show", "interfaces"]).out
                print("NSM chaos: ping over \(c.description) lost all 3, trying again\n\(out)\n\(queues)\n\(itfs)")
                try await Task.sleep(nanoseconds: 1_000_000_000)
                out = sh("ip netns exec \(pods[pod]) ping -n -q -c 3 -i 0.2 -W 2 \(target)", timeout: 30).out
            }
            guard let p = pingCounts(out), p.received == p.sent, p.sent == 3 else {
                throw fail("ping \(target) from \(pods[pod]) over \(c.description): \(out)")
            }
        }
    }

    /// kill -9, restart: the stale veths go (README); the NSMgr heals the connections
    /// whose clients still refresh (the old path); those left to expire are not healed.
    func killAndHeal() async throws {
        note("kill -9 and restart, heal \(steady.count)")
        let regs = n.registry.rec.registrations.count
        n.weftd.kill9()
        let abandoned = live.filter { $0.expiresAt != nil }
        live.removeAll { $0.expiresAt != nil }
        guard n.weftd.start() else { throw fail("weftd did not restart:\n\(n.weftd.log.suffix(3000))") }
        try await waitFor("stale veths removed after the restart") { self.ownVeths().isEmpty }
        try await waitFor("registration after the restart") { self.n.registry.rec.registrations.count > regs }
        // Nothing of the old process is left before the heal.
        let itfs = try n.weftd.interfaces().filter { $0.name.hasPrefix("nsm-") }
        if !itfs.isEmpty { throw fail("after the restart weftd has \(itfs.map(\.name))") }
        // Before the heal: no pod interface of the old process is left in any pod.
        for p in pods + [n.nse] {
            let l = Self.links(Substring(n.links(p))).filter { $0.name != "lo" }
            if !l.isEmpty { throw fail("after the restart \(p) still has \(l.map(\.name))") }
        }
        if !abandoned.isEmpty { note("  not healed (left to expire): \(abandoned.map(\.description))") }
        try await watch()
        if let ids = monitor?.ids, !ids.isEmpty { throw fail("after the restart the monitor's initial state has \(ids.sorted())") }
        // The base is without the YAML file's own interfaces (the bound adds them).
        fdBase = try fdCount() - (yamlOn ? Self.yamlFDs : 0)
        for c in live {
            note("  heal \(c.description)")
            do { c.conn = try await n.request(refreshRequest(c)) } catch { throw fail("heal \(c.description): \(error)") }
            if c.conn.path.pathSegments[2].id != c.weftID { throw fail("heal \(c.description): another Weft segment id") }
        }
    }

    func reload() async throws {
        let change = Int.random(in: 0..<3, using: &rng) > 0
        if change { yamlOn.toggle() }
        writeConfig()
        let viaSignal = Bool.random(using: &rng)
        note("reload (\(change ? "yaml \(yamlOn ? "added" : "removed")" : "unchanged")) by \(viaSignal ? "SIGHUP" : "weftctl reload")")
        if viaSignal {
            guard let pid = n.weftd.process?.processIdentifier else { throw fail("no weftd") }
            kill(pid, SIGHUP)
        } else {
            let r = n.weftd.ctl(["reload"])
            if r.status != 0 { throw fail("weftctl reload: \(r.out) \(r.err)") }
        }
        try await waitFor("the YAML cross-connect \(yamlOn ? "present" : "absent")") {
            ((try? self.n.weftd.crossConnects())?.contains { $0.name == "chaos-x" }) == self.yamlOn
        }
        if yamlOn, Bool.random(using: &rng) {
            _ = n.weftd.waitLinksUp(timeout: 10)
            let p = yamlPods[0].ping(yamlPods[1].address, count: 3)
            if pingCounts(p.out)?.received != 3 { throw fail("ping across the YAML cross-connect: \(p.out)") }
        }
    }

    /// The NSMgr (registry) goes away and comes back: Weft registers again. While it is
    /// away a new request fails and leaves nothing behind.
    func restartNSMgr() async throws {
        note("NSMgr restart")
        let regs = n.registry.rec.registrations.count
        await n.servers[0].stop()
        if Bool.random(using: &rng), let free = freeSlot(kernel: true) {
            let (r, kind, _, _) = newRequest(kernel: true, pod: free.pod, slot: free.slot, expires: nil)
            note("  request \(kind) while the NSMgr is away")
            do {
                _ = try await n.request(r)
                throw fail("a request succeeded with the registry away")
            } catch is ChaosFailure {
                throw fail("a request succeeded with the registry away")
            } catch {}
            try await check("the failed request during the NSMgr outage")
        }
        n.servers[0] = try await TestGRPCServer(path: n.registrySocket, services: [n.registry, n.registry.nse])
        try await waitFor("registration after the NSMgr restart") { self.n.registry.rec.registrations.count > regs }
    }

    /// A peer on a live connection's memif socket (Tests/peers/memif_peer.py), from the
    /// pod's namespace for NSM v1.2's abstract socket: a good client that sends frames
    /// and goes away (every frame counted in on the memif and out or dropped with a
    /// reason on the endpoint's side, and the interface back to waiting), rapid
    /// connect-and-close at a random stage of the handshake, or the hostile control
    /// cases (garbage). Weft must stay up, keep the connection, and serve the next peer.
    func memifPeer() async throws {
        guard let c = steady.filter({ !$0.isKernel && $0.conn.path.pathSegments.count == 4 }).randomElement(using: &rng),
              let sf = c.socketfile else {
            return try await requestNew(kernel: false, expires: nil)
        }
        let netns = c.pod.map { ["--netns", "/var/run/netns/\(pods[$0])"] } ?? []
        let peer = MemifSystemTests.peer
        func counters() throws -> (memif: InterfaceStatus, other: InterfaceStatus) {
            let all = try n.weftd.interfaces().filter { c.interfaces.contains($0.name) }
            guard let m = all.first(where: { $0.type == "memif" }), let o = all.first(where: { $0.type != "memif" }) else {
                throw fail("memif peer on \(c.description): Weft's interfaces are \(all.map { "\($0.name) \($0.type)" })")
            }
            return (m, o)
        }
        switch Int.random(in: 0..<4, using: &rng) {
        case 0, 1:
            let count = Int.random(in: 1...64, using: &rng)
            note("memif peer on \(c.description): a good client sends \(count) frames and leaves")
            let before = try counters()
            let r = sh(["python3", peer, "good", "--socket", sf, "--count", String(count), "--stamp", "--listen", "0.3"] + netns, timeout: 30)
            guard r.status == 0, let j = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any],
                  (j["sent"] as? Int) == count else {
                throw fail("memif peer on \(c.description): \(r.out) \(r.err)")
            }
            // In on the memif, then out of the endpoint's side or dropped there with a reason.
            try await waitFor("\(count) frames counted across \(c.description)", timeout: 10) {
                let after = try counters()
                let inn = after.memif.counters.rxPackets - before.memif.counters.rxPackets
                let out = (after.other.counters.txPackets + after.other.counters.totalDrops + after.memif.counters.totalDrops)
                    - (before.other.counters.txPackets + before.other.counters.totalDrops + before.memif.counters.totalDrops)
                // (>=: the endpoint's side may drop frames of its own meanwhile)
                return inn == UInt64(count) && out >= UInt64(count)
            }
            try await waitFor("the memif of \(c.description) back to waiting", timeout: 10) {
                (try counters()).memif.memif?.connected == false
            }
        case 2:
            let stage = ["connect", "unread", "hello", "init"].randomElement(using: &rng)!
            note("memif peer on \(c.description): 20 connect-and-close at stage \(stage)")
            let r = sh(["python3", peer, "connect-close", "--socket", sf, "--times", "20", "--stage", stage] + netns, timeout: 60)
            if r.status != 0 { throw fail("connect-close on \(c.description): \(r.out) \(r.err)") }
        default:
            let seed = Int.random(in: 1...1_000_000, using: &rng)
            note("memif peer on \(c.description): hostile control cases (seed \(seed))")
            let r = sh(["python3", peer, "garbage", "--socket", sf, "--skip-slow", "--seed", String(seed)] + netns, timeout: 120)
            if r.status != 0 { throw fail("garbage on \(c.description): \(r.out.suffix(3000)) \(r.err.suffix(2000))") }
        }
        // The next peer is served (once the last session is over): a handshake and a frame.
        try await waitFor("the memif of \(c.description) free for the next peer", timeout: 10) {
            (try counters()).memif.memif?.connected == false
        }
        let r = sh(["python3", peer, "good", "--socket", sf, "--count", "1", "--listen", "0.1"] + netns, timeout: 30)
        if r.status != 0 { throw fail("after the memif peers, a good client on \(c.description): \(r.out) \(r.err)") }
    }

    /// A client pod dies: its process killed and its namespace's name removed, as a
    /// deleted pod's. Weft closes the pod's KERNEL connections by itself, toward the
    /// endpoint too (NetnsMonitor: the path names no namespace any more). A v1.2 memif
    /// socket in the pod is closed by its caller (the NSMgr, whose client stopped
    /// refreshing) or left to expire. A new pod then takes the name.
    func podDeath() async throws {
        let i = Int.random(in: 0..<pods.count, using: &rng)
        let p = pods[i]
        let kernel = live.filter { $0.isKernel && $0.pod == i }
        let memifs = live.filter { !$0.isKernel && $0.pod == i }
        note("pod \(p) dies with \(kernel.map(\.description)), memif \(memifs.map(\.description))")
        let closes = kernel.map { endpointCloses($0) }
        let proc = podProcesses[i]
        kill(proc.processIdentifier, SIGKILL)
        proc.waitUntilExit()
        _ = sh("ip netns del \(p)")
        for c in memifs where c.expiresAt == nil { try await close(c) }
        let names = Set(kernel.flatMap(\.interfaces))
        try await waitFor("Weft closes the connections of dead pod \(p)", timeout: 30) {
            Set(try self.n.weftd.interfaces().map(\.name)).isDisjoint(with: names)
        }
        for (c, before) in zip(kernel, closes) where c.expiresAt == nil {
            try await waitFor("the endpoint hears that \(c.description) closed", timeout: 10) { self.endpointCloses(c) > before }
        }
        live.removeAll { c in kernel.contains { $0 === c } }
        // Expiring memifs of the dead pod: let them go (their socket was in its namespace).
        if let last = memifs.compactMap(\.expiresAt).max() {
            let wait = last.addingTimeInterval(Self.expiryGraceAfter).timeIntervalSinceNow
            if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
            live.removeAll { c in memifs.contains { $0 === c } }
        }
        podProcesses[i] = try startPod(p)
    }

    /// Several callers at once: new requests, refreshes and closes of different connections.
    func burst() async throws {
        var jobs: [(String, () async throws -> Void)] = []
        var busy = Set<Int>()
        var closing: [ChaosConnection] = []
        for _ in 0..<Int.random(in: 2...4, using: &rng) {
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                guard let free = freeSlot(kernel: true) else { continue }
                let (r, kind, src, dst) = newRequest(kernel: true, pod: free.pod, slot: free.slot, expires: nil)
                let key = nextKey; nextKey += 1
                // Reserve the slot now; the answer fills the connection in.
                let c = ChaosConnection(key: key, kind: kind, preferences: r.mechanismPreferences, conn: r.connection,
                                        expiresAt: nil, src: src, dst: dst)
                jobs.append(("request \(kind)", { [n] in
                    c.conn = try await n.request(r)
                }))
                live.append(c)
            case 1:
                guard let c = steady.filter({ !busy.contains($0.key) && $0.conn.path.pathSegments.count == 4 }).randomElement(using: &rng) else { continue }
                busy.insert(c.key)
                let r = refreshRequest(c)
                jobs.append(("refresh \(c.description)", { [n] in c.conn = try await n.request(r) }))
            default:
                guard let c = steady.filter({ !busy.contains($0.key) && $0.conn.path.pathSegments.count == 4 }).randomElement(using: &rng) else { continue }
                busy.insert(c.key)
                let conn = c.conn
                // Its slot stays taken until the burst is over (a new request beside the
                // close must not reuse its interface name).
                closing.append(c)
                jobs.append(("close \(c.description)", { [n] in try await n.close(conn) }))
            }
        }
        note("burst: " + jobs.map(\.0).joined(separator: "; "))
        let errors: [String] = await withTaskGroup(of: String?.self) { g in
            for (what, job) in jobs {
                g.addTask {
                    do { try await job(); return nil } catch { return "\(what): \(error)" }
                }
            }
            var out: [String] = []
            for await e in g { if let e { out.append(e) } }
            return out
        }
        if !errors.isEmpty { throw fail("burst: \(errors)") }
        live.removeAll { c in closing.contains { $0 === c } }
    }

    func closeEverything() async throws {
        note("close everything")
        if yamlOn {
            // The YAML pods' AF_PACKET sockets are weftd's too: back to the starting file.
            yamlOn = false
            writeConfig()
            let r = n.weftd.ctl(["reload"])
            if r.status != 0 { throw fail("weftctl reload: \(r.out) \(r.err)") }
        }
        // Let the expiring ones expire on their own.
        for c in steady { try await close(c) }
        if let last = live.compactMap(\.expiresAt).max() {
            try await Task.sleep(nanoseconds: UInt64(max(0, last.timeIntervalSinceNow + Self.expiryGraceAfter + 0.3) * 1e9))
        }
        try await check("after closing everything")
        if !live.isEmpty { throw fail("still live in the model: \(live.map(\.description))") }
        let itfs = try n.weftd.interfaces().filter { $0.name.hasPrefix("nsm-") }
        let xcs = try n.weftd.crossConnects().filter { $0.name.hasPrefix("nsm-") }
        if !itfs.isEmpty || !xcs.isEmpty { throw fail("left in weftd: \(itfs.map(\.name)) \(xcs.map(\.name))") }
        // The fds settle back near the start (gRPC connections of the last calls may linger briefly).
        do {
            try await waitFor("weftd's fds back near the start (\(fdBase))", timeout: 10) {
                (try self.fdCount()) <= self.fdBase + 4
            }
        } catch {
            throw fail("\(error): \(try fdCount()) fds: \(fdKinds())")
        }
    }

    // MARK: invariants

    func waitFor(_ what: String, timeout: TimeInterval = 20, _ cond: @escaping () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await cond() { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw fail("timed out waiting for \(what)")
    }

    func fdCount() throws -> Int {
        guard let pid = n.weftd.process?.processIdentifier else { throw fail("weftd is not running") }
        return try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    }

    /// weftd's fds by what they are (socket, anon_inode:[eventfd], net:[...], a path).
    func fdKinds() -> String {
        guard let pid = n.weftd.process?.processIdentifier,
              let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return "?" }
        // Socket inodes by family (and a unix socket's path, a netlink socket's protocol).
        var sockets: [String: String] = [:]
        for (file, what) in [("unix", "unix"), ("netlink", "netlink"), ("packet", "packet"), ("tcp", "tcp"), ("tcp6", "tcp6"), ("udp", "udp")] {
            let text = (try? String(contentsOfFile: "/proc/\(pid)/net/\(file)", encoding: .utf8)) ?? ""
            for l in text.split(separator: "\n").dropFirst() {
                let f = l.split(separator: " ", omittingEmptySubsequences: true)
                switch file {
                case "unix": if f.count >= 7 { sockets[String(f[6])] = "unix \(f.count > 7 ? String(f[7]) : "-")" }
                case "netlink": if f.count >= 10 { sockets[String(f[9])] = "netlink proto \(f[1])" }
                case "packet": if f.count >= 9 { sockets[String(f[8])] = "packet" }
                default: if f.count >= 10 { sockets[String(f[9])] = what }
                }
            }
        }
        var kinds: [String: Int] = [:]
        for f in fds {
            let t = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(f)")) ?? "?"
            var k = t.hasPrefix("/dev/") || t.hasPrefix("/proc") || t.hasPrefix("/run") ? t : String(t.prefix(while: { $0 != "[" }))
            if t.hasPrefix("socket:[") { k = sockets[String(t.dropFirst(8).dropLast())] ?? "socket (other namespace or family)" }
            kinds[k, default: 0] += 1
        }
        return kinds.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }

    /// Root-namespace links whose alias marks them as this weftd's NSM veths.
    func ownVeths() -> [String] {
        sh("ip -o link show").out.split(separator: "\n").compactMap { l -> String? in
            guard let r = l.range(of: "alias weft-nsm:\(n.name):") else { return nil }
            return String(l[r.lowerBound...].dropFirst("alias ".count)).trimmingCharacters(in: .whitespaces)
        }
    }

    struct Link { var name: String; var alias: String? }

    /// `ip -o link` lines: name (before "@" or ":") and alias.
    static func links(_ out: Substring) -> [Link] {
        out.split(separator: "\n").compactMap { l in
            let parts = l.split(separator: ":", maxSplits: 2)
            guard parts.count >= 2 else { return nil }
            let name = String(parts[1].trimmingCharacters(in: .whitespaces).split(separator: "@")[0])
            let alias = l.range(of: "alias ").map { String(l[$0.upperBound...]).trimmingCharacters(in: .whitespaces) }
            return Link(name: name, alias: alias)
        }
    }

    /// `ip -o -4 addr` lines: interface -> addresses.
    static func addresses(_ out: Substring) -> [String: Set<String>] {
        var m: [String: Set<String>] = [:]
        for l in out.split(separator: "\n") {
            let f = l.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 4, f[2] == "inet", f[1] != "lo" else { continue }
            m[String(f[1]), default: []].insert(String(f[3]))
        }
        return m
    }

    func check(_ when: String) async throws {
        // The expiring: gone from the model past the grace (as of now, before anything is
        // read); surely there only when they cannot have expired before the last reading
        // (a check took 9 s once under load: seed 20261130 step 497).
        let t0 = Date()
        live.removeAll { c in
            guard let e = c.expiresAt, t0 > e.addingTimeInterval(Self.expiryGraceAfter) else { return false }
            note("  expired \(c.description)")
            return true
        }

        // Weft: interfaces and cross-connects; the kernel: root, the client pods, the
        // endpoint pod, in one go. Read first, judged below.
        let itfs = Set(try n.weftd.interfaces().map(\.name).filter { $0.hasPrefix("nsm-") })
        let xcs = try n.weftd.crossConnects()
        var script = "echo '@@root'; ip -o link show\n"
        for p in pods + [n.nse] {
            script += "echo '@@link \(p)'; ip -n \(p) -o link show; echo '@@addr \(p)'; ip -n \(p) -o -4 addr show\n"
        }
        let out = sh(script).out
        let t1 = Date()
        let doubt = live.filter { $0.expiresAt.map { t1 > $0.addingTimeInterval(-Self.expiryMarginBefore) } ?? false }
        let sure = live.filter { c in !doubt.contains { $0 === c } }
        let all = live

        func expect(_ ok: Bool, _ what: @autoclosure () -> String) throws {
            if !ok { throw fail("\(when): \(what())\nmodel: sure \(sure.map(\.description)), in doubt \(doubt.map(\.description))") }
        }

        let nsmXCs = Set(xcs.map(\.name).filter { $0.hasPrefix("nsm-") })
        let mustItf = Set(sure.flatMap(\.interfaces)), mayItf = Set(all.flatMap(\.interfaces))
        try expect(mustItf.isSubset(of: itfs), "Weft interfaces missing: \(mustItf.subtracting(itfs).sorted())")
        try expect(itfs.isSubset(of: mayItf), "Weft interfaces of no live connection: \(itfs.subtracting(mayItf).sorted())")
        let mustXC = Set(sure.map(\.crossConnect)), mayXC = Set(all.map(\.crossConnect))
        try expect(mustXC.isSubset(of: nsmXCs), "cross-connects missing: \(mustXC.subtracting(nsmXCs).sorted())")
        try expect(nsmXCs.isSubset(of: mayXC), "cross-connects of no live connection: \(nsmXCs.subtracting(mayXC).sorted())")
        try expect(xcs.contains { $0.name == "chaos-x" } == yamlOn, "the YAML cross-connect is \(yamlOn ? "missing" : "still there")")
        try expect(xcs.count - nsmXCs.count == (yamlOn ? 1 : 0), "other cross-connects: \(xcs.map(\.name))")

        var sections: [String: Substring] = [:]
        for part in out.components(separatedBy: "@@").dropFirst() {
            let nl = part.firstIndex(of: "\n") ?? part.endIndex
            sections[String(part[..<nl])] = part[nl...]
        }
        let prefix = "weft-nsm:\(n.name):"
        let veths = Set(Self.links(sections["root"] ?? "").compactMap(\.alias).filter { $0.hasPrefix(prefix) })
        let mustVeth = Set(sure.flatMap { $0.hostAliases(n.name) }), mayVeth = Set(all.flatMap { $0.hostAliases(n.name) })
        try expect(mustVeth.isSubset(of: veths), "host veths missing: \(mustVeth.subtracting(veths).sorted())")
        try expect(veths.isSubset(of: mayVeth), "leaked host veths: \(veths.subtracting(mayVeth).sorted())")

        for (i, p) in pods.enumerated() {
            let links = Self.links(sections["link \(p)"] ?? "").filter { $0.name != "lo" }
            let addrs = Self.addresses(sections["addr \(p)"] ?? "")
            let mine = all.filter { $0.isKernel && $0.pod == i }
            for c in sure where c.isKernel && c.pod == i {
                let name = c.podIfName!
                try expect(links.contains { $0.name == name && $0.alias == "server-\(c.firstID)" },
                           "\(p): no \(name) with alias server-\(c.firstID) for \(c.description): \(links.map { "\($0.name) \($0.alias ?? "")" })")
                try expect(addrs[name] == [c.src], "\(p): \(name) has \(addrs[name] ?? []), not \(c.src)")
            }
            for l in links {
                try expect(mine.contains { l.name == $0.podIfName && l.alias == "server-\($0.firstID)" },
                           "\(p): interface \(l.name) (alias \(l.alias ?? "")) belongs to no live connection")
            }
        }
        // The endpoint pod: one interface per live connection with its address.
        let nseLinks = Self.links(sections["link \(n.nse)"] ?? "").filter { $0.name != "lo" }
        let nseAddrs = Self.addresses(sections["addr \(n.nse)"] ?? "")
        let held = Set(nseAddrs.values.flatMap { $0 })
        for c in sure { try expect(held.contains(c.dst), "endpoint pod: \(c.dst) missing for \(c.description)") }
        try expect(nseLinks.count >= sure.count && nseLinks.count <= all.count,
                   "endpoint pod has \(nseLinks.count) interfaces for \(sure.count)...\(all.count) connections: \(nseLinks.map(\.name))")
        for a in held { try expect(all.contains { $0.dst == a }, "endpoint pod: address \(a) of no live connection") }

        // memif sockets: v1.1 files under runtime_dir, v1.2 abstract in the pod.
        let memifDir = n.weftd.dir + "/memif"
        let dirs = Set((try? FileManager.default.contentsOfDirectory(atPath: memifDir)) ?? [])
        let mayDirs = Set(all.filter { if case .memif(nil, _) = $0.kind { return true } else { return false } }.map(\.hash))
        try expect(dirs.isSubset(of: mayDirs), "memif socket dirs of no live connection under \(memifDir): \(dirs.subtracting(mayDirs).sorted())")
        for c in sure {
            guard case .memif(let pod, _) = c.kind, let sf = c.socketfile else { continue }
            if let pod {
                let unix = (try? String(contentsOfFile: "/proc/\(podProcesses[pod].processIdentifier)/net/unix", encoding: .utf8)) ?? ""
                try expect(unix.contains(sf), "\(pods[pod]): no socket \(sf) for \(c.description)")
            } else {
                try expect(FileManager.default.fileExists(atPath: sf), "no memif socket file \(sf) for \(c.description)")
            }
        }
        for (i, proc) in podProcesses.enumerated() {
            let unix = (try? String(contentsOfFile: "/proc/\(proc.processIdentifier)/net/unix", encoding: .utf8)) ?? ""
            for l in unix.split(separator: "\n") where l.contains("@/tmp/memif/") {
                try expect(all.contains { $0.socketfile.map { l.hasSuffix($0) } ?? false },
                           "\(pods[i]): memif socket of no live connection: \(l)")
            }
        }

        // MonitorConnections: the ids its events leave are the live ones (events arrive
        // on their own stream: a moment's lag is allowed).
        guard let m = monitor else { throw fail("no monitor") }
        let mayIDs = Set(all.map(\.weftID))
        let deadline = Date().addingTimeInterval(3)
        while true {
            if let e = m.ended { throw fail("\(when): the monitor stream ended: \(e)") }
            // Surely there as of this look (the wait can outlast an expiring one's margin).
            let mustIDs = Set(sure.filter { $0.expiresAt.map { Date() < $0.addingTimeInterval(-Self.expiryMarginBefore) } ?? true }.map(\.weftID))
            let ids = m.ids ?? []
            if mustIDs.isSubset(of: ids) && ids.isSubset(of: mayIDs) { break }
            if Date() > deadline {
                try expect(false, "the monitor's ids: missing \(mustIDs.subtracting(ids).sorted()), of no live connection \(ids.subtracting(mayIDs).sorted())")
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }

        // weftd's fds stay bounded by what is live.
        let fds = try fdCount()
        if ProcessInfo.processInfo.environment["WEFT_CHAOS_TRACE_FDS"] != nil {
            let kernelItfs = try n.weftd.interfaces().filter { $0.type == "kernel" }.count
            note("  fds \(fds), \(kernelItfs) kernel interfaces: \(fdKinds())")
        }
        let yamlFDs = yamlOn ? Self.yamlFDs : 0
        let bound = fdBase + Self.fdsPerConnection * all.count + yamlFDs + Self.fdSlack
        fdMaxOver = max(fdMaxOver, fds - fdBase - Self.fdsPerConnection * all.count - yamlFDs)
        try expect(fds <= bound, "weftd has \(fds) fds, more than \(bound) (base \(fdBase), \(all.count) live): \(fdKinds())")
    }
}
