import Foundation
import Synchronization
@testable import WeftNSM
import WeftNSMProto

/// The end of a chain for element tests: records what reached it and answers as told
/// (by default with the connection as it arrived).
final class Probe: NSMElement {
    typealias Answer = @Sendable (inout NSMRequest) async throws -> Connection_Connection
    struct State {
        var requests: [NSMRequest] = []
        var closes: [NSMClose] = []
    }
    let state = Mutex(State())
    let answer: Answer

    init(answer: @escaping Answer = { $0.conn }) { self.answer = answer }

    var requests: [NSMRequest] { state.withLock { $0.requests } }
    var closes: [NSMClose] { state.withLock { $0.closes } }

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        state.withLock { $0.requests.append(r) }
        return try await answer(&r)
    }

    func close(_ c: NSMClose, next: NSMNext) async throws {
        state.withLock { $0.closes.append(c) }
    }
}

/// A request as PathElement leaves it: Weft ("weft") at index 2 after [nsc, nsmgr].
func pathedRequest(id: String = "weft-1", service: String = "svc") -> NSMRequest {
    var r = NSMRequest(NSMFixtures.memifRequest(service: service))
    r.conn = r.received.connection
    r.conn.path.pathSegments.append(NSMFixtures.segment("weft", id))
    r.conn.path.index = 2
    r.conn.id = id
    r.prevIndex = 1
    r.callerID = r.conn.path.pathSegments[1].id
    r.firstSegmentID = r.conn.path.pathSegments[0].id
    r.state = ConnectionState(id: id)
    return r
}

/// Poll `cond` for up to `timeout` seconds (a bound on how long to look, never a speed assertion).
func eventually(_ timeout: TimeInterval = 2, _ cond: () async -> Bool) async -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if await cond() { return true }
        try? await Task.sleep(nanoseconds: 2_000_000)
    }
    return await cond()
}
