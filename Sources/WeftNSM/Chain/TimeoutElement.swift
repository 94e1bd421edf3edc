import Foundation
import Synchronization
import WeftNSMProto

/// NSM's timeout: a connection not refreshed before the caller's segment expires is
/// closed everywhere. Each successful Request (re)arms the connection's timer at the
/// caller's expiry (Weft's own segment's when the caller sent none); Close cancels it.
struct TimeoutElement: NSMElement {
    let timers: ExpiryTimers

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        // NSM's timeout: the caller's expiry less its own deadline, so that the
        // connection is closed before the caller's refresh could no longer arrive.
        let deadline = Self.deadline(r.conn.path, prev: r.prevIndex).addingTimeInterval(-r.caller.requestTimeout)
        let result = try await next.request(&r)
        timers.arm(r.conn.id, at: deadline)
        return result
    }

    func close(_ c: NSMClose, next: NSMNext) async throws {
        if let id = c.id { timers.cancel(id) }
        try await next.close(c)
    }

    /// The caller's segment's expiry, or (a caller that is the first hop, or sent none)
    /// Weft's own segment's. `path` is as PathElement left it.
    static func deadline(_ path: Connection_Path, prev: UInt32) -> Date {
        let segs = path.pathSegments, own = Int(path.index)
        if prev != path.index, Int(prev) < segs.count, segs[Int(prev)].hasExpires { return segs[Int(prev)].expires.date }
        if own < segs.count, segs[own].hasExpires { return segs[own].expires.date }
        return .distantFuture
    }
}

/// One timer per key; re-arming replaces the previous deadline; a fired timer calls
/// `onExpire(key)` once.
public final class ExpiryTimers: Sendable {
    struct Armed {
        var generation: Int
        var task: Task<Void, Never>
    }
    struct State {
        var tasks: [String: Armed] = [:]
        var generation = 0
    }
    let clock: NSMClock
    let onExpire: @Sendable (String) async -> Void
    private let state = Mutex(State())

    public init(clock: NSMClock, onExpire: @escaping @Sendable (String) async -> Void) {
        self.clock = clock
        self.onExpire = onExpire
    }

    public func arm(_ key: String, at deadline: Date) {
        state.withLock { s in
            s.generation += 1
            let g = s.generation
            s.tasks[key]?.task.cancel()
            let t = Task { [clock, onExpire, weak self] in
                do { try await clock.sleep(until: deadline) } catch { return }
                guard let self, self.take(key, generation: g) else { return }
                await onExpire(key)
            }
            s.tasks[key] = Armed(generation: g, task: t)
        }
    }

    public func cancel(_ key: String) {
        state.withLock { $0.tasks.removeValue(forKey: key) }?.task.cancel()
    }

    public func cancelAll() {
        let all = state.withLock { s in
            defer { s.tasks = [:] }
            return s.tasks.values.map(\.task)
        }
        for t in all { t.cancel() }
    }

    public var armed: [String] { state.withLock { Array($0.tasks.keys) } }

    /// The fired timer is still the current one for its key (not re-armed or cancelled).
    private func take(_ key: String, generation g: Int) -> Bool {
        state.withLock { s in
            guard let cur = s.tasks[key], cur.generation == g else { return false }
            s.tasks.removeValue(forKey: key)
            return true
        }
    }
}
