import XCTest
@testable import WeftAdmin
@testable import WeftControl
@testable import WeftDataplane
@testable import WeftKernel
@testable import WeftModel

/// VXLAN and the uplink's own addresses through the real worker poll on ring
/// ports. Expected frames are built here, with checksums computed by this
/// file's own one's-complement code, and compared byte by byte.
final class VXLANStageTests: XCTestCase {
    let peerMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02]
    let ip4 = IPAddress.parse("10.0.0.1")!, peer4 = IPAddress.parse("10.0.0.2")!
    let ip6 = IPAddress.parse("fd00::1")!, peer6 = IPAddress.parse("fd00::2")!

    var dp: Dataplane!
    var pod: PortID!, pod6: PortID!, up: PortID!
    var upMAC: [UInt8] = []
    var vx4: SideID!, vx6: SideID!

    override func setUpWithError() throws {
        dp = try StageEAL.dataplane()
        pod = try dp.createTestPort(name: "xpod")
        pod6 = try dp.createTestPort(name: "xpod6")
        up = try dp.createTestPort(name: "xup")
        upMAC = try dp.info(up).mac.split(separator: ":").map { UInt8($0, radix: 16)! }
        var u = Dataplane.Underlay()
        u.ipv4 = (ip4, 24)
        u.ipv6 = (ip6, 64)
        u.gateway4 = IPAddress.parse("10.0.0.254")
        u.mtu = 1500
        u.vxlanPorts = [4789, 8472]
        try dp.setUnderlay(up, u)
        try dp.addStaticNeighbour(up, ip: peer4, mac: peerMAC)
        try dp.addStaticNeighbour(up, ip: peer6, mac: peerMAC)
        vx4 = try dp.addVXLAN(uplink: up, vni: 100, remote: peer4, dstPort: 4789, localPort: 4789)
        vx6 = try dp.addVXLAN(uplink: up, vni: 200, remote: peer6, dstPort: 8472, localPort: 8472)
        _ = try dp.addCrossConnect(SideID(pod), vx4)
        _ = try dp.addCrossConnect(SideID(pod6), vx6)
    }

    override func tearDown() { dp.destroy() }

    // MARK: independent packet building

    static func csum(_ b: [UInt8], initial: UInt32 = 0) -> UInt16 {
        var s = initial
        var i = 0
        while i + 1 < b.count { s += UInt32(b[i]) << 8 | UInt32(b[i + 1]); i += 2 }
        if i < b.count { s += UInt32(b[i]) << 8 }
        while s >> 16 != 0 { s = (s & 0xffff) + (s >> 16) }
        return ~UInt16(s)
    }
    func be16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

    func outer4(src: [UInt8], dst: [UInt8], sport: Int, dport: Int, vni: Int, flags: UInt8 = 0x08, inner: [UInt8],
                dstMAC: [UInt8], srcMAC: [UInt8]) -> [UInt8] {
        var ip: [UInt8] = [0x45, 0] + be16(20 + 16 + inner.count) + [0, 0, 0x40, 0, 64, 17, 0, 0] + src + dst
        let c = Self.csum(ip)
        ip[10] = UInt8(c >> 8); ip[11] = UInt8(c & 0xff)
        let udp = be16(sport) + be16(dport) + be16(16 + inner.count) + [0, 0]
        let vx: [UInt8] = [flags, 0, 0, 0, UInt8(vni >> 16 & 0xff), UInt8(vni >> 8 & 0xff), UInt8(vni & 0xff), 0]
        return dstMAC + srcMAC + [0x08, 0x00] + ip + udp + vx + inner
    }

    func outer6(src: [UInt8], dst: [UInt8], sport: Int, dport: Int, vni: Int, inner: [UInt8],
                dstMAC: [UInt8], srcMAC: [UInt8]) -> [UInt8] {
        let len = 16 + inner.count
        let ip: [UInt8] = [0x60, 0, 0, 0] + be16(len) + [17, 64] + src + dst
        let vx: [UInt8] = [0x08, 0, 0, 0, UInt8(vni >> 16 & 0xff), UInt8(vni >> 8 & 0xff), UInt8(vni & 0xff), 0]
        var udp = be16(sport) + be16(dport) + be16(len) + [0, 0]
        let pseudo = src + dst + [0, 0] + be16(len) + [0, 0, 0, 17]
        var c = Self.csum(pseudo + udp + vx + inner)
        if c == 0 { c = 0xffff }
        udp[6] = UInt8(c >> 8); udp[7] = UInt8(c & 0xff)
        return dstMAC + srcMAC + [0x86, 0xdd] + ip + udp + vx + inner
    }

    func drain(_ p: PortID) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let f = try dp.collect(p) { out.append(f) }
        return out
    }

    // MARK: tests

    func testEncapIPv4GoldenFrame() throws {
        let inner = testFrame(src: 1, dst: 2, seq: 1, size: 100)
        try dp.inject(pod, frame: inner)
        dp.pollOnce()
        let out = try XCTUnwrap(drain(up).first)
        let sport = Int(out[34]) << 8 | Int(out[35])
        XCTAssertTrue((49152...65535).contains(sport), "source port \(sport) from the dynamic range")
        XCTAssertEqual(out, outer4(src: ip4, dst: peer4, sport: sport, dport: 4789, vni: 100, inner: inner, dstMAC: peerMAC, srcMAC: upMAC))
        // One flow, one source port.
        try dp.inject(pod, frame: inner)
        dp.pollOnce()
        let again = try XCTUnwrap(drain(up).first)
        XCTAssertEqual(Int(again[34]) << 8 | Int(again[35]), sport)
    }

    func testEncapIPv6GoldenFrameWithUDPChecksum() throws {
        let inner = testFrame(src: 3, dst: 4, seq: 2, size: 333)
        try dp.inject(pod6, frame: inner)
        dp.pollOnce()
        let out = try XCTUnwrap(drain(up).first)
        let sport = Int(out[54]) << 8 | Int(out[55])
        XCTAssertEqual(out, outer6(src: ip6, dst: peer6, sport: sport, dport: 8472, vni: 200, inner: inner, dstMAC: peerMAC, srcMAC: upMAC))
    }

    func testDecapBothFamilies() throws {
        let g = testFrame(src: 9, dst: 1, seq: 3, size: 200)
        try dp.inject(up, frame: outer4(src: peer4, dst: ip4, sport: 50000, dport: 4789, vni: 100, inner: g, dstMAC: upMAC, srcMAC: peerMAC))
        let h = testFrame(src: 9, dst: 3, seq: 4, size: 64)
        try dp.inject(up, frame: outer6(src: peer6, dst: ip6, sport: 50001, dport: 8472, vni: 200, inner: h, dstMAC: upMAC, srcMAC: peerMAC))
        // Ethernet padding after a short datagram is not part of the inner frame.
        try dp.inject(up, frame: outer4(src: peer4, dst: ip4, sport: 50000, dport: 4789, vni: 100, inner: Array(g.prefix(14)), dstMAC: upMAC, srcMAC: peerMAC) + [0, 0, 0, 0])
        dp.pollOnce()
        XCTAssertEqual(try drain(pod), [g, Array(g.prefix(14))])
        XCTAssertEqual(try drain(pod6), [h])
    }

    func testEveryVXLANDropReasonFromACraftedPacket() throws {
        let start = dp.mbufsAvailable
        let g = testFrame(src: 9, dst: 1, seq: 5)
        func v4(_ src: [UInt8] = IPAddress.parse("10.0.0.2")!, vni: Int = 100, dport: Int = 4789, flags: UInt8 = 0x08) -> [UInt8] {
            outer4(src: src, dst: ip4, sport: 50000, dport: dport, vni: vni, flags: flags, inner: g, dstMAC: upMAC, srcMAC: peerMAC)
        }
        var truncated = v4()
        truncated.removeLast(20)                                   // UDP/IP lengths now exceed the frame
        try dp.inject(up, frame: truncated)
        try dp.inject(up, frame: Array(v4().prefix(14 + 20 + 4)))  // cut inside the UDP header
        try dp.inject(up, frame: v4(flags: 0x00))                  // I flag missing
        try dp.inject(up, frame: v4(vni: 999))                     // nobody has VNI 999
        try dp.inject(up, frame: v4(IPAddress.parse("10.0.0.9")!)) // VNI 100 but not from its remote: spoofed
        try dp.inject(up, frame: v4(dport: 53))                    // UDP to the uplink, not VXLAN
        try dp.inject(up, frame: v4())                             // the good one
        XCTAssertEqual(dp.pollOnce(), 7)
        XCTAssertEqual(try drain(pod), [g])
        XCTAssertEqual(dp.counters(up).drops, ["vxlan-truncated": 2, "vxlan-bad-flags": 1, "vxlan-unknown-vni": 1,
                                               "vxlan-unknown-source": 1, "not-for-tunnel": 1])
        XCTAssertEqual(dp.mbufsAvailable, start)
    }

    func testPathMTUExactFitPassesOneByteMoreIsDropped() throws {
        // Underlay MTU 1500: the pod's IPv4 path MTU is 1500 - 54 = 1446, so the
        // largest inner frame is 1446 + 14 = 1460 bytes (NSM's rule).
        try dp.inject(pod, frame: testFrame(src: 1, dst: 2, seq: 1, size: 1460))
        try dp.inject(pod, frame: testFrame(src: 1, dst: 2, seq: 2, size: 1461))
        // IPv6 underlay: 1500 - 74 + 14 = 1440.
        try dp.inject(pod6, frame: testFrame(src: 1, dst: 2, seq: 3, size: 1440))
        try dp.inject(pod6, frame: testFrame(src: 1, dst: 2, seq: 4, size: 1441))
        dp.pollOnce()
        let out = try drain(up)
        XCTAssertEqual(out.map(\.count), [1460 + 50, 1440 + 70])
        XCTAssertEqual(dp.counters(up).drops, ["mtu-exceeded": 2])
    }

    func testARPEchoAndNeighbourResolution() throws {
        let bcast: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        func arp(op: UInt8, sha: [UInt8], sip: [UInt8], tha: [UInt8], tip: [UInt8], dst: [UInt8]) -> [UInt8] {
            dst + sha + [0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op] + sha + sip + tha + tip + [UInt8](repeating: 0, count: 18)
        }
        let hostMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x33], host = IPAddress.parse("10.0.0.3")!
        // Someone asks for our address: we answer from the uplink's MAC.
        try dp.inject(up, frame: arp(op: 1, sha: hostMAC, sip: host, tha: [0, 0, 0, 0, 0, 0], tip: ip4, dst: bcast))
        dp.pollOnce(); try dp.underlayService()
        let reply = try XCTUnwrap(drain(up).first)
        XCTAssertEqual(Array(reply.prefix(42)), Array(arp(op: 2, sha: upMAC, sip: ip4, tha: hostMAC, tip: host, dst: hostMAC).prefix(42)))

        // A tunnel to an unresolved neighbour: the first frame waits (dropped, counted), an ARP request goes out.
        let vx = try dp.addVXLAN(uplink: up, vni: 300, remote: host, dstPort: 4789, localPort: 4789)
        let p3 = try dp.createTestPort(name: "xp3")
        _ = try dp.addCrossConnect(SideID(p3), vx)
        try dp.inject(p3, frame: testFrame(src: 7, dst: 8, seq: 1))
        dp.pollOnce()
        XCTAssertEqual(dp.counters(up).drops["neighbour-unresolved"], 1)
        try dp.underlayService()
        let req = try XCTUnwrap(drain(up).first)
        XCTAssertEqual(Array(req.prefix(42)), Array(arp(op: 1, sha: upMAC, sip: ip4, tha: [0, 0, 0, 0, 0, 0], tip: host, dst: bcast).prefix(42)))
        XCTAssertEqual(dp.neighbours().first { $0.ip == "10.0.0.3" }?.state, "incomplete")
        // The reply resolves it; traffic flows with the learned MAC.
        try dp.inject(up, frame: arp(op: 2, sha: hostMAC, sip: host, tha: upMAC, tip: ip4, dst: upMAC))
        dp.pollOnce(); try dp.underlayService()
        XCTAssertEqual(dp.neighbours().first { $0.ip == "10.0.0.3" }?.state, "reachable")
        try dp.inject(p3, frame: testFrame(src: 7, dst: 8, seq: 2))
        dp.pollOnce()
        XCTAssertEqual(Array(try XCTUnwrap(drain(up).first).prefix(6)), hostMAC)

        // ICMP echo to the uplink address is answered.
        var icmp: [UInt8] = [8, 0, 0, 0, 0x12, 0x34, 0, 1] + Array("weft-echo".utf8)
        let ic = Self.csum(icmp); icmp[2] = UInt8(ic >> 8); icmp[3] = UInt8(ic & 0xff)
        var ip: [UInt8] = [0x45, 0] + be16(20 + icmp.count) + [0, 1, 0, 0, 64, 1, 0, 0] + host + ip4
        let c = Self.csum(ip); ip[10] = UInt8(c >> 8); ip[11] = UInt8(c & 0xff)
        try dp.inject(up, frame: upMAC + hostMAC + [0x08, 0] + ip + icmp)
        dp.pollOnce(); try dp.underlayService()
        let echo = try XCTUnwrap(drain(up).first)
        XCTAssertEqual(Array(echo[0..<12]), hostMAC + upMAC)
        XCTAssertEqual(Array(echo[26..<34]), ip4 + host)
        XCTAssertEqual(echo[34], 0, "echo reply")
        XCTAssertEqual(Self.csum(Array(echo[14..<34])), 0, "valid IPv4 header checksum")
        XCTAssertEqual(Self.csum(Array(echo[34...])), 0, "valid ICMP checksum")
    }

    func testNeighbourSolicitationIsAnsweredAndRouterAdvertisementsGoNowhere() throws {
        let hostMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x66], host = IPAddress.parse("fd00::66")!
        func icmp6(src: [UInt8], dst: [UInt8], dstMAC: [UInt8], body: [UInt8]) -> [UInt8] {
            var b = body
            let pseudo = src + dst + [0, 0] + be16(b.count) + [0, 0, 0, 58]
            let c = Self.csum(pseudo + b); b[2] = UInt8(c >> 8); b[3] = UInt8(c & 0xff)
            return dstMAC + hostMAC + [0x86, 0xdd, 0x60, 0, 0, 0] + be16(b.count) + [58, 255] + src + dst + b
        }
        let sn = IPAddress.parse("ff02::1:ff00:1")!
        let ns = icmp6(src: host, dst: sn, dstMAC: [0x33, 0x33, 0xff, 0, 0, 1],
                       body: [135, 0, 0, 0, 0, 0, 0, 0] + ip6 + [1, 1] + hostMAC)
        try dp.inject(up, frame: ns)
        // A router advertisement to all nodes: consumed, never forwarded.
        let ra = icmp6(src: IPAddress.parse("fe80::1")!, dst: IPAddress.parse("ff02::1")!, dstMAC: [0x33, 0x33, 0, 0, 0, 1],
                       body: [134, 0, 0, 0, 64, 0, 0, 0] + [UInt8](repeating: 0, count: 8))
        try dp.inject(up, frame: ra)
        dp.pollOnce(); try dp.underlayService()
        let out = try drain(up)
        XCTAssertEqual(out.count, 1, "one neighbour advertisement, nothing for the RA")
        let na = try XCTUnwrap(out.first)
        XCTAssertEqual(Array(na[0..<12]), hostMAC + upMAC)
        XCTAssertEqual(na[20], 58); XCTAssertEqual(na[21], 255)
        XCTAssertEqual(Array(na[22..<38]), ip6); XCTAssertEqual(Array(na[38..<54]), host)
        XCTAssertEqual(na[54], 136)
        XCTAssertEqual(na[58], 0x60, "solicited + override")
        XCTAssertEqual(Array(na[62..<78]), ip6, "target")
        XCTAssertEqual(Array(na[78..<86]), [2, 1] + upMAC, "target link-layer address option")
        let pseudo = ip6 + host + [0, 0] + be16(na.count - 54) + [0, 0, 0, 58]
        XCTAssertEqual(Self.csum(pseudo + Array(na[54...])), 0, "valid ICMPv6 checksum")
        XCTAssertTrue(try drain(pod).isEmpty && drain(pod6).isEmpty)
    }

    func testVXLANToVLANAndTunnelRules() throws {
        // VXLAN <-> VLAN on the same uplink: decap, then push the tag (and back).
        let v7 = try dp.addVLAN(uplink: up, id: 7)
        let vx = try dp.addVXLAN(uplink: up, vni: 700, remote: peer4, dstPort: 4789, localPort: 4789)
        _ = try dp.addCrossConnect(vx, v7)
        let g = testFrame(src: 1, dst: 2, seq: 9, size: 80)
        try dp.inject(up, frame: outer4(src: peer4, dst: ip4, sport: 50000, dport: 4789, vni: 700, inner: g, dstMAC: upMAC, srcMAC: peerMAC))
        dp.pollOnce()
        let tagged = Array(g[0..<12]) + [0x81, 0, 0, 7] + Array(g[12...])
        XCTAssertEqual(try drain(up), [tagged])
        try dp.inject(up, frame: tagged)
        dp.pollOnce()
        let out = try XCTUnwrap(drain(up).first)
        XCTAssertEqual(Array(out[50...]), g, "the untagged inner frame rides VNI 700")
        XCTAssertEqual(Array(out[46..<49]), [0, 2, 0xbc])

        // The core's own checks.
        XCTAssertThrowsError(try dp.addVXLAN(uplink: up, vni: 700, remote: peer4, dstPort: 4789, localPort: 4789)) {
            XCTAssertEqual(($0 as? DataplaneError)?.errno, EEXIST)
        }
        XCTAssertThrowsError(try dp.addVXLAN(uplink: up, vni: 701, remote: peer4, dstPort: 4789, localPort: 9999)) {
            XCTAssertEqual(($0 as? DataplaneError)?.errno, EINVAL)
        }
        // Off-link remotes go through the gateway, which is then the neighbour to resolve...
        XCTAssertNoThrow(try dp.addVXLAN(uplink: up, vni: 702, remote: IPAddress.parse("192.168.7.7")!, dstPort: 4789, localPort: 4789))
        XCTAssertNotNil(dp.neighbours().first { $0.ip == "10.0.0.254" })
        // ...and with no IPv6 gateway an off-link IPv6 remote is unreachable.
        XCTAssertThrowsError(try dp.addVXLAN(uplink: up, vni: 703, remote: IPAddress.parse("fd99::1")!, dstPort: 4789, localPort: 4789)) {
            XCTAssertEqual(($0 as? DataplaneError)?.errno, ENETUNREACH)
        }
    }
}

/// What an operator reads off the counters of a VXLAN-only uplink and its
/// connections: reasons that say what happened, one convention for bytes.
final class UplinkCounterTests: XCTestCase {
    func testCountersOfAVXLANOnlyUplink() throws {
        let dp = try StageEAL.dataplane()
        defer { dp.destroy() }
        let pod = try dp.createTestPort(name: "cpod"), up = try dp.createTestPort(name: "cup")
        let ip4 = IPAddress.parse("10.1.0.1")!, peer = IPAddress.parse("10.1.0.2")!
        let peerMAC: [UInt8] = [2, 0, 0, 0, 0, 2]
        var u = Dataplane.Underlay()
        u.ipv4 = (ip4, 24)
        try dp.setUnderlay(up, u)
        try dp.addStaticNeighbour(up, ip: peer, mac: peerMAC)
        let vx = try dp.addVXLAN(uplink: up, vni: 7, remote: peer, dstPort: 4789, localPort: 4789)
        let slot = try dp.addCrossConnect(SideID(pod), vx)

        // The peer's MLD report: for no address of the uplink, on an uplink without VLANs.
        let mld: [UInt8] = [0x33, 0x33, 0, 0, 0, 0x16] + peerMAC + [0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 0, 1]
            + [0xfe, 0x80] + [UInt8](repeating: 0, count: 13) + [2] + [0xff, 0x02] + [UInt8](repeating: 0, count: 13) + [0x16]
            + [0x3a, 0, 5, 2, 0, 0, 1, 0] + [UInt8](repeating: 0, count: 20)
        try dp.inject(up, frame: mld)
        dp.pollOnce()
        let drops = dp.counters(up).drops
        XCTAssertEqual(drops["not-for-uplink"], 1, "\(drops)")
        XCTAssertNil(drops["unknown-vlan"], "no VLAN here to be unknown: \(drops)")

        // Bytes: the connection counts its frames as they are, both ways; the
        // uplink's port counts what it sends (with the 50 bytes of VXLAN headers).
        let inner = testFrame(src: 1, dst: 2, seq: 1, size: 100)
        try dp.inject(pod, frame: inner)
        dp.pollOnce()
        let out = try XCTUnwrap(try dp.collect(up))
        XCTAssertEqual(out.count, 150)
        var back = out
        back.replaceSubrange(26..<30, with: peer); back.replaceSubrange(30..<34, with: ip4) // from the peer
        back.replaceSubrange(0..<6, with: try dp.info(up).mac.split(separator: ":").map { UInt8($0, radix: 16)! })
        back.replaceSubrange(6..<12, with: peerMAC)
        back[24] = 0; back[25] = 0 // the IPv4 checksum is not checked on decap
        try dp.inject(up, frame: back)
        dp.pollOnce()
        XCTAssertEqual(try dp.collect(pod), inner)
        let c = dp.counters(slot)
        XCTAssertEqual(c.aToB.bytes, 100, "pod -> tunnel: the frame, not the VXLAN packet")
        XCTAssertEqual(c.bToA.bytes, 100, "tunnel -> pod: the frame")
        XCTAssertEqual(dp.counters(up).txBytes, 150, "the uplink's port: what crossed the wire")
    }
}
