import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// Hitless changes with a real worker lcore polling: frames keep flowing
/// through one cross-connect while other cross-connects and interfaces are
/// added and removed hundreds of times. Not one frame may be lost.
final class HitlessTests: XCTestCase {
    func testTrafficOnUntouchedCrossConnectLosesNothingDuringChurn() throws {
        _ = StageEAL.ready
        var s = DataplaneSettings(workerLcores: [1])
        s.mbufs = 8191
        s.maxCrossConnects = 64
        let dp = try Dataplane(s)
        defer { dp.destroy() }
        try dp.start()

        let a = try dp.createTestPort(name: "ha")
        let b = try dp.createTestPort(name: "hb")
        let steady = try dp.addCrossConnect(a, b)
        let c = try dp.createTestPort(name: "hc")

        var injected = 0, received = 0, churns = 0
        var mismatches = 0
        func drain() throws {
            while let f = try dp.collect(b) {
                let seq = Int(f[f.count - 2]) << 8 | Int(f[f.count - 1])
                if seq != received & 0xffff { mismatches += 1 }
                received += 1
            }
        }
        for round in 0..<300 {
            // Keep frames in flight on the steady cross-connect.
            for _ in 0..<16 {
                let f = testFrame(src: 1, dst: 2, seq: UInt16(injected & 0xffff))
                do { try dp.inject(a, frame: f); injected += 1 } catch { break } // RX ring full: back off
            }
            // Churn: a new interface, a cross-connect to it, then both removed.
            let d = try dp.createTestPort(name: "hd\(round % 4)")
            let x = try dp.addCrossConnect(c, d)
            try dp.deleteCrossConnect(x)
            try dp.detach(d)
            churns += 4
            try drain()
        }
        let deadline = Date().addingTimeInterval(10)
        while received < injected && Date() < deadline {
            try drain()
            usleep(1000)
        }
        XCTAssertGreaterThan(churns, 1000)
        XCTAssertGreaterThan(injected, 1000)
        XCTAssertEqual(received, injected, "frames lost on the untouched cross-connect")
        XCTAssertEqual(mismatches, 0, "frames reordered")
        let xc = dp.counters(steady)
        XCTAssertEqual(xc.aToB.packets, UInt64(injected))
        XCTAssertEqual(xc.aToB.drops, 0)
        XCTAssertEqual(dp.counters(a).totalDrops + dp.counters(b).totalDrops, 0)
        dp.stop()
    }
}
