import Foundation
import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// weftd as a process, moving real packets between network namespaces
/// (veth + AF_PACKET) and a second DPDK process (memif).
final class ForwardingSystemTests: SystemTestCase {
    func testTwoNamespacesPingEachOtherThroughWeft() throws {
        let tag = uniqueTag()
        let n1 = PodNamespace(tag: tag, index: 1), n2 = PodNamespace(tag: tag, index: 2)
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: pod1, type: af_packet, iface: \(n1.hostEnd)}
          - {name: pod2, type: af_packet, iface: \(n2.hostEnd)}
        cross_connects:
          - {name: p2p, a: pod1, b: pod2}
        """)
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.waitLinksUp(), w.log)

        let r1 = n1.ping(n2.address, count: 5)
        XCTAssertEqual(pingCounts(r1.out)?.received, 5, r1.out + r1.err)
        let r2 = n2.ping(n1.address, count: 5)
        XCTAssertEqual(pingCounts(r2.out)?.received, 5, r2.out + r2.err)

        let xc = try XCTUnwrap(w.crossConnects().first)
        XCTAssertEqual(xc.name, "p2p")
        // 10 echo requests and 10 replies each way, plus ARP.
        XCTAssertGreaterThanOrEqual(xc.counters.aToB.packets, 10)
        XCTAssertGreaterThanOrEqual(xc.counters.bToA.packets, 10)
        XCTAssertEqual(xc.counters.aToB.drops + xc.counters.bToA.drops, 0)
        // Read after the cross-connect: a frame may have arrived in between, never fewer.
        let ifs = try w.interfaces()
        XCTAssertEqual(ifs.map(\.backend), ["af_packet", "af_packet"])
        XCTAssertGreaterThanOrEqual(ifs[0].counters.rxPackets, xc.counters.aToB.packets)
        XCTAssertLessThanOrEqual(ifs[0].counters.rxPackets, xc.counters.aToB.packets + 4)
        XCTAssertGreaterThanOrEqual(ifs[1].counters.txPackets, xc.counters.aToB.packets)

        // The table and JSON views agree.
        let table = w.ctl(["show", "xconnects"])
        XCTAssertEqual(table.status, 0, table.err)
        XCTAssertTrue(table.out.contains("p2p") && table.out.contains("pod1"), table.out)
        let json = w.ctl(["show", "interfaces", "--json"])
        let decoded = try JSONDecoder().decode([InterfaceStatus].self, from: Data(json.out.utf8))
        XCTAssertEqual(decoded.map(\.name), ["pod1", "pod2"])
        XCTAssertEqual(w.stop(), 0)
    }

    func testMemifPeerInSecondDPDKProcessExchangesTraffic() throws {
        let tag = uniqueTag()
        let n1 = PodNamespace(tag: tag, index: 1), n2 = PodNamespace(tag: tag, index: 2)
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: pod1, type: af_packet, iface: \(n1.hostEnd)}
          - {name: pod2, type: af_packet, iface: \(n2.hostEnd)}
          - {name: memif-a, type: memif, role: server, socket: \(w.dir)/a.sock}
          - {name: memif-b, type: memif, role: server, socket: \(w.dir)/b.sock}
        cross_connects:
          - {name: to-peer, a: pod1, b: memif-a}
          - {name: from-peer, a: memif-b, b: pod2}
        """)
        XCTAssertTrue(w.start(), w.log)
        // memif queues carry traffic only once the peer connects: link goes up then.
        let before = try w.interfaces().filter { $0.type == "memif" }.map(\.link)
        XCTAssertEqual(before, ["down", "down"])
        let peer = try TestpmdPeer(tag: tag, sockets: ["\(w.dir)/a.sock", "\(w.dir)/b.sock"])
        XCTAssertTrue(w.waitLinksUp(timeout: 30), w.log + peer.log)

        let r = n1.ping(n2.address, count: 5)
        XCTAssertEqual(pingCounts(r.out)?.received, 5, r.out + r.err + peer.log)
        let xcs = Dictionary(uniqueKeysWithValues: try w.crossConnects().map { ($0.name, $0) })
        // Requests go pod1 -> memif-a -> testpmd -> memif-b -> pod2, replies back.
        XCTAssertGreaterThanOrEqual(xcs["to-peer"]!.counters.aToB.packets, 5)
        XCTAssertGreaterThanOrEqual(xcs["from-peer"]!.counters.aToB.packets, 5)
        XCTAssertGreaterThanOrEqual(xcs["from-peer"]!.counters.bToA.packets, 5)
        XCTAssertGreaterThanOrEqual(xcs["to-peer"]!.counters.bToA.packets, 5)
        withExtendedLifetime(peer) {}
        XCTAssertEqual(w.stop(), 0)
    }

    func testRuntimeAddAndDeleteThroughWeftctl() throws {
        let tag = uniqueTag()
        let n1 = PodNamespace(tag: tag, index: 1), n2 = PodNamespace(tag: tag, index: 2)
        let w = Weftd(tag: tag)
        w.write("interfaces:\n  - {name: pod1, type: af_packet, iface: \(n1.hostEnd)}\n")
        XCTAssertTrue(w.start(), w.log)

        // Nothing joins the pods yet.
        XCTAssertEqual(pingCounts(n1.ping(n2.address, count: 2, deadline: 3).out)?.received ?? 0, 0)

        let add = w.ctl(["interface", "add", "pod2", "--type", "af_packet", "--iface", n2.hostEnd])
        XCTAssertEqual(add.status, 0, add.err)
        XCTAssertTrue(add.out.contains("added interfaces: pod2"), add.out)
        let xadd = w.ctl(["xconnect", "add", "live", "pod1", "pod2"])
        XCTAssertEqual(xadd.status, 0, xadd.err)
        XCTAssertTrue(w.waitLinksUp())
        XCTAssertEqual(pingCounts(n1.ping(n2.address, count: 3).out)?.received, 3)

        // Bad runtime requests are refused and change nothing.
        let dup = w.ctl(["interface", "add", "pod2", "--type", "null"])
        XCTAssertEqual(dup.status, 1)
        XCTAssertTrue(dup.err.contains("interface 'pod2' already exists"), dup.err)
        let busy = w.ctl(["interface", "del", "pod1"])
        XCTAssertEqual(busy.status, 1)
        XCTAssertTrue(busy.err.contains("used by cross-connect 'live'"), busy.err)
        let missing = w.ctl(["interface", "add", "ghost", "--type", "af_packet", "--iface", "wt\(tag)zz"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("does not exist"), missing.err)
        let badType = w.ctl(["interface", "add", "x", "--type", "bogus"])
        XCTAssertNotEqual(badType.status, 0)
        XCTAssertTrue(badType.err.contains("unknown type 'bogus'"), badType.err)
        XCTAssertEqual(try w.interfaces().map(\.name), ["pod1", "pod2"])
        XCTAssertEqual(pingCounts(n1.ping(n2.address, count: 2).out)?.received, 2)

        let xdel = w.ctl(["xconnect", "del", "live"])
        XCTAssertEqual(xdel.status, 0, xdel.err)
        XCTAssertEqual(pingCounts(n1.ping(n2.address, count: 2, deadline: 3).out)?.received ?? 0, 0)
        // With no cross-connect, what pod1 sends is dropped as no-peer, and counted.
        let drops = w.ctl(["show", "drops", "--json"])
        let d = try JSONDecoder().decode([DropStatus].self, from: Data(drops.out.utf8))
        XCTAssertGreaterThan(d.first { $0.reason == "no-peer" }?.byInterface["pod1"] ?? 0, 0, drops.out)

        XCTAssertEqual(w.ctl(["interface", "del", "pod2"]).status, 0)
        XCTAssertEqual(try w.interfaces().map(\.name), ["pod1"])
        XCTAssertEqual(w.stop(), 0)
    }

    func testTrafficOnOneCrossConnectLosesNothingWhileOthersChurn() throws {
        let tag = uniqueTag()
        let n1 = PodNamespace(tag: tag, index: 1), n2 = PodNamespace(tag: tag, index: 2)
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: pod1, type: af_packet, iface: \(n1.hostEnd)}
          - {name: pod2, type: af_packet, iface: \(n2.hostEnd)}
          - {name: sink0, type: null}
          - {name: sink1, type: null}
        cross_connects:
          - {name: steady, a: pod1, b: pod2}
        """)
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.waitLinksUp())
        XCTAssertEqual(pingCounts(n1.ping(n2.address, count: 2).out)?.received, 2) // warm ARP

        // 1500 echo requests at 2 ms intervals while the control plane churns.
        let ping = BackgroundPing(from: n1, to: n2.address, count: 1500, interval: "0.002")
        var churns = 0
        var i = 0
        while !ping.finished {
            i += 1
            let name = "tmp\(i % 8)"
            _ = try w.request(.init(command: .addInterface, interface: InterfaceConfig(name: name, type: .null)))
            _ = try w.request(.init(command: .addCrossConnect, crossConnect: .init(name: "x-\(name)", a: "sink0", b: name)))
            _ = try w.request(.init(command: .deleteCrossConnect, name: "x-\(name)"))
            _ = try w.request(.init(command: .deleteInterface, name: name))
            churns += 4
        }
        let counts = try XCTUnwrap(ping.counts())
        XCTAssertGreaterThanOrEqual(churns, 200, "the control plane changed too little to prove anything")
        XCTAssertEqual(counts.sent, 1500)
        XCTAssertEqual(counts.received, counts.sent, "echo replies lost during \(churns) changes")
        let steady = try XCTUnwrap(w.crossConnects().first { $0.name == "steady" })
        XCTAssertEqual(steady.counters.aToB.drops + steady.counters.bToA.drops, 0)
        print("churn: \(churns) control-plane changes during \(counts.sent) echo requests, \(counts.sent - counts.received) lost")

        // A TCP stream on the untouched connection while hundreds more changes are made:
        // no reset, and no stall as long as a retransmission timeout (200 ms: two 0.1 s
        // intervals without a byte).
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        server.arguments = ["netns", "exec", n2.ns, "iperf3", "-s", "-1", "-p", "5441"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() } }
        usleep(500_000)
        final class Box: @unchecked Sendable { var r = CommandResult(status: -1, out: "", err: "") }
        let box = Box()
        let done = DispatchGroup()
        done.enter()
        DispatchQueue.global().async {
            box.r = sh("ip netns exec \(n1.ns) iperf3 -c \(n2.address) -p 5441 -t 5 -i 0.1 -J -b 2G", timeout: 60)
            done.leave()
        }
        var tcpChurns = 0
        while done.wait(timeout: .now()) == .timedOut {
            i += 1
            let name = "tcp\(i % 8)"
            _ = try w.request(.init(command: .addInterface, interface: InterfaceConfig(name: name, type: .null)))
            _ = try w.request(.init(command: .addCrossConnect, crossConnect: .init(name: "x-\(name)", a: "sink1", b: name)))
            _ = try w.request(.init(command: .deleteCrossConnect, name: "x-\(name)"))
            _ = try w.request(.init(command: .deleteInterface, name: name))
            tcpChurns += 4
        }
        XCTAssertEqual(box.r.status, 0, "iperf3: " + box.r.out.suffix(500) + box.r.err)
        XCTAssertGreaterThanOrEqual(tcpChurns, 100, "too few changes during the TCP stream")
        struct Report: Decodable {
            struct Interval: Decodable { struct Sum: Decodable { var bytes: Double }; var sum: Sum }
            struct End: Decodable { struct Sum: Decodable { var bytes: Double }; var sum_received: Sum }
            var intervals: [Interval]; var end: End
        }
        let rep = try JSONDecoder().decode(Report.self, from: Data(box.r.out.utf8))
        var run = 0, longest = 0
        for iv in rep.intervals { run = iv.sum.bytes == 0 ? run + 1 : 0; longest = max(longest, run) }
        XCTAssertLessThan(longest, 2, "the stream stalled for \(longest) x 0.1 s during \(tcpChurns) changes")
        XCTAssertGreaterThan(rep.end.sum_received.bytes, 0)
        print("churn: \(tcpChurns) control-plane changes during a 5 s TCP stream, \(Int(rep.end.sum_received.bytes)) bytes, longest gap \(longest) x 0.1 s")
        XCTAssertEqual(w.stop(), 0)
    }
}

/// The other attachment kinds: `kernel` (Weft's AF_PACKET), memif on an
/// abstract socket, and Weft as memif client, added at runtime.
final class AttachmentSystemTests: SystemTestCase {
    func testKernelTypePingsThroughAFPacket() throws {
        let tag = uniqueTag()
        let n1 = PodNamespace(tag: tag, index: 1), n2 = PodNamespace(tag: tag, index: 2)
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: pod1, type: kernel, iface: \(n1.hostEnd)}
          - {name: pod2, type: af_packet, iface: \(n2.hostEnd)}
        cross_connects:
          - {name: p2p, a: pod1, b: pod2}
        """)
        XCTAssertTrue(w.start(), w.log)
        let backend = try XCTUnwrap(w.interfaces().first).backend
        XCTAssertEqual(backend, "af_packet", "`kernel` is Weft's AF_PACKET")
        XCTAssertTrue(w.waitLinksUp())
        let r = n1.ping(n2.address, count: 4)
        XCTAssertEqual(pingCounts(r.out)?.received, 4, r.out + r.err + w.log)
        XCTAssertEqual(w.stop(), 0)
    }

    func testMemifAbstractServerAndRuntimeClientCarryTraffic() throws {
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        let abstractName = "weft-test-\(tag)"
        w.write("""
        interfaces:
          - {name: abs, type: memif, role: server, socket: \(abstractName), abstract: true, id: 5}
          - {name: sink1, type: null}
          - {name: sink2, type: null}
        cross_connects:
          - {name: abs-sink, a: abs, b: sink1}
        """)
        XCTAssertTrue(w.start(), w.log)
        // testpmd: client of Weft's abstract socket, and server of a file socket
        // that Weft joins as a client; txonly sends on both.
        let pmdSock = "\(w.dir)/pmd.sock"
        let peer = try TestpmdPeer(tag: tag, vdevs: [
            "net_memif0,role=client,socket=\(abstractName),socket-abstract=yes,id=5",
            "net_memif1,role=server,socket=\(pmdSock),socket-abstract=no,id=0",
        ], mode: "txonly")
        var deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: pmdSock) && Date() < deadline { usleep(100_000) }
        let add = w.ctl(["interface", "add", "cli", "--type", "memif", "--role", "client", "--socket-path", pmdSock])
        XCTAssertEqual(add.status, 0, add.err)
        XCTAssertEqual(w.ctl(["xconnect", "add", "cli-sink", "cli", "sink2"]).status, 0)
        XCTAssertTrue(w.waitLinksUp(timeout: 30), w.log + peer.log)

        deadline = Date().addingTimeInterval(20)
        var xcs: [String: CrossConnectStatus] = [:]
        repeat {
            usleep(200_000)
            xcs = Dictionary(uniqueKeysWithValues: try w.crossConnects().map { ($0.name, $0) })
        } while (xcs["abs-sink"]!.counters.aToB.packets == 0 || xcs["cli-sink"]!.counters.aToB.packets == 0) && Date() < deadline
        XCTAssertGreaterThan(xcs["abs-sink"]!.counters.aToB.packets, 0, "nothing arrived over the abstract-socket memif")
        XCTAssertGreaterThan(xcs["cli-sink"]!.counters.aToB.packets, 0, "nothing arrived over Weft's memif client")
        let ifs = try w.interfaces()
        XCTAssertEqual(ifs.first { $0.name == "abs" }?.detail, "server @\(abstractName) id 5")
        XCTAssertEqual(ifs.first { $0.name == "cli" }?.detail, "client \(pmdSock) id 0")
        withExtendedLifetime(peer) {}
        XCTAssertEqual(w.stop(), 0)
    }
}
