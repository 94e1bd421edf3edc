import Foundation
import Logging
import WeftKernel
import WeftNSMProto

/// NSM's begin, over Weft's connection table: decides what a Request is and stores
/// what it built.
///  - a first request (no connection with this id): a build;
///  - RESELECT_REQUESTED on a known connection: the old one is closed everywhere
///    (next hop included), then a build from scratch (no endpoint, no mechanism);
///  - the same mechanism towards the caller: a refresh (nothing rebuilt);
///  - another mechanism: the old one is closed here (not at the next hop), then a build.
/// Close looks the connection up (unknown: notFound; an expiry of a connection already
/// gone: nothing) and removes it from the table.
struct BeginElement: NSMElement {
    let table: ConnectionTable
    let logger: Logger
    /// Bounds on new connections: on the node, and per client pod (the path's first
    /// segment name, as NSM names the client). Refreshes are never refused.
    var maxConnections = Int.max
    var maxPerClient = Int.max
    /// The node serves LOCAL VFIO (SR-IOV configured).
    var servesVFIO = false

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        let id = r.conn.id
        var existing = table[id]
        if r.conn.state == .reselectRequested, let old = existing {
            logger.notice("connection \(id): reselect requested, closing the old one")
            await closeExisting(old, reason: .reselect, next: next)
            existing = nil
            r.conn.state = .up
            r.conn.networkServiceEndpointName = ""
            r.conn.mechanism = Connection_Mechanism()
        }

        r.serverMechanism = try MechanismPolicy.chooseServer(current: r.conn.hasMechanism ? r.conn.mechanism : nil,
                                                             preferences: r.received.mechanismPreferences, vfio: servesVFIO)
        if let cur = existing {
            if Self.sameServerSide(cur.serverMechanism, r.serverMechanism) {
                r.isRefresh = true
                r.state = cur
            } else {
                logger.notice("connection \(id): mechanism changed, rebuilding")
                await closeExisting(cur, reason: .mechanismChanged, next: next)
            }
        }
        if !r.isRefresh {
            let client = r.conn.path.pathSegments.first?.name ?? ""
            let (total, ofClient) = table.counts(client: client)
            if total >= maxConnections {
                throw NSMError(.resourceExhausted, "begin", "the node has \(total) connections, its limit (nsm.max_connections)")
            }
            if ofClient >= maxPerClient {
                throw NSMError(.resourceExhausted, "begin", "client '\(client)' has \(ofClient) connections, its limit (nsm.max_connections_per_client)")
            }
            // The pods' interfaces are named by the first path segment's id (alias
            // server-/client-<id>), and a build removes links with its alias first: a second
            // connection for the same client connection removed the first one's interfaces,
            // which Weft still held (found by fuzz_requests.py).
            if let other = table.id(firstSegment: r.firstSegmentID, except: id) {
                throw NSMError(.alreadyExists, "begin", "connection \(other) already serves the client connection '\(r.firstSegmentID)' (path segment 0): refresh it with its path (Weft's segment included) or Close it first")
            }
            r.state = ConnectionState(id: id)
        }

        let result: Connection_Connection
        do {
            result = try await next.request(&r)
        } catch {
            if !r.isRefresh { logger.warning("request for connection \(id) failed and was rolled back: \(error)") }
            throw error
        }
        r.state.own = result
        table[id] = r.state
        if !r.isRefresh {
            let s = r.state
            logger.notice("connection \(id) up: \(s.serverMechanism.type) \(Self.describe(s.server)) <-> \(s.nextHop.mechanism.type) \(Self.describe(s.client)) via \(s.nextHop.networkServiceEndpointName)")
        }
        return result
    }

    func close(_ c: NSMClose, next: NSMNext) async throws {
        let id = c.id ?? c.connection.id
        guard let st = table.remove(id) else {
            if c.reason == .expired || c.reason == .shutdown { return }
            throw NSMError(.notFound, "close", "no connection \(id) (connection.id '\(c.connection.id)') is known here")
        }
        if c.reason == .expired {
            logger.notice("connection \(id) expired (not refreshed before the caller's segment expiry): closing")
        }
        var c = c
        c.id = id
        c.state = st
        try await next.close(c)
        logger.notice("connection \(id) closed (\(c.reason.rawValue))")
    }

    /// Close a connection this request replaces, through the rest of the chain.
    private func closeExisting(_ old: ConnectionState, reason: NSMClose.Reason, next: NSMNext) async {
        table.remove(old.id)
        var c = NSMClose(old.own, reason: reason)
        c.id = old.id
        c.state = old
        do { try await next.close(c) } catch { logger.warning("connection \(old.id): closing for \(reason.rawValue): \(error)") }
        logger.notice("connection \(old.id) closed (\(reason.rawValue))")
    }

    /// The caller's side is unchanged: same type, and no parameter Weft keys it by differs.
    static func sameServerSide(_ current: Connection_Mechanism, _ m: Connection_Mechanism) -> Bool {
        guard current.type == m.type else { return false }
        var keys = [Mech.inodeURL, Mech.name, Mech.srcIP, Mech.srcPort, Mech.vni]
        // A v1.1 memif's inodeURL is Weft's own socket file, which the caller gets back as
        // an inode URL (grpcfd): it differs from the file:// Weft keeps. Comparing the
        // strings made every refresh close the connection and fail to rebuild it (found by
        // NSMChaosSystemTests). Another URL (a pod's namespace) is still a change.
        if Mech.isMemifSocketFile(current), let sent = m.parameters[Mech.inodeURL],
           let path = current.parameters[Mech.socketfile], Mech.namesSocketFile(sent, path: path) {
            keys.removeAll { $0 == Mech.inodeURL }
        }
        return keys.allSatisfy { k in (m.parameters[k] ?? "") == (current.parameters[k] ?? "") || m.parameters[k] == nil }
    }

    static func describe(_ s: RealizedSide?) -> String {
        guard let s else { return "" }
        return s.podIfName ?? s.socketfile ?? ""
    }
}
