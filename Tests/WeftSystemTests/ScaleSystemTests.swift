import Foundation
import GRPCCore
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel
import WeftNSMProto
import XCTest

/// A thousand pod interfaces on one node: none of them a DPDK port (Debian's
/// DPDK stops at 32), idle ones asleep, traffic on a sample, nothing left after.
/// A process's resident memory (MiB) and open files.
func rssMB(_ pid: Int32) -> Int {
    let s = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let kb = s.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }?.split(separator: " ").compactMap { Int($0) }.first
    return (kb ?? 0) / 1024
}

func fds(_ pid: Int32) -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1 }

final class ScaleSystemTests: SystemTestCase {
    static let peer = Paths.root.appendingPathComponent("Tests/peers/memif_peer.py").path

    func workers(_ w: Weftd) throws -> [WorkerStats] { try w.request(.init(command: .showWorkers)).workers ?? [] }

    /// 500 memif pairs (1,000 interfaces) from one file; pairs 0, 249 and 499 carry frames.
    func testFiveHundredMemifPairsFromOneFile() throws {
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        let d = w.dir
        var body = "interfaces:\n"
        var xcs = "cross_connects:\n"
        for i in 0..<500 {
            body += "  - {name: a\(i), type: memif, role: server, socket: \(d)/a\(i).sock}\n"
            body += "  - {name: b\(i), type: memif, role: server, socket: \(d)/b\(i).sock}\n"
            xcs += "  - {name: x\(i), a: a\(i), b: b\(i)}\n"
        }
        w.write(body + xcs)
        let t0 = Date()
        XCTAssertTrue(w.start(), w.log)
        let startup = Date().timeIntervalSince(t0)
        let pid = try XCTUnwrap(w.process).processIdentifier
        XCTAssertEqual(try w.interfaces().count, 1000)
        XCTAssertTrue(try w.interfaces().allSatisfy { $0.port != nil && $0.backend == "memif" })
        // Idle queues go to sleep: the worker polls (almost) none of the 1,000.
        usleep(1_500_000)
        let idle = try XCTUnwrap(workers(w).first)
        XCTAssertEqual(idle.queues, 1000)
        XCTAssertLessThan(idle.activeQueues, 10, "idle queues still polled: \(idle)")
        print("scale: 1,000 memif interfaces up in \(String(format: "%.1f", startup)) s; weftd RSS \(rssMB(pid)) MiB, \(fds(pid)) fds; worker polls \(idle.activeQueues) of \(idle.queues) queues")

        for i in [0, 249, 499] {
            let echo = Process()
            echo.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            echo.arguments = [Self.peer, "good", "--socket", "\(d)/b\(i).sock", "--echo", "--listen", "6"]
            echo.standardOutput = FileHandle.nullDevice
            echo.standardError = FileHandle.nullDevice
            try echo.run()
            usleep(800_000)
            let r = sh(["python3", Self.peer, "good", "--socket", "\(d)/a\(i).sock", "--count", "300", "--rate", "600",
                        "--stamp", "--listen", "2"])
            let last = r.out.split(separator: "\n").last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            XCTAssertEqual(last?["received"] as? Int, 300, "pair \(i): " + r.out + r.err)
            echo.terminate()
            echo.waitUntilExit()
        }
        let busy = try XCTUnwrap(workers(w).first)
        print("scale: after traffic on 3 pairs, RSS \(rssMB(pid)) MiB, \(fds(pid)) fds, worker polls \(busy.activeQueues) queues")

        // Everything goes with the file's objects: sockets removed, nothing left open.
        w.write("interfaces: []\n")
        XCTAssertEqual(w.ctl(["reload"]).status, 0, w.log)
        XCTAssertEqual(try w.interfaces().count, 0)
        let left = (try? FileManager.default.contentsOfDirectory(atPath: d).filter { $0.hasSuffix(".sock") && $0 != "weftd.sock" }) ?? []
        XCTAssertEqual(left, [], "memif sockets left")
        print("scale: after removing all, RSS \(rssMB(pid)) MiB, \(fds(pid)) fds")
        XCTAssertLessThan(fds(pid), 80, "fds left behind")
        XCTAssertEqual(w.stop(), 0)
    }
}

/// 500 NSM KERNEL connections (1,000 veth host ends on Weft's own AF_XDP)
/// through the NSM API; a sample pings; Close of all leaves nothing.
final class NSMScaleSystemTests: SystemTestCase {
    func testFiveHundredKernelConnectionsThroughTheNSMAPI() async throws {
        let n = NSMSystemTests.Node()
        try await n.start()
        addTeardownBlock { await n.stop() }
        let pid = try XCTUnwrap(n.weftd.process).processIdentifier
        func addr(_ net: Int, _ i: Int) -> String { "10.\(net).\(i / 250).\(i % 250 + 1)" }
        func request(_ i: Int) -> Networkservice_NetworkServiceRequest {
            var req = nsmRequest(service: "icmp-responder", params: ["inodeURL": "file:///var/run/netns/\(n.nsc)", "name": "nsm-\(i)"])
            req.connection.context.ipContext.srcIpAddrs = [addr(200, i) + "/32"]
            req.connection.context.ipContext.dstIpAddrs = [addr(201, i) + "/32"]
            return req
        }
        func ms(_ xs: ArraySlice<Double>) -> String {
            let s = xs.sorted()
            return String(format: "p50 %.0f ms p99 %.0f ms", s[s.count / 2], s[min(s.count - 1, s.count * 99 / 100)])
        }
        // Sequential: each request's time, by how many connections were already up.
        var conns: [Connection_Connection] = []
        var times: [Double] = []
        let t0 = Date()
        for i in 0..<500 {
            let s = Date()
            conns.append(try await n.request(request(i)))
            times.append(Date().timeIntervalSince(s) * 1000)
        }
        let total = Date().timeIntervalSince(t0)
        let interfaces = try n.weftd.interfaces()
        XCTAssertEqual(interfaces.count, 1000)
        XCTAssertTrue(interfaces.allSatisfy { $0.port != nil })
        print("scale: 500 NSM kernel connections one after another in \(String(format: "%.1f", total)) s; with 0-99 up \(ms(times[0..<100])), 100-199 up \(ms(times[100..<200])), 400-499 up \(ms(times[400..<500])); weftd RSS \(rssMB(pid)) MiB, \(fds(pid)) fds; backends \(Set(interfaces.map(\.backend)))")

        // A sample: the first, one in the middle, the last.
        for i in [0, 250, 499] {
            let r = sh("ip netns exec \(n.nsc) ping -n -q -c 3 -i 0.2 -W 3 \(addr(201, i))", timeout: 30)
            XCTAssertEqual(pingCounts(r.out)?.received, 3, "connection \(i): " + r.out + r.err)
        }
        let t = Transfer.run(fromNS: n.nsc, toNS: n.nse, target: addr(201, 499), proto: "tcp", bytes: 2 << 20, port: 5451,
                             size: 1200, rate: 0)
        XCTAssertTrue(t.intact, "TCP on the last connection: \(t)")

        for c in conns { try await n.close(c) }
        XCTAssertEqual(try n.weftd.interfaces().count, 0)

        // Eight callers at once, 500 requests in all (NSM users report ~18 s for 80 clients with forwarder-vpp).
        final class Times: @unchecked Sendable { var v: [Double] = []; let l = NSLock()
            func add(_ x: Double) { l.lock(); v.append(x); l.unlock() } }
        let par = Times()
        let t1 = Date()
        let all = try await withThrowingTaskGroup(of: [Connection_Connection].self) { g in
            for caller in 0..<8 {
                g.addTask {
                    var mine: [Connection_Connection] = []
                    for i in stride(from: caller, to: 500, by: 8) {
                        let s = Date()
                        mine.append(try await n.request(request(i)))
                        par.add(Date().timeIntervalSince(s) * 1000)
                    }
                    return mine
                }
            }
            var out: [Connection_Connection] = []
            for try await c in g { out += c }
            return out
        }
        print("scale: 500 NSM kernel connections from 8 callers at once in \(String(format: "%.1f", Date().timeIntervalSince(t1))) s; per request \(ms(par.v[...]))")
        XCTAssertEqual(all.count, 500)
        XCTAssertEqual(try n.weftd.interfaces().count, 1000)
        let r = sh("ip netns exec \(n.nsc) ping -n -q -c 2 -i 0.2 -W 3 \(addr(201, 499))", timeout: 30)
        XCTAssertEqual(pingCounts(r.out)?.received, 2, r.out + r.err)
        for c in all { try await n.close(c) }

        XCTAssertEqual(try n.weftd.interfaces().count, 0)
        XCTAssertEqual(try n.weftd.crossConnects().count, 0)
        XCTAssertEqual(n.weftLinks, [], "Weft's veths left in the root namespace")
        XCTAssertEqual(sh("ip -n \(n.nsc) -o link show").out.split(separator: "\n").count, 1, "only lo left in the client pod")
        print("scale: after closing all, weftd RSS \(rssMB(pid)) MiB, \(fds(pid)) fds")
        XCTAssertLessThan(fds(pid), 100, "fds left behind")
    }
}
