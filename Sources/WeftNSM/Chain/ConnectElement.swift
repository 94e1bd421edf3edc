import Foundation
import Logging
import WeftNSMProto

/// NSM's connect, with the client side's updatepath: sends the Request to the next hop
/// and makes sure its answer can be used before anything is built on it: a mechanism
/// of the class its URL calls for, and a path that still holds Weft's own segment.
/// The answer becomes Weft's view (Weft's index and id in the next hop's path).
/// Close is sent to the next hop the connection has.
struct ConnectElement: NSMElement {
    let peers: NSMPeers
    let logger: Logger

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        guard let url = r.nextHopURL else { throw NSMError(.internalError, "connect", "no next hop chosen") }
        var req = Networkservice_NetworkServiceRequest()
        req.connection = r.conn
        req.mechanismPreferences = r.clientPreferences
        var answer: Connection_Connection
        do {
            answer = try await peers.request(url, req)
        } catch {
            if r.isRefresh { throw NSMError(.unavailable, "refresh at next hop \(url)", "\(error)") }
            throw NextHopRefused(underlying: error)
        }
        if answer.networkServiceEndpointName.isEmpty { answer.networkServiceEndpointName = r.conn.networkServiceEndpointName }
        do {
            try Self.check(answer, from: url, sent: r.conn, refresh: r.isRefresh)
        } catch {
            // A new connection at the next hop is closed again; a refreshed one is left
            // as it was (the connection stands until it is refreshed right or expires).
            if !r.isRefresh { await close(answer, at: url, id: r.conn.id, reason: .rollback) }
            throw error
        }
        r.state.nextHop = answer
        r.state.nextHopURL = url
        return Self.ownView(answer, sent: r.conn)
    }

    func close(_ c: NSMClose, next: NSMNext) async throws {
        if c.closesNextHop, let st = c.state, let url = st.nextHopURL {
            await close(st.nextHop, at: url, id: st.id, reason: c.reason)
        }
        try await next.close(c)
    }

    private func close(_ conn: Connection_Connection, at url: NSMURL, id: String, reason: NSMClose.Reason) async {
        do { try await peers.close(url, conn) } catch {
            if reason == .rollback { logger.warning("rollback: close at \(url) failed: \(error)") }
            else { logger.warning("connection \(id): Close at \(url) failed: \(error)") }
        }
    }

    /// What Weft needs of an answer. A peer's path and mechanism are checked before any
    /// index into them is used.
    static func check(_ answer: Connection_Connection, from url: NSMURL, sent: Connection_Connection, refresh: Bool) throws {
        let who = "the next hop '\(answer.networkServiceEndpointName)' at \(url)"
        if !refresh {
            guard answer.hasMechanism, !answer.mechanism.type.isEmpty else {
                throw NSMError(.failedPrecondition, "endpoint", "the next hop's answer carries no mechanism")
            }
            let remoteAnswer = answer.mechanism.cls == Mech.remote || [Mech.vxlan, Mech.vlan].contains(answer.mechanism.type)
            if url.isLocal == remoteAnswer {
                throw NSMError(.failedPrecondition, "endpoint", "the next hop at \(url) answered with \(answer.mechanism.cls) \(answer.mechanism.type); a \(url.isLocal ? "unix" : "tcp") next hop must use \(url.isLocal ? "LOCAL" : "REMOTE") mechanisms")
            }
        }
        try ServerMechanismElement.checkMTU(answer.context.mtu, "\(who)'s context.MTU", code: .failedPrecondition)
        // No path in the answer: Weft keeps its own. A path must still hold Weft's segment.
        let own = Int(sent.path.index)
        if answer.hasPath, !answer.path.pathSegments.isEmpty, answer.path.pathSegments.count <= own {
            throw NSMError(.failedPrecondition, "next hop", "\(who) answered with \(answer.path.pathSegments.count) path segment(s), but Weft's own segment is at index \(own) of the \(sent.path.pathSegments.count) it sent")
        }
    }

    /// The answer as Weft's hop holds it: the next hop's path (or Weft's, if it sent
    /// none) at Weft's index, with Weft's id, the caller's labels under the next hop's.
    static func ownView(_ answer: Connection_Connection, sent: Connection_Connection) -> Connection_Connection {
        var o = answer
        var path = answer.hasPath && !answer.path.pathSegments.isEmpty ? answer.path : sent.path
        path.index = sent.path.index
        // Keep Weft's own segment (the next hop may have echoed it back changed).
        if Int(path.index) < path.pathSegments.count { path.pathSegments[Int(path.index)].id = sent.id }
        o.path = path
        o.id = sent.id
        o.state = .up
        o.labels = sent.labels.merging(answer.labels) { _, n in n }
        if o.networkService.isEmpty { o.networkService = sent.networkService }
        return o
    }
}

/// The next hop refused the Request (or could not be reached): DiscoverElement tries
/// the next candidate.
struct NextHopRefused: Error, CustomStringConvertible {
    let underlying: Error
    var description: String { "\(underlying)" }
}
