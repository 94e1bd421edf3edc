import Foundation
import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// 802.1Q toward an independent peer. This kernel has no 802.1Q support
/// (CONFIG_VLAN_8021Q unset, no modules), so the tagged side of the trunk is a
/// scapy host (Tests/peers/vlan_host.py) answering ARP and ICMP only on its
/// VLAN; the kernel itself is the peer for VLAN id 0 (the untagged uplink).
final class VLANSystemTests: SystemTestCase {
    func testVLANPeerPingsBothWaysRawUplinkWorksAndBadTagsAreDropped() throws {
        let tag = uniqueTag()
        let pod1 = PodNamespace(tag: tag, index: 1, address: "10.89.100.1")
        let pod2 = PodNamespace(tag: tag, index: 2, address: "10.89.0.1")
        let trunkNS = "wt\(tag)tr", trunkHost = "wt\(tag)ht"
        let peers = Paths.root.appendingPathComponent("Tests/peers").path
        var host: Process?
        defer {
            host?.terminate()
            sh("ip netns del \(trunkNS) 2>/dev/null; ip link del \(trunkHost) 2>/dev/null")
        }
        let setup = sh("""
        set -e
        ip netns add \(trunkNS)
        ip link add \(trunkHost) type veth peer name eth0 netns \(trunkNS)
        ip link set \(trunkHost) up
        ip -n \(trunkNS) link set eth0 up
        ip -n \(trunkNS) addr add 10.89.0.2/24 dev eth0
        ip netns exec \(trunkNS) sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        """)
        XCTAssertEqual(setup.status, 0, setup.err)

        // The VLAN 100 host on the trunk.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", trunkNS, "/usr/bin/python3", "\(peers)/vlan_host.py", "eth0", "100", "10.89.100.2", "02:89:00:00:00:02"]
        let ready = Pipe()
        p.standardOutput = ready
        p.standardError = FileHandle.nullDevice
        try p.run()
        host = p
        XCTAssertTrue(String(decoding: ready.fileHandleForReading.availableData, as: UTF8.self).contains("ready"))

        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: pod1, type: af_packet, iface: \(pod1.hostEnd)}
          - {name: pod2, type: af_packet, iface: \(pod2.hostEnd)}
          - {name: trunk, type: af_packet, iface: \(trunkHost)}
          - {name: v100, type: vlan, uplink: trunk, vlan_id: 100}
          - {name: untagged, type: vlan, uplink: trunk, vlan_id: 0}
        cross_connects:
          - {name: pod1-v100, a: pod1, b: v100}
          - {name: pod2-raw, a: pod2, b: untagged}
        """)
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.waitLinksUp(), w.log)

        // pod1 -> VLAN 100 host: Weft pushes the tag, the host answers only tagged frames.
        var r = pod1.ping("10.89.100.2", count: 4)
        XCTAssertEqual(pingCounts(r.out)?.received, 4, r.out + r.err + w.log)
        // VLAN 100 host -> pod1: tagged requests are popped toward pod1, replies come back tagged.
        r = sh(["ip", "netns", "exec", trunkNS, "/usr/bin/python3", "\(peers)/vlan_probe.py", "ping", "eth0", "100",
                "10.89.100.3", "02:89:00:00:00:03", pod1.address, "4"])
        XCTAssertEqual(r.out.trimmingCharacters(in: .whitespacesAndNewlines), "received 4", r.out + r.err)
        // VLAN id 0: the raw uplink, untagged, with the kernel's eth0 as the peer.
        r = pod2.ping("10.89.0.2", count: 4)
        XCTAssertEqual(pingCounts(r.out)?.received, 4, r.out + r.err)

        // Unknown VLAN ids and QinQ: dropped, each with its reason.
        let before = try XCTUnwrap(w.interfaces().first { $0.name == "trunk" }).counters.drops
        r = sh(["ip", "netns", "exec", trunkNS, "/usr/bin/python3", "\(peers)/vlan_probe.py", "junk", "eth0", "02:89:00:00:00:01"])
        XCTAssertEqual(r.out.trimmingCharacters(in: .whitespacesAndNewlines), "sent 6", r.err)
        usleep(500_000)
        let after = try XCTUnwrap(w.interfaces().first { $0.name == "trunk" }).counters.drops
        XCTAssertEqual((after["unknown-vlan"] ?? 0) - (before["unknown-vlan"] ?? 0), 3, "\(after)")
        XCTAssertEqual((after["qinq"] ?? 0) - (before["qinq"] ?? 0), 3, "\(after)")
        // ...while legitimate traffic keeps flowing.
        r = pod1.ping("10.89.100.2", count: 3)
        XCTAssertEqual(pingCounts(r.out)?.received, 3)

        let show = w.ctl(["show", "interfaces"])
        XCTAssertTrue(show.out.contains("vlan 100 on trunk"), show.out)
        XCTAssertEqual(w.stop(), 0)
    }
}
