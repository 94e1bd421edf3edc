import Foundation
import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// Weft's own memif: hostile peers (Tests/peers/memif_peer.py) cost
/// themselves their connection and nothing else; interop with DPDK's memif
/// PMD (dpdk-testpmd) in both roles and with several queues.
final class MemifSystemTests: SystemTestCase {
    static let peer = Paths.root.appendingPathComponent("Tests/peers/memif_peer.py").path

    func peer(_ args: [String], timeout: TimeInterval = 120) -> CommandResult {
        sh(["python3", Self.peer] + args, timeout: timeout)
    }

    func jsonLines(_ out: String) -> [[String: Any]] {
        out.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    func fdCount(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    func testHostilePeersCostOnlyThemselves() throws {
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        let d = w.dir
        // m1 <-> m2 carry the good traffic; m3 <-> m4 is where the hostile peers go.
        w.write("""
        interfaces:
          - {name: m1, type: memif, role: server, socket: \(d)/m1.sock}
          - {name: m2, type: memif, role: server, socket: \(d)/m2.sock}
          - {name: m3, type: memif, role: server, socket: \(d)/m3.sock, secret: s3cr3t}
          - {name: m4, type: memif, role: server, socket: \(d)/m4.sock}
        cross_connects:
          - {name: good, a: m1, b: m2}
          - {name: bad, a: m3, b: m4}
        """)
        XCTAssertTrue(w.start(), w.log)
        defer { XCTAssertEqual(w.stop(), 0) }
        let pid = try XCTUnwrap(w.process).processIdentifier

        // A good pair that runs the whole time: an echo peer on m2, a sender on m1.
        let echo = Process()
        echo.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        echo.arguments = [Self.peer, "good", "--socket", "\(d)/m2.sock", "--echo", "--listen", "60"]
        echo.standardOutput = FileHandle.nullDevice
        echo.standardError = FileHandle.nullDevice
        try echo.run()
        defer { if echo.isRunning { echo.terminate() } }
        usleep(1_500_000)
        let fdsBefore = fdCount(pid)
        final class Box: @unchecked Sendable { var r = CommandResult(status: -1, out: "", err: "") }
        let good = Box()
        let sender = DispatchGroup()
        sender.enter()
        DispatchQueue.global().async {
            good.r = self.peer(["good", "--socket", "\(d)/m1.sock", "--count", "6000", "--rate", "300", "--stamp",
                                "--listen", "25"])
            sender.leave()
        }
        usleep(1_000_000)

        // 1,000 connect-and-close cycles, in every stage of the handshake.
        for stage in ["connect", "unread", "hello", "init"] {
            let r = peer(["connect-close", "--socket", "\(d)/m3.sock", "--times", stage == "connect" ? "1000" : "100",
                          "--stage", stage, "--secret", "s3cr3t"])
            XCTAssertEqual(r.status, 0, stage + r.out + r.err)
        }
        // Garbage and every field out of range: each case refused with its reason, nothing leaked.
        var r = peer(["garbage", "--socket", "\(d)/m3.sock", "--secret", "s3cr3t", "--server-pid", String(pid)])
        XCTAssertEqual(r.status, 0, r.out + r.err)
        let cases = jsonLines(r.out).filter { $0["case"] != nil }
        XCTAssertGreaterThan(cases.count, 30, r.out)
        for c in cases { XCTAssertEqual(c["ok"] as? Bool, true, "\(c)") }
        // Shared memory lies: each disconnects the peer with the data path's reason.
        for c in ["head-jump", "desc-offset", "desc-region", "desc-length", "chain-forever"] {
            r = peer(["bad-datapath", "--socket", "\(d)/m3.sock", "--secret", "s3cr3t", "--case", c])
            XCTAssertEqual(r.status, 0, c + ": " + r.out + r.err)
        }
        for c in ["s2c-corrupt", "s2c-desc-offset"] {
            r = peer(["bad-datapath", "--socket", "\(d)/m3.sock", "--secret", "s3cr3t", "--case", c,
                      "--feed-socket", "\(d)/m4.sock"])
            XCTAssertEqual(r.status, 0, c + ": " + r.out + r.err)
        }
        // A peer that stops reading: Weft's TX to it fills, counted, nothing else notices.
        r = peer(["bad-datapath", "--socket", "\(d)/m3.sock", "--secret", "s3cr3t", "--case", "stop-reading",
                  "--feed-socket", "\(d)/m4.sock", "--wait", "2"])
        XCTAssertEqual(r.status, 0, r.out + r.err)

        sender.wait()
        // The good pair lost nothing while all that happened next door.
        let g = try XCTUnwrap(jsonLines(good.r.out).last, good.r.out + good.r.err)
        XCTAssertEqual(g["sent"] as? Int, 6000, "\(g)")
        XCTAssertEqual(g["received"] as? Int, 6000, "every frame came back through m1 -> m2 -> echo -> m1: \(g)")
        XCTAssertEqual(g["connected"] as? Bool, true, "\(g)")

        // The reasons are counted on m3 (and on its socket, for what came before INIT).
        usleep(300_000)
        let m3 = try XCTUnwrap(w.interfaces().first { $0.name == "m3" }?.memif)
        for reason in ["bad-ring-index", "bad-descriptor", "bad-chain", "bad-secret", "bad-region", "bad-ring"] {
            XCTAssertGreaterThan(m3.events[reason] ?? 0, 0, "\(reason): \(m3)")
        }
        for reason in ["closed-before-init", "unknown-id", "bad-message-size", "unknown-message"] {
            XCTAssertGreaterThan(m3.socketEvents[reason] ?? 0, 0, "\(reason): \(m3)")
        }
        let drops = try w.request(.init(command: .showDrops)).drops ?? []
        XCTAssertGreaterThan(drops.first { $0.reason == "peer-bad-descriptor" }?.count ?? 0, 0)
        // No fd left behind by 1,300 connections and 40 hostile sessions (the good sender is gone
        // again; the last peers' closes are handled asynchronously, within a moment).
        let settle = Date().addingTimeInterval(3)
        while fdCount(pid) != fdsBefore && Date() < settle { usleep(100_000) }
        XCTAssertEqual(fdCount(pid), fdsBefore, "weftd's fds before and after")

        // And a good peer now connects to m3 and carries traffic (m4's peer echoes).
        let echo4 = Process()
        echo4.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        echo4.arguments = [Self.peer, "good", "--socket", "\(d)/m4.sock", "--echo", "--listen", "8"]
        echo4.standardOutput = FileHandle.nullDevice
        try echo4.run()
        defer { if echo4.isRunning { echo4.terminate() } }
        usleep(1_500_000)
        r = peer(["good", "--socket", "\(d)/m3.sock", "--secret", "s3cr3t", "--count", "200", "--rate", "400",
                  "--listen", "2"])
        let last = try XCTUnwrap(jsonLines(r.out).last, r.out + r.err)
        XCTAssertEqual(last["received"] as? Int, 200, "\(last)")
        XCTAssertNotNil(w.process, "weftd alive")
    }

    /// dpdk-testpmd's memif PMD against Weft's memif, Weft as server and as
    /// client, 1, 2 and 4 queues: frames from a pod cross testpmd and come back.
    func testInteropWithDPDKMemifBothRolesAndQueues() throws {
        for queues in [1, 2, 4] {
            for weftIsServer in [true, false] {
                let tag = uniqueTag()
                let pod1 = PodNamespace(tag: tag, index: 1, subnet: "10.65")
                let pod2 = PodNamespace(tag: tag, index: 2, subnet: "10.65")
                let w = Weftd(tag: tag)
                let d = w.dir
                let role = weftIsServer ? "server" : "client"
                w.write("""
                interfaces:
                  - {name: p1, type: af_packet, iface: \(pod1.hostEnd)}
                  - {name: p2, type: af_packet, iface: \(pod2.hostEnd)}
                  - {name: ma, type: memif, role: \(role), socket: \(d)/a.sock, rx_queues: \(queues)}
                  - {name: mb, type: memif, role: \(role), socket: \(d)/b.sock, rx_queues: \(queues)}
                cross_connects:
                  - {name: x1, a: p1, b: ma}
                  - {name: x2, a: mb, b: p2}
                """)
                let pmdRole = weftIsServer ? "client" : "server"
                // testpmd's own queues: one per forwarding core; io forward between its two ports.
                let vdevs = ["a", "b"].enumerated().map { i, s in
                    "net_memif\(i),role=\(pmdRole),socket=\(d)/\(s).sock,socket-abstract=no,id=0"
                }
                var pmd: TestpmdPeer?
                if !weftIsServer { pmd = try TestpmdPeer(tag: tag, vdevs: vdevs, queues: queues); usleep(1_500_000) }
                XCTAssertTrue(w.start(), w.log)
                if weftIsServer { pmd = try TestpmdPeer(tag: tag, vdevs: vdevs, queues: queues) }
                XCTAssertTrue(w.waitLinksUp(timeout: 20), "\(queues) queues, Weft \(role): " + w.log + (pmd?.log ?? ""))
                let m = try w.interfaces().first { $0.name == "ma" }?.memif
                XCTAssertEqual(m?.connected, true, "\(String(describing: m))")
                let t = pod1.transfer(to: pod2.ns, target: "10.65.0.2", proto: "tcp", bytes: 4 << 20, port: 5331)
                XCTAssertTrue(t.intact, "\(queues) queues, Weft \(role): \(t)")
                let u = pod2.transfer(to: pod1.ns, target: "10.65.0.1", proto: "udp", bytes: 512 << 10, port: 5332,
                                      size: 1400, rate: 3000)
                XCTAssertTrue(u.intact, "\(queues) queues, Weft \(role): \(u)")
                XCTAssertEqual(w.stop(), 0)
                pmd = nil
            }
        }
    }
}
