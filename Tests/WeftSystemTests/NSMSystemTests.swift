import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SwiftProtobuf
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel
import WeftNSMProto
import XCTest

/// Weft as an NSM forwarder, end to end: a test NSMgr/registry and a test endpoint
/// (gRPC, the generated protos) in this process; weftd as a process; client and
/// endpoint pods as network namespaces.
final class NSMSystemTests: SystemTestCase {
    final class Node {
        let tag: String
        let weftd: Weftd
        let nsc: String, nse: String
        let registry: TestRegistry
        let endpoint: TestEndpoint
        var servers: [TestGRPCServer] = []
        var nsmSocket: String { "\(weftd.dir)/nsm.sock" }
        var registrySocket: String { "\(weftd.dir)/registry.sock" }
        var nseSocket: String { "\(weftd.dir)/nse.sock" }
        var name: String { "weft-\(tag)" }

        /// Prometheus's /metrics on 127.0.0.1 at this port (nil: off).
        let metricsPort: Int?
        var metricsURL: String { "http://127.0.0.1:\(metricsPort ?? 0)/metrics" }
        /// More lines of the `nsm:` section ("\n  key: value"), and what serves the endpoint's
        /// socket instead of `endpoint` (NSMTracingSystemTests).
        var nsmExtra: String
        var endpointService: (any RegistrableRPCService)?

        init(registryExpiry: TimeInterval = 60, metrics: Bool = false, nsmExtra: String = "") {
            self.nsmExtra = nsmExtra
            metricsPort = metrics ? Int.random(in: 30000...39999) : nil
            registry = TestRegistry(expiry: registryExpiry)
            tag = uniqueTag()
            weftd = Weftd(tag: tag)
            nsc = "wt\(tag)nsc"
            nse = "wt\(tag)nse"
            endpoint = TestEndpoint(name: "nse-\(tag)", netns: nse)
            for ns in [nsc, nse] {
                sh("ip netns del \(ns) 2>/dev/null; ip netns add \(ns) && ip -n \(ns) link set lo up")
            }
        }

        func start() async throws {
            servers.append(try await TestGRPCServer(path: registrySocket, services: [registry, registry.nse]))
            servers.append(try await TestGRPCServer(path: nseSocket, services: [endpointService ?? endpoint]))
            var ns = Registry_NetworkService(); ns.name = "icmp-responder"; ns.payload = "ETHERNET"
            registry.add(service: ns)
            var e = Registry_NetworkServiceEndpoint(); e.name = endpoint.name; e.networkServiceNames = ["icmp-responder"]
            e.url = "unix://" + nseSocket
            registry.add(endpoint: e)
            weftd.write((metricsPort.map { "metrics: {prometheus: true, listen_on: \"127.0.0.1:\($0)\"}\n" } ?? "") + """
            nsm:
              name: \(name)
              listen_on: [unix://\(nsmSocket)]
              insecure: true
              connect_to: unix://\(registrySocket)
            """ + nsmExtra)
            XCTAssertTrue(weftd.start(), "weftd did not start:\n\(weftd.log)")
            try await waitFor("weftd to register") { self.registry.rec.registrations.contains { $0.name == self.name } }
        }

        func stop() async {
            weftd.stop()
            for s in servers { await s.stop() }
            for ns in [nsc, nse] { sh("ip netns del \(ns) 2>/dev/null") }
        }

        func request(_ r: Networkservice_NetworkServiceRequest) async throws -> Connection_Connection {
            try await withNSM(nsmSocket) { try await Networkservice_NetworkService.Client(wrapping: $0).request(r) }
        }
        func close(_ c: Connection_Connection) async throws {
            _ = try await withNSM(nsmSocket) { try await Networkservice_NetworkService.Client(wrapping: $0).close(c) }
        }
        func links(_ ns: String) -> String { sh("ip -n \(ns) -o link show").out }
        /// Links in the root namespace that carry this test's forwarder's NSM alias.
        var weftLinks: [String] {
            sh("ip -o link show").out.split(separator: "\n").filter { $0.contains("weft-nsm:\(name):") }.map(String.init)
        }
    }

    static func waitFor(_ what: String, timeout: TimeInterval = 20, _ cond: @escaping () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await cond() { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        XCTFail("timed out waiting for \(what)")
        throw CancellationError()
    }

    func kernelRequest(_ n: Node, name: String = "nsm-1", expires: Date = Date().addingTimeInterval(600)) -> Networkservice_NetworkServiceRequest {
        nsmRequest(service: "icmp-responder", params: ["inodeURL": "file:///var/run/netns/\(n.nsc)", "name": name], callerExpires: expires)
    }

    func ping(_ ns: String, _ target: String, count: Int = 5) -> (sent: Int, received: Int)? {
        pingCounts(sh("ip netns exec \(ns) ping -n -q -c \(count) -i 0.2 -W 3 \(target)", timeout: 40).out)
    }

    func ifindex(_ ns: String, _ name: String) -> String {
        sh("ip -n \(ns) -o link show \(name)").out.split(separator: ":").first.map(String.init) ?? ""
    }

    // MARK: kernel <-> kernel

    func testKernelToKernelRequestRefreshMonitorClose() async throws {
        let n = Node()
        try await n.start()
        addTeardownBlock { await n.stop() }

        // Registration as NSM's forwarders do it.
        let reg = try XCTUnwrap(n.registry.rec.registrations.last)
        XCTAssertEqual(reg.networkServiceNames, ["forwarder"])
        XCTAssertEqual(reg.networkServiceLabels["forwarder"]?.labels["p2p"], "true")
        // NSM's sendfd: the listen socket as its inode URL (its fd rides along).
        XCTAssertEqual(reg.url, try InodeURL(path: n.nsmSocket).description)

        // Health.
        try await withNSM(n.nsmSocket) { c in
            let h = Grpc_Health_V1_Health.Client(wrapping: c)
            for s in ["", "networkservice.NetworkService", "connection.MonitorConnection"] {
                var q = Grpc_Health_V1_HealthCheckRequest(); q.service = s
                let st = try await h.check(q).status
                XCTAssertEqual(st, .serving, s)
            }
            var q = Grpc_Health_V1_HealthCheckRequest(); q.service = "no.such.Service"
            do { _ = try await h.check(q); XCTFail("unknown service answered") } catch let e as RPCError { XCTAssertEqual(e.code, .notFound) }
        }

        let req = kernelRequest(n)
        let conn = try await n.request(req)
        // The caller's view: its own index and id; the path runs on to Weft and the endpoint.
        XCTAssertEqual(conn.id, req.connection.id)
        XCTAssertEqual(conn.path.index, 1)
        XCTAssertEqual(conn.path.pathSegments.map(\.name), ["nsc", "nsmgr", n.name, n.endpoint.name])
        XCTAssertEqual(conn.mechanism.type, "KERNEL")
        XCTAssertEqual(conn.networkServiceEndpointName, n.endpoint.name)
        let weftID = conn.path.pathSegments[2].id
        XCTAssertFalse(weftID.isEmpty)

        // What Weft asked of the endpoint: LOCAL mechanisms only, KERNEL with a name.
        let toNSE = try XCTUnwrap(n.endpoint.rec.requests.first)
        XCTAssertTrue(toNSE.mechanismPreferences.allSatisfy { $0.cls == "LOCAL" })
        let nseName = try XCTUnwrap(toNSE.mechanismPreferences.first { $0.type == "KERNEL" }?.parameters["name"])
        XCTAssertLessThanOrEqual(nseName.count, 15)
        XCTAssertEqual(toNSE.connection.id, weftID, "the endpoint sees Weft's segment id as the connection id")

        // Both pods got their interface, addresses and alias.
        let nscLink = sh("ip -n \(n.nsc) -d link show nsm-1").out
        XCTAssertTrue(nscLink.contains("alias server-\(req.connection.path.pathSegments[0].id)"), nscLink)
        XCTAssertTrue(sh("ip -n \(n.nsc) -o addr show dev nsm-1").out.contains("172.16.1.101/32"))
        XCTAssertTrue(sh("ip -n \(n.nse) -o addr show dev \(nseName)").out.contains("172.16.1.100/32"))
        XCTAssertTrue(sh("ip -n \(n.nsc) route show 172.16.1.100").out.contains("nsm-1"))

        // Traffic through Weft, both ways: ping, TCP and UDP with content checks, fragments.
        XCTAssertEqual(ping(n.nsc, "172.16.1.100")?.received, 5, n.weftd.log)
        XCTAssertEqual(ping(n.nse, "172.16.1.101")?.received, 5)
        for (from, to, target, port) in [(n.nsc, n.nse, "172.16.1.100", 5421), (n.nse, n.nsc, "172.16.1.101", 5422)] {
            let t = Transfer.run(fromNS: from, toNS: to, target: target, proto: "tcp", bytes: 8 << 20, port: port,
                                 size: 1200, rate: 0)
            XCTAssertTrue(t.intact, "TCP to \(target): \(t)")
            let u = Transfer.run(fromNS: from, toNS: to, target: target, proto: "udp", bytes: 512 << 10, port: port + 10,
                                 size: 1400, rate: 3000)
            XCTAssertTrue(u.intact, "UDP to \(target): \(u)")
        }
        let frag = sh("ip netns exec \(n.nsc) ping -n -q -c 3 -i 0.2 -W 3 -s 3000 172.16.1.100")
        XCTAssertEqual(pingCounts(frag.out)?.received, 3, "fragments: " + frag.out)
        // The pods' veth ends hand over complete frames (TX checksum offload off, as NSM's forwarders do).
        XCTAssertTrue(sh("ip netns exec \(n.nsc) ethtool -k nsm-1").out.contains("tx-checksumming: off"))

        // Monitor: the NSMgr's selector (its own segment) gets the initial state.
        let initial = try await withNSM(n.nsmSocket) { c in
            var sel = Connection_MonitorScopeSelector()
            var seg = Connection_PathSegment(); seg.id = req.connection.path.pathSegments[1].id; seg.name = "nsmgr"
            sel.pathSegments = [seg]
            return try await Connection_MonitorConnection.Client(wrapping: c).monitorConnections(sel) { resp in
                for try await e in resp.messages { return e }
                throw CancellationError()
            }
        }
        XCTAssertEqual(initial.type, .initialStateTransfer)
        XCTAssertEqual(initial.connections.count, 1)
        XCTAssertEqual(initial.connections.values.first?.mechanism.type, "KERNEL")

        // Refresh: same ids, nothing rebuilt; metrics on Weft's segment.
        let ports = try n.weftd.interfaces().map { "\($0.name)=\($0.port ?? 0)" }.sorted()
        let before = (ifindex(n.nsc, "nsm-1"), ifindex(n.nse, nseName))
        var again = Networkservice_NetworkServiceRequest()
        again.connection = conn
        again.mechanismPreferences = req.mechanismPreferences
        let refreshed = try await n.request(again)
        XCTAssertEqual(refreshed.id, conn.id)
        XCTAssertEqual(refreshed.path.pathSegments[2].id, weftID)
        XCTAssertEqual(try n.weftd.interfaces().map { "\($0.name)=\($0.port ?? 0)" }.sorted(), ports)
        XCTAssertEqual((ifindex(n.nsc, "nsm-1"), ifindex(n.nse, nseName)).0, before.0)
        XCTAssertEqual(ifindex(n.nse, nseName), before.1)
        XCTAssertEqual(n.endpoint.rec.requests.count, 2, "the refresh reaches the endpoint")
        let metrics = refreshed.path.pathSegments[2].metrics
        XCTAssertGreaterThanOrEqual(Int(metrics["server_rx_packets"] ?? "") ?? 0, 10, "\(metrics)")
        XCTAssertGreaterThanOrEqual(Int(metrics["client_rx_packets"] ?? "") ?? 0, 10, "\(metrics)")
        XCTAssertNotNil(metrics["server_drops"])

        // Close: nothing left anywhere; the endpoint is closed too; a DELETE event.
        async let deleteEvent: Connection_ConnectionEvent = withNSM(n.nsmSocket) { c in
            try await Connection_MonitorConnection.Client(wrapping: c).monitorConnections(Connection_MonitorScopeSelector()) { resp in
                for try await e in resp.messages where e.type == .delete { return e }
                throw CancellationError()
            }
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        try await n.close(refreshed)
        let del = try await deleteEvent
        XCTAssertEqual(del.connections.count, 1)
        XCTAssertEqual(n.endpoint.rec.closes.count, 1)
        XCTAssertFalse(n.links(n.nsc).contains("nsm-1"))
        XCTAssertFalse(n.links(n.nse).contains(nseName))
        XCTAssertEqual(try n.weftd.interfaces().count, 0)
        XCTAssertEqual(try n.weftd.crossConnects().count, 0)
        XCTAssertEqual(n.weftLinks, [])

        // SIGTERM with a monitor stream still open: weftd ends the stream and exits cleanly
        // (it used to wait for the stream until it was killed).
        let watcher = Task {
            try await withNSM(n.nsmSocket) { c in
                try await Connection_MonitorConnection.Client(wrapping: c).monitorConnections(Connection_MonitorScopeSelector()) { resp in
                    var k = 0
                    for try await _ in resp.messages { k += 1 }
                    return k
                }
            }
        }
        try await Task.sleep(nanoseconds: 500_000_000)
        // 0, not the harness's SIGKILL (which it sends after 20 s).
        XCTAssertEqual(n.weftd.stop(), 0, n.weftd.log)
        _ = try? await watcher.value
    }

    // MARK: memif towards the client

    func testMemifClientSideAbstractSocketInPodNamespace() async throws {
        let n = Node()
        try await n.start()
        addTeardownBlock { await n.stop() }
        let req = nsmRequest(service: "icmp-responder", mechanism: "MEMIF", params: ["inodeURL": "file:///var/run/netns/\(n.nsc)"])
        let conn = try await n.request(req)
        XCTAssertEqual(conn.mechanism.type, "MEMIF")
        let socketfile = try XCTUnwrap(conn.mechanism.parameters["socketfile"])
        XCTAssertTrue(socketfile.hasPrefix("@/tmp/memif/"), socketfile)
        // The abstract socket lives in the pod's namespace, not in weftd's.
        let name = String(socketfile.dropFirst())
        XCTAssertTrue(sh("ip netns exec \(n.nsc) cat /proc/net/unix").out.contains("@" + name))
        XCTAssertFalse(sh("cat /proc/net/unix").out.contains("@" + name))

        // A DPDK memif client inside the pod sends; the frames come out at the endpoint's interface.
        let nseName = try XCTUnwrap(n.endpoint.rec.requests.first?.mechanismPreferences.first { $0.type == "KERNEL" }?.parameters["name"])
        let prefix = "wt-pmd-\(n.tag)"
        let pmd = Process()
        pmd.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        pmd.arguments = ["netns", "exec", n.nsc, "/usr/bin/dpdk-testpmd", "--lcores", "0@0,1@0", "--no-huge", "-m", "256",
                         "--file-prefix", prefix, "--no-pci",
                         "--vdev", "net_memif0,role=client,socket=\(name),socket-abstract=yes,id=0",
                         "--", "--forward-mode=txonly", "--auto-start", "--no-mlockall", "--total-num-mbufs=4096",
                         "--stats-period=3600", "--txpkts=64"]
        let logPath = "/tmp/testpmd-nsm-\(n.tag).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        pmd.standardOutput = FileHandle(forWritingAtPath: logPath)
        pmd.standardError = FileHandle(forWritingAtPath: logPath)
        pmd.standardInput = FileHandle.nullDevice
        try pmd.run()
        defer {
            if pmd.isRunning { pmd.interrupt() }
            let deadline = Date().addingTimeInterval(5)
            while pmd.isRunning && Date() < deadline { usleep(50_000) }
            if pmd.isRunning { kill(pmd.processIdentifier, SIGKILL); pmd.waitUntilExit() }
            sh("rm -rf /var/run/dpdk/\(prefix)")
        }
        func rx() -> Int {
            let out = sh("ip -n \(n.nse) -s -o link show \(nseName)").out
            // "RX: bytes packets ..." then the numbers, in -o form: "...\    RX: bytes  packets ...\    123 4 ..."
            let parts = out.components(separatedBy: "\\")
            guard let i = parts.firstIndex(where: { $0.contains("RX:") }), i + 1 < parts.count else { return 0 }
            let nums = parts[i + 1].split(separator: " ").compactMap { Int($0) }
            return nums.count > 1 ? nums[1] : 0
        }
        try await Self.waitFor("memif frames at the endpoint", timeout: 30) { rx() > 1000 }
        let side = try XCTUnwrap(n.weftd.interfaces().first { $0.type == "memif" })
        XCTAssertEqual(side.link, "up")
        XCTAssertGreaterThan(side.counters.rxPackets, 1000)

        try await n.close(conn)
        XCTAssertEqual(try n.weftd.interfaces().count, 0)
        // weftd holds no socket of the pod's any more (the pod's own client end may linger).
        let pid = try XCTUnwrap(n.weftd.process?.processIdentifier)
        let unix = sh("ip netns exec \(n.nsc) cat /proc/net/unix").out.split(separator: "\n").filter { $0.contains("@" + name) }
        let inodes = unix.compactMap { $0.split(separator: " ").dropFirst(6).first }.map(String.init)
        let fds = sh("ls -l /proc/\(pid)/fd").out
        for i in inodes { XCTAssertFalse(fds.contains("socket:[\(i)]"), "weftd still holds \(i): \(unix)") }
        XCTAssertFalse(unix.contains { $0.contains(" 01 ") && $0.contains("00010000") }, "the listening socket is gone: \(unix) \(sh("ip netns exec \(n.nsc) ss -xlp").out)")
    }

    /// KERNEL at the endpoint, MEMIF at the client, where a DPDK application
    /// (dpdk-testpmd, io forward) bridges the memif to a tap the pod's own stack
    /// uses: TCP and UDP with content checks cross Weft's memif and the DPDK PMD.
    func testMemifClientWithADPDKApplicationCarriesTCPAndUDP() async throws {
        let n = Node()
        try await n.start()
        addTeardownBlock { await n.stop() }
        let req = nsmRequest(service: "icmp-responder", mechanism: "MEMIF", params: ["inodeURL": "file:///var/run/netns/\(n.nsc)"])
        let conn = try await n.request(req)
        let name = String(try XCTUnwrap(conn.mechanism.parameters["socketfile"]).dropFirst())
        let prefix = "wt-pmd-\(n.tag)"
        let pmd = Process()
        pmd.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        pmd.arguments = ["netns", "exec", n.nsc, "/usr/bin/dpdk-testpmd", "--lcores", "0@0,1@0", "--no-huge", "-m", "256",
                         "--file-prefix", prefix, "--no-pci",
                         "--vdev", "net_memif0,role=client,socket=\(name),socket-abstract=yes,id=0",
                         "--vdev", "net_tap0,iface=dtap0",
                         "--", "--forward-mode=io", "--auto-start", "--no-mlockall", "--total-num-mbufs=8192",
                         "--stats-period=3600"]
        let logPath = "/tmp/testpmd-nsm-io-\(n.tag).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        pmd.standardOutput = FileHandle(forWritingAtPath: logPath)
        pmd.standardError = FileHandle(forWritingAtPath: logPath)
        pmd.standardInput = FileHandle.nullDevice
        try pmd.run()
        defer {
            if pmd.isRunning { pmd.interrupt() }
            let deadline = Date().addingTimeInterval(5)
            while pmd.isRunning && Date() < deadline { usleep(50_000) }
            if pmd.isRunning { kill(pmd.processIdentifier, SIGKILL); pmd.waitUntilExit() }
            sh("rm -rf /var/run/dpdk/\(prefix)")
        }
        try await Self.waitFor("the tap of the DPDK application", timeout: 30) {
            sh("ip -n \(n.nsc) link show dtap0").status == 0
        }
        // The client's address on the application's tap (no kernel interface for IP context with MEMIF).
        let r = sh("""
        set -e
        ip -n \(n.nsc) addr add 172.16.1.101/32 dev dtap0
        ip -n \(n.nsc) link set dtap0 up
        ip -n \(n.nsc) route add 172.16.1.100/32 dev dtap0
        """)
        XCTAssertEqual(r.status, 0, r.err)
        try await Self.waitFor("the memif link", timeout: 30) {
            (try? n.weftd.interfaces().first { $0.type == "memif" }?.link) == "up"
        }
        XCTAssertEqual(ping(n.nsc, "172.16.1.100")?.received, 5, n.weftd.log)
        for (from, to, target, port) in [(n.nsc, n.nse, "172.16.1.100", 5431), (n.nse, n.nsc, "172.16.1.101", 5432)] {
            let t = Transfer.run(fromNS: from, toNS: to, target: target, proto: "tcp", bytes: 4 << 20, port: port,
                                 size: 1200, rate: 0)
            XCTAssertTrue(t.intact, "TCP to \(target) through memif and testpmd: \(t)")
            let u = Transfer.run(fromNS: from, toNS: to, target: target, proto: "udp", bytes: 256 << 10, port: port + 10,
                                 size: 1400, rate: 2000)
            XCTAssertTrue(u.intact, "UDP to \(target) through memif and testpmd: \(u)")
        }
        try await n.close(conn)
    }

    // MARK: bad input

    func testBadRequestsGetClearErrorsAndLeaveNothingBehind() async throws {
        let n = Node(metrics: true)
        try await n.start()
        addTeardownBlock { await n.stop() }
        let nscNS = "file:///var/run/netns/\(n.nsc)"

        await expectRPCError(.invalidArgument, "FOO") {
            _ = try await n.request(nsmRequest(service: "icmp-responder", mechanism: "FOO", params: [:]))
        }
        await expectRPCError(.invalidArgument, "inodeURL") {
            _ = try await n.request(nsmRequest(service: "icmp-responder", params: ["name": "nsm-1"]))
        }
        await expectRPCError(.notFound, "/var/run/netns/no-such-pod") {
            _ = try await n.request(nsmRequest(service: "icmp-responder", params: ["inodeURL": "file:///var/run/netns/no-such-pod"]))
        }
        await expectRPCError(.invalidArgument, "longer than 15") {
            _ = try await n.request(nsmRequest(service: "icmp-responder", params: ["inodeURL": nscNS, "name": "a-very-long-ifname"]))
        }
        await expectRPCError(.invalidArgument, "network_service") {
            _ = try await n.request(nsmRequest(service: "", params: ["inodeURL": nscNS]))
        }
        await expectRPCError(.notFound, "no-such-service") {
            _ = try await n.request(nsmRequest(service: "no-such-service", params: ["inodeURL": nscNS]))
        }
        await expectRPCError(.notFound, "no connection") {
            var c = Connection_Connection(); c.id = "not-a-connection"
            try await n.close(c)
        }
        // The endpoint refuses after Weft has built the client's side: all of it is rolled back.
        n.endpoint.refuse = true
        await expectRPCError(.unavailable, n.endpoint.name) {
            _ = try await n.request(self.kernelRequest(n))
        }
        XCTAssertEqual(n.endpoint.rec.requests.count, 1)
        n.endpoint.refuse = false

        XCTAssertEqual(try n.weftd.interfaces().count, 0)
        XCTAssertEqual(try n.weftd.crossConnects().count, 0)
        XCTAssertEqual(n.weftLinks, [])
        XCTAssertFalse(n.links(n.nsc).contains("nsm-1"), n.links(n.nsc))
        XCTAssertEqual(n.links(n.nse).split(separator: "\n").count, 1, "only lo: \(n.links(n.nse))")

        // And the same weftd still serves a good request afterwards, this time naming the
        // pod's namespace the way grpcfd puts it on the wire: inode://<dev>/<ino>.
        let st = sh("stat -L -c '%d %i' /var/run/netns/\(n.nsc)").out.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        XCTAssertEqual(st.count, 2)
        let conn = try await n.request(nsmRequest(service: "icmp-responder", params: ["inodeURL": "inode://\(st[0])/\(st[1])", "name": "nsm-1"]))
        XCTAssertEqual(ping(n.nsc, "172.16.1.100", count: 3)?.received, 3)

        // /metrics counted every call by its status, and holds the one connection.
        let m = try PromScrape.get(n.metricsURL)
        XCTAssertEqual(m.lint, "ok")
        func calls(_ method: String, _ code: String) -> Double? { m.value("weft_nsm_calls", ["method": method, "code": code]) }
        XCTAssertEqual(calls("request", "INVALID_ARGUMENT"), 4)
        XCTAssertEqual(calls("request", "NOT_FOUND"), 2)
        XCTAssertEqual(calls("close", "NOT_FOUND"), 1)
        XCTAssertEqual(calls("request", "UNAVAILABLE"), 1)
        XCTAssertEqual(calls("request", "OK"), 1)
        XCTAssertEqual(m.value("weft_nsm_call_duration_seconds", ["method": "request", "le": "+Inf"]), 8)
        XCTAssertEqual(m.value("weft_nsm_connections", ["mechanism": "KERNEL", "state": "established"]), 1)
        XCTAssertEqual(m.value("weft_limit", ["limit": "nsm.max_connections"]), 8192)
        // Every metric the shipped Grafana dashboard reads is one weftd (with NSM on) exports.
        let dash = try String(contentsOf: Paths.root.appendingPathComponent("deploy/grafana/weft-dashboard.json"), encoding: .utf8)
        let names = Set(try NSRegularExpression(pattern: "\\b(?:weft|process)_[a-z0-9_]+").matches(in: dash, range: NSRange(dash.startIndex..., in: dash))
            .map { String(dash[Range($0.range, in: dash)!]) })
        XCTAssertGreaterThan(names.count, 20)
        for n in names {
            var fam = n
            for suffix in ["_total", "_bucket", "_count", "_sum"] where fam.hasSuffix(suffix) { fam = String(fam.dropLast(suffix.count)) }
            XCTAssertNotNil(m.families[fam], "the dashboard reads \(n), which weftd does not export")
        }
        XCTAssertEqual(m.value("weft_xconnect_packets", ["direction": "a_to_b"]).map { $0 >= 3 }, true)
        try await n.close(conn)
        let after = try PromScrape.get(n.metricsURL)
        XCTAssertEqual(after.value("weft_nsm_calls", ["method": "close", "code": "OK"]), 1)
        XCTAssertEqual(after.families["weft_nsm_connections"]?.samples.count, 0)
    }

    // MARK: lifecycle

    func testUnrefreshedConnectionExpiresAndIsClosedEverywhere() async throws {
        let n = Node()
        try await n.start()
        addTeardownBlock { await n.stop() }
        _ = try await n.request(kernelRequest(n, expires: Date().addingTimeInterval(3)))
        XCTAssertEqual(try n.weftd.crossConnects().count, 1)
        try await Self.waitFor("the connection to expire", timeout: 20) {
            (try? n.weftd.interfaces().count) == 0 && n.endpoint.rec.closes.count == 1 && n.weftLinks.isEmpty
        }
        XCTAssertEqual(n.endpoint.rec.closes.count, 1, "expiry runs a full Close, to the endpoint too")
        XCTAssertFalse(n.links(n.nsc).contains("nsm-1"))
        XCTAssertEqual(n.weftLinks, [])
        XCTAssertTrue(n.weftd.log.contains("expired"))
    }

    func testKill9ThenRestartCleansUpAndHealRequestRebuilds() async throws {
        let n = Node()
        try await n.start()
        addTeardownBlock { await n.stop() }
        let conn = try await n.request(kernelRequest(n))
        XCTAssertEqual(ping(n.nsc, "172.16.1.100", count: 3)?.received, 3)
        n.weftd.kill9()
        XCTAssertEqual(n.weftLinks.count, 2, "the dead weftd's veths are still there")
        XCTAssertTrue(n.weftd.start(), n.weftd.log)
        try await Self.waitFor("stale links removed") { n.weftLinks.isEmpty }
        XCTAssertFalse(n.links(n.nsc).contains("nsm-1"))

        // A heal: the NSMgr re-requests with the old path and mechanism.
        var heal = Networkservice_NetworkServiceRequest()
        heal.connection = conn
        heal.mechanismPreferences = kernelRequest(n).mechanismPreferences
        let healed = try await n.request(heal)
        XCTAssertEqual(healed.path.pathSegments[2].id, conn.path.pathSegments[2].id, "the same Weft segment id")
        XCTAssertEqual(ping(n.nsc, "172.16.1.100", count: 3)?.received, 3)

        // SIGTERM closes locally: no Close reaches the endpoint, nothing is left.
        let closesBefore = n.endpoint.rec.closes.count
        XCTAssertEqual(n.weftd.stop(), 0)
        XCTAssertEqual(n.endpoint.rec.closes.count, closesBefore)
        XCTAssertEqual(n.weftLinks, [])
        XCTAssertFalse(n.links(n.nsc).contains("nsm-1"))
    }

    // MARK: registry

    func testRegistrationIsRefreshedAndRenewedAfterNSMgrRestart() async throws {
        let n = Node(registryExpiry: 3)
        try await n.start()
        addTeardownBlock { await n.stop() }
        // Re-registration at 2/3 of the 3 s expiry: about every 2 s.
        try await Self.waitFor("two re-registrations", timeout: 15) { n.registry.rec.registrations.count >= 3 }
        let r = try XCTUnwrap(n.registry.rec.registrations.last)
        XCTAssertEqual(r.name, n.name)
        XCTAssertEqual(r.networkServiceLabels["forwarder"]?.labels["p2mp-bridge"], "true", "capability labels are registered")

        // The NSMgr goes away and comes back: Weft retries and registers again.
        await n.servers[0].stop()
        try await Task.sleep(nanoseconds: 3_000_000_000)
        let before = n.registry.rec.registrations.count
        n.servers[0] = try await TestGRPCServer(path: n.registrySocket, services: [n.registry, n.registry.nse])
        try await Self.waitFor("registration after the NSMgr restart", timeout: 15) { n.registry.rec.registrations.count > before }
        XCTAssertTrue(n.weftd.log.contains("cannot register"), "the outage is logged")

        // SIGUSR1 switches logging to trace, SIGUSR2 back (as NSM's forwarders).
        let pid = try XCTUnwrap(n.weftd.process?.processIdentifier)
        kill(pid, SIGUSR1)
        try await Self.waitFor("trace logging") { n.weftd.log.contains("log level now trace") }
        kill(pid, SIGUSR2)
        try await Self.waitFor("logging back to debug") { n.weftd.log.contains("log level now debug") }
    }
}
