import Foundation
import WeftNSMProto

/// NSM's monitor: every successful Request is an UPDATE, every Close a DELETE, of the
/// connection as Weft's hop holds it, to MonitorConnections subscribers.
struct MonitorElement: NSMElement {
    let hub: MonitorHub

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        let result = try await next.request(&r)
        await hub.publish(.update, [result])
        return result
    }

    func close(_ c: NSMClose, next: NSMNext) async throws {
        try await next.close(c)
        if let st = c.state { await hub.publish(.delete, [st.own]) }
    }
}

/// MonitorConnections subscribers (reference §1.1): an initial state transfer, then
/// UPDATE / DELETE events for the connections each selector matches.
public actor MonitorHub {
    struct Sub {
        var selector: Connection_MonitorScopeSelector
        var continuation: AsyncStream<Connection_ConnectionEvent>.Continuation
    }
    private var subs: [UUID: Sub] = [:]
    private var current: [String: Connection_Connection] = [:]
    /// Bounds: streams at once (nsm.max_monitor_streams), and events queued for one
    /// subscriber that does not read (past it the stream ends; the subscriber
    /// reconnects and gets the state again, as after any broken stream).
    let maxSubscribers: Int
    let maxQueued: Int
    public private(set) var refused = 0, overflowed = 0
    private var overflowedIDs = Set<UUID>()

    /// Streams open now.
    public var streams: Int { subs.count }

    /// Whether the stream `id` ended because its reader fell behind (asked once).
    public func endedByOverflow(_ id: UUID) -> Bool { overflowedIDs.remove(id) != nil }

    public init(maxSubscribers: Int = 256, maxQueued: Int = 4096) {
        self.maxSubscribers = maxSubscribers
        self.maxQueued = maxQueued
    }

    /// nil when `maxSubscribers` streams are open already.
    public func subscribe(_ sel: Connection_MonitorScopeSelector) -> (UUID, AsyncStream<Connection_ConnectionEvent>)? {
        guard subs.count < maxSubscribers else { refused += 1; return nil }
        let (stream, cont) = AsyncStream<Connection_ConnectionEvent>.makeStream(bufferingPolicy: .bufferingOldest(maxQueued))
        let id = UUID()
        var first = Connection_ConnectionEvent()
        first.type = .initialStateTransfer
        for (k, c) in current where PathOps.matches(sel, c) { first.connections[k] = c }
        cont.yield(first)
        subs[id] = Sub(selector: sel, continuation: cont)
        return (id, stream)
    }

    public func unsubscribe(_ id: UUID) {
        subs.removeValue(forKey: id)?.continuation.finish()
    }

    public func publish(_ type: Connection_ConnectionEventType, _ conns: [Connection_Connection]) {
        for c in conns {
            if type == .delete { current.removeValue(forKey: c.id) } else { current[c.id] = c }
        }
        for (id, s) in subs {
            var e = Connection_ConnectionEvent()
            e.type = type
            for c in conns where PathOps.matches(s.selector, c) {
                var cc = c
                if type == .delete { cc.state = .down }
                e.connections[c.id] = cc
            }
            if !e.connections.isEmpty, case .dropped = s.continuation.yield(e) {
                overflowed += 1
                overflowedIDs.insert(id)
                unsubscribe(id)
            }
        }
    }

    public var subscriberCount: Int { subs.count }

    /// Shutdown: end every stream so the RPCs return.
    public func finishAll() {
        for (_, s) in subs { s.continuation.finish() }
        subs = [:]
    }
}
