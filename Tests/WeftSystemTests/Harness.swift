import Foundation
import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// Helpers for system tests: real processes, real namespaces, real peers.
/// Everything here runs as root (the README test command does).

struct CommandResult {
    var status: Int32
    var out: String
    var err: String
}

@discardableResult
func sh(_ args: [String], input: String? = nil, timeout: TimeInterval = 60) -> CommandResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = args
    let o = Pipe(), e = Pipe()
    p.standardOutput = o
    p.standardError = e
    p.standardInput = FileHandle.nullDevice
    do { try p.run() } catch { return CommandResult(status: -1, out: "", err: "\(error)") }
    // Read both pipes concurrently so a chatty child cannot block on a full pipe.
    final class Sink: @unchecked Sendable { var out = Data(), err = Data() }
    let sink = Sink()
    let g = DispatchGroup()
    g.enter(); DispatchQueue.global().async { sink.out = o.fileHandleForReading.readDataToEndOfFile(); g.leave() }
    g.enter(); DispatchQueue.global().async { sink.err = e.fileHandleForReading.readDataToEndOfFile(); g.leave() }
    let killer = DispatchWorkItem { if p.isRunning { p.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
    p.waitUntilExit()
    killer.cancel()
    g.wait()
    return CommandResult(status: p.terminationStatus, out: String(decoding: sink.out, as: UTF8.self),
                         err: String(decoding: sink.err, as: UTF8.self))
}

func sh(_ line: String, timeout: TimeInterval = 60) -> CommandResult { sh(["bash", "-c", line], timeout: timeout) }

enum Paths {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var bin: URL {
        if let b = ProcessInfo.processInfo.environment["WEFT_BIN_DIR"] { return URL(fileURLWithPath: b) }
        return root.appendingPathComponent(".build/debug")
    }
    static var weftd: String { bin.appendingPathComponent("weftd").path }
    static var weftctl: String { bin.appendingPathComponent("weftctl").path }
}

/// A short unique tag for kernel names (interface names are at most 15 characters).
func uniqueTag() -> String { String(format: "%04x", UInt16.random(in: 0...UInt16.max)) }

/// A network namespace with a veth whose near end stays in the root namespace
/// for weftd to attach with AF_PACKET.
final class PodNamespace {
    let ns: String
    let hostEnd: String
    let address: String
    let address6: String?
    let mac: String

    /// `node`: a namespace that holds the host end (where that node's weftd runs); nil = root.
    /// `ipv6`: an IPv6 address for the pod (/64, no DAD); without it the pod has no IPv6.
    /// `mtu`: both ends of the veth. The veth keeps the kernel's default offloads.
    init(tag: String, index: Int, subnet: String = "10.88", address: String? = nil, node: String? = nil,
         ipv6: String? = nil, mtu: Int? = nil) {
        ns = "wt\(tag)n\(index)"
        hostEnd = "wt\(tag)h\(index)"
        self.address = address ?? "\(subnet).0.\(index)"
        address6 = ipv6
        mac = String(format: "02:77:00:00:%02x:%02x", Int(tag.prefix(2), radix: 16) ?? 0, index)
        sh("ip netns del \(ns) 2>/dev/null; ip link del \(hostEnd) 2>/dev/null")
        let inNode = node.map { "ip netns exec \($0) " } ?? ""
        let v6 = ipv6.map { a in
            """
            ip netns exec \(ns) sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
            ip netns exec \(ns) sysctl -qw net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.all.router_solicitations=0
            ip -n \(ns) addr add \(a)/64 dev eth0 nodad
            """
        } ?? "ip netns exec \(ns) sysctl -qw net.ipv6.conf.all.disable_ipv6=1"
        let r = sh("""
        set -e
        ip netns add \(ns)
        ip link add \(hostEnd) \(mtu.map { "mtu \($0) " } ?? "")type veth peer name eth0 netns \(ns)
        \(mtu.map { "ip -n \(ns) link set eth0 mtu \($0)" } ?? "true")
        \(node.map { "ip link set \(hostEnd) netns \($0)" } ?? "true")
        \(inNode)ip link set \(hostEnd) up
        ip -n \(ns) link set eth0 address \(mac)
        ip -n \(ns) addr add \(self.address)/24 dev eth0
        # No IPv6 DAD/router chatter: counters show the test's traffic.
        \(v6)
        ip -n \(ns) link set eth0 up
        ip -n \(ns) link set lo up
        \(inNode)sysctl -qw net.ipv6.conf.\(hostEnd).disable_ipv6=1
        """)
        precondition(r.status == 0, "namespace setup failed: \(r.err)")
    }

    /// A content-checked transfer from this pod to `target` in `to` (Tests/peers/xfer.py).
    func transfer(to: String, target: String, proto: String, bytes: Int, port: Int = 5201,
                  size: Int = 1200, rate: Int = 0) -> Transfer {
        Transfer.run(fromNS: ns, toNS: to, target: target, proto: proto, bytes: bytes, port: port, size: size, rate: rate)
    }

    /// Exactly `count` echo requests (no -w: with it ping sends more until it
    /// has `count` replies); late replies are still counted, up to -W seconds.
    func ping(_ target: String, count: Int = 3, interval: String = "0.2", deadline: Int = 10) -> CommandResult {
        sh("ip netns exec \(ns) ping -n -q -c \(count) -i \(interval) -W 3 \(target)", timeout: TimeInterval(deadline + 30))
    }

    deinit { sh("ip netns del \(ns) 2>/dev/null; ip link del \(hostEnd) 2>/dev/null") }
}

/// A content-checked TCP or UDP transfer between two namespaces: the receiver
/// hashes what arrived, the sender what it sent (Tests/peers/xfer.py).
struct Transfer: CustomStringConvertible {
    var sentBytes = 0, receivedBytes = 0
    var sentSHA = "", receivedSHA = ""
    var datagrams: Int?
    var log = ""
    var intact: Bool { sentBytes > 0 && sentBytes == receivedBytes && sentSHA == receivedSHA }
    var description: String { "sent \(sentBytes) B \(sentSHA.prefix(12)), received \(receivedBytes) B \(receivedSHA.prefix(12)); \(log)" }

    static let script = Paths.root.appendingPathComponent("Tests/peers/xfer.py").path

    static func run(fromNS: String, toNS: String, target: String, proto: String, bytes: Int, port: Int,
                    size: Int, rate: Int, timeout: Int = 30) -> Transfer {
        var t = Transfer()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        let bind = target.contains(":") ? "::" : "0.0.0.0"
        server.arguments = ["netns", "exec", toNS, "python3", script, "serve", proto, bind, String(port),
                            "--expect", String(bytes), "--timeout", String(timeout)]
        let out = Pipe(), err = Pipe()
        server.standardOutput = out
        server.standardError = err
        server.standardInput = FileHandle.nullDevice
        do { try server.run() } catch { t.log = "cannot start the receiver: \(error)"; return t }
        // Wait for "ready" before sending.
        var buffered = Data()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, !String(decoding: buffered, as: UTF8.self).contains("ready") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            buffered += chunk
        }
        var args = ["ip", "netns", "exec", fromNS, "python3", script, "send", proto, target, String(port), String(bytes),
                    "--size", String(size)]
        if rate > 0 { args += ["--rate", String(rate)] }
        let c = sh(args, timeout: TimeInterval(timeout + 30))
        server.waitUntilExit()
        buffered += out.fileHandleForReading.readDataToEndOfFile()
        let serr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        struct Line: Decodable { var bytes: Int; var sha256: String; var datagrams: Int? }
        let lines = String(decoding: buffered, as: UTF8.self).split(separator: "\n")
        if let l = lines.last(where: { $0.hasPrefix("{") }),
           let r = try? JSONDecoder().decode(Line.self, from: Data(l.utf8)) {
            t.receivedBytes = r.bytes
            t.receivedSHA = r.sha256
            t.datagrams = r.datagrams
        }
        if let l = c.out.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
           let r = try? JSONDecoder().decode(Line.self, from: Data(l.utf8)) {
            t.sentBytes = r.bytes
            t.sentSHA = r.sha256
        }
        t.log = "\(proto) \(target):\(port) sender rc \(c.status) \(c.err.suffix(300)) receiver \(serr.suffix(300))"
        return t
    }
}

/// ping's "N packets transmitted, M received".
func pingCounts(_ out: String) -> (sent: Int, received: Int)? {
    guard let line = out.split(separator: "\n").first(where: { $0.contains("packets transmitted") }) else { return nil }
    let nums = line.split(separator: " ").compactMap { Int($0) }
    return nums.count >= 2 ? (nums[0], nums[1]) : nil
}

/// weftd as a separate process with its own config, runtime dir and DPDK prefix.
final class Weftd {
    let dir: String
    let configPath: String
    let socket: String
    let prefix: String
    var process: Process?
    let logPath: String

    /// Network namespace weftd runs in (nil: the root namespace).
    let netns: String?

    init(tag: String, netns: String? = nil) {
        self.netns = netns
        dir = "/run/weft/test-\(tag)"
        configPath = "\(dir)/weft.yaml"
        socket = "\(dir)/weftd.sock"
        prefix = "wt-\(tag)"
        logPath = "/tmp/weftd-test-\(tag).log"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    /// The base of every test config: no hugepages, one worker on lcore 1
    /// that sleeps when idle (the machine has two cores for everything).
    func header() -> String {
        """
        eal:
          main_lcore: 0
          hugepages: false
          memory_mb: 256
          file_prefix: \(prefix)
        dataplane:
          workers: [1]
          mbufs: 4095
          idle_sleep_us: 20
        admin:
          socket: \(socket)
          runtime_dir: \(dir)

        """
    }

    func write(_ body: String) {
        FileManager.default.createFile(atPath: configPath, contents: Data((header() + body).utf8))
    }

    /// Start weftd; wait until its admin socket answers. Returns false if it exited.
    @discardableResult
    func start(expectFailure: Bool = false) -> Bool {
        let p = Process()
        if let netns {
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            p.arguments = ["netns", "exec", netns, Paths.weftd, "run", "--config", configPath, "--log-level", "debug"]
        } else {
            p.executableURL = URL(fileURLWithPath: Paths.weftd)
            p.arguments = ["run", "--config", configPath, "--log-level", "debug"]
        }
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)!
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try! p.run()
        try? log.close() // the child has its own
        process = p
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if !p.isRunning { return false }
            if (try? AdminClient.send(.init(command: .showInterfaces), socketPath: socket, timeoutSeconds: 5))?.ok == true { return true }
            usleep(100_000)
        }
        return false
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func ctl(_ args: [String]) -> CommandResult { sh([Paths.weftctl] + args + ["--socket", socket]) }

    func request(_ r: AdminRequest) throws -> AdminResponse { try AdminClient.send(r, socketPath: socket) }

    func interfaces() throws -> [InterfaceStatus] { try request(.init(command: .showInterfaces)).interfaces ?? [] }
    func crossConnects() throws -> [CrossConnectStatus] { try request(.init(command: .showCrossConnects)).crossConnects ?? [] }

    /// Wait until every interface reports link up.
    func waitLinksUp(timeout: TimeInterval = 15) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let l = try? interfaces(), !l.isEmpty, l.allSatisfy({ $0.link == "up" }) { return true }
            usleep(100_000)
        }
        return false
    }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        guard let p = process else { return 0 }
        if p.isRunning { p.terminate() }
        let deadline = Date().addingTimeInterval(20)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        process = nil
        return p.terminationStatus
    }

    func kill9() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    deinit {
        stop()
        sh("rm -rf \(dir) /var/run/dpdk/\(prefix)")
    }
}

/// dpdk-testpmd as a second DPDK process: memif clients forwarding between
/// each other (io mode), so traffic through it leaves Weft and comes back.
final class TestpmdPeer {
    let process: Process
    let prefix: String
    let logPath: String

    convenience init(tag: String, sockets: [String]) throws {
        try self.init(tag: tag, vdevs: sockets.enumerated().map { "net_memif\($0.offset),role=client,socket=\($0.element),socket-abstract=no,id=0" })
    }

    /// `vdevs`: full memif devargs; `mode`: testpmd forwarding mode.
    init(tag: String, vdevs: [String], mode: String = "io", queues: Int = 1) throws {
        prefix = "wt-pmd-\(tag)"
        logPath = "/tmp/testpmd-\(tag).log"
        var args = ["--lcores", "0@0,1@0", "--no-huge", "-m", "256", "--file-prefix", prefix, "--no-pci"]
        for v in vdevs { args += ["--vdev", v] }
        args += ["--", "--forward-mode=\(mode)", "--auto-start", "--no-mlockall", "--total-num-mbufs=8192",
                 "--stats-period=3600", "--rxq=\(queues)", "--txq=\(queues)"]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/dpdk-testpmd")
        p.arguments = args
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)!
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        try? log.close() // the child has its own
        process = p
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    deinit {
        if process.isRunning { process.interrupt() }
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        sh("rm -rf /var/run/dpdk/\(prefix)")
    }
}

class SystemTestCase: XCTestCase {
    override func setUpWithError() throws {
        // System tests need root (namespaces, veth, AF_PACKET); the README
        // test command runs as root. Failing loudly beats skipping silently.
        XCTAssertEqual(getuid(), 0, "system tests must run as root")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: Paths.weftd), "build weftd first: \(Paths.weftd)")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: Paths.weftctl), "build weftctl first")
        continueAfterFailure = false
    }
}

/// Echo requests from a pod in the background, so that a test can change the
/// control plane while traffic flows and then count what was lost.
final class BackgroundPing: @unchecked Sendable {
    private var result: CommandResult?
    private let done = DispatchSemaphore(value: 0)
    private var ended = false

    init(from pod: PodNamespace, to target: String, count: Int, interval: String) {
        DispatchQueue(label: "pinger").async {
            self.result = pod.ping(target, count: count, interval: interval, deadline: 60)
            self.done.signal()
        }
    }

    /// Non-blocking: has ping finished?
    var finished: Bool {
        if !ended && done.wait(timeout: .now()) == .success { ended = true }
        return ended
    }

    /// Block until ping finishes; its "transmitted / received" counts.
    func counts() -> (sent: Int, received: Int)? {
        if !ended { done.wait(); ended = true }
        return result.flatMap { pingCounts($0.out) }
    }
}
