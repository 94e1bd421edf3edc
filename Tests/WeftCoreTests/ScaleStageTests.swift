import XCTest
@testable import WeftAdmin
@testable import WeftControl
@testable import WeftDataplane
@testable import WeftKernel
@testable import WeftModel

/// Many connections: bursts that mix connections, batched changes (one table
/// publish for many additions, removals held back until it), tunnel indices
/// past 16 bits, and the control side's VXLAN key index. Real worker poll on
/// ring ports; VXLAN frames built as in VXLANStageTests.
final class ScaleStageTests: XCTestCase {
    let peerMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02]
    let ip4 = IPAddress.parse("10.0.0.1")!, peer4 = IPAddress.parse("10.0.0.2")!

    var dp: Dataplane!
    var pod: PortID!, up: PortID!, trunk: PortID!
    var upMAC: [UInt8] = []

    func setUp(maxCrossConnects: UInt32) throws {
        dp = try StageEAL.dataplane(maxCrossConnects: maxCrossConnects)
        pod = try dp.createTestPort(name: "spod")
        up = try dp.createTestPort(name: "sup")
        trunk = try dp.createTestPort(name: "strunk")
        upMAC = try dp.info(up).mac.split(separator: ":").map { UInt8($0, radix: 16)! }
        var u = Dataplane.Underlay()
        u.ipv4 = (ip4, 24)
        u.mtu = 1500
        u.vxlanPorts = [4789]
        try dp.setUnderlay(up, u)
        try dp.addStaticNeighbour(up, ip: peer4, mac: peerMAC)
    }

    override func tearDown() { dp?.destroy() }

    func vxlan(vni: Int, inner: [UInt8]) -> [UInt8] {
        func be16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        var ip: [UInt8] = [0x45, 0] + be16(20 + 16 + inner.count) + [0, 0, 0x40, 0, 64, 17, 0, 0] + peer4 + ip4
        let c = VXLANStageTests.csum(ip)
        ip[10] = UInt8(c >> 8); ip[11] = UInt8(c & 0xff)
        let udp = be16(50000) + be16(4789) + be16(16 + inner.count) + [0, 0]
        let vx: [UInt8] = [0x08, 0, 0, 0, UInt8(vni >> 16 & 0xff), UInt8(vni >> 8 & 0xff), UInt8(vni & 0xff), 0]
        return upMAC + peerMAC + [0x08, 0x00] + ip + udp + vx + inner
    }

    func drain(_ p: PortID) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let f = try dp.collect(p) { out.append(f) }
        return out
    }

    /// VXLAN VNI 1000+i on `up` cross-connected to VLAN 100+i on `trunk`, i < n.
    func tunnelToVLAN(_ n: Int) throws -> [XCSlot] {
        try (0..<n).map { i in
            let vx = try dp.addVXLAN(uplink: up, vni: UInt32(1000 + i), remote: peer4, dstPort: 4789, localPort: 4789)
            let vl = try dp.addVLAN(uplink: trunk, id: UInt16(100 + i))
            return try dp.addCrossConnect(vx, vl)
        }
    }

    /// A burst of 32 frames over 16 connections (more than the per-connection
    /// batches): every frame leaves with its own connection's tag, in order,
    /// and each connection counts its own frames and bytes.
    func testBurstMixingManyConnections() throws {
        try setUp(maxCrossConnects: 64)
        let xcs = try tunnelToVLAN(16)
        let start = dp.mbufsAvailable
        var inner: [[UInt8]] = []
        for k in 0..<32 {
            let g = testFrame(src: UInt8(k), dst: 2, seq: UInt16(k), size: 64 + k)
            inner.append(g)
            try dp.inject(up, frame: vxlan(vni: 1000 + k % 16, inner: g))
        }
        XCTAssertEqual(dp.pollOnce(), 32)
        let out = try drain(trunk)
        XCTAssertEqual(out.count, 32)
        for (k, f) in out.enumerated() {
            let g = inner[k]
            let tagged = Array(g[0..<12]) + [0x81, 0x00, 0x00, UInt8(100 + k % 16)] + Array(g[12...])
            XCTAssertEqual(f, tagged, "frame \(k)")
        }
        for (i, x) in xcs.enumerated() {
            let c = dp.counters(x)
            // a = the VXLAN side, b = the VLAN side: a -> b carries frames i and i + 16.
            XCTAssertEqual(c.aToB.packets, 2, "connection \(i)")
            XCTAssertEqual(c.aToB.bytes, UInt64(inner[i].count + inner[i + 16].count), "connection \(i): inner bytes")
            XCTAssertEqual(c.aToB.drops, 0)
        }
        XCTAssertEqual(dp.counters(trunk).txPackets, 32)
        XCTAssertEqual(dp.counters(trunk).txBytes, UInt64(inner.reduce(0) { $0 + $1.count + 4 }), "the port counts what it sent, tags included")
        XCTAssertEqual(dp.mbufsAvailable, start)
    }

    /// Mixed bursts into a full TX ring: what the ring refuses is freed,
    /// counted tx-full on the port and as drops on each frame's connection;
    /// sent + dropped = offered, per connection and in total.
    func testMixedBurstTXFullIsCountedPerConnection() throws {
        try setUp(maxCrossConnects: 64)
        let xcs = try tunnelToVLAN(12)
        let start = dp.mbufsAvailable
        let bursts = 40 // 1,280 frames into a 1,023-frame ring nobody drains
        for b in 0..<bursts {
            for k in 0..<32 {
                try dp.inject(up, frame: vxlan(vni: 1000 + (b * 32 + k) % 12, inner: testFrame(src: 1, dst: 2, seq: UInt16(k))))
            }
            XCTAssertEqual(dp.pollOnce(), 32)
        }
        let sent = try drain(trunk).count
        let port = dp.counters(trunk)
        XCTAssertEqual(sent, 1023)
        XCTAssertEqual(port.txPackets, 1023)
        XCTAssertEqual(port.drops["tx-full"], UInt64(bursts * 32 - 1023))
        var total: UInt64 = 0
        for (i, x) in xcs.enumerated() {
            let c = dp.counters(x).aToB
            let offered = (0..<(bursts * 32)).filter { $0 % 12 == i }.count
            XCTAssertEqual(c.packets + c.drops, UInt64(offered), "connection \(i)")
            total += c.packets
        }
        XCTAssertEqual(total, 1023)
        XCTAssertEqual(dp.mbufsAvailable, start)
    }

    /// While held, additions do not reach the workers; at release they all do.
    /// Removals while held keep the old path until the release, and their slot
    /// is not handed out again before it.
    func testHeldChangesReachWorkersTogether() throws {
        try setUp(maxCrossConnects: 8)
        let vx = try dp.addVXLAN(uplink: up, vni: 7, remote: peer4, dstPort: 4789, localPort: 4789)
        let g = testFrame(src: 1, dst: 2, seq: 1)

        dp.hold()
        let x = try dp.addCrossConnect(SideID(pod), vx)
        try dp.inject(up, frame: vxlan(vni: 7, inner: g))
        dp.pollOnce()
        XCTAssertEqual(try drain(pod), [], "published before release")
        XCTAssertEqual(dp.counters(up).drops["not-for-tunnel"], 1, "a tunnel with no cross-connect yet")
        try dp.release()
        try dp.inject(up, frame: vxlan(vni: 7, inner: g))
        dp.pollOnce()
        XCTAssertEqual(try drain(pod), [g])

        dp.hold()
        try dp.deleteCrossConnect(x)
        try dp.inject(up, frame: vxlan(vni: 7, inner: g))
        dp.pollOnce()
        XCTAssertEqual(try drain(pod), [g], "the old table is in use until release")
        // The freed slot is not reused while the published table still counts into it.
        let trunkSide = try dp.addVLAN(uplink: trunk, id: 5)
        let y = try dp.addCrossConnect(SideID(pod), trunkSide)
        XCTAssertNotEqual(y, x)
        XCTAssertEqual(dp.counters(x).bToA.packets, 2, "VXLAN side (b) to the pod (a)")
        try dp.release()
        try dp.inject(up, frame: vxlan(vni: 7, inner: g))
        try dp.inject(pod, frame: g)
        dp.pollOnce()
        XCTAssertEqual(try drain(pod), [])
        XCTAssertEqual(try drain(trunk).count, 1, "the addition made while held is live")
        XCTAssertEqual(dp.counters(up).drops["not-for-tunnel"], 2)
    }

    /// More than 65,536 tunnels: a side's tunnel index must not run into the
    /// bit that marks it as a tunnel. Added while held (one publish).
    func testTunnelIndicesBeyondSixteenBits() throws {
        let n = 66_000
        try setUp(maxCrossConnects: UInt32(n + 8))
        dp.hold()
        var last: SideID!
        for i in 0..<n {
            last = try dp.addVXLAN(uplink: up, vni: UInt32(10_000 + i), remote: peer4, dstPort: 4789, localPort: 4789)
        }
        let x = try dp.addCrossConnect(SideID(pod), last)
        try dp.release()
        XCTAssertTrue(last.isTunnel)
        XCTAssertGreaterThanOrEqual(last.raw & 0x7fff_ffff, 65_536, "tunnel index")
        let g = testFrame(src: 1, dst: 2, seq: 9)
        try dp.inject(up, frame: vxlan(vni: 10_000 + n - 1, inner: g))
        try dp.inject(up, frame: vxlan(vni: 10_000, inner: g)) // a tunnel with no cross-connect
        dp.pollOnce()
        XCTAssertEqual(try drain(pod), [g])
        try dp.inject(pod, frame: g)
        dp.pollOnce()
        let out = try XCTUnwrap(drain(up).first)
        XCTAssertEqual(Int(out[46]) << 16 | Int(out[47]) << 8 | Int(out[48]), 10_000 + n - 1, "VNI of the encapsulation")
        XCTAssertEqual(dp.counters(x).aToB.packets, 1)
        XCTAssertEqual(dp.counters(x).bToA.packets, 1)
    }

    /// Underlay next hops are bounded (WF_MAX_NEIGHBOURS): the one past the
    /// bound is refused with a clear error, whether a static entry or a
    /// tunnel's remote; what is there keeps working, and a tunnel to a next hop
    /// already known costs no entry.
    func testNeighbourTableIsBoundedWithAClearError() throws {
        try setUp(maxCrossConnects: 64)
        let limit = Dataplane.maxNeighbours
        XCTAssertEqual(dp.neighbours().count, 1) // peer4, static
        for i in 1..<limit {
            try dp.addStaticNeighbour(up, ip: [10, 200, UInt8(i >> 8), UInt8(i & 0xff)], mac: [2, 0, 0, 0, UInt8(i >> 8), UInt8(i & 0xff)])
        }
        XCTAssertEqual(dp.neighbours().count, limit)
        XCTAssertThrowsError(try dp.addStaticNeighbour(up, ip: [10, 201, 0, 1], mac: [2, 0, 0, 0, 0, 1])) { e in
            XCTAssertTrue("\(e)".contains("neighbour table full (\(limit) entries)"), "\(e)")
        }
        XCTAssertThrowsError(try dp.addVXLAN(uplink: up, vni: 7, remote: [ip4[0], ip4[1], ip4[2], 99], dstPort: 4789, localPort: 4789)) { e in
            XCTAssertTrue("\(e)".contains("neighbour table full"), "\(e)")
        }
        XCTAssertEqual(dp.neighbours().count, limit, "nothing half-added")
        // A tunnel to a known next hop still works, end to end.
        let t = try dp.addVXLAN(uplink: up, vni: 8, remote: peer4, dstPort: 4789, localPort: 4789)
        let x = try dp.addCrossConnect(SideID(pod), t)
        let g = testFrame(src: 1, dst: 2, seq: 1)
        try dp.inject(pod, frame: g)
        dp.pollOnce()
        XCTAssertEqual(try drain(up).count, 1)
        XCTAssertEqual(dp.counters(x).aToB.packets, 1)
    }

    /// The control side finds duplicates through an index: after removals
    /// (entries shifted back in their probe chains) every remaining key is
    /// still found and every removed one can be added again.
    func testVXLANKeyIndexSurvivesRemovals() throws {
        try setUp(maxCrossConnects: 1024)
        dp.hold()
        var sides: [Int: SideID] = [:]
        for v in 0..<600 {
            sides[v] = try dp.addVXLAN(uplink: up, vni: UInt32(v), remote: peer4, dstPort: 4789, localPort: 4789)
        }
        for v in stride(from: 0, to: 600, by: 3) {
            try dp.deleteTunnel(sides[v]!)
            sides[v] = nil
        }
        try dp.release()
        for v in 0..<600 {
            if sides[v] != nil {
                XCTAssertThrowsError(try dp.addVXLAN(uplink: up, vni: UInt32(v), remote: peer4, dstPort: 4789, localPort: 4789),
                                     "VNI \(v) is still a tunnel") { e in
                    XCTAssertEqual((e as? DataplaneError)?.errno, EEXIST)
                }
            } else {
                sides[v] = try dp.addVXLAN(uplink: up, vni: UInt32(v), remote: peer4, dstPort: 4789, localPort: 4789)
            }
        }
        // The same VNI from another remote is a different tunnel.
        _ = try dp.addVXLAN(uplink: up, vni: 1, remote: IPAddress.parse("10.0.0.3")!, dstPort: 4789, localPort: 4789)
        // Every tunnel decapsulates: cross-connect a sample to the pod one at a time.
        for v in [0, 1, 299, 300, 599] {
            let x = try dp.addCrossConnect(SideID(pod), sides[v]!)
            let g = testFrame(src: 3, dst: 4, seq: UInt16(v))
            try dp.inject(up, frame: vxlan(vni: v, inner: g))
            dp.pollOnce()
            XCTAssertEqual(try drain(pod), [g], "VNI \(v)")
            try dp.deleteCrossConnect(x)
        }
    }

    /// An uplink removed in the same held change as its tunnels takes its
    /// static neighbours with it (the tunnels still counted as their users
    /// until a publish), so a later underlay on that port does not inherit one.
    func testUnderlayClearedWhileHeldTakesItsStaticNeighbours() throws {
        try setUp(maxCrossConnects: 16)
        let t = try dp.addVXLAN(uplink: up, vni: 5, remote: peer4, dstPort: 4789, localPort: 4789)
        XCTAssertEqual(dp.neighbours().filter { $0.port == up.raw }.count, 1)
        dp.hold()
        try dp.deleteTunnel(t)
        try dp.clearUnderlay(up)
        try dp.release()
        XCTAssertEqual(dp.neighbours().filter { $0.port == up.raw }, [], "static neighbour left behind")
        var u = Dataplane.Underlay()
        u.ipv4 = (ip4, 24)
        u.vxlanPorts = [4789]
        try dp.setUnderlay(up, u)
        _ = try dp.addVXLAN(uplink: up, vni: 5, remote: peer4, dstPort: 4789, localPort: 4789)
        let n = try XCTUnwrap(dp.neighbours().first { $0.port == up.raw })
        XCTAssertNotEqual(n.state, "static", "the old static MAC came back")
    }
}
