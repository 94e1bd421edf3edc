import Foundation

/// Wall time and sleeping, injectable so lifecycle timers are tested without waiting.
public protocol NSMClock: Sendable {
    func now() -> Date
    func sleep(until: Date) async throws
}

public struct SystemClock: NSMClock {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(until deadline: Date) async throws {
        let s = deadline.timeIntervalSinceNow
        if s > 0 { try await Task.sleep(nanoseconds: UInt64(s * 1e9)) }
    }
}

/// One timer per key; re-arming replaces the previous deadline; a fired timer calls
/// `onExpire(key)` once. (NSM's `timeout` element: a connection not refreshed before
/// the previous segment's expiry is closed.)
public final class ExpiryTimers: @unchecked Sendable {
    let clock: NSMClock
    let onExpire: @Sendable (String) async -> Void
    private var tasks: [String: (generation: Int, task: Task<Void, Never>)] = [:]
    private var generation = 0
    private let lock = NSLock()

    public init(clock: NSMClock, onExpire: @escaping @Sendable (String) async -> Void) {
        self.clock = clock
        self.onExpire = onExpire
    }

    public func arm(_ key: String, at deadline: Date) {
        lock.lock()
        generation += 1
        let g = generation
        tasks[key]?.task.cancel()
        let t = Task { [clock, onExpire, weak self] in
            do { try await clock.sleep(until: deadline) } catch { return }
            guard let self, self.take(key, generation: g) else { return }
            await onExpire(key)
        }
        tasks[key] = (g, t)
        lock.unlock()
    }

    public func cancel(_ key: String) {
        lock.lock()
        tasks.removeValue(forKey: key)?.task.cancel()
        lock.unlock()
    }

    public func cancelAll() {
        lock.lock()
        for (_, t) in tasks { t.task.cancel() }
        tasks = [:]
        lock.unlock()
    }

    public var armed: [String] {
        lock.lock(); defer { lock.unlock() }
        return Array(tasks.keys)
    }

    /// The fired timer is still the current one for its key (not re-armed or cancelled).
    private func take(_ key: String, generation g: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard let cur = tasks[key], cur.generation == g else { return false }
        tasks.removeValue(forKey: key)
        return true
    }
}

/// A FIFO async mutex: connection requests, closes and expiries run one at a time.
public actor AsyncSerial {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    public init() {}
    public func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }
    private func acquire() async {
        if !busy { busy = true; return }
        await withCheckedContinuation { waiters.append($0) }
    }
    private func release() {
        if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
    }
}
