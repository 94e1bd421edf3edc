import Foundation
import XCTest
@testable import WeftNSM

/// A clock that only moves when told to. `sleep(until:)` suspends until `advance(to:)`
/// reaches the deadline, or throws CancellationError when its task is cancelled.
final class ManualClock: NSMClock, @unchecked Sendable {
    private struct Sleeper {
        var deadline: Date
        var continuation: CheckedContinuation<Void, Error>
    }

    private let lock = NSLock()
    private var current: Date
    private var sleepers: [UInt64: Sleeper] = [:]
    private var cancelledBeforeRegistering: Set<UInt64> = []
    private var nextID: UInt64 = 0

    init(_ start: Date = Date(timeIntervalSince1970: 1_700_000_000)) { current = start }

    func now() -> Date {
        lock.lock(); defer { lock.unlock() }
        return current
    }

    func sleep(until deadline: Date) async throws {
        let id = lock.withLock { () -> UInt64 in
            nextID += 1
            return nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                lock.lock()
                if cancelledBeforeRegistering.remove(id) != nil || Task.isCancelled {
                    lock.unlock()
                    c.resume(throwing: CancellationError())
                } else if deadline <= current {
                    lock.unlock()
                    c.resume()
                } else {
                    sleepers[id] = Sleeper(deadline: deadline, continuation: c)
                    lock.unlock()
                }
            }
        } onCancel: {
            lock.lock()
            if let s = sleepers.removeValue(forKey: id) {
                lock.unlock()
                s.continuation.resume(throwing: CancellationError())
            } else {
                cancelledBeforeRegistering.insert(id)
                lock.unlock()
            }
        }
    }

    /// Move time forward and wake every sleeper whose deadline has come.
    func advance(to t: Date) {
        lock.lock()
        precondition(t >= current, "ManualClock only moves forward")
        current = t
        let due = sleepers.filter { $0.value.deadline <= t }
        for k in due.keys { sleepers.removeValue(forKey: k) }
        lock.unlock()
        for s in due.values { s.continuation.resume() }
    }

    func advance(by seconds: TimeInterval) { advance(to: now().addingTimeInterval(seconds)) }

    /// Deadlines of the tasks sleeping now.
    var pendingDeadlines: [Date] {
        lock.lock(); defer { lock.unlock() }
        return sleepers.values.map(\.deadline).sorted()
    }
}

/// What onExpire was called with, in order.
final class ExpiryLog: @unchecked Sendable {
    private let lock = NSLock()
    private var keys: [String] = []
    func record(_ k: String) { lock.lock(); keys.append(k); lock.unlock() }
    var fired: [String] { lock.lock(); defer { lock.unlock() }; return keys }
}

final class TimerTests: XCTestCase {

    /// Poll `cond` for up to `timeout` seconds (never a speed assertion: the bound is only
    /// how long to keep looking).
    private func eventually(_ timeout: TimeInterval = 2, _ cond: () -> Bool) async -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if cond() { return true }
            try? await Task.sleep(nanoseconds: 2_000_000)
        }
        return cond()
    }

    /// Give tasks that should NOT run a chance to run (used before asserting nothing happened).
    private func settle() async {
        for _ in 0..<20 { await Task.yield() }
        try? await Task.sleep(nanoseconds: 50_000_000)
    }

    private func make() -> (ManualClock, ExpiryLog, ExpiryTimers) {
        let clock = ManualClock()
        let log = ExpiryLog()
        let timers = ExpiryTimers(clock: clock) { key in log.record(key) }
        return (clock, log, timers)
    }

    // MARK: the test clock itself

    func testManualClockSleepWaitsForAdvance() async throws {
        let clock = ManualClock()
        let t0 = clock.now()
        let woke = ExpiryLog()
        let task = Task {
            try await clock.sleep(until: t0.addingTimeInterval(10))
            woke.record("woke")
        }
        let sleeping = await eventually { clock.pendingDeadlines.count == 1 }
        XCTAssertTrue(sleeping)
        clock.advance(by: 5)
        await settle()
        XCTAssertEqual(woke.fired, [])
        clock.advance(by: 5)
        try await task.value
        XCTAssertEqual(woke.fired, ["woke"])
        XCTAssertEqual(clock.now(), t0.addingTimeInterval(10))
    }

    func testManualClockSleepThrowsOnCancel() async {
        let clock = ManualClock()
        let task = Task { try await clock.sleep(until: clock.now().addingTimeInterval(10)) }
        _ = await eventually { clock.pendingDeadlines.count == 1 }
        task.cancel()
        do {
            try await task.value
            XCTFail("sleep should throw when cancelled")
        } catch {
            XCTAssertTrue(error is CancellationError)
        }
        XCTAssertEqual(clock.pendingDeadlines, [])
    }

    // MARK: ExpiryTimers

    func testFiresOnceWithTheKeyAfterTheDeadline() async {
        let (clock, log, timers) = make()
        let t0 = clock.now()
        timers.arm("conn-1", at: t0.addingTimeInterval(60))
        XCTAssertEqual(timers.armed, ["conn-1"])
        let armed = await eventually { clock.pendingDeadlines == [t0.addingTimeInterval(60)] }
        XCTAssertTrue(armed)

        clock.advance(by: 59)
        await settle()
        XCTAssertEqual(log.fired, [], "fired before its deadline")

        clock.advance(by: 2)
        let fired = await eventually { !log.fired.isEmpty }
        XCTAssertTrue(fired, "did not fire after the deadline")
        XCTAssertEqual(log.fired, ["conn-1"])

        // Later time moves do not fire it again.
        clock.advance(by: 3600)
        await settle()
        XCTAssertEqual(log.fired, ["conn-1"])
        XCTAssertEqual(timers.armed, [])
    }

    func testDeadlineAlreadyPastFires() async {
        let (clock, log, timers) = make()
        timers.arm("late", at: clock.now().addingTimeInterval(-1))
        let fired = await eventually { log.fired == ["late"] }
        XCTAssertTrue(fired)
        XCTAssertEqual(timers.armed, [])
    }

    func testRearmPostponesTheDeadline() async {
        let (clock, log, timers) = make()
        let t0 = clock.now()
        timers.arm("conn-1", at: t0.addingTimeInterval(10))
        _ = await eventually { clock.pendingDeadlines == [t0.addingTimeInterval(10)] }
        timers.arm("conn-1", at: t0.addingTimeInterval(20))
        // The first sleeper is cancelled, the second one waits.
        let rearmed = await eventually { clock.pendingDeadlines == [t0.addingTimeInterval(20)] }
        XCTAssertTrue(rearmed, "\(clock.pendingDeadlines)")
        XCTAssertEqual(timers.armed, ["conn-1"])

        clock.advance(to: t0.addingTimeInterval(15))
        await settle()
        XCTAssertEqual(log.fired, [], "the replaced deadline fired")
        XCTAssertEqual(timers.armed, ["conn-1"])

        clock.advance(to: t0.addingTimeInterval(21))
        let fired = await eventually { !log.fired.isEmpty }
        XCTAssertTrue(fired)
        await settle()
        XCTAssertEqual(log.fired, ["conn-1"])
        XCTAssertEqual(timers.armed, [])
    }

    func testRearmImmediatelyStillFiresOnlyOnce() async {
        // Re-arming before the first task even started sleeping: the old generation must not fire.
        let (clock, log, timers) = make()
        let t0 = clock.now()
        timers.arm("k", at: t0.addingTimeInterval(10))
        timers.arm("k", at: t0.addingTimeInterval(20))
        clock.advance(to: t0.addingTimeInterval(15))
        await settle()
        XCTAssertEqual(log.fired, [])
        clock.advance(to: t0.addingTimeInterval(25))
        let fired = await eventually { log.fired == ["k"] }
        XCTAssertTrue(fired, "\(log.fired)")
        await settle()
        XCTAssertEqual(log.fired, ["k"])
        XCTAssertEqual(timers.armed, [])
    }

    func testCancelPreventsFiring() async {
        let (clock, log, timers) = make()
        let t0 = clock.now()
        timers.arm("conn-1", at: t0.addingTimeInterval(10))
        _ = await eventually { clock.pendingDeadlines.count == 1 }
        timers.cancel("conn-1")
        XCTAssertEqual(timers.armed, [])
        let gone = await eventually { clock.pendingDeadlines.isEmpty }
        XCTAssertTrue(gone, "the cancelled timer still sleeps")
        clock.advance(by: 100)
        await settle()
        XCTAssertEqual(log.fired, [])
        // Cancelling an unknown key is harmless.
        timers.cancel("nope")
    }

    func testCancelAll() async {
        let (clock, log, timers) = make()
        let t0 = clock.now()
        timers.arm("a", at: t0.addingTimeInterval(10))
        timers.arm("b", at: t0.addingTimeInterval(20))
        timers.cancelAll()
        XCTAssertEqual(timers.armed, [])
        clock.advance(by: 100)
        await settle()
        XCTAssertEqual(log.fired, [])
        withExtendedLifetime(timers) {}
    }

    func testKeysAreIndependent() async {
        let (clock, log, timers) = make()
        let t0 = clock.now()
        timers.arm("a", at: t0.addingTimeInterval(10))
        timers.arm("b", at: t0.addingTimeInterval(20))
        XCTAssertEqual(Set(timers.armed), ["a", "b"])
        _ = await eventually { clock.pendingDeadlines.count == 2 }

        clock.advance(to: t0.addingTimeInterval(15))
        let aFired = await eventually { log.fired == ["a"] }
        XCTAssertTrue(aFired, "\(log.fired)")
        await settle()
        XCTAssertEqual(log.fired, ["a"])
        XCTAssertEqual(timers.armed, ["b"])

        // Cancelling or re-arming one key leaves the other alone.
        timers.arm("c", at: t0.addingTimeInterval(30))
        timers.cancel("c")
        clock.advance(to: t0.addingTimeInterval(25))
        let bFired = await eventually { log.fired == ["a", "b"] }
        XCTAssertTrue(bFired, "\(log.fired)")
        clock.advance(to: t0.addingTimeInterval(40))
        await settle()
        XCTAssertEqual(log.fired, ["a", "b"])
        XCTAssertEqual(timers.armed, [])
    }
}
