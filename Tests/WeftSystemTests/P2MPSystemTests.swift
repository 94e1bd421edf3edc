import Foundation
import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// Replication groups and bridge domains with namespaces as members.
final class P2MPSystemTests: SystemTestCase {
    func testThreeNamespacesInABridgeDomainLearnAndPingEachOther() throws {
        let tag = uniqueTag()
        let pods = (1...3).map { PodNamespace(tag: tag, index: $0, address: "10.100.0.\($0)") }
        let w = Weftd(tag: tag)
        w.write("interfaces:\n" + pods.enumerated().map { "  - {name: pod\($0.offset + 1), type: af_packet, iface: \($0.element.hostEnd)}\n" }.joined()
                + "bridge_domains:\n  - name: bd\n    members: [{interface: pod1}, {interface: pod2}, {interface: pod3}]\n    mac_limit: 64\n")
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.waitLinksUp(), w.log)
        for (a, b) in [(0, 1), (0, 2), (1, 2), (2, 0)] {
            let r = pods[a].ping(pods[b].address, count: 5)
            XCTAssertEqual(pingCounts(r.out)?.received, 5, "\(pods[a].address) -> \(pods[b].address): \(r.out)\(r.err)")
        }
        let g = try XCTUnwrap(w.request(.init(command: .showGroups)).groups?.first)
        XCTAssertEqual(g.mode, "bridge")
        // Each pod's MAC learned on its own member.
        let learned = Set((g.macs ?? []).map { "\($0.mac)@\(g.members[$0.member].interface)" })
        for (i, p) in pods.enumerated() { XCTAssertTrue(learned.contains("\(p.mac)@pod\(i + 1)"), "\(learned)") }
        // Unicast after the first flood: of everything that entered the bridge
        // (40 echo frames and the ARP around them), only a small part was flooded.
        let stats = try XCTUnwrap(g.stats)
        let entered = g.members.reduce(0) { $0 + $1.fromMember.packets }
        XCTAssertGreaterThanOrEqual(entered, 40)
        XCTAssertLessThan(stats.flooded * 2, entered, "\(stats), \(entered) frames in")
        let text = w.ctl(["show", "groups"])
        XCTAssertTrue(text.out.contains("bd (bridge)") && text.out.contains(pods[0].mac), text.out)
        XCTAssertEqual(w.stop(), 0)
    }

    func testReplicationGroupFeedsEveryMemberExactlyOnce() throws {
        let tag = uniqueTag()
        let src = PodNamespace(tag: tag, index: 9, address: "10.101.0.9")
        let pods = (1...3).map { PodNamespace(tag: tag, index: $0, address: "10.101.0.\($0)") }
        let w = Weftd(tag: tag)
        w.write("interfaces:\n  - {name: src, type: af_packet, iface: \(src.hostEnd)}\n"
                + pods.enumerated().map { "  - {name: m\($0.offset + 1), type: af_packet, iface: \($0.element.hostEnd)}\n" }.joined()
                + "replication_groups:\n  - {name: feed, ingress: src, members: [m1, m2, m3], clone_min_bytes: 256}\n")
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.waitLinksUp(), w.log)
        // Capture on every member, then send 40 marked frames (small and large) from the source.
        let caps = pods.map { "/tmp/wt-\(tag)-\($0.ns).pcap" }
        let dumps: [Process] = try zip(pods, caps).map { p, cap in
            let t = Process()
            t.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            t.arguments = ["netns", "exec", p.ns, "tcpdump", "-i", "eth0", "-U", "-n", "-w", cap, "udp port 7777"]
            t.standardOutput = FileHandle.nullDevice; t.standardError = FileHandle.nullDevice
            try t.run()
            return t
        }
        defer { caps.forEach { unlink($0) } }
        usleep(1_500_000)
        let send = sh(["ip", "netns", "exec", src.ns, "/usr/bin/python3", "-c", """
        from scapy.all import Ether, IP, UDP, Raw, sendp, conf
        conf.verb = 0
        fs = [Ether(dst="ff:ff:ff:ff:ff:ff") / IP(src="10.101.0.9", dst="10.101.0.255") / UDP(sport=7777, dport=7777) / Raw(b"%03d" % i + b"x" * (20 if i % 2 else 900)) for i in range(40)]
        sendp(fs, iface="eth0")
        print("sent", len(fs))
        """])
        XCTAssertEqual(send.out.trimmingCharacters(in: .whitespacesAndNewlines), "sent 40", send.err)
        usleep(1_000_000)
        dumps.forEach { $0.interrupt() }
        dumps.forEach { $0.waitUntilExit() }
        for (p, cap) in zip(pods, caps) {
            let r = sh("tcpdump -r \(cap) -n -A 2>/dev/null | grep -c '^E'")
            let seqs = sh("tcpdump -r \(cap) -n -X 2>/dev/null | grep -c 'IP 10.101.0.9.7777'")
            XCTAssertEqual(Int(seqs.out.trimmingCharacters(in: .whitespacesAndNewlines)), 40, "\(p.ns) saw \(seqs.out) (\(r.out))")
        }
        let g = try XCTUnwrap(w.request(.init(command: .showGroups)).groups?.first)
        for m in g.members { XCTAssertGreaterThanOrEqual(m.toMember.packets, 40, "\(m)") }
        XCTAssertEqual(w.stop(), 0)
    }

    func testBridgeMembersChurnWithoutLossForTheOthers() throws {
        let tag = uniqueTag()
        let p1 = PodNamespace(tag: tag, index: 1, address: "10.102.0.1"), p2 = PodNamespace(tag: tag, index: 2, address: "10.102.0.2")
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: pod1, type: af_packet, iface: \(p1.hostEnd)}
          - {name: pod2, type: af_packet, iface: \(p2.hostEnd)}
          - {name: s1, type: null}
          - {name: s2, type: null}
        bridge_domains:
          - name: bd
            members: [{interface: pod1}, {interface: pod2}]
        """)
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.waitLinksUp(), w.log)
        XCTAssertEqual(pingCounts(p1.ping(p2.address, count: 2).out)?.received, 2)
        let ping = BackgroundPing(from: p1, to: p2.address, count: 800, interval: "0.005")
        var changes = 0
        while !ping.finished {
            let extra = changes % 3 == 0 ? [] : changes % 3 == 1 ? ["s1"] : ["s1", "s2"]
            _ = try w.request(.init(command: .connect, name: "bd", members: ["pod1", "pod2"] + extra, labels: ["p2mp": "bridge"]))
            changes += 1
        }
        let c = try XCTUnwrap(ping.counts())
        XCTAssertGreaterThanOrEqual(changes, 100)
        XCTAssertEqual(c.sent, 800)
        XCTAssertEqual(c.received, c.sent, "pings lost during \(changes) membership changes")
        print("bridge churn: \(changes) membership changes during \(c.sent) pings, \(c.sent - c.received) lost")
        XCTAssertEqual(w.stop(), 0)
    }
}
