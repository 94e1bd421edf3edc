import Foundation
import WeftKernel
import XCTest

/// The NSM cluster's peers of Tests/peers/nsm_cluster (Python, independent of Weft's
/// code): a SPIFFE Workload API, an NSMgr/registry and an endpoint that require mutual
/// TLS, sign and check NSM's tokens and pass fds (grpcfd). Driven over JSON lines.
final class ClusterPeers: @unchecked Sendable {
    let dir: String
    let process = Process()
    private let input = Pipe(), output = Pipe()
    private var buffer = Data()
    private let lock = NSLock()
    var ready: [String: Any] = [:]
    let logPath: String

    static let script = Paths.root.appendingPathComponent("Tests/peers/nsm_cluster/cluster.py").path

    init(tag: String, args: [String]) throws {
        dir = "/tmp/wt-cluster-\(tag)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        logPath = "/tmp/wt-cluster-\(tag).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.script, "--dir", dir] + args
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: logPath)!
        try process.run()
        ready = try readLine(timeout: 30)
        guard ready["ready"] as? Bool == true else { throw Failure("cluster.py did not start: \(ready)\n\(log)") }
    }

    struct Failure: Error, CustomStringConvertible { var description: String; init(_ d: String) { description = d } }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    private func readLine(timeout: TimeInterval) throws -> [String: Any] {
        let fd = output.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let nl = buffer.firstIndex(of: 0x0a) {
                let line = buffer[buffer.startIndex..<nl]
                buffer.removeSubrange(buffer.startIndex...nl)
                guard let obj = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { throw Failure("not JSON: \(line)") }
                return obj
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw Failure("cluster.py did not answer within \(timeout) s\n\(log.suffix(3000))") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Int32(min(left, 1) * 1000)) > 0 {
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = read(fd, &chunk, chunk.count)
                if n <= 0 { throw Failure("cluster.py exited\n\(log.suffix(3000))") }
                buffer.append(contentsOf: chunk[0..<n])
            }
        }
    }

    /// One command; its answer.
    @discardableResult
    func send(_ cmd: [String: Any], timeout: TimeInterval = 60) throws -> [String: Any] {
        lock.lock(); defer { lock.unlock() }
        var line = try JSONSerialization.data(withJSONObject: cmd)
        line.append(0x0a)
        input.fileHandleForWriting.write(line)
        return try readLine(timeout: timeout)
    }

    func stop() {
        _ = try? send(["cmd": "quit"], timeout: 5)
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// Weft in a stock-like NSM cluster: mutual TLS with SVIDs from a SPIFFE Workload API,
/// NSM's path tokens checked both ways, fds passed over the unix sockets (the client
/// pod's netns as an fd, the endpoint's socket as an `inode://` URL with its fd), with
/// peers that share no code with Weft.
final class NSMClusterSystemTests: SystemTestCase {
    final class Setup {
        let tag = uniqueTag()
        let weftd: Weftd
        let nsc: String, nse: String
        var peers: ClusterPeers!
        var name: String { "weft-\(tag)" }
        var nsmSocket: String { "\(weftd.dir)/nsm.sock" }

        init() {
            weftd = Weftd(tag: tag)
            nsc = "wt\(tag)nsc"
            nse = "wt\(tag)nse"
            for ns in [nsc, nse] { sh("ip netns del \(ns) 2>/dev/null; ip netns add \(ns) && ip -n \(ns) link set lo up") }
        }

        func start(peerArgs: [String] = [], extraNSM: String = "", expectWeftdFailure: Bool = false) throws {
            peers = try ClusterPeers(tag: tag, args: ["--weft-id", name, "--nse-netns", "/var/run/netns/\(nse)",
                                                      "--nse-name", "nse-\(tag)"] + peerArgs)
            weftd.write("""
            nsm:
              name: \(name)
              listen_on: [unix://\(nsmSocket)]
              connect_to: unix://\(peers.dir)/registry.sock
              spiffe_socket: unix://\(peers.dir)/agent.sock
              svid_timeout: 10s
            \(extraNSM)
            """)
            if expectWeftdFailure { return }
            XCTAssertTrue(weftd.start(), "weftd did not start:\n\(weftd.log)")
            try waitRegistered()
        }

        func registrations() throws -> [[String: Any]] {
            (try peers.send(["cmd": "registrations"])["registrations"] as? [[String: Any]]) ?? []
        }

        func waitRegistered(timeout: TimeInterval = 20) throws {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if try registrations().contains(where: { ($0["nse"] as? [String: Any])?["name"] as? String == name }) { return }
                usleep(200_000)
            }
            throw ClusterPeers.Failure("weftd did not register within \(timeout) s\n\(weftd.log.suffix(4000))\n\(peers.log.suffix(2000))")
        }

        func request(_ extra: [String: Any] = [:]) throws -> [String: Any] {
            var cmd: [String: Any] = ["cmd": "request", "pod_netns_path": "/var/run/netns/\(nsc)", "ifname": "nsm-1",
                                      "forwarder": name]
            for (k, v) in extra { cmd[k] = v }
            return try peers.send(cmd)
        }

        /// Links and memif sockets of this test's weftd left anywhere.
        func leftovers() -> String {
            let links = sh("ip -o link show; ip -n \(nsc) -o link show; ip -n \(nse) -o link show").out
                .split(separator: "\n").filter { $0.contains("nsm-") || $0.contains(name) }
            return links.joined(separator: "\n")
        }

        func stop() {
            weftd.stop()
            peers?.stop()
            for ns in [nsc, nse] { sh("ip netns del \(ns) 2>/dev/null") }
        }
    }

    func ok(_ a: [String: Any], _ what: String, _ s: Setup) -> Bool {
        let good = a["ok"] as? Bool == true
        if !good { XCTFail("\(what): \(a)\n--- weftd\n\(s.weftd.log.suffix(5000))\n--- peers\n\(s.peers.log.suffix(3000))") }
        return good
    }

    /// A KERNEL connection through Weft over mTLS with valid tokens both ways: the client
    /// pod's namespace passed as an fd, the endpoint found as an `inode://` URL whose
    /// socket came as an fd; TCP and UDP with content checks; refresh, monitor, Close.
    func testKernelConnectionOverMTLSWithTokensAndPassedFDs() throws {
        let s = Setup()
        addTeardownBlock { s.stop() }
        try s.start()

        // Registration: mTLS, a token signed by Weft's key for the NSMgr, the listen
        // socket as an inode URL with its fd.
        let reg = try XCTUnwrap(try s.registrations().last { ($0["nse"] as? [String: Any])?["name"] as? String == s.name })
        let nse = reg["nse"] as? [String: Any] ?? [:]
        XCTAssertTrue((nse["url"] as? String ?? "").hasPrefix("inode://"), "\(reg)")
        XCTAssertNotNil(reg["received_fd"] as? String, "no fd came with the registration: \(reg)")
        let tok = reg["token"] as? [String: Any] ?? [:]
        XCTAssertEqual(tok["sub"] as? String, "spiffe://test.weft/\(s.name)", "\(reg)")
        XCTAssertEqual(tok["signed_by_peer"] as? Bool, true, "\(reg)")

        let a = try s.request()
        guard ok(a, "request", s) else { return }
        let conn = a["connection"] as? [String: Any] ?? [:]
        let segs = ((conn["path"] as? [String: Any])?["path_segments"] as? [[String: Any]]) ?? []
        XCTAssertEqual(segs.compactMap { $0["name"] as? String }, ["nsc", "nsmgr", s.name, "nse-\(s.tag)"])
        // The endpoint checked Weft's token with NSM's policies: none failed.
        let calls = try s.peers.send(["cmd": "nse_calls"])
        let req = try XCTUnwrap((calls["requests"] as? [[String: Any]])?.last)
        XCTAssertEqual((req["policies_failed"] as? [String]) ?? ["?"], [], "\(req)")
        XCTAssertEqual(req["peer_id"] as? String, "spiffe://test.weft/\(s.name)")

        // Both pods got their interface through the passed fds; traffic crosses.
        XCTAssertTrue(s.weftd.log.contains("grpcfd: the caller's network namespace inode://"), "the netns fd was not used")
        XCTAssertTrue(s.weftd.log.contains("grpcfd: endpoint nse-\(s.tag) at inode://"), "the endpoint's socket fd was not used")
        XCTAssertTrue(sh("ip -n \(s.nsc) -o addr show dev nsm-1").out.contains("172.16.1.101/32"), s.weftd.log.suffix(3000).description)
        XCTAssertEqual(pingCounts(sh("ip netns exec \(s.nsc) ping -n -q -c 3 -i 0.2 -W 3 172.16.1.100").out)?.received, 3)
        let t = Transfer.run(fromNS: s.nsc, toNS: s.nse, target: "172.16.1.100", proto: "tcp", bytes: 4 << 20, port: 5431, size: 1200, rate: 0)
        XCTAssertTrue(t.intact, "TCP: \(t)")
        let u = Transfer.run(fromNS: s.nse, toNS: s.nsc, target: "172.16.1.101", proto: "udp", bytes: 256 << 10, port: 5432, size: 1400, rate: 3000)
        XCTAssertTrue(u.intact, "UDP: \(u)")

        // Refresh and monitor with tokens; Close leaves nothing.
        let id = try XCTUnwrap(a["conn_id"] as? String)
        XCTAssertTrue(ok(try s.peers.send(["cmd": "refresh", "conn_id": id]), "refresh", s))
        XCTAssertTrue(ok(try s.peers.send(["cmd": "monitor", "conn_id": id]), "monitor", s))
        XCTAssertTrue(ok(try s.peers.send(["cmd": "close", "conn_id": id]), "close", s))
        XCTAssertEqual(s.leftovers(), "", "links left after Close")
        XCTAssertEqual(((try s.peers.send(["cmd": "nse_calls"]))["closes"] as? [Any])?.count, 1, "the endpoint was not closed")
    }

    /// A MEMIF connection over mTLS with tokens: Weft's memif socket bound inside the
    /// client pod's namespace reached through the fd the NSMgr passed; a DPDK memif
    /// client there (dpdk-testpmd) sends, the frames come out at the endpoint's KERNEL
    /// interface; Close leaves nothing.
    func testMemifConnectionOverMTLS() throws {
        let s = Setup()
        addTeardownBlock { s.stop() }
        try s.start()
        let a = try s.request(["mechanism": "MEMIF"])
        guard ok(a, "MEMIF request", s) else { return }
        let conn = a["connection"] as? [String: Any] ?? [:]
        let mech = conn["mechanism"] as? [String: Any] ?? [:]
        XCTAssertEqual(mech["type"] as? String, "MEMIF")
        let socketfile = ((mech["parameters"] as? [String: String]) ?? [:])["socketfile"] ?? ""
        XCTAssertTrue(socketfile.hasPrefix("@/tmp/memif/"), "\(mech)")
        let name = String(socketfile.dropFirst())
        XCTAssertTrue(sh("ip netns exec \(s.nsc) cat /proc/net/unix").out.contains("@" + name), "not in the pod's namespace")
        XCTAssertTrue(s.weftd.log.contains("grpcfd: the caller's network namespace inode://"), "the netns fd was not used")

        let calls = try s.peers.send(["cmd": "nse_calls"])
        let toNSE = try XCTUnwrap((calls["requests"] as? [[String: Any]])?.last)
        let prefs = toNSE["mechanism_preferences"] as? [[String: Any]] ?? []
        let nseIf = try XCTUnwrap(prefs.first { $0["type"] as? String == "KERNEL" }.flatMap { ($0["parameters"] as? [String: String])?["name"] },
                                  "\(toNSE)")
        let prefix = "wt-pmd-\(s.tag)"
        let pmd = Process()
        pmd.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        pmd.arguments = ["netns", "exec", s.nsc, "/usr/bin/dpdk-testpmd", "--lcores", "0@0,1@0", "--no-huge", "-m", "256",
                         "--file-prefix", prefix, "--no-pci",
                         "--vdev", "net_memif0,role=client,socket=\(name),socket-abstract=yes,id=0",
                         "--", "--forward-mode=txonly", "--auto-start", "--no-mlockall", "--total-num-mbufs=4096",
                         "--stats-period=3600", "--txpkts=64"]
        pmd.standardOutput = FileHandle.nullDevice
        pmd.standardError = FileHandle.nullDevice
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
            let parts = sh("ip -n \(s.nse) -s -o link show \(nseIf)").out.components(separatedBy: "\\")
            guard let i = parts.firstIndex(where: { $0.contains("RX:") }), i + 1 < parts.count else { return 0 }
            let nums = parts[i + 1].split(separator: " ").compactMap { Int($0) }
            return nums.count > 1 ? nums[1] : 0
        }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && rx() <= 1000 { usleep(200_000) }
        XCTAssertGreaterThan(rx(), 1000, "memif frames did not reach the endpoint\n\(s.weftd.log.suffix(3000))")
        let id = try XCTUnwrap(a["conn_id"] as? String)
        XCTAssertTrue(ok(try s.peers.send(["cmd": "close", "conn_id": id]), "close", s))
        XCTAssertEqual(try s.weftd.interfaces().count, 0, "interfaces left after Close")
    }

    /// The client pod goes away (its last process exits, its namespace is unmounted):
    /// Weft closes the connection everywhere within a few scans, although it still
    /// holds the namespace's fd.
    func testConnectionOfAVanishedPodIsClosed() throws {
        let s = Setup()
        addTeardownBlock { s.stop() }
        try s.start()
        // The pod's process.
        let pod = Process()
        pod.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        pod.arguments = ["netns", "exec", s.nsc, "sleep", "600"]
        try pod.run()
        defer { if pod.isRunning { pod.terminate() } }
        let a = try s.request()
        guard ok(a, "request", s) else { return }
        usleep(9_000_000)  // seen with its process in three scans in a row (2 s apart)
        XCTAssertTrue(sh("ip -n \(s.nsc) -o link show nsm-1").out.contains("nsm-1"))
        XCTAssertEqual(((try s.peers.send(["cmd": "nse_calls"]))["closes"] as? [Any])?.count ?? 0, 0)
        pod.terminate()
        pod.waitUntilExit()
        sh("ip netns del \(s.nsc)")
        let deadline = Date().addingTimeInterval(15)
        var closes = 0
        while Date() < deadline {
            closes = ((try s.peers.send(["cmd": "nse_calls"]))["closes"] as? [Any])?.count ?? 0
            if closes > 0 { break }
            usleep(250_000)
        }
        XCTAssertEqual(closes, 1, "the endpoint was not closed after the pod went\n\(s.weftd.log.suffix(3000))")
        XCTAssertTrue(s.weftd.log.contains("the client pod's network namespace has no process left"), s.weftd.log.suffix(2000).description)
        XCTAssertEqual(try s.weftd.interfaces().count, 0, "interfaces left")
    }

    /// MEMIF without a pod namespace (NSM v1.1): Weft's socket file goes to the NSMgr as
    /// an fd (NSM's sendfd), the answer names it by its inode URL.
    func testMemifSocketFileIsPassedAsAnFD() throws {
        let s = Setup()
        addTeardownBlock { s.stop() }
        try s.start()
        var cmd: [String: Any] = ["cmd": "request", "ifname": "nsm-1", "forwarder": s.name, "mechanism": "MEMIF"]
        cmd["pod_netns_path"] = NSNull()
        let a = try s.peers.send(cmd)
        guard ok(a, "MEMIF v1.1 request", s) else { return }
        let params = (((a["connection"] as? [String: Any])?["mechanism"] as? [String: Any])?["parameters"] as? [String: String]) ?? [:]
        let url = params["inodeURL"] ?? ""
        XCTAssertTrue(url.hasPrefix("inode://"), "\(params)")
        let got = (a["received_fds"] as? [String: Any])?[url] as? [String: Any]
        XCTAssertEqual(got?["received"] as? Bool, true, "the socket file's fd did not come: \(a)")
        XCTAssertEqual(got?["matches"] as? Bool, true, "\(a)")
        let file = try XCTUnwrap(params["socketfile"])
        XCTAssertEqual(try InodeURL(path: file).description, url, "the fd is not the socket file's")
        let id = try XCTUnwrap(a["conn_id"] as? String)
        XCTAssertTrue(ok(try s.peers.send(["cmd": "close", "conn_id": id]), "close", s))
    }

    /// Refused with the right status and nothing left behind: a forged, an expired, a
    /// missing token, a broken chain; a client of another trust domain, with an expired
    /// SVID, in plaintext.
    func testBadTokensAndBadTLSAreRefusedLeavingNothing() throws {
        let s = Setup()
        addTeardownBlock { s.stop() }
        try s.start()
        for (token, rule) in [("forged", "prev_token_signed"), ("expired", "tokens_expired"), ("broken-chain", "tokens_chained"),
                              ("none", "tokens_chained"), ("aud-string", "tokens_chained")] {
            let a = try s.request(["token": token])
            XCTAssertEqual(a["ok"] as? Bool, false, "\(token) accepted")
            XCTAssertEqual(a["code"] as? String, "PERMISSION_DENIED", "\(token): \(a)")
            XCTAssertTrue((a["message"] as? String ?? "").contains(rule), "\(token): \(a)")
        }
        for tls in ["other-td", "expired-svid", "plaintext"] {
            let a = try s.request(["tls": tls])
            XCTAssertEqual(a["ok"] as? Bool, false, "\(tls) accepted")
            XCTAssertEqual(a["code"] as? String, "UNAVAILABLE", "\(tls): \(a)")
        }
        XCTAssertTrue(s.weftd.log.contains("TLS client refused"), "weftd did not log the refused handshakes")
        XCTAssertEqual(s.leftovers(), "", "links left after refusals")
        XCTAssertEqual(((try s.peers.send(["cmd": "nse_calls"]))["requests"] as? [Any])?.count ?? 0, 0, "a refused request reached the endpoint")
        // And a good one still works afterwards.
        XCTAssertTrue(ok(try s.request(), "request after the refusals", s))
    }

    /// SVID rotation during traffic and during a refresh: nothing dropped, new
    /// connections use the new SVID; an endpoint that rotated is still accepted.
    func testSVIDRotationDropsNothing() throws {
        let s = Setup()
        addTeardownBlock { s.stop() }
        try s.start()
        let a = try s.request()
        guard ok(a, "request", s) else { return }
        let id = try XCTUnwrap(a["conn_id"] as? String)
        let before = try s.peers.send(["cmd": "svid", "op": "status"])
        let pinger = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var pingOut = ""
        DispatchQueue(label: "ping").async {
            pingOut = sh("ip netns exec \(s.nsc) ping -n -q -c 60 -i 0.1 -W 3 172.16.1.100", timeout: 60).out
            pinger.signal()
        }
        usleep(1_000_000)
        XCTAssertTrue(ok(try s.peers.send(["cmd": "svid", "op": "rotate"]), "rotate", s))
        XCTAssertTrue(ok(try s.peers.send(["cmd": "rotate_peers"]), "rotate peers", s))
        // Weft takes the new SVID without a restart.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && !s.weftd.log.contains("SPIFFE identity rotated") { usleep(100_000) }
        XCTAssertTrue(s.weftd.log.contains("SPIFFE identity rotated"), s.weftd.log.suffix(3000).description)
        XCTAssertTrue(ok(try s.peers.send(["cmd": "refresh", "conn_id": id]), "refresh after rotation", s))
        pinger.wait()
        let counts = pingCounts(pingOut)
        XCTAssertEqual(counts?.received, 60, "pings lost across the rotation: \(String(describing: counts))")
        // The refresh went to the endpoint signed with the new key (its policies passed).
        let req = try XCTUnwrap(((try s.peers.send(["cmd": "nse_calls"]))["requests"] as? [[String: Any]])?.last)
        XCTAssertEqual((req["policies_failed"] as? [String]) ?? ["?"], [], "\(req)")
        // A new connection works with the new identities.
        let b = try s.request(["ifname": "nsm-2"])
        XCTAssertTrue(ok(b, "request after rotation", s))
        let after = try s.peers.send(["cmd": "svid", "op": "status"])
        XCTAssertNotEqual("\(before["serial"] ?? "")", "\(after["serial"] ?? "")")
    }

    /// A client pod cannot make Weft hold more than nsm.max_connections_per_client
    /// connections: the next is RESOURCE_EXHAUSTED with nothing left behind.
    func testConnectionsPerClientAreBounded() throws {
        let s = Setup()
        addTeardownBlock { s.stop() }
        try s.start(extraNSM: "  max_connections_per_client: 2")
        XCTAssertTrue(ok(try s.request(["ifname": "nsm-1"]), "first", s))
        XCTAssertTrue(ok(try s.request(["ifname": "nsm-2"]), "second", s))
        let third = try s.request(["ifname": "nsm-3"])
        XCTAssertEqual(third["code"] as? String, "RESOURCE_EXHAUSTED", "\(third)")
        XCTAssertTrue((third["message"] as? String ?? "").contains("nsm.max_connections_per_client"), "\(third)")
        XCTAssertFalse(sh("ip -n \(s.nsc) -o link show").out.contains("nsm-3"), "the refused connection left an interface")
        XCTAssertEqual(try s.weftd.crossConnects().count, 2)
    }

    /// weftd waits (bounded) for its first SVID and says why it stops without one.
    func testNoSVIDStopsWeftdWithAClearError() throws {
        let s = Setup()
        addTeardownBlock { s.stop() }
        try s.start(extraNSM: "", expectWeftdFailure: true)
        XCTAssertTrue(ok(try s.peers.send(["cmd": "svid", "op": "deny"]), "deny", s))
        s.weftd.write("""
        nsm:
          name: \(s.name)
          listen_on: [unix://\(s.nsmSocket)]
          connect_to: unix://\(s.peers.dir)/registry.sock
          spiffe_socket: unix://\(s.peers.dir)/agent.sock
          svid_timeout: 2s
        """)
        XCTAssertFalse(s.weftd.start(), "weftd started without an SVID")
        XCTAssertTrue(s.weftd.log.contains("no X.509-SVID"), s.weftd.log.suffix(2000).description)
    }

    /// The DaemonSet and its kustomizations validate against Kubernetes' schemas, and
    /// the weft.yaml they ship passes `weftd validate` (deploy/validate.sh).
    func testDeployManifestsValidate() {
        let r = sh(["bash", Paths.root.appendingPathComponent("deploy/validate.sh").path], timeout: 300)
        XCTAssertEqual(r.status, 0, String(r.out.suffix(3000)) + String(r.err.suffix(2000)))
        XCTAssertTrue(r.out.contains("all checks passed"), String(r.out.suffix(2000)))
    }

    /// The peers themselves: their self-test (Workload API, mTLS, tokens, fds) must pass
    /// before anything is concluded about Weft from them.
    func testThePeersSelfTest() {
        let r = sh(["python3", Paths.root.appendingPathComponent("Tests/peers/nsm_cluster/selftest.py").path], timeout: 120)
        XCTAssertEqual(r.status, 0, String(r.out.suffix(3000)) + String(r.err.suffix(2000)))
        XCTAssertTrue(r.out.contains(" 0 failed"), String(r.out.suffix(2000)))
    }
}
