import Foundation
import WeftNSMProto

/// One Request or Close per connection at a time (NSM's serialize): requests, closes
/// and expiries of one connection id run one after another, in arrival order;
/// different connections run side by side. (All of them meet again in the control
/// actor, which makes the dataplane and kernel calls one at a time.)
struct SerializeElement: NSMElement {
    let serial: KeyedSerial

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        let key = r.conn.id
        try await serial.acquire(key)
        do {
            let result = try await next.request(&r)
            await serial.release(key)
            return result
        } catch {
            await serial.release(key)
            throw error
        }
    }

    func close(_ c: NSMClose, next: NSMNext) async throws {
        let key = c.id ?? c.connection.id
        try await serial.acquire(key)
        do {
            try await next.close(c)
            await serial.release(key)
        } catch {
            await serial.release(key)
            throw error
        }
    }
}

/// A FIFO async mutex per key. `close()` refuses new work and waits for what runs or
/// waits already (shutdown).
actor KeyedSerial {
    /// A key is busy while present; its value is who waits, in order.
    private var busy: [String: [CheckedContinuation<Void, Never>]] = [:]
    private var closed = false
    private var idle: [CheckedContinuation<Void, Never>] = []

    init() {}

    func acquire(_ key: String) async throws {
        if closed { throw NSMError(.unavailable, "request", "weftd is shutting down") }
        if busy[key] == nil {
            busy[key] = []
            return
        }
        await withCheckedContinuation { busy[key, default: []].append($0) }
    }

    func release(_ key: String) {
        guard var waiting = busy[key] else { return }
        if waiting.isEmpty {
            busy[key] = nil
            if busy.isEmpty {
                for w in idle { w.resume() }
                idle = []
            }
            return
        }
        let first = waiting.removeFirst()
        busy[key] = waiting
        first.resume()
    }

    func run<T: Sendable>(_ key: String, _ body: @Sendable () async throws -> T) async throws -> T {
        try await acquire(key)
        do {
            let v = try await body()
            release(key)
            return v
        } catch {
            release(key)
            throw error
        }
    }

    /// Refuse new work; return once everything running or waiting has finished.
    func close() async {
        closed = true
        if busy.isEmpty { return }
        await withCheckedContinuation { idle.append($0) }
    }

    /// Keys running now (tests).
    var busyKeys: [String] { busy.keys.sorted() }
}
