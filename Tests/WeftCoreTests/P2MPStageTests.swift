import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// Replication groups and bridge domains through the real worker poll.
final class P2MPStageTests: XCTestCase {
    var dp: Dataplane!
    override func setUpWithError() throws { dp = try StageEAL.dataplane(maxCrossConnects: 256) }
    override func tearDown() { dp.destroy() }

    func drain(_ p: PortID) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let f = try dp.collect(p) { out.append(f) }
        return out
    }

    func frame(dst: [UInt8], src: [UInt8], seq: UInt16, size: Int = 64) -> [UInt8] {
        var f = testFrame(src: 0, dst: 0, seq: seq, size: size)
        f.replaceSubrange(0..<6, with: dst)
        f.replaceSubrange(6..<12, with: src)
        return f
    }

    func mac(_ b: UInt8) -> [UInt8] { [0x02, 0, 0, 0, 0, b] }
    let bcast: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]

    func testEveryMemberGetsExactlyOneCopyClonesAndCopiesAndTheReturnPath() throws {
        let ing = try dp.createTestPort(name: "ring")
        let ms = try (0..<3).map { try dp.createTestPort(name: "rm\($0)") }
        let trunk = try dp.createTestPort(name: "rtr")
        let v9 = try dp.addVLAN(uplink: trunk, id: 9)
        let (_, slots) = try dp.addReplication(ingress: SideID(ing), members: ms.map(SideID.init) + [v9], cloneMinBytes: 256)
        let start = dp.mbufsAvailable

        // Small frames are copied, large ones cloned; every member sees each frame once, unchanged.
        let frames = (0..<20).map { testFrame(src: 1, dst: 2, seq: UInt16($0), size: $0 % 2 == 0 ? 64 : 1000) }
        for f in frames { try dp.inject(ing, frame: f) }
        dp.pollOnce()
        for m in ms { XCTAssertEqual(try drain(m), frames) }
        XCTAssertEqual(try drain(trunk), frames.map { Array($0[0..<12]) + [0x81, 0, 0, 9] + Array($0[12...]) })
        for s in slots { XCTAssertEqual(dp.counters(s).aToB.packets, 20) }
        XCTAssertEqual(dp.mbufsAvailable, start, "copies and clones all returned")

        // A member's frames go back to the ingress only.
        let r = testFrame(src: 2, dst: 1, seq: 99)
        try dp.inject(ms[1], frame: r)
        dp.pollOnce()
        XCTAssertEqual(try drain(ing), [r])
        XCTAssertEqual(try drain(ms[0]) + drain(ms[2]), [])
        XCTAssertEqual(dp.counters(slots[1]).bToA.packets, 1)
    }

    func testTXFullOnOneMemberCostsOnlyThatMember() throws {
        let ing = try dp.createTestPort(name: "fing")
        let ms = try (0..<3).map { try dp.createTestPort(name: "fm\($0)") }
        let (_, slots) = try dp.addReplication(ingress: SideID(ing), members: ms.map(SideID.init))
        // Member 1 is never drained: its 1024-slot TX ring fills and then refuses.
        var sent = 0
        for round in 0..<50 {
            sent += dp.injectMany(ing, frame: testFrame(src: 1, dst: 2, seq: UInt16(round), size: 128), count: 32)
            dp.pollOnce()
            dp.discard(ms[0]); dp.discard(ms[2])
        }
        XCTAssertEqual(sent, 1600)
        XCTAssertEqual(dp.counters(slots[0]).aToB, .init(packets: 1600, bytes: 1600 * 128, drops: 0))
        XCTAssertEqual(dp.counters(slots[2]).aToB, .init(packets: 1600, bytes: 1600 * 128, drops: 0))
        let full = dp.counters(slots[1]).aToB
        XCTAssertEqual(full.packets + full.drops, 1600)
        XCTAssertGreaterThan(full.drops, 0)
        XCTAssertEqual(dp.counters(ms[1]).drops["tx-full"], full.drops)
        dp.discard(ms[1])
    }

    func testNoMbufLeakOverAMillionReplicatedFrames() throws {
        let ing = try dp.createTestPort(name: "ling")
        let ms = try (0..<3).map { try dp.createTestPort(name: "lm\($0)") }
        let (_, slots) = try dp.addReplication(ingress: SideID(ing), members: ms.map(SideID.init), cloneMinBytes: 256)
        let start = dp.mbufsAvailable
        let small = testFrame(src: 1, dst: 2, seq: 1, size: 64), big = testFrame(src: 1, dst: 2, seq: 2, size: 1024)
        var total = 0
        while total < 1_000_000 {
            total += dp.injectMany(ing, frame: total % 2 == 0 ? small : big, count: 256)
            while dp.pollOnce() > 0 {}
            for m in ms { dp.discard(m) }
        }
        XCTAssertEqual(dp.counters(slots[0]).aToB.packets, UInt64(total))
        XCTAssertEqual(dp.mbufsAvailable, start, "pool count back to its start after \(total) frames")
    }

    func testBridgeFloodsLearnsMovesAgesAndLimits() throws {
        let ps = try (0..<3).map { try dp.createTestPort(name: "b\($0)") }
        var st = Dataplane.BridgeSettings()
        st.macLimit = 3
        st.ageMs = 300
        st.statics = [(mac(0x55), 1)]
        let (id, slots) = try dp.addBridge(members: ps.map { (SideID($0), UInt16(0)) }, settings: st)

        // Broadcast from A: flooded to B and C, never back to A; A's MAC learned.
        let f1 = frame(dst: bcast, src: mac(0xa), seq: 1)
        try dp.inject(ps[0], frame: f1)
        dp.pollOnce()
        XCTAssertEqual(try drain(ps[1]), [f1]); XCTAssertEqual(try drain(ps[2]), [f1]); XCTAssertEqual(try drain(ps[0]), [])
        // Unicast to A from B: only A.
        let f2 = frame(dst: mac(0xa), src: mac(0xb), seq: 2)
        try dp.inject(ps[1], frame: f2)
        dp.pollOnce()
        XCTAssertEqual(try drain(ps[0]), [f2]); XCTAssertEqual(try drain(ps[2]), [])
        // Unknown unicast from C: flooded to A and B.
        let f3 = frame(dst: mac(0xee), src: mac(0xc), seq: 3)
        try dp.inject(ps[2], frame: f3)
        dp.pollOnce()
        XCTAssertEqual(try drain(ps[0]), [f3]); XCTAssertEqual(try drain(ps[1]), [f3])
        // Static MAC 55 lives on B, whatever the sources say.
        let f4 = frame(dst: mac(0x55), src: mac(0xa), seq: 4)
        try dp.inject(ps[0], frame: f4)
        try dp.inject(ps[2], frame: frame(dst: bcast, src: mac(0x55), seq: 5))
        dp.pollOnce()
        XCTAssertEqual(try drain(ps[1]).first, f4)
        _ = try drain(ps[0]); _ = try drain(ps[1])
        XCTAssertEqual(Set(dp.bridgeMACs(id).map { "\($0.mac)@\($0.member)\($0.isStatic ? "s" : "")" }),
                       ["02:00:00:00:00:55@1s", "02:00:00:00:00:0a@0", "02:00:00:00:00:0b@1", "02:00:00:00:00:0c@2"])

        // The limit (3 learned): a fourth new MAC is dropped and counted.
        let f6 = frame(dst: mac(0xa), src: mac(0xd), seq: 6)
        try dp.inject(ps[2], frame: f6)
        dp.pollOnce()
        XCTAssertEqual(try drain(ps[0]), [])
        XCTAssertEqual(dp.counters(slots[2]).bToA.drops, 1)
        XCTAssertEqual(dp.bridgeStats(id).limitDrops, 1)

        // A move: A's MAC now speaks from C; traffic to it follows.
        try dp.inject(ps[2], frame: frame(dst: mac(0xb), src: mac(0xa), seq: 7))
        dp.pollOnce(); _ = try drain(ps[1])
        let f8 = frame(dst: mac(0xa), src: mac(0xb), seq: 8)
        try dp.inject(ps[1], frame: f8)
        dp.pollOnce()
        XCTAssertEqual(try drain(ps[2]), [f8]); XCTAssertEqual(try drain(ps[0]), [])
        XCTAssertEqual(dp.bridgeStats(id).moves, 1)

        // Aging: after 300 ms unseen, A's MAC is unknown again and traffic to it floods.
        usleep(400_000)
        let f9 = frame(dst: mac(0xa), src: mac(0x55), seq: 9)
        try dp.inject(ps[1], frame: f9)
        dp.pollOnce()
        XCTAssertEqual(try drain(ps[0]), [f9]); XCTAssertEqual(try drain(ps[2]), [f9])
        XCTAssertEqual(dp.bridgeMACs(id).filter { !$0.isStatic }, [], "everything learned has aged out")
    }

    func testSplitHorizonAndMembershipRules() throws {
        let a = try dp.createTestPort(name: "sa"), t1 = try dp.createTestPort(name: "st1"), t2 = try dp.createTestPort(name: "st2")
        let (_, slots) = try dp.addBridge(members: [(SideID(a), 0), (SideID(t1), 1), (SideID(t2), 1)], settings: .init())
        // Flood from a tunnel member reaches the local member, not the other tunnel of its group.
        let f = frame(dst: bcast, src: mac(1), seq: 1)
        try dp.inject(t1, frame: f)
        dp.pollOnce()
        XCTAssertEqual(try drain(a), [f]); XCTAssertEqual(try drain(t2), [])
        // Unicast between members of one group is filtered.
        try dp.inject(t2, frame: frame(dst: bcast, src: mac(2), seq: 2))
        dp.pollOnce(); _ = try drain(a)
        try dp.inject(t1, frame: frame(dst: mac(2), src: mac(1), seq: 3))
        dp.pollOnce()
        XCTAssertEqual(try drain(t2), [])
        XCTAssertEqual(dp.counters(slots[1]).bToA.drops, 1)

        // Rules the core enforces: a side in two connections, one-member domains, an ingress among its members.
        let x = try dp.createTestPort(name: "sx"), y = try dp.createTestPort(name: "sy")
        XCTAssertThrowsError(try dp.addReplication(ingress: SideID(x), members: [SideID(a)])) { XCTAssertEqual(($0 as? DataplaneError)?.errno, EBUSY) }
        XCTAssertThrowsError(try dp.addBridge(members: [(SideID(x), 0)], settings: .init())) { XCTAssertEqual(($0 as? DataplaneError)?.errno, EINVAL) }
        XCTAssertThrowsError(try dp.addReplication(ingress: SideID(x), members: [SideID(y), SideID(x)])) { XCTAssertEqual(($0 as? DataplaneError)?.errno, EINVAL) }
        XCTAssertThrowsError(try dp.addCrossConnect(a, x)) { XCTAssertEqual(($0 as? DataplaneError)?.errno, EBUSY) }
    }

    func testMembershipChangesAreHitlessForTheOthers() throws {
        let ing = try dp.createTestPort(name: "hing")
        let ms = try (0..<4).map { try dp.createTestPort(name: "hm\($0)") }
        let (id, _) = try dp.addReplication(ingress: SideID(ing), members: [SideID(ms[0]), SideID(ms[1])])
        var expected0 = 0
        for round in 0..<200 {
            // Frames in flight while the membership changes every round.
            expected0 += dp.injectMany(ing, frame: testFrame(src: 1, dst: 2, seq: UInt16(round)), count: 8)
            let extra = round % 2 == 0 ? [SideID(ms[2])] : [SideID(ms[3])]
            _ = try dp.updateP2MP(id, members: [(SideID(ms[0]), 0), (SideID(ms[1]), 0)] + extra.map { ($0, UInt16(0)) })
            dp.pollOnce()
            XCTAssertEqual(dp.discard(ms[0]), 8)
            XCTAssertEqual(dp.discard(ms[1]), 8)
            dp.discard(ms[2]); dp.discard(ms[3])
        }
        XCTAssertEqual(expected0, 1600)
        // Removing members keeps the rest; a member that left gets nothing.
        _ = try dp.updateP2MP(id, members: [(SideID(ms[1]), 0)])
        try dp.inject(ing, frame: testFrame(src: 1, dst: 2, seq: 1))
        dp.pollOnce()
        XCTAssertEqual(dp.discard(ms[1]), 1)
        XCTAssertEqual(dp.discard(ms[0]) + dp.discard(ms[2]) + dp.discard(ms[3]), 0)
        // The freed sides can join other connections.
        _ = try dp.addCrossConnect(ms[0], ms[2])
    }

    func testTunnelMembersGetTheirOwnHeaders() throws {
        let pod = try dp.createTestPort(name: "tpod"), pod2 = try dp.createTestPort(name: "tpod2")
        let trunk = try dp.createTestPort(name: "ttrunk")
        var u = Dataplane.Underlay()
        u.ipv4 = (IPAddress.parse("10.0.0.1")!, 24)
        try dp.setUnderlay(trunk, u)
        let peerMAC: [UInt8] = [2, 0, 0, 0, 0, 0x77]
        try dp.addStaticNeighbour(trunk, ip: IPAddress.parse("10.0.0.2")!, mac: peerMAC)
        let v5 = try dp.addVLAN(uplink: trunk, id: 5)
        let vx = try dp.addVXLAN(uplink: trunk, vni: 55, remote: IPAddress.parse("10.0.0.2")!, dstPort: 4789, localPort: 4789)
        let (id, _) = try dp.addBridge(members: [(SideID(pod), 0), (SideID(pod2), 0), (v5, 1), (vx, 1)], settings: .init())
        let start = dp.mbufsAvailable
        // A large broadcast: plain pod2 gets a clone, the tunnels get copies with their headers.
        let f = frame(dst: bcast, src: mac(1), seq: 1, size: 1000)
        try dp.inject(pod, frame: f)
        dp.pollOnce()
        XCTAssertEqual(try drain(pod2), [f])
        let out = try drain(trunk)
        XCTAssertEqual(out.count, 2)
        XCTAssertTrue(out.contains(Array(f[0..<12]) + [0x81, 0, 0, 5] + Array(f[12...])), "VLAN copy")
        let vxOut = try XCTUnwrap(out.first { $0.count == f.count + 50 })
        XCTAssertEqual(Array(vxOut[0..<6]), peerMAC)
        XCTAssertEqual(Array(vxOut[50...]), f, "the VXLAN copy carries the frame unchanged")
        XCTAssertEqual(dp.mbufsAvailable, start)
        // Split horizon between the two tunnels: a flood from VLAN 5 reaches the pods, not VXLAN.
        let g = frame(dst: bcast, src: mac(2), seq: 2)
        try dp.inject(trunk, frame: Array(g[0..<12]) + [0x81, 0, 0, 5] + Array(g[12...]))
        dp.pollOnce()
        XCTAssertEqual(try drain(pod), [g]); XCTAssertEqual(try drain(pod2), [g]); XCTAssertEqual(try drain(trunk), [])
        XCTAssertEqual(dp.bridgeMACs(id).count, 2)
    }
}
