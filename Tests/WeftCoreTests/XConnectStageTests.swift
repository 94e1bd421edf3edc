import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// Stage tests: frames built here go through the real C worker poll and the
/// cross-connect stage (ring vdevs, EAL --no-huge) and are compared byte by byte.
final class XConnectStageTests: XCTestCase {
    func testFramesCrossBothWaysUnchangedWithCounters() throws {
        let dp = try StageEAL.dataplane()
        let a = try dp.createTestPort(name: "xa")
        let b = try dp.createTestPort(name: "xb")
        let slot = try dp.addCrossConnect(a, b)
        let startMbufs = dp.mbufsAvailable

        var sentAB: [[UInt8]] = [], sentBA: [[UInt8]] = []
        for i in 0..<10 {
            let f = testFrame(src: 1, dst: 2, seq: UInt16(i), size: 64 + i * 50)
            sentAB.append(f); try dp.inject(a, frame: f)
        }
        for i in 0..<3 {
            let f = testFrame(src: 2, dst: 1, seq: UInt16(100 + i), size: 1514)
            sentBA.append(f); try dp.inject(b, frame: f)
        }
        XCTAssertEqual(dp.pollOnce(), 13)
        var gotB: [[UInt8]] = [], gotA: [[UInt8]] = []
        while let f = try dp.collect(b) { gotB.append(f) }
        while let f = try dp.collect(a) { gotA.append(f) }
        XCTAssertEqual(gotB, sentAB)
        XCTAssertEqual(gotA, sentBA)

        let ab = sentAB.reduce(0) { $0 + UInt64($1.count) }, ba = sentBA.reduce(0) { $0 + UInt64($1.count) }
        let xc = dp.counters(slot)
        XCTAssertEqual(xc.aToB, .init(packets: 10, bytes: ab, drops: 0))
        XCTAssertEqual(xc.bToA, .init(packets: 3, bytes: ba, drops: 0))
        let ca = dp.counters(a), cb = dp.counters(b)
        XCTAssertEqual([ca.rxPackets, ca.rxBytes, ca.txPackets, ca.txBytes], [10, ab, 3, ba])
        XCTAssertEqual([cb.rxPackets, cb.rxBytes, cb.txPackets, cb.txBytes], [3, ba, 10, ab])
        XCTAssertEqual(ca.totalDrops + cb.totalDrops, 0)
        XCTAssertEqual(dp.mbufsAvailable, startMbufs, "every mbuf returns to the pool")

        try dp.deleteCrossConnect(slot)
        try dp.detach(a); try dp.detach(b)
    }

    func testNoPeerDropIsCountedAndFreed() throws {
        let dp = try StageEAL.dataplane()
        let a = try dp.createTestPort(name: "np")
        let start = dp.mbufsAvailable
        for i in 0..<5 { try dp.inject(a, frame: testFrame(src: 1, dst: 2, seq: UInt16(i))) }
        XCTAssertEqual(dp.pollOnce(), 5)
        XCTAssertEqual(dp.counters(a).drops, ["no-peer": 5])
        XCTAssertEqual(dp.workerStats().first?.drops, ["no-peer": 5])
        XCTAssertEqual(dp.mbufsAvailable, start)
        XCTAssertNil(try dp.collect(a))
    }
}
