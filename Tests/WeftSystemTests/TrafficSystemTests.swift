import Foundation
import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// Real application traffic through every kernel attachment: TCP and UDP with
/// content checks over IPv4 and IPv6, IP fragments, jumbo frames, with the
/// kernel's default offloads left on the pods' interfaces (veth offers TX
/// checksum offload and TSO: partial checksums and super-frames reach Weft).
final class TrafficSystemTests: SystemTestCase {
    /// Two pods cross-connected through `type`; TCP and UDP both ways, v4 and v6.
    private func exerciseKernelAttachment(_ type: String) throws {
        let tag = uniqueTag()
        let pod1 = PodNamespace(tag: tag, index: 1, subnet: "10.61", ipv6: "fd61::1")
        let pod2 = PodNamespace(tag: tag, index: 2, subnet: "10.61", ipv6: "fd61::2")
        // The kernel's defaults on the pods' side: TX checksum offload and TSO on.
        for p in [pod1, pod2] {
            let k = sh("ip netns exec \(p.ns) ethtool -k eth0").out
            XCTAssertTrue(k.contains("tx-checksumming: on"), "\(type): veth default offloads expected on: " + k)
        }
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: a, type: \(type), iface: \(pod1.hostEnd)}
          - {name: b, type: \(type), iface: \(pod2.hostEnd)}
        cross_connects:
          - {name: x, a: a, b: b}
        """)
        XCTAssertTrue(w.start(), w.log)
        defer { XCTAssertEqual(w.stop(), 0) }
        XCTAssertTrue(w.waitLinksUp(), w.log)
        let itfs = try w.interfaces()
        if type == "af_xdp" {
            // AF_XDP cannot see partial checksums: the veth peer's TX checksum offload went off, and the note says so.
            for i in itfs { XCTAssertTrue(i.note.contains("TX checksum offload turned off"), i.note) }
        }
        if type == "af_packet" || type == "kernel" {
            for i in itfs { XCTAssertTrue(i.note.contains("vnet header"), i.note) }
            // Untouched: the pods still hand over partial checksums and super-frames.
            XCTAssertTrue(sh("ip netns exec \(pod1.ns) ethtool -k eth0").out.contains("tcp-segmentation-offload: on"))
        }

        for (from, to, target) in [(pod1, pod2, "10.61.0.2"), (pod2, pod1, "10.61.0.1"),
                                   (pod1, pod2, "fd61::2"), (pod2, pod1, "fd61::1")] {
            let t = from.transfer(to: to.ns, target: target, proto: "tcp", bytes: 8 << 20, port: 5301)
            XCTAssertTrue(t.intact, "\(type) TCP to \(target): \(t)\n" + w.log.suffix(2000))
            let u = from.transfer(to: to.ns, target: target, proto: "udp", bytes: 1 << 20, port: 5302, size: 1400, rate: 4000)
            XCTAssertTrue(u.intact, "\(type) UDP to \(target): \(u)")
        }
        // Fragments cross as fragments (ping -s 3000 is three fragments over MTU 1500).
        for target in ["10.61.0.2", "fd61::2"] {
            let r = pod1.ping("-s 3000 \(target)", count: 3)
            XCTAssertEqual(pingCounts(r.out)?.received, 3, "\(type) fragments to \(target): " + r.out + r.err)
        }
        // UDP datagrams bigger than the MTU: the kernel fragments them, Weft forwards the fragments.
        let big = pod1.transfer(to: pod2.ns, target: "10.61.0.2", proto: "udp", bytes: 512 << 10, port: 5303,
                                size: 4000, rate: 1000)
        XCTAssertTrue(big.intact, "\(type) fragmented UDP: \(big)")
        let drops = try w.request(.init(command: .showDrops)).drops ?? []
        for bad in ["bad-checksum-offload", "oversize-gso", "rx-truncated", "mtu-exceeded"] {
            XCTAssertEqual(drops.first { $0.reason == bad }?.count ?? 0, 0, "\(type): \(bad)")
        }
    }

    func testTCPAndUDPThroughAFPacket() throws { try exerciseKernelAttachment("af_packet") }
    func testTCPAndUDPThroughAFXDP() throws { try exerciseKernelAttachment("af_xdp") }
    func testTCPAndUDPThroughKernelType() throws { try exerciseKernelAttachment("kernel") }

    /// A tap interface Weft creates inside a pod's namespace.
    func testTCPAndUDPThroughTap() throws {
        let tag = uniqueTag()
        let ns1 = "wt\(tag)t1", ns2 = "wt\(tag)t2"
        defer { sh("ip netns del \(ns1) 2>/dev/null; ip netns del \(ns2) 2>/dev/null") }
        XCTAssertEqual(sh("ip netns add \(ns1) && ip netns add \(ns2)").status, 0)
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: a, type: tap, iface: tap0, netns: /var/run/netns/\(ns1)}
          - {name: b, type: tap, iface: tap0, netns: /var/run/netns/\(ns2)}
        cross_connects:
          - {name: x, a: a, b: b}
        """)
        XCTAssertTrue(w.start(), w.log)
        defer { XCTAssertEqual(w.stop(), 0) }
        for (ns, i) in [(ns1, 1), (ns2, 2)] {
            let r = sh("""
            set -e
            ip netns exec \(ns) sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
            ip -n \(ns) addr add 10.62.0.\(i)/24 dev tap0
            ip -n \(ns) addr add fd62::\(i)/64 dev tap0 nodad
            ip -n \(ns) link set tap0 up
            """)
            XCTAssertEqual(r.status, 0, r.err)
        }
        XCTAssertTrue(w.waitLinksUp(), w.log)
        for (from, to, target) in [(ns1, ns2, "10.62.0.2"), (ns2, ns1, "fd62::1")] {
            let t = Transfer.run(fromNS: from, toNS: to, target: target, proto: "tcp", bytes: 4 << 20, port: 5311,
                                 size: 1200, rate: 0)
            XCTAssertTrue(t.intact, "tap TCP to \(target): \(t)")
            let u = Transfer.run(fromNS: from, toNS: to, target: target, proto: "udp", bytes: 512 << 10, port: 5312,
                                 size: 1400, rate: 3000)
            XCTAssertTrue(u.intact, "tap UDP to \(target): \(u)")
        }
        let r = sh("ip netns exec \(ns1) ping -n -q -c 3 -i 0.2 -W 3 -s 3000 10.62.0.2")
        XCTAssertEqual(pingCounts(r.out)?.received, 3, r.out + r.err)
        // Two DPDK ethdevs: offload (auto) was tried; the tap PMD has no eswitch, so the
        // connection is switched in software, which is what carried the traffic above.
        let x = try XCTUnwrap(try w.crossConnects().first)
        XCTAssertTrue(x.offload?.hasPrefix("software: ") == true, "\(x.offload ?? "nil")")
        XCTAssertFalse(x.offload?.contains("Weft's own driver") ?? true, "tap ports are ethdevs: \(x.offload ?? "nil")")
        print("tap cross-connect offload: \(x.offload ?? "nil")")
    }

    /// Only what arrives from the pod is forwarded: a frame the host itself sends
    /// out of an attached netdev never reaches the other side.
    func testHostsOwnFramesOutOfAnAttachedInterfaceAreNotForwarded() throws {
        for type in ["af_packet", "af_xdp"] {
            let tag = uniqueTag()
            let pod1 = PodNamespace(tag: tag, index: 1, subnet: "10.63")
            let pod2 = PodNamespace(tag: tag, index: 2, subnet: "10.63")
            let w = Weftd(tag: tag)
            w.write("""
            interfaces:
              - {name: a, type: \(type), iface: \(pod1.hostEnd)}
              - {name: b, type: \(type), iface: \(pod2.hostEnd)}
            cross_connects:
              - {name: x, a: a, b: b}
            """)
            XCTAssertTrue(w.start(), w.log)
            XCTAssertTrue(w.waitLinksUp(), w.log)
            // A local-experimental ethertype with a marker, sent by a packet socket.
            func send(_ ns: String?, _ dev: String, _ marker: String) -> CommandResult {
                let py = """
                import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("\(dev)", 0))
                f = b"\\xff" * 6 + bytes.fromhex("027700000001") + b"\\x88\\xb5" + b"\(marker)" + b"\\x00" * 40
                [s.send(f) for _ in range(5)]
                """
                return sh((ns.map { ["ip", "netns", "exec", $0] } ?? []) + ["python3", "-c", py])
            }
            func captured(while action: () -> Void) -> String {
                let cap = Process()
                cap.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
                cap.arguments = ["netns", "exec", pod2.ns, "timeout", "3", "tcpdump", "-n", "-i", "eth0", "-A", "ether proto 0x88b5"]
                let out = Pipe()
                cap.standardOutput = out
                cap.standardError = FileHandle.nullDevice
                try? cap.run()
                usleep(700_000)
                action()
                cap.waitUntilExit()
                return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            }
            // From the host, out of pod1's host end (towards pod1): not Weft's to forward.
            let hostOwn = captured { XCTAssertEqual(send(nil, pod1.hostEnd, "HOSTOWN").status, 0) }
            XCTAssertFalse(hostOwn.contains("HOSTOWN"), "\(type): the host's own frame was forwarded:\n" + hostOwn)
            // The same frame from inside pod1 does cross: the capture works.
            let fromPod = captured { XCTAssertEqual(send(pod1.ns, "eth0", "FROMPOD").status, 0) }
            XCTAssertTrue(fromPod.contains("FROMPOD"), "\(type): a pod's frame did not cross:\n" + fromPod)
            XCTAssertEqual(w.stop(), 0)
        }
    }

    /// MTU 9000 end to end: kernel interfaces (AF_PACKET), Weft's memif client to
    /// Weft's memif server in between (frames chained over 2 KiB buffers).
    func testJumboFramesAcrossKernelAndMemif() throws {
        let tag = uniqueTag()
        let pod1 = PodNamespace(tag: tag, index: 1, subnet: "10.64", mtu: 9000)
        let pod2 = PodNamespace(tag: tag, index: 2, subnet: "10.64", mtu: 9000)
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: a, type: af_packet, iface: \(pod1.hostEnd)}
          - {name: b, type: af_packet, iface: \(pod2.hostEnd)}
          - {name: ms, type: memif, role: server, socket: \(w.dir)/j.sock, mtu: 9000}
          - {name: mc, type: memif, role: client, socket: \(w.dir)/j.sock, mtu: 9000}
        cross_connects:
          - {name: x1, a: a, b: mc}
          - {name: x2, a: ms, b: b}
        """)
        XCTAssertTrue(w.start(), w.log)
        defer { XCTAssertEqual(w.stop(), 0) }
        XCTAssertTrue(w.waitLinksUp(), w.log)
        // 8972 bytes of ICMP payload + 28 = 9000: exactly the MTU, with DF.
        var r = pod1.ping("-M do -s 8972 10.64.0.2", count: 3)
        XCTAssertEqual(pingCounts(r.out)?.received, 3, r.out + r.err)
        // One byte more does not fit the connection's MTU: refused at the pod (EMSGSIZE), nothing sent.
        r = sh("ip netns exec \(pod1.ns) ping -n -c 1 -W 1 -M do -s 8973 10.64.0.2")
        XCTAssertEqual(pingCounts(r.out)?.received, 0, r.out + r.err)
        XCTAssertTrue((r.out + r.err).contains("message too long"), "refused at the pod (EMSGSIZE): " + r.out + r.err)
        let t = pod1.transfer(to: pod2.ns, target: "10.64.0.2", proto: "tcp", bytes: 32 << 20, port: 5321)
        XCTAssertTrue(t.intact, "jumbo TCP: \(t)")
        let back = pod2.transfer(to: pod1.ns, target: "10.64.0.1", proto: "tcp", bytes: 16 << 20, port: 5322)
        XCTAssertTrue(back.intact, "jumbo TCP back: \(back)")
        let u = pod1.transfer(to: pod2.ns, target: "10.64.0.2", proto: "udp", bytes: 2 << 20, port: 5323, size: 8900, rate: 500)
        XCTAssertTrue(u.intact, "jumbo UDP: \(u)")
        let drops = try w.request(.init(command: .showDrops)).drops ?? []
        XCTAssertEqual(drops.first { $0.reason == "mtu-exceeded" }?.count ?? 0, 0)
    }
}
