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
        // A deadline can be a peer's (the caller's expiry): at most 10^9 s at a time,
        // so the nanoseconds fit in UInt64.
        let s = deadline.timeIntervalSinceNow
        if s > 0 { try await Task.sleep(nanoseconds: UInt64(min(s, 1e9) * 1e9)) }
    }
}
