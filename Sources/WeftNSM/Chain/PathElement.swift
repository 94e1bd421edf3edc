import Foundation
import SwiftProtobuf
import WeftNSMProto

/// NSM's updatepath and updatetoken (reference §2.5): checks the incoming connection and
/// its path, steps to Weft's own segment (the connection id Weft uses is that segment's
/// id), records the caller's token and expiry in the caller's segment and Weft's own
/// expiry in its own; on the way back, gives the caller its own view again (its index
/// and id). On Close, finds Weft's id from the caller's view.
struct PathElement: NSMElement {
    /// NSM_NAME: Weft's segment name.
    let name: String
    let maxTokenLifetime: TimeInterval
    let clock: NSMClock
    let newID: @Sendable () -> String
    /// Close: the ids Weft holds (a caller may name Weft's id directly).
    let table: ConnectionTable

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        guard r.received.hasConnection else { throw NSMError(.invalidArgument, "request", "connection is missing") }
        var conn = r.received.connection
        guard !conn.networkService.isEmpty else { throw NSMError(.invalidArgument, "request", "connection.network_service is empty") }
        if conn.hasPath, !conn.path.pathSegments.isEmpty, Int(conn.path.index) >= conn.path.pathSegments.count {
            throw NSMError(.invalidArgument, "path", "connection.path.index \(conn.path.index) is past the last of \(conn.path.pathSegments.count) segments")
        }
        // Ids and names end up in kernel aliases (server-/client-<segment 0's id>) and
        // logs: a NUL cut the alias short and another connection's cleanup matched it
        // (found by fuzz_requests.py, seed 20261129). Control characters are refused; an
        // alias holds at most 255 bytes.
        func clean(_ s: String) -> Bool { !s.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) }
        guard clean(conn.id) else { throw NSMError(.invalidArgument, "request", "connection.id contains a control character") }
        for (i, seg) in conn.path.pathSegments.enumerated() where !clean(seg.id) || !clean(seg.name) {
            throw NSMError(.invalidArgument, "path", "path segment \(i)'s id or name contains a control character")
        }
        if let first = conn.path.pathSegments.first?.id ?? (conn.id.isEmpty ? nil : conn.id), first.utf8.count > 240 {
            throw NSMError(.invalidArgument, "path", "path segment 0's id is \(first.utf8.count) bytes: at most 240 (it names the pods' interfaces in their alias)")
        }
        var path = conn.path
        let prev: UInt32
        do { prev = try PathOps.update(&path, name: name, connectionID: conn.id, newID: newID) } catch {
            throw NSMError(.invalidArgument, "path", "\(error)")
        }
        // PathOps.update leaves both indexes inside the path.
        let own = Int(path.index)
        if prev != path.index {
            if let t = r.peerToken { path.pathSegments[Int(prev)].token = t }
            if let e = r.peerExpires { path.pathSegments[Int(prev)].expires = Google_Protobuf_Timestamp(date: e) }
        }
        path.pathSegments[own].expires = Google_Protobuf_Timestamp(date: clock.now().addingTimeInterval(maxTokenLifetime))
        conn.path = path
        conn.id = path.pathSegments[own].id
        r.conn = conn
        r.prevIndex = prev
        r.callerID = path.pathSegments[Int(prev)].id
        r.firstSegmentID = path.pathSegments[0].id

        let result = try await next.request(&r)
        return Self.callerView(result, prev: prev, callerID: r.callerID)
    }

    func close(_ c: NSMClose, next: NSMNext) async throws {
        var c = c
        if c.id == nil { c.id = ownID(of: c.connection) ?? c.connection.id }
        try await next.close(c)
    }

    /// What the caller gets back: its own index and id. (The index is inside the path:
    /// ConnectElement refuses answers whose path is shorter than Weft's own index; the
    /// caller's id is kept from the request should it not be.)
    static func callerView(_ c: Connection_Connection, prev: UInt32, callerID: String) -> Connection_Connection {
        var o = c
        o.path.index = prev
        o.id = Int(prev) < o.path.pathSegments.count ? o.path.pathSegments[Int(prev)].id : callerID
        return o
    }

    /// Weft's segment id for a connection as the caller names it: Weft's id itself, or
    /// the segment bearing Weft's name at the caller's index, the next one, or anywhere.
    func ownID(of c: Connection_Connection) -> String? {
        if table.contains(c.id) { return c.id }
        let segs = c.path.pathSegments
        let i = Int(c.path.index)
        if i < segs.count, segs[i].name == name { return segs[i].id }
        if i + 1 < segs.count, segs[i + 1].name == name { return segs[i + 1].id }
        return segs.first(where: { $0.name == name })?.id
    }
}
