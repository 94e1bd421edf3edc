import Foundation
import XCTest
import WeftAdmin
import WeftModel

/// The packet trace (`weftctl trace start|show|clear`) on a running weftd with
/// every path: P2P with TCP, VLAN push and pop (a scapy 802.1Q host), VXLAN
/// encap and decap (the kernel's vxlan device), replication, a bridge's
/// flooding and learning, a drop by reason, and the uplink's punt.
final class TraceSystemTests: SystemTestCase {
    func testTraceShowsEachPathStageByStage() throws {
        let tag = uniqueTag()
        let pa = PodNamespace(tag: tag, index: 1, subnet: "10.99")            // P2P: 10.99.0.1 <-> 10.99.0.2
        let pb = PodNamespace(tag: tag, index: 2, subnet: "10.99")
        let px = PodNamespace(tag: tag, index: 3, address: "10.91.0.1")       // VXLAN to the kernel's vx4 (10.91.0.2)
        let pv = PodNamespace(tag: tag, index: 4, address: "10.95.0.1")       // VLAN 7 to the scapy host (10.95.0.2)
        let r0 = PodNamespace(tag: tag, index: 5, subnet: "10.96")            // replication: ingress 5, members 6, 7
        let r1 = PodNamespace(tag: tag, index: 6, subnet: "10.96")
        let r2 = PodNamespace(tag: tag, index: 7, subnet: "10.96")
        let b1 = PodNamespace(tag: tag, index: 8, subnet: "10.97")            // bridge: 8, 9, 10
        let b2 = PodNamespace(tag: tag, index: 9, subnet: "10.97")
        let b3 = PodNamespace(tag: tag, index: 10, subnet: "10.97")
        let lone = PodNamespace(tag: tag, index: 11, subnet: "10.98")        // no connection: no-peer
        _ = (r1, r2, b3)
        let k = "wt\(tag)k", up = "wt\(tag)u", k2 = "wt\(tag)t", trunk = "wt\(tag)v"
        defer { sh("ip netns del \(k) 2>/dev/null; ip link del \(up) 2>/dev/null; ip netns del \(k2) 2>/dev/null; ip link del \(trunk) 2>/dev/null") }
        let setup = sh("""
        set -e
        ip netns add \(k)
        ip link add \(up) type veth peer name eth0 netns \(k)
        sysctl -qw net.ipv6.conf.\(up).disable_ipv6=1
        ip link set \(up) up
        ip netns exec \(k) sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        ip -n \(k) link set eth0 up
        ip -n \(k) addr add 10.90.0.2/24 dev eth0
        ip -n \(k) link add vx4 type vxlan id 100 dstport 4789 local 10.90.0.2 remote 10.90.0.1 dev eth0
        ip -n \(k) addr add 10.91.0.2/24 dev vx4
        ip -n \(k) link set vx4 up
        ip netns add \(k2)
        ip link add \(trunk) type veth peer name eth0 netns \(k2)
        sysctl -qw net.ipv6.conf.\(trunk).disable_ipv6=1
        ip link set \(trunk) up
        ip netns exec \(k2) sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        ip -n \(k2) link set eth0 up
        """)
        XCTAssertEqual(setup.status, 0, setup.err)
        let host = Process()
        host.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        host.arguments = ["netns", "exec", k2, "/usr/bin/python3", Paths.root.appendingPathComponent("Tests/peers/vlan_host.py").path,
                          "eth0", "7", "10.95.0.2", "02:95:00:00:00:02"]
        let ready = Pipe()
        host.standardOutput = ready
        host.standardError = FileHandle.nullDevice
        try host.run()
        defer { host.terminate(); host.waitUntilExit() }
        XCTAssertTrue(String(decoding: ready.fileHandleForReading.availableData, as: UTF8.self).contains("ready"))

        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: pa, type: af_packet, iface: \(pa.hostEnd)}
          - {name: pb, type: af_packet, iface: \(pb.hostEnd)}
          - {name: px, type: af_packet, iface: \(px.hostEnd)}
          - {name: pv, type: af_packet, iface: \(pv.hostEnd)}
          - {name: r0, type: af_packet, iface: \(r0.hostEnd)}
          - {name: r1, type: af_packet, iface: \(r1.hostEnd)}
          - {name: r2, type: af_packet, iface: \(r2.hostEnd)}
          - {name: b1, type: af_packet, iface: \(b1.hostEnd)}
          - {name: b2, type: af_packet, iface: \(b2.hostEnd)}
          - {name: b3, type: af_packet, iface: \(b3.hostEnd)}
          - {name: lone, type: af_packet, iface: \(lone.hostEnd)}
          - name: up
            type: af_packet
            iface: \(up)
            underlay: {ipv4: 10.90.0.1/24, mtu: 1500}
          - {name: t4, type: vxlan, uplink: up, vni: 100, remote: 10.90.0.2}
          - {name: trunk, type: af_packet, iface: \(trunk)}
          - {name: v7, type: vlan, uplink: trunk, vlan_id: 7}
        cross_connects:
          - {name: xp, a: pa, b: pb}
          - {name: xv, a: px, b: t4}
          - {name: xl, a: pv, b: v7}
        replication_groups:
          - {name: rg, ingress: r0, members: [r1, r2]}
        bridge_domains:
          - name: bd
            members: [{interface: b1}, {interface: b2}, {interface: b3}]
        """)
        XCTAssertTrue(w.start(), w.log)
        defer { XCTAssertEqual(w.stop(), 0) }
        XCTAssertTrue(w.waitLinksUp(), w.log)

        /// Trace `count` frames on `itf` while `traffic` runs; the frames traced.
        func trace(_ itf: String?, count: Int = 3, _ traffic: () -> Void) throws -> [TraceStatus.Frame] {
            XCTAssertEqual(w.ctl(["trace", "clear"]).status, 0)
            let st = w.ctl(["trace", "start", "--count", String(count)] + (itf.map { ["--interface", $0] } ?? []))
            XCTAssertEqual(st.status, 0, st.err)
            traffic()
            var frames: [TraceStatus.Frame] = []
            for _ in 0..<50 {
                frames = try w.request(.init(command: .traceShow)).trace?.frames ?? []
                if frames.count >= count { break }
                usleep(100_000)
            }
            return frames
        }
        func text(_ frames: [TraceStatus.Frame]) -> String { frames.flatMap(\.lines).joined(separator: "\n") }

        // P2P with TCP: the SYN's way, rx on pa, the connection, tx on pb unchanged.
        var f = try trace("pa", count: 6) {
            let t = pa.transfer(to: pb.ns, target: "10.99.0.2", proto: "tcp", bytes: 1 << 20, port: 5501)
            XCTAssertTrue(t.intact, "\(t)")
        }
        var all = text(f)
        XCTAssertEqual(f.count, 6, all)
        XCTAssertTrue(all.contains("rx pa queue 0"), all)
        XCTAssertTrue(all.contains("lookup pa: connection xp (pa -> pb): forward as is, out pb"), all)
        XCTAssertTrue(all.contains("TCP") && all.contains("> 5501 [S]"), all)
        XCTAssertTrue(all.contains("tx pb queue"), all)
        XCTAssertTrue(all.contains("connection xp (pa -> pb): 1 counted"), all)
        // Every line starts with the cycles since reception, and the frames are in order.
        XCTAssertTrue(f.allSatisfy { $0.lines.allSatisfy { $0.hasPrefix("+") } }, all)
        XCTAssertEqual(f.map(\.id), Array(0..<6).map(UInt32.init))
        // Tracing changed nothing: the transfer was intact (above) and the trace stopped taking frames.
        let st = try XCTUnwrap(try w.request(.init(command: .traceShow)).trace)
        XCTAssertEqual(st.left, 0)

        // VXLAN encap: the pod's frame leaves the uplink inside VXLAN (outer IPv4, UDP 4789, VNI 100).
        f = try trace("px", count: 2) { _ = px.ping("10.91.0.2", count: 2) }
        all = text(f)
        XCTAssertTrue(all.contains("VXLAN encapsulation, out up"), all)
        XCTAssertTrue(all.contains("tx up queue") && all.contains("IPv4 10.90.0.1 > 10.90.0.2") && all.contains("VXLAN vni 100"), all)
        XCTAssertTrue(all.contains("VXLAN vni 100: 02:77:00:00:") && all.contains("ICMP echo request"), "the inner frame: " + all)
        // VXLAN decap: from the uplink, classified, out to the pod without the outer headers.
        f = try trace("up", count: 4) { _ = sh("ip netns exec \(k) ping -n -q -c 4 -i 0.2 -W 2 -I vx4 10.91.0.1") }
        all = text(f)
        XCTAssertTrue(all.contains("uplink up: classify by VXLAN"), all)
        XCTAssertTrue(all.contains("rx up queue 0") && all.contains("VXLAN vni 100"), all)
        XCTAssertTrue(all.contains("connection xv (t4 -> px): 1 counted"), all)
        XCTAssertTrue(all.contains("tx px queue"), all)

        // VLAN push (pod to trunk, tag 7) and pop (trunk to pod).
        f = try trace("pv", count: 2) { _ = pv.ping("10.95.0.2", count: 2) }
        all = text(f)
        XCTAssertTrue(all.contains("push an 802.1Q tag 7, out trunk"), all)
        XCTAssertTrue(all.contains("tx trunk queue") && all.contains(" vlan 7"), all)
        f = try trace("v7", count: 2) { _ = pv.ping("10.95.0.2", count: 2) }
        all = text(f)
        XCTAssertTrue(all.contains("rx trunk queue 0") && all.contains(" vlan 7"), all)
        XCTAssertTrue(all.contains("uplink trunk: classify by 802.1Q id"), all)
        XCTAssertTrue(all.contains("tx pv queue"), all)

        // Replication: one frame from the ingress, a copy to each member.
        f = try trace("r0", count: 1) { _ = r0.ping("10.96.0.6", count: 1) }
        all = text(f)
        XCTAssertEqual(f.count, 1, all)
        XCTAssertTrue(all.contains("replicate to the group's members"), all)
        XCTAssertEqual(f[0].lines.filter { $0.contains("tx r1 queue") }.count, 1, all)
        XCTAssertEqual(f[0].lines.filter { $0.contains("tx r2 queue") }.count, 1, all)

        // Bridge: the first ARP request is flooded (to b2 and b3) and its source learned;
        // the reply is known unicast.
        f = try trace(nil, count: 2) { _ = b1.ping("10.97.0.9", count: 1) }
        all = text(f)
        XCTAssertTrue(all.contains("ARP who-has 10.97.0.9 tell 10.97.0.8"), all)
        XCTAssertTrue(all.contains("ARP reply 10.97.0.9 is-at 02:77:00:00:"), all)
        XCTAssertTrue(all.contains("bridge (learn, then forward or flood)"), all)
        XCTAssertTrue(all.contains("bridge bd: source MAC learned"), all)
        XCTAssertTrue(all.contains("bd: from member b1: 1 counted") && all.contains("bd: to member b2: 1 counted"), all)
        XCTAssertTrue(all.contains("flooded"), all)
        let flood = try XCTUnwrap(f.first { $0.lines.contains { $0.contains("flooded") } })
        XCTAssertTrue(flood.lines.contains { $0.contains("tx b2 queue") } && flood.lines.contains { $0.contains("tx b3 queue") }, all)
        XCTAssertFalse(flood.lines.contains { $0.contains("tx b1 queue") }, "not back to where it came from: " + all)

        // A drop, by reason: a pod with no connection.
        f = try trace("lone", count: 1) { _ = lone.ping("10.98.0.2", count: 1, deadline: 2) }
        all = text(f)
        XCTAssertTrue(all.contains("lookup lone: no connection"), all)
        XCTAssertTrue(all.contains("drop no-peer (xconnect)"), all)
        XCTAssertFalse(all.contains("tx "), all)

        // More drops by reason, each from its stage: a VLAN no connection has (scapy on the
        // trunk), a VNI no tunnel has (a second kernel vxlan device).
        f = try trace("trunk", count: 1) {
            _ = sh("ip netns exec \(k2) /usr/bin/python3 -c \"from scapy.all import *; sendp(Ether(src='02:95:00:00:00:02', dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=8)/IP(dst='10.95.0.1')/ICMP(), iface='eth0', verbose=0)\"")
        }
        all = text(f)
        XCTAssertTrue(all.contains("rx trunk queue 0") && all.contains(" vlan 8"), all)
        XCTAssertTrue(all.contains("drop unknown-vlan (uplink)"), all)
        XCTAssertEqual(sh("""
        ip -n \(k) link add vx5 type vxlan id 555 dstport 4789 local 10.90.0.2 remote 10.90.0.1 dev eth0
        ip -n \(k) addr add 10.94.0.2/24 dev vx5 && ip -n \(k) link set vx5 up
        """).status, 0)
        f = try trace("up", count: 1) { _ = sh("ip netns exec \(k) ping -n -q -c 1 -W 1 10.94.0.1") }
        all = text(f)
        XCTAssertTrue(all.contains("VXLAN vni 555"), all)
        XCTAssertTrue(all.contains("drop vxlan-unknown-vni (vxlan)"), all)

        // The uplink's own address: an echo request is punted to the control plane.
        f = try trace("up", count: 1) { _ = sh("ip netns exec \(k) ping -n -q -c 1 -W 2 10.90.0.1") }
        all = text(f)
        XCTAssertTrue(all.contains("ICMP echo request"), all)
        XCTAssertTrue(all.contains("punted to the underlay thread"), all)

        // weftctl's own rendering, and clear.
        let show = w.ctl(["trace", "show"])
        XCTAssertTrue(show.out.contains("frame 0 (worker 0"), show.out)
        XCTAssertEqual(w.ctl(["trace", "clear"]).status, 0)
        XCTAssertEqual(try w.request(.init(command: .traceShow)).trace?.frames.count, 0)
        // Bad requests: a clear error.
        let bad = w.ctl(["trace", "start", "--interface", "nope"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("no interface named 'nope'"), bad.err)
        XCTAssertNotEqual(w.ctl(["trace", "start", "--count", "0"]).status, 0)
        XCTAssertEqual(try w.request(.init(command: .traceStart, count: 5000)).ok, false)
    }
}
