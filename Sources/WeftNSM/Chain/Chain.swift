import Foundation
import Synchronization
import WeftNSMProto

/// One step of the forwarder, in the spirit of NSM's `networkservice.NetworkServiceServer`:
/// it does its part of a Request, hands the request on (`next`), and finishes its part
/// on the way back; Close undoes its part and hands the Close on.
///
/// The contract every element keeps (NSM's):
///  - an element that throws from `request` leaves nothing behind: neither its own work
///    nor that of the elements after it. An element whose work after `next` returned
///    fails therefore closes the rest (`next.close(.rollback)`) before throwing; an error
///    from `next` only needs the element's own work undone;
///  - a refresh (`r.isRefresh`) rebuilds nothing, and its failure leaves the connection
///    as it was (nothing is closed);
///  - `close` is best effort below the connection table: elements log what fails and
///    go on, so everything that can be removed is.
protocol NSMElement: Sendable {
    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection
    func close(_ c: NSMClose, next: NSMNext) async throws
}

/// The rest of a chain, as an element sees it.
struct NSMNext: Sendable {
    let rest: ArraySlice<any NSMElement>

    init(_ elements: [any NSMElement]) { rest = elements[...] }
    private init(rest: ArraySlice<any NSMElement>) { self.rest = rest }

    /// The end of the chain answers with the connection as it arrived.
    func request(_ r: inout NSMRequest) async throws -> Connection_Connection {
        guard let e = rest.first else { return r.conn }
        return try await e.request(&r, next: NSMNext(rest: rest.dropFirst()))
    }

    func close(_ c: NSMClose) async throws {
        guard let e = rest.first else { return }
        try await e.close(c, next: NSMNext(rest: rest.dropFirst()))
    }
}

/// What a connection has between requests: each element's part of it. Stored in the
/// connection table when a request succeeds; what Close and expiry tear down.
struct ConnectionState: Sendable {
    /// Weft's connection id: its own path segment's id.
    var id: String
    /// The connection as Weft's hop holds it (its own index and id): what Monitor publishes.
    var own = Connection_Connection()
    /// Towards the caller: the mechanism as Weft answered it, and what realizes it.
    var serverMechanism = Connection_Mechanism()
    var server: RealizedSide?
    /// Towards the next hop: what realizes the mechanism it chose.
    var client: RealizedSide?
    /// The dataplane's cross-connect between the two sides.
    var crossConnect: String?
    /// The next hop's answer (what Close is sent with), and where it is.
    var nextHop = Connection_Connection()
    var nextHopURL: NSMURL?
    /// The IP context applied in the pods.
    var context = Connectioncontext_ConnectionContext()

    init(id: String) { self.id = id }
}

/// One Request on its way through the chain.
struct NSMRequest: Sendable {
    /// As the caller sent it (its mechanism preferences are the server side's choices).
    let received: Networkservice_NetworkServiceRequest
    /// Who called and what it sent besides the request: its TLS identity, its token
    /// and the token's expiry (gRPC metadata), its deadline, the fds it passed.
    let caller: NSMCaller
    var peerToken: String? { caller.token }
    var peerExpires: Date? { caller.expires }

    /// The connection as Weft's hop sees it once `PathElement` ran: path updated, id
    /// = Weft's segment id, `path.index` = Weft's index. Elements adjust it on its way to
    /// the next hop (MTU, endpoint name, payload, mechanism); Connect sends it.
    var conn = Connection_Connection()
    /// The caller's index and id (restored on the way back), and the first segment's id
    /// (pod interface aliases are made of it).
    var prevIndex: UInt32 = 0
    var callerID = ""
    var firstSegmentID = ""

    /// A refresh of an existing connection (same id, same mechanism towards the caller):
    /// `state` starts as what the connection has. Otherwise `state` starts empty.
    var isRefresh = false
    var state = ConnectionState(id: "")
    /// The mechanism towards the caller: the connection's, else the first served preference.
    var serverMechanism = Connection_Mechanism()

    /// The next hop chosen (Discover), and what Weft offers it (ClientMechanism).
    var nextHopURL: NSMURL?
    var clientPreferences: [Connection_Mechanism] = []

    init(_ received: Networkservice_NetworkServiceRequest, caller: NSMCaller = NSMCaller()) {
        self.received = received
        self.caller = caller
    }

    /// Weft's own index in `conn.path`.
    var ownIndex: Int { Int(conn.path.index) }

    /// A Close of what this request has built so far (an element's rollback).
    var rollback: NSMClose {
        var c = NSMClose(conn, reason: .rollback)
        c.id = conn.id
        c.state = state
        return c
    }
}

/// One Close on its way through the chain: from the caller, an expiry, a reselect or
/// a rebuild, shutdown, or an element rolling back a failed request.
struct NSMClose: Sendable {
    enum Reason: String, Sendable {
        case close, expired, reselect, mechanismChanged = "mechanism changed", shutdown, rollback
        case netnsGone = "client pod gone"
    }
    /// As the caller sent it (for a Close from outside), else Weft's own view.
    var connection: Connection_Connection
    var reason: Reason
    /// Weft's connection id, once known (PathElement finds it from the caller's path).
    var id: String?
    /// What the connection has (BeginElement looks it up).
    var state: ConnectionState?
    /// Who sent it (a Close from outside); nil for Weft's own Closes.
    var caller: NSMCaller?

    init(_ connection: Connection_Connection, reason: Reason) {
        self.connection = connection
        self.reason = reason
    }

    /// Whether the next hop is closed too: not when the connection is rebuilt towards
    /// the same next hop, nor at shutdown (the next hops keep theirs until it expires).
    var closesNextHop: Bool { reason != .mechanismChanged && reason != .shutdown }
}

/// The connections Weft holds, by Weft's connection id.
final class ConnectionTable: Sendable {
    private let rows = Mutex<[String: ConnectionState]>([:])

    init() {}

    subscript(id: String) -> ConnectionState? {
        get { rows.withLock { $0[id] } }
        set { rows.withLock { $0[id] = newValue } }
    }

    @discardableResult
    func remove(_ id: String) -> ConnectionState? { rows.withLock { $0.removeValue(forKey: id) } }

    func contains(_ id: String) -> Bool { rows.withLock { $0[id] != nil } }

    var ids: [String] { rows.withLock { $0.keys.sorted() } }

    /// How many connections there are, and of them the client `client`'s (the first
    /// path segment's name).
    func counts(client: String) -> (total: Int, ofClient: Int) {
        rows.withLock { r in (r.count, r.values.reduce(0) { $0 + ($1.own.path.pathSegments.first?.name == client ? 1 : 0) }) }
    }
    var all: [ConnectionState] { rows.withLock { Array($0.values) } }

    /// Another connection (not `except`) whose path starts with the segment id `first`.
    func id(firstSegment first: String, except: String) -> String? {
        rows.withLock { r in r.first { $0.key != except && $0.value.own.path.pathSegments.first?.id == first }?.key }
    }
}

/// A tunnel caps a connection's MTU (uplink MTU less 54/74 bytes); 0 means unset.
func clampMTU(_ mtu: UInt32, _ limit: Int) -> UInt32 {
    let l = UInt32(max(0, limit))
    return mtu == 0 ? l : min(mtu, l)
}
