import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// 802.1Q sides on a trunk uplink, through the real worker poll on ring ports:
/// push, pop, VLAN-to-VLAN rewrite, the raw untagged uplink, and every drop.
final class VLANStageTests: XCTestCase {
    func tagged(_ f: [UInt8], _ vid: UInt16, tpid: UInt16 = 0x8100) -> [UInt8] {
        Array(f[0..<12]) + [UInt8(tpid >> 8), UInt8(tpid & 0xff), UInt8(vid >> 8), UInt8(vid & 0xff)] + Array(f[12...])
    }

    func drain(_ dp: Dataplane, _ p: PortID) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let f = try dp.collect(p) { out.append(f) }
        return out
    }

    func testPushPopRewriteAndRawUplink() throws {
        let dp = try StageEAL.dataplane()
        defer { dp.destroy() }
        let pod = try dp.createTestPort(name: "vpod"), pod2 = try dp.createTestPort(name: "vpod2")
        let trunk = try dp.createTestPort(name: "vtrunk")
        let v100 = try dp.addVLAN(uplink: trunk, id: 100)
        let raw = try dp.addVLAN(uplink: trunk, id: 0)
        let v300 = try dp.addVLAN(uplink: trunk, id: 300), v400 = try dp.addVLAN(uplink: trunk, id: 4000)
        let x1 = try dp.addCrossConnect(SideID(pod), v100)
        _ = try dp.addCrossConnect(SideID(pod2), raw)
        let x3 = try dp.addCrossConnect(v300, v400)
        let start = dp.mbufsAvailable

        // Toward the trunk: the tag is pushed after the MAC addresses.
        let f = testFrame(src: 1, dst: 2, seq: 1, size: 100)
        try dp.inject(pod, frame: f)
        dp.pollOnce()
        XCTAssertEqual(try drain(dp, trunk), [tagged(f, 100)])
        XCTAssertEqual(Array(try XCTUnwrap(tagged(f, 100))[12..<16]), [0x81, 0x00, 0x00, 0x64])

        // From the trunk: popped, delivered to the pod.
        let g = testFrame(src: 2, dst: 1, seq: 2, size: 1514)
        try dp.inject(trunk, frame: tagged(g, 100))
        // Untagged frames belong to VLAN id 0, the raw uplink side.
        let h = testFrame(src: 3, dst: 4, seq: 3)
        try dp.inject(trunk, frame: h)
        // VLAN 300 in, VLAN 4000 out: a tag rewrite between two sides of the trunk.
        let r = testFrame(src: 5, dst: 6, seq: 4)
        try dp.inject(trunk, frame: tagged(r, 300))
        dp.pollOnce()
        XCTAssertEqual(try drain(dp, pod), [g])
        XCTAssertEqual(try drain(dp, pod2), [h])
        XCTAssertEqual(try drain(dp, trunk), [tagged(r, 4000)])

        // The raw side sends untagged.
        try dp.inject(pod2, frame: h)
        dp.pollOnce()
        XCTAssertEqual(try drain(dp, trunk), [h])

        let c1 = dp.counters(x1)
        XCTAssertEqual(c1.aToB, .init(packets: 1, bytes: 100, drops: 0), "a connection counts its frames as the pods see them")
        XCTAssertEqual(c1.bToA, .init(packets: 1, bytes: 1514, drops: 0))
        XCTAssertEqual(dp.counters(x3).aToB.packets, 1)
        XCTAssertEqual(dp.counters(trunk).rxPackets, 3)
        XCTAssertEqual(dp.counters(trunk).txPackets, 3)
        XCTAssertEqual(dp.mbufsAvailable, start)
    }

    func testEveryUplinkDropHasItsReason() throws {
        let dp = try StageEAL.dataplane()
        defer { dp.destroy() }
        let pod = try dp.createTestPort(name: "dpod"), trunk = try dp.createTestPort(name: "dtrunk")
        let v10 = try dp.addVLAN(uplink: trunk, id: 10)
        _ = try dp.addCrossConnect(SideID(pod), v10)
        let start = dp.mbufsAvailable
        let f = testFrame(src: 1, dst: 2, seq: 7)

        try dp.inject(trunk, frame: tagged(f, 11))                       // unknown VLAN
        try dp.inject(trunk, frame: f)                                   // untagged, no raw side
        try dp.inject(trunk, frame: tagged(f, 0))                        // priority-tagged
        try dp.inject(trunk, frame: tagged(tagged(f, 10), 20, tpid: 0x88a8)) // 802.1ad outer tag
        try dp.inject(trunk, frame: tagged(tagged(f, 20), 10))           // 802.1Q in 802.1Q
        try dp.inject(trunk, frame: Array(f[0..<10]))                    // runt
        try dp.inject(trunk, frame: Array(tagged(f, 10)[0..<15]))        // tag cut short
        try dp.inject(trunk, frame: tagged(f, 10))                       // the one good frame
        XCTAssertEqual(dp.pollOnce(), 8)
        XCTAssertEqual(try drain(dp, pod), [f])
        XCTAssertEqual(dp.counters(trunk).drops, ["unknown-vlan": 3, "qinq": 2, "runt": 2])
        XCTAssertEqual(dp.mbufsAvailable, start, "dropped frames are freed")
    }

    func testUplinkRulesAreEnforcedByTheCore() throws {
        let dp = try StageEAL.dataplane()
        defer { dp.destroy() }
        let a = try dp.createTestPort(name: "ua"), trunk = try dp.createTestPort(name: "utrunk")
        let v = try dp.addVLAN(uplink: trunk, id: 5)
        XCTAssertThrowsError(try dp.addVLAN(uplink: trunk, id: 5)) { XCTAssertEqual(($0 as? DataplaneError)?.errno, EEXIST) }
        XCTAssertThrowsError(try dp.addVLAN(uplink: trunk, id: 4095)) { XCTAssertEqual(($0 as? DataplaneError)?.errno, EINVAL) }
        XCTAssertThrowsError(try dp.addCrossConnect(a, trunk)) { XCTAssertEqual(($0 as? DataplaneError)?.errno, EBUSY) }
        XCTAssertThrowsError(try dp.detach(trunk)) { XCTAssertEqual(($0 as? DataplaneError)?.errno, EBUSY) }
        let x = try dp.addCrossConnect(SideID(a), v)
        XCTAssertThrowsError(try dp.deleteTunnel(v)) { XCTAssertEqual(($0 as? DataplaneError)?.errno, EBUSY) }
        XCTAssertThrowsError(try dp.addVLAN(uplink: a, id: 7)) { XCTAssertEqual(($0 as? DataplaneError)?.errno, EBUSY) }
        try dp.deleteCrossConnect(x)
        try dp.deleteTunnel(v)
        try dp.detach(trunk)
    }
}
