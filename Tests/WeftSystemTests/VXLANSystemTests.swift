import Foundation
import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// VXLAN against the Linux kernel's own vxlan devices, over IPv4 and IPv6
/// underlays and a non-default UDP port, and between two weftd nodes.
final class VXLANSystemTests: SystemTestCase {
    func testKernelVXLANPeersOverIPv4AndIPv6AndPort8472() throws {
        let tag = uniqueTag()
        let pod1 = PodNamespace(tag: tag, index: 1, address: "10.91.0.1")
        let pod2 = PodNamespace(tag: tag, index: 2, address: "10.92.0.1")
        let pod3 = PodNamespace(tag: tag, index: 3, address: "10.93.0.1")
        let k = "wt\(tag)k", upHost = "wt\(tag)u"
        defer { sh("ip netns del \(k) 2>/dev/null; ip link del \(upHost) 2>/dev/null") }
        let setup = sh("""
        set -e
        ip netns add \(k)
        ip link add \(upHost) type veth peer name eth0 netns \(k)
        sysctl -qw net.ipv6.conf.\(upHost).disable_ipv6=1
        ip link set \(upHost) up
        ip netns exec \(k) sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
        ip -n \(k) link set eth0 up
        ip -n \(k) addr add 10.90.0.2/24 dev eth0
        ip -n \(k) addr add fd90::2/64 dev eth0 nodad
        ip -n \(k) link add vx4 type vxlan id 100 dstport 4789 local 10.90.0.2 remote 10.90.0.1 dev eth0
        ip -n \(k) link add vx6 type vxlan id 200 dstport 4789 local fd90::2 remote fd90::1 dev eth0
        ip -n \(k) link add vx8 type vxlan id 300 dstport 8472 local 10.90.0.2 remote 10.90.0.1 dev eth0
        ip -n \(k) addr add 10.91.0.2/24 dev vx4
        ip -n \(k) addr add 10.92.0.2/24 dev vx6
        ip -n \(k) addr add 10.93.0.2/24 dev vx8
        for d in vx4 vx6 vx8; do ip -n \(k) link set $d up; done
        """)
        XCTAssertEqual(setup.status, 0, setup.err)

        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - name: up
            type: af_packet
            iface: \(upHost)
            underlay:
              ipv4: 10.90.0.1/24
              ipv6: fd90::1/64
              mtu: 1500
              vxlan_ports: [8472]
          - {name: pod1, type: af_packet, iface: \(pod1.hostEnd)}
          - {name: pod2, type: af_packet, iface: \(pod2.hostEnd)}
          - {name: pod3, type: af_packet, iface: \(pod3.hostEnd)}
          - {name: t4, type: vxlan, uplink: up, vni: 100, remote: 10.90.0.2}
          - {name: t6, type: vxlan, uplink: up, vni: 200, remote: "fd90::2"}
          - {name: t8, type: vxlan, uplink: up, vni: 300, remote: 10.90.0.2, port: 8472, local_port: 8472}
        cross_connects:
          - {name: x4, a: pod1, b: t4}
          - {name: x6, a: pod2, b: t6}
          - {name: x8, a: pod3, b: t8}
        """)
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.waitLinksUp(), w.log)

        // Weft answers for its tunnel addresses: ICMP and ICMPv6 echo from the kernel side.
        var r = sh("ip netns exec \(k) ping -n -q -c 2 -i 0.3 -W 2 10.90.0.1")
        XCTAssertEqual(pingCounts(r.out)?.received, 2, r.out + r.err + w.log)
        r = sh("ip netns exec \(k) ping -n -q -c 2 -i 0.3 -W 2 fd90::1")
        XCTAssertEqual(pingCounts(r.out)?.received, 2, r.out + r.err)

        // Pods to the kernel's vxlan devices and back: IPv4 underlay, IPv6 underlay, port 8472.
        for (pod, far) in [(pod1, "10.91.0.2"), (pod2, "10.92.0.2"), (pod3, "10.93.0.2")] {
            r = pod.ping(far, count: 3)
            XCTAssertEqual(pingCounts(r.out)?.received, 3, "\(pod.address) -> \(far): " + r.out + r.err + w.log)
        }
        for (far, near) in [("10.91.0.1", "vx4"), ("10.92.0.1", "vx6"), ("10.93.0.1", "vx8")] {
            r = sh("ip netns exec \(k) ping -n -q -c 3 -i 0.2 -W 2 -I \(near) \(far)")
            XCTAssertEqual(pingCounts(r.out)?.received, 3, "kernel -> \(far): " + r.out + r.err)
        }

        // ARP and ND from the kernel's side: it resolved Weft's tunnel addresses to the uplink's MAC.
        let upMAC = try XCTUnwrap(w.interfaces().first { $0.name == "up" }).mac
        let n4 = sh("ip -n \(k) neigh show 10.90.0.1").out, n6 = sh("ip -n \(k) neigh show fd90::1").out
        XCTAssertTrue(n4.contains(upMAC), n4)
        XCTAssertTrue(n6.contains(upMAC), n6)
        // And Weft resolved the kernel's addresses by itself (nothing static).
        let kMAC = sh("ip -n \(k) -br link show eth0").out.split(separator: " ").filter { !$0.isEmpty }[2]
        let nb = try XCTUnwrap(w.request(.init(command: .showNeighbours)).neighbours)
        XCTAssertEqual(Set(nb.filter { $0.state == "reachable" }.map { "\($0.ip) \($0.mac)" }), ["10.90.0.2 \(kMAC)", "fd90::2 \(kMAC)"])

        // Path MTU: 1500 - 54 = 1446 bytes of IPv4 fit through the IPv4 tunnel; 1447 are dropped and counted.
        r = pod1.ping("10.91.0.2 -M do -s \(1446 - 28)", count: 2)
        XCTAssertEqual(pingCounts(r.out)?.received, 2, "exactly the path MTU: " + r.out + r.err)
        let before = try XCTUnwrap(w.interfaces().first { $0.name == "up" }).counters.drops["mtu-exceeded"] ?? 0
        r = pod1.ping("10.91.0.2 -M do -s \(1447 - 28)", count: 2, deadline: 3)
        let tooBig = try XCTUnwrap(pingCounts(r.out), r.out)
        XCTAssertEqual(tooBig.received, 0, r.out)
        let after = try XCTUnwrap(w.interfaces().first { $0.name == "up" }).counters.drops["mtu-exceeded"] ?? 0
        XCTAssertEqual(after - before, UInt64(tooBig.sent), "every oversized frame dropped and counted")
        // IPv6 underlay: 1500 - 74 = 1426.
        r = pod2.ping("10.92.0.2 -M do -s \(1426 - 28)", count: 2)
        XCTAssertEqual(pingCounts(r.out)?.received, 2, r.out + r.err)

        let show = w.ctl(["show", "neighbours"])
        XCTAssertTrue(show.out.contains("reachable"), show.out)
        XCTAssertEqual(w.stop(), 0)
    }

    func testTwoWeftNodesJoinedByVXLAN() throws {
        let tag = uniqueTag()
        let nodeA = "wt\(tag)A", nodeB = "wt\(tag)B"
        defer { sh("ip netns del \(nodeA) 2>/dev/null; ip netns del \(nodeB) 2>/dev/null") }
        let setup = sh("""
        set -e
        ip netns add \(nodeA); ip netns add \(nodeB)
        ip link add ul type veth peer name ul netns \(nodeB) 2>/dev/null || ip link add wt\(tag)ua type veth peer name ul netns \(nodeB)
        """)
        _ = setup
        // Build the uplink pair explicitly inside the two node namespaces.
        sh("ip link del ul 2>/dev/null; ip link del wt\(tag)ua 2>/dev/null; ip -n \(nodeB) link del ul 2>/dev/null")
        let link = sh("""
        set -e
        ip -n \(nodeA) link add ul type veth peer name ul netns \(nodeB)
        ip -n \(nodeA) link set ul up
        ip -n \(nodeB) link set ul up
        for n in \(nodeA) \(nodeB); do ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip -n $n link set lo up; done
        """)
        XCTAssertEqual(link.status, 0, link.err)
        let podA = PodNamespace(tag: tag, index: 1, address: "10.96.0.1", node: nodeA)
        let podB = PodNamespace(tag: tag, index: 2, address: "10.96.0.2", node: nodeB)

        let wa = Weftd(tag: tag + "a", netns: nodeA), wb = Weftd(tag: tag + "b", netns: nodeB)
        for (w, me, peer, pod) in [(wa, "10.95.0.1", "10.95.0.2", podA), (wb, "10.95.0.2", "10.95.0.1", podB)] {
            w.write("""
            interfaces:
              - {name: uplink, type: af_packet, iface: ul, underlay: {ipv4: \(me)/24}}
              - {name: pod, type: af_packet, iface: \(pod.hostEnd)}
              - {name: tun, type: vxlan, uplink: uplink, vni: 4242, remote: \(peer)}
            cross_connects:
              - {name: pod-tun, a: pod, b: tun}
            """)
        }
        XCTAssertTrue(wa.start(), wa.log)
        XCTAssertTrue(wb.start(), wb.log)
        let r = podA.ping(podB.address, count: 5)
        XCTAssertEqual(pingCounts(r.out)?.received, 5, r.out + r.err + wa.log + wb.log)
        let back = podB.ping(podA.address, count: 3)
        XCTAssertEqual(pingCounts(back.out)?.received, 3, back.out)
        for w in [wa, wb] {
            let xc = try XCTUnwrap(w.crossConnects().first)
            XCTAssertGreaterThanOrEqual(xc.counters.aToB.packets, 8)
            XCTAssertEqual(xc.counters.aToB.drops + xc.counters.bToA.drops, 0)
        }
        XCTAssertEqual(wa.stop(), 0)
        XCTAssertEqual(wb.stop(), 0)
    }
}

/// Bad input on the uplink and tunnel churn, each while traffic flows.
final class VXLANRobustnessSystemTests: SystemTestCase {
    func testBadUplinkInputIsDroppedByReasonAndTunnelChurnLosesNothing() throws {
        let tag = uniqueTag()
        let pod1 = PodNamespace(tag: tag, index: 1, address: "10.91.0.1")
        let k = "wt\(tag)k", upHost = "wt\(tag)u"
        defer { sh("ip netns del \(k) 2>/dev/null; ip link del \(upHost) 2>/dev/null") }
        let setup = sh("""
        set -e
        ip netns add \(k)
        ip link add \(upHost) type veth peer name eth0 netns \(k)
        sysctl -qw net.ipv6.conf.\(upHost).disable_ipv6=1
        ip link set \(upHost) up
        ip -n \(k) link set eth0 up
        ip -n \(k) addr add 10.90.0.2/24 dev eth0
        ip -n \(k) link add vx4 type vxlan id 100 dstport 4789 local 10.90.0.2 remote 10.90.0.1 dev eth0
        ip -n \(k) addr add 10.91.0.2/24 dev vx4
        ip -n \(k) link set vx4 up
        """)
        XCTAssertEqual(setup.status, 0, setup.err)
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: up, type: af_packet, iface: \(upHost), underlay: {ipv4: 10.90.0.1/24}}
          - {name: pod1, type: af_packet, iface: \(pod1.hostEnd)}
          - {name: sink, type: null}
          - {name: t4, type: vxlan, uplink: up, vni: 100, remote: 10.90.0.2}
        cross_connects:
          - {name: x4, a: pod1, b: t4}
        """)
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.waitLinksUp(), w.log)
        XCTAssertEqual(pingCounts(pod1.ping("10.91.0.2", count: 2).out)?.received, 2, w.log)

        // 1. Crafted bad VXLAN from the kernel side while pings cross the tunnel.
        let upMAC = try XCTUnwrap(w.interfaces().first { $0.name == "up" }).mac
        let before = try XCTUnwrap(w.interfaces().first { $0.name == "up" }).counters.drops
        var ping = BackgroundPing(from: pod1, to: "10.91.0.2", count: 400, interval: "0.005")
        let peers = Paths.root.appendingPathComponent("Tests/peers").path
        for _ in 0..<3 {
            let r = sh(["ip", "netns", "exec", k, "/usr/bin/python3", "\(peers)/vxlan_probe.py", "eth0", "10.90.0.2", "10.90.0.1", upMAC, "100", "10.90.0.66"])
            XCTAssertEqual(r.out.trimmingCharacters(in: .whitespacesAndNewlines), "sent 5", r.err)
        }
        var counts = try XCTUnwrap(ping.counts())
        XCTAssertEqual(counts.received, counts.sent, "legitimate traffic lost during bad input")
        let after = try XCTUnwrap(w.interfaces().first { $0.name == "up" }).counters.drops
        for reason in ["vxlan-truncated", "vxlan-bad-flags", "vxlan-unknown-vni", "vxlan-unknown-source", "runt"] {
            XCTAssertEqual((after[reason] ?? 0) - (before[reason] ?? 0), 3, "\(reason): \(after)")
        }

        // 2. Tunnels added and removed hundreds of times while the steady one carries pings.
        ping = BackgroundPing(from: pod1, to: "10.91.0.2", count: 1000, interval: "0.005")
        var churns = 0, i = 0
        while !ping.finished {
            i += 1
            let t = InterfaceConfig(name: "churn\(i % 4)", type: .vxlan, uplink: "up", vni: 5000 + i, remote: "10.90.0.2")
            _ = try w.request(.init(command: .addInterface, interface: t))
            _ = try w.request(.init(command: .addCrossConnect, crossConnect: .init(name: "xc-churn", a: "sink", b: t.name)))
            _ = try w.request(.init(command: .deleteCrossConnect, name: "xc-churn"))
            _ = try w.request(.init(command: .deleteInterface, name: t.name))
            churns += 4
        }
        counts = try XCTUnwrap(ping.counts())
        XCTAssertGreaterThanOrEqual(churns, 200)
        XCTAssertEqual(counts.sent, 1000)
        XCTAssertEqual(counts.received, counts.sent, "pings lost during \(churns) tunnel changes")
        print("vxlan churn: \(churns) changes during \(counts.sent) pings, \(counts.sent - counts.received) lost")
        XCTAssertEqual(w.stop(), 0)
    }
}

/// An uplink shared with the kernel: the host keeps its address (ARP, echo,
/// everything not a tunnel's), Weft takes only its VXLAN.
final class SharedUplinkSystemTests: SystemTestCase {
    func snmp(_ ns: String?, _ proto: String, _ field: String) -> Int {
        let text = sh((ns.map { "ip netns exec \($0) " } ?? "") + "cat /proc/net/snmp").out
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("\(proto):") }
        guard lines.count == 2 else { return -1 }
        let names = lines[0].split(separator: " "), values = lines[1].split(separator: " ")
        guard let i = names.firstIndex(where: { $0 == field }) else { return -1 }
        return Int(values[i]) ?? -1
    }

    func testKernelKeepsItsAddressWeftTakesItsVXLAN() throws {
        let tag = uniqueTag()
        let pod1 = PodNamespace(tag: tag, index: 1, address: "10.98.0.1")
        let k = "wt\(tag)k", upHost = "wt\(tag)s"
        defer { sh("ip netns del \(k) 2>/dev/null; ip link del \(upHost) 2>/dev/null") }
        let setup = sh("""
        set -e
        ip netns add \(k)
        ip link add \(upHost) type veth peer name eth0 netns \(k)
        sysctl -qw net.ipv6.conf.\(upHost).disable_ipv6=1
        ip addr add 10.97.0.1/24 dev \(upHost)
        ip link set \(upHost) up
        ip -n \(k) link set eth0 up
        ip -n \(k) addr add 10.97.0.2/24 dev eth0
        ip -n \(k) link add vx4 type vxlan id 100 dstport 4789 local 10.97.0.2 remote 10.97.0.1 dev eth0
        ip -n \(k) addr add 10.98.0.2/24 dev vx4
        ip -n \(k) link set vx4 up
        """)
        XCTAssertEqual(setup.status, 0, setup.err)
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: up, type: af_packet, iface: \(upHost), underlay: {ipv4: 10.97.0.1/24, kernel_shared: true}}
          - {name: pod1, type: af_packet, iface: \(pod1.hostEnd)}
          - {name: t4, type: vxlan, uplink: up, vni: 100, remote: 10.97.0.2}
        cross_connects:
          - {name: x4, a: pod1, b: t4}
        """)
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.waitLinksUp(), w.log)

        // The host answers for its own address, once: Weft stays silent.
        var r = sh("ip netns exec \(k) ping -n -c 3 -i 0.2 -W 2 10.97.0.1")
        XCTAssertEqual(pingCounts(r.out)?.received, 3, r.out + r.err)
        XCTAssertFalse(r.out.contains("DUP") || r.out.contains("duplicates"), r.out)

        // Weft carries its tunnel, and the kernel never answers it with port-unreachable.
        let unreachBefore = snmp(k, "Icmp", "InDestUnreachs")
        r = pod1.ping("10.98.0.2", count: 5)
        XCTAssertEqual(pingCounts(r.out)?.received, 5, r.out + r.err + w.log)
        r = sh("ip netns exec \(k) ping -n -q -c 3 -i 0.2 -W 2 10.98.0.1")
        XCTAssertEqual(pingCounts(r.out)?.received, 3, r.out + r.err)
        XCTAssertEqual(snmp(k, "Icmp", "InDestUnreachs") - unreachBefore, 0, "the kernel answered VXLAN with ICMP")

        let up = try XCTUnwrap(w.interfaces().first { $0.name == "up" })
        XCTAssertGreaterThan(up.counters.drops["left-to-kernel"] ?? 0, 0, "\(up.counters)")
        XCTAssertNil(up.counters.drops["not-for-tunnel"], "\(up.counters)")
        let nb = try XCTUnwrap(w.request(.init(command: .showNeighbours)).neighbours)
        XCTAssertEqual(nb.first { $0.ip == "10.97.0.2" }?.state, "reachable")

        // A VXLAN port the kernel already holds is refused clearly, nothing applied.
        let holder = try XCTUnwrap(try? Realizer.holdVXLANPorts(UnderlayConfig(ipv4: "10.97.0.1/24"), ports: [9999]))
        defer { holder.forEach { close($0) } }
        w.write("""
        interfaces:
          - {name: up, type: af_packet, iface: \(upHost), underlay: {ipv4: 10.97.0.1/24, kernel_shared: true, vxlan_ports: [9999]}}
          - {name: pod1, type: af_packet, iface: \(pod1.hostEnd)}
          - {name: t4, type: vxlan, uplink: up, vni: 100, remote: 10.97.0.2}
        cross_connects:
          - {name: x4, a: pod1, b: t4}
        """)
        let reload = w.ctl(["reload"])
        XCTAssertEqual(reload.status, 1)
        XCTAssertTrue(reload.err.contains("cannot hold UDP 9999 at 10.97.0.1"), reload.err)
        XCTAssertEqual(pingCounts(pod1.ping("10.98.0.2", count: 2).out)?.received, 2, "rolled back to the working state")
        XCTAssertEqual(w.stop(), 0)
    }
}

/// A port that offers IPv4 checksum TX offload gets the VXLAN outer checksum
/// done there: DPDK's tap PMD has it (computed in the PMD), and the kernel on
/// the tap's far side drops IPv4 with a wrong header checksum.
final class ChecksumOffloadSystemTests: SystemTestCase {
    func testVXLANOverTapUsesIPv4ChecksumOffload() throws {
        let tag = uniqueTag()
        let pod1 = PodNamespace(tag: tag, index: 1, address: "10.99.1.1")
        let tap = "wt\(tag)t", vx = "wt\(tag)x"
        defer { sh("ip link del \(vx) 2>/dev/null") }
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: up, type: tap, iface: \(tap), underlay: {ipv4: 10.99.0.1/24}}
          - {name: pod1, type: af_packet, iface: \(pod1.hostEnd)}
          - {name: t, type: vxlan, uplink: up, vni: 77, remote: 10.99.0.2}
        cross_connects:
          - {name: x, a: pod1, b: t}
        """)
        XCTAssertTrue(w.start(), w.log)
        let setup = sh("""
        set -e
        sysctl -qw net.ipv6.conf.\(tap).disable_ipv6=1
        ip addr add 10.99.0.2/24 dev \(tap)
        ip link set \(tap) up
        ip link add \(vx) type vxlan id 77 dstport 4789 local 10.99.0.2 remote 10.99.0.1 dev \(tap)
        ip addr add 10.99.1.2/24 dev \(vx)
        ip link set \(vx) up
        """)
        XCTAssertEqual(setup.status, 0, setup.err)
        XCTAssertTrue(w.waitLinksUp(), w.log)
        let up = try XCTUnwrap(w.interfaces().first { $0.name == "up" })
        XCTAssertEqual(up.offloads, ["ipv4-cksum"], "the tap PMD offers IPv4 checksum offload")
        let r = pod1.ping("10.99.1.2", count: 4)
        XCTAssertEqual(pingCounts(r.out)?.received, 4, r.out + r.err + w.log)
        XCTAssertEqual(w.stop(), 0)
    }
}
