import Foundation
import SwiftProtobuf
import XCTest
@testable import WeftNSM
import WeftNSMProto

final class TimeoutElementTests: XCTestCase {
    let clock = ManualClock()
    let log = ExpiryLog()
    lazy var timers = ExpiryTimers(clock: clock) { [log] id in log.record(id) }

    func request(callerExpires: Date?, own: Date) -> NSMRequest {
        var r = pathedRequest(id: "weft-1")
        if let e = callerExpires { r.conn.path.pathSegments[1].expires = Google_Protobuf_Timestamp(date: e) }
        r.conn.path.pathSegments[2].expires = Google_Protobuf_Timestamp(date: own)
        return r
    }

    func testArmsAtTheCallersExpiryAndFires() async throws {
        let t0 = clock.now()
        var r = request(callerExpires: t0.addingTimeInterval(30), own: t0.addingTimeInterval(600))
        _ = try await NSMNext([TimeoutElement(timers: timers), Probe()]).request(&r)
        XCTAssertEqual(timers.armed, ["weft-1"])
        let sleeping = await eventually { self.clock.pendingDeadlines == [t0.addingTimeInterval(30)] }
        XCTAssertTrue(sleeping, "\(clock.pendingDeadlines)")
        clock.advance(by: 31)
        let fired = await eventually { self.log.fired == ["weft-1"] }
        XCTAssertTrue(fired)
    }

    func testWithoutTheCallersExpiryItsOwnSegmentsCounts() {
        let t0 = clock.now()
        let r = request(callerExpires: nil, own: t0.addingTimeInterval(600))
        XCTAssertEqual(TimeoutElement.deadline(r.conn.path, prev: r.prevIndex), t0.addingTimeInterval(600))
        // A first hop (prev == own) uses its own segment's even if set on the caller's.
        var first = r
        first.conn.path.pathSegments = [first.conn.path.pathSegments[2]]
        first.conn.path.index = 0
        XCTAssertEqual(TimeoutElement.deadline(first.conn.path, prev: 0), t0.addingTimeInterval(600))
    }

    func testAFailedRequestArmsNothingAndCloseCancels() async throws {
        let t0 = clock.now()
        var r = request(callerExpires: t0.addingTimeInterval(30), own: t0.addingTimeInterval(600))
        let failing = NSMNext([TimeoutElement(timers: timers), Probe { _ in throw NSMError(.internalError, "t", "no") }])
        _ = await expectNSMError { try await failing.request(&r) }
        XCTAssertEqual(timers.armed, [])

        _ = try await NSMNext([TimeoutElement(timers: timers), Probe()]).request(&r)
        XCTAssertEqual(timers.armed, ["weft-1"])
        var c = NSMClose(r.conn, reason: .close)
        c.id = "weft-1"
        let probe = Probe()
        try await NSMNext([TimeoutElement(timers: timers), probe]).close(c)
        XCTAssertEqual(timers.armed, [])
        XCTAssertEqual(probe.closes.count, 1, "the Close goes on")
        clock.advance(by: 3600)
        try await Task.sleep(nanoseconds: 50_000_000)
        XCTAssertEqual(log.fired, [])
    }

    /// A deadline far away (a caller's expiry is the caller's to choose) used to overflow
    /// the sleep's nanoseconds and trap.
    func testSystemClockSleepsTowardsAFarDeadlineWithoutTrapping() async {
        let t = Task { try await SystemClock().sleep(until: Date(timeIntervalSince1970: 1e12)) }
        try? await Task.sleep(nanoseconds: 20_000_000)
        t.cancel()
        do {
            try await t.value
            XCTFail("slept through")
        } catch {
            XCTAssertTrue(error is CancellationError)
        }
    }
}
