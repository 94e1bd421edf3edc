import Foundation
import Logging
import SwiftProtobuf
import WeftControl
import WeftKernel
import WeftModel
import WeftNSMProto

/// How Weft reaches the registry and the next hop (gRPC in weftd; replaceable in tests).
public protocol NSMPeers: Sendable {
    func findService(_ name: String) async throws -> Registry_NetworkService?
    func findEndpoints(service: String?, name: String?) async throws -> [Registry_NetworkServiceEndpoint]
    func request(_ url: NSMURL, _ req: Networkservice_NetworkServiceRequest) async throws -> Connection_Connection
    func close(_ url: NSMURL, _ conn: Connection_Connection) async throws
}

/// Weft as an NSM forwarder: the connection table and the Request / Close / expiry logic.
public final class Forwarder: @unchecked Sendable {
    struct Active {
        /// The connection as Weft's own hop sees it (index and id are Weft's segment).
        var own: Connection_Connection
        var prevIndex: UInt32
        var server: RealizedSide
        var client: RealizedSide
        var serverMech: Connection_Mechanism
        /// The next hop's answer (for Close), and where it is.
        var nextHop: Connection_Connection
        var nextHopURL: NSMURL
        var context: Connectioncontext_ConnectionContext
    }

    public let settings: NSMSettings
    let control: ControlPlane
    let peers: NSMPeers
    let clock: NSMClock
    let logger: Logger
    let plumbing: Plumbing
    let serial = AsyncSerial()
    let roundRobin = RoundRobin()
    public let monitor = MonitorHub()
    var timers: ExpiryTimers!
    private var active: [String: Active] = [:]
    private let lock = NSLock()
    var newID: @Sendable () -> String = { UUID().uuidString.lowercased() }

    public init(settings: NSMSettings, control: ControlPlane, peers: NSMPeers, clock: NSMClock = SystemClock(), logger: Logger) {
        self.settings = settings
        self.control = control
        self.peers = peers
        self.clock = clock
        self.logger = logger
        self.plumbing = Plumbing(logger: logger, runtimeDir: control.snapshot.admin.runtimeDir, forwarderName: settings.name,
                                 node: { [control] in control.snapshot })
        self.timers = ExpiryTimers(clock: clock) { [weak self] id in await self?.expire(id) }
    }

    /// Links a crashed weftd left behind (kill -9): removed at start.
    public func removeStale() async -> Int {
        await control.withKernel { Plumbing.removeStale(forwarder: settings.name, logger: logger) }
    }

    public var connectionIDs: [String] {
        lock.lock(); defer { lock.unlock() }
        return active.keys.sorted()
    }

    func get(_ id: String) -> Active? { lock.lock(); defer { lock.unlock() }; return active[id] }
    func put(_ a: Active) { lock.lock(); active[a.own.id] = a; lock.unlock() }
    func drop(_ id: String) -> Active? { lock.lock(); defer { lock.unlock() }; return active.removeValue(forKey: id) }
    public var all: [Connection_Connection] { lock.lock(); defer { lock.unlock() }; return active.values.map(\.own) }

    // MARK: Request

    /// `peerExpires`: the caller's token expiry from its gRPC metadata, if it sent one.
    public func request(_ req: Networkservice_NetworkServiceRequest, peerToken: String? = nil, peerExpires: Date? = nil) async throws -> Connection_Connection {
        try await serial.run { try await self.requestLocked(req, peerToken: peerToken, peerExpires: peerExpires) }
    }

    private func requestLocked(_ req: Networkservice_NetworkServiceRequest, peerToken: String?, peerExpires: Date?) async throws -> Connection_Connection {
        guard req.hasConnection else { throw NSMError(.invalidArgument, "request", "connection is missing") }
        var conn = req.connection
        guard !conn.networkService.isEmpty else { throw NSMError(.invalidArgument, "request", "connection.network_service is empty") }
        if conn.hasPath, !conn.path.pathSegments.isEmpty, Int(conn.path.index) >= conn.path.pathSegments.count {
            throw NSMError(.invalidArgument, "path", "connection.path.index \(conn.path.index) is past the last of \(conn.path.pathSegments.count) segments")
        }
        var path = conn.path
        let prev = try PathOps.update(&path, name: settings.name, newID: newID)
        let own = Int(path.index)
        let now = clock.now()
        if prev != path.index {
            if let t = peerToken { path.pathSegments[Int(prev)].token = t }
            if let e = peerExpires { path.pathSegments[Int(prev)].expires = Google_Protobuf_Timestamp(date: e) }
        }
        path.pathSegments[own].expires = Google_Protobuf_Timestamp(date: now.addingTimeInterval(settings.maxTokenLifetime.seconds))
        conn.path = path
        conn.id = path.pathSegments[own].id
        let id = conn.id
        let firstID = path.pathSegments[0].id

        // The connection closes itself at the caller's expiry unless refreshed.
        let prevSeg = path.pathSegments[Int(prev)]
        let deadline = prev != path.index && prevSeg.hasExpires ? prevSeg.expires.date
            : now.addingTimeInterval(settings.maxTokenLifetime.seconds)

        if conn.state == .reselectRequested, let old = get(id) {
            logger.notice("connection \(id): reselect requested, closing the old one")
            await teardown(old, callNextHop: true, reason: "reselect")
            conn.state = .up
            conn.networkServiceEndpointName = ""
            conn.mechanism = Connection_Mechanism()
        }

        let serverMech = try MechanismPolicy.chooseServer(current: conn.hasMechanism ? conn.mechanism : nil, preferences: req.mechanismPreferences)

        if let cur = get(id) {
            if sameServerSide(cur, serverMech) {
                return try await refresh(cur, conn: conn, prev: prev, deadline: deadline)
            }
            logger.notice("connection \(id): mechanism changed, rebuilding")
            await teardown(cur, callNextHop: false, reason: "mechanism changed")
        }
        return try await build(conn: conn, serverPref: serverMech, prev: prev, firstID: firstID, deadline: deadline)
    }

    func sameServerSide(_ a: Active, _ m: Connection_Mechanism) -> Bool {
        guard a.serverMech.type == m.type else { return false }
        let keys = [Mech.inodeURL, Mech.name, Mech.srcIP, Mech.srcPort, Mech.vni]
        return keys.allSatisfy { k in (m.parameters[k] ?? "") == (a.serverMech.parameters[k] ?? "") || m.parameters[k] == nil }
    }

    /// A refresh: the next hop is refreshed; what is already right stays untouched.
    private func refresh(_ cur: Active, conn: Connection_Connection, prev: UInt32, deadline: Date) async throws -> Connection_Connection {
        var out = cur
        var next = conn
        next.mechanism = cur.nextHop.mechanism
        next.networkServiceEndpointName = cur.nextHop.networkServiceEndpointName
        next.context = cur.context
        var r = Networkservice_NetworkServiceRequest()
        r.connection = next
        r.mechanismPreferences = [cur.nextHop.mechanism]
        let answer: Connection_Connection
        do {
            answer = try await peers.request(cur.nextHopURL, r)
        } catch {
            throw NSMError(.unavailable, "refresh at next hop \(cur.nextHopURL)", "\(error)")
        }
        if answer.context != cur.context {
            logger.info("connection \(cur.own.id): context changed on refresh; applying it")
            try await control.withKernel {
                try plumbing.applyContext(answer.context, on: cur.server, peer: cur.client)
                try plumbing.applyContext(answer.context, on: cur.client, peer: cur.server)
            }
            out.context = answer.context
        }
        out.nextHop = answer
        out.own = compose(answer: answer, conn: conn, serverMech: cur.serverMech, prevIndex: prev)
        out.own.path.pathSegments[Int(out.own.path.index)].metrics = await metrics(out)
        put(out)
        timers.arm(out.own.id, at: deadline)
        await monitor.publish(.update, [out.own])
        return callerView(out.own, prev: prev)
    }

    /// Find the endpoint, ask it, plumb both sides, cross-connect: all or nothing.
    private func build(conn: Connection_Connection, serverPref: Connection_Mechanism, prev: UInt32, firstID: String,
                       deadline: Date) async throws -> Connection_Connection {
        var conn = conn
        let id = conn.id
        // Kernel steps (veths, sockets) and the dataplane change undo separately:
        // the dataplane's first, then the kernel's, in reverse order.
        var undo: [() -> Void] = []
        var undoDataplane: (() async -> Void)? = nil
        var nextHopDone: (NSMURL, Connection_Connection)? = nil
        func rollback() async {
            await undoDataplane?()
            await control.withKernel { for u in undo.reversed() { u() } }
            if let (url, c) = nextHopDone {
                do { try await peers.close(url, c) } catch { logger.warning("rollback: close at \(url) failed: \(error)") }
            }
        }
        do {
            // 1. The server side first: a bad parameter fails before anything is asked of the endpoint.
            let mtuHint = UInt32(conn.context.mtu)
            let (server, serverMech) = try await control.withKernel {
                try plumbing.prepare(serverPref, side: .server, connectionID: id, firstSegmentID: firstID, mtu: mtuHint, undo: &undo)
            }
            // A tunnel caps the connection's MTU (uplink MTU less 54/74).
            if let t = server.tunnelMTU { conn.context.mtu = Self.clamp(conn.context.mtu, t) }
            // 2. The endpoint.
            var (url, answer) = try await askEndpoint(conn)
            nextHopDone = (url, answer)
            guard answer.hasMechanism, !answer.mechanism.type.isEmpty else {
                throw NSMError(.failedPrecondition, "endpoint", "the next hop's answer carries no mechanism")
            }
            let remoteAnswer = answer.mechanism.cls == Mech.remote || [Mech.vxlan, Mech.vlan].contains(answer.mechanism.type)
            if url.isLocal == remoteAnswer {
                throw NSMError(.failedPrecondition, "endpoint", "the next hop at \(url) answered with \(answer.mechanism.cls) \(answer.mechanism.type); a \(url.isLocal ? "unix" : "tcp") next hop must use \(url.isLocal ? "LOCAL" : "REMOTE") mechanisms")
            }
            // 3. The client side, as the next hop chose it.
            let nextMech = answer.mechanism, nextMTU = answer.context.mtu, via = answer.labels[Mech.via]
            let (client, _) = try await control.withKernel {
                try plumbing.prepare(nextMech, side: .client, connectionID: id, firstSegmentID: firstID, mtu: nextMTU,
                                     viaLabel: via, undo: &undo)
            }
            if let t = client.tunnelMTU { answer.context.mtu = Self.clamp(answer.context.mtu, t) }
            // 4. Dataplane: both interfaces and the cross-connect in one transaction.
            let xc = CrossConnectConfig(name: Names.crossConnect(id), a: server.interface.name, b: client.interface.name)
            do {
                _ = try await control.applyDynamic(adding: [server.interface, client.interface], crossConnects: [xc], removing: [])
            } catch {
                throw NSMError(.internalError, "dataplane", "\(error)")
            }
            undoDataplane = { [control, logger] in
                do { _ = try await control.applyDynamic(adding: [], crossConnects: [], removing: [xc.name, server.interface.name, client.interface.name]) }
                catch { logger.warning("undo: dataplane: \(error)") }
            }
            // 5. The IP context inside both pods.
            let ctx = answer.context
            try await control.withKernel {
                try plumbing.applyContext(ctx, on: server, peer: client)
                try plumbing.applyContext(ctx, on: client, peer: server)
            }

            var a = Active(own: Connection_Connection(), prevIndex: prev, server: server, client: client, serverMech: serverMech,
                           nextHop: answer, nextHopURL: url, context: answer.context)
            a.own = compose(answer: answer, conn: conn, serverMech: serverMech, prevIndex: prev)
            a.own.path.pathSegments[Int(a.own.path.index)].metrics = await metrics(a)
            put(a)
            timers.arm(id, at: deadline)
            logger.notice("connection \(id) up: \(serverMech.type) \(server.podIfName ?? server.socketfile ?? "") <-> \(answer.mechanism.type) \(client.podIfName ?? client.socketfile ?? "") via \(answer.networkServiceEndpointName)")
            await monitor.publish(.update, [a.own])
            return callerView(a.own, prev: prev)
        } catch {
            await rollback()
            logger.warning("request for connection \(id) failed and was rolled back: \(error)")
            throw error
        }
    }

    static func clamp(_ mtu: UInt32, _ limit: Int) -> UInt32 {
        let l = UInt32(max(0, limit))
        return mtu == 0 ? l : min(mtu, l)
    }

    /// Discover candidates (a named endpoint on refresh/heal, else the service's matches),
    /// then try them in round-robin order until one answers.
    private func askEndpoint(_ conn: Connection_Connection) async throws -> (NSMURL, Connection_Connection) {
        var candidates: [Registry_NetworkServiceEndpoint]
        var payload = conn.payload
        do {
            if !conn.networkServiceEndpointName.isEmpty {
                candidates = try await peers.findEndpoints(service: nil, name: conn.networkServiceEndpointName)
                if candidates.isEmpty {
                    throw NSMError(.notFound, "discover", "network service endpoint '\(conn.networkServiceEndpointName)' is not registered")
                }
            } else {
                guard let ns = try await peers.findService(conn.networkService) else {
                    throw NSMError(.notFound, "discover", "network service '\(conn.networkService)' is not registered")
                }
                if payload.isEmpty { payload = ns.payload }
                let all = try await peers.findEndpoints(service: conn.networkService, name: nil)
                    .filter { !$0.hasExpirationTime || $0.expirationTime.date > clock.now() }
                candidates = roundRobin.order(conn.networkService,
                                              PathOps.matchEndpoints(labels: conn.labels, service: ns, endpoints: all))
                if candidates.isEmpty {
                    throw NSMError(.notFound, "discover", "no endpoint of network service '\(conn.networkService)' matches labels \(conn.labels)")
                }
            }
        } catch let e as NSMError { throw e } catch {
            throw NSMError(.unavailable, "discover", "registry at \(settings.connectTo): \(error)")
        }
        var failures: [String] = []
        for nse in candidates {
            let url: NSMURL
            do { url = try NSMURL.parse(nse.url) } catch {
                failures.append("\(nse.name): \(error)")
                continue
            }
            var c = conn
            c.networkServiceEndpointName = nse.name
            c.payload = payload
            c.mechanism = Connection_Mechanism()
            c.clearMechanism()
            var r = Networkservice_NetworkServiceRequest()
            r.connection = c
            r.mechanismPreferences = MechanismPolicy.clientPreferences(nextHopLocal: url.isLocal, connection: c, priority: settings.mechanismPriority,
                                                                       tunnel: plumbing.offeredTunnel)
            do {
                var answer = try await peers.request(url, r)
                if answer.networkServiceEndpointName.isEmpty { answer.networkServiceEndpointName = nse.name }
                return (url, answer)
            } catch {
                failures.append("\(nse.name) at \(nse.url): \(error)")
            }
        }
        throw NSMError(.unavailable, "endpoint", "no endpoint accepted the request: " + failures.joined(separator: "; "))
    }

    /// The connection as Weft's hop holds it: the endpoint's answer with Weft's index,
    /// id and server-side mechanism.
    func compose(answer: Connection_Connection, conn: Connection_Connection, serverMech: Connection_Mechanism, prevIndex: UInt32) -> Connection_Connection {
        var o = answer
        var path = answer.hasPath && !answer.path.pathSegments.isEmpty ? answer.path : conn.path
        path.index = conn.path.index
        // Keep Weft's own segment (the next hop may have echoed it back changed).
        if Int(path.index) < path.pathSegments.count { path.pathSegments[Int(path.index)].id = conn.id }
        o.path = path
        o.id = conn.id
        o.mechanism = serverMech
        o.state = .up
        o.labels = conn.labels.merging(answer.labels) { _, n in n }
        if o.networkService.isEmpty { o.networkService = conn.networkService }
        // The connection MTU is at most the smaller of the two sides'.
        return o
    }

    /// What the caller gets back: its own index and id.
    func callerView(_ c: Connection_Connection, prev: UInt32) -> Connection_Connection {
        var o = c
        o.path.index = prev
        o.id = o.path.pathSegments[Int(prev)].id
        return o
    }

    /// server_* / client_* rx/tx bytes, packets and drops (reference §10), from Weft's counters.
    func metrics(_ a: Active) async -> [String: String] {
        let st = Dictionary(await control.interfaceStatus().map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        var m: [String: String] = [:]
        for (prefix, side) in [("server", a.server), ("client", a.client)] {
            guard let s = st[side.interface.name] else { continue }
            let c = s.counters
            m["\(prefix)_rx_bytes"] = String(c.rxBytes)
            m["\(prefix)_tx_bytes"] = String(c.txBytes)
            m["\(prefix)_rx_packets"] = String(c.rxPackets)
            m["\(prefix)_tx_packets"] = String(c.txPackets)
            m["\(prefix)_drops"] = String(c.drops.values.reduce(0, +))
            m["\(prefix)_interface"] = side.type + "/" + (side.podIfName ?? side.socketfile ?? side.interface.name)
        }
        return m
    }

    // MARK: Close and expiry

    public func close(_ c: Connection_Connection) async throws {
        try await serial.run { try await self.closeLocked(c) }
    }

    private func closeLocked(_ c: Connection_Connection) async throws {
        let id = ownID(of: c)
        guard let id, let a = get(id) else {
            throw NSMError(.notFound, "close", "no connection \(id ?? c.id) (connection.id '\(c.id)') is known here")
        }
        await teardown(a, callNextHop: true, reason: "close")
    }

    /// Weft's segment id for a connection as the caller names it.
    func ownID(of c: Connection_Connection) -> String? {
        if get(c.id) != nil { return c.id }
        let segs = c.path.pathSegments
        let i = Int(c.path.index)
        if i < segs.count, segs[i].name == settings.name { return segs[i].id }
        if i + 1 < segs.count, segs[i + 1].name == settings.name { return segs[i + 1].id }
        return segs.first(where: { $0.name == settings.name })?.id
    }

    func expire(_ id: String) async {
        _ = try? await serial.run { [self] in
            guard let a = get(id) else { return }
            logger.notice("connection \(id) expired (not refreshed before the caller's segment expiry): closing")
            await teardown(a, callNextHop: true, reason: "expired")
        }
    }

    /// Remove everything the connection built; optionally Close at the next hop.
    func teardown(_ a: Active, callNextHop: Bool, reason: String) async {
        let id = a.own.id
        timers.cancel(id)
        _ = drop(id)
        do {
            _ = try await control.applyDynamic(adding: [], crossConnects: [],
                                            removing: [Names.crossConnect(id), a.server.interface.name, a.client.interface.name])
        } catch { logger.error("connection \(id): dataplane teardown: \(error)") }
        await control.withKernel {
            plumbing.remove(a.server)
            plumbing.remove(a.client)
        }
        if callNextHop {
            do { try await peers.close(a.nextHopURL, a.nextHop) } catch {
                logger.warning("connection \(id): Close at \(a.nextHopURL) failed: \(error)")
            }
        }
        logger.notice("connection \(id) closed (\(reason))")
        await monitor.publish(.delete, [a.own])
    }

    /// SIGTERM: close every connection locally, without calling the next hops.
    public func shutdown() async {
        timers.cancelAll()
        _ = try? await serial.run { [self] in
            for id in connectionIDs { if let a = get(id) { await teardown(a, callNextHop: false, reason: "shutdown") } }
        }
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

    public init() {}

    public func subscribe(_ sel: Connection_MonitorScopeSelector) -> (UUID, AsyncStream<Connection_ConnectionEvent>) {
        let (stream, cont) = AsyncStream<Connection_ConnectionEvent>.makeStream()
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
        for (_, s) in subs {
            var e = Connection_ConnectionEvent()
            e.type = type
            for c in conns where PathOps.matches(s.selector, c) {
                var cc = c
                if type == .delete { cc.state = .down }
                e.connections[c.id] = cc
            }
            if !e.connections.isEmpty { s.continuation.yield(e) }
        }
    }

    public var subscriberCount: Int { subs.count }

    /// Shutdown: end every stream so the RPCs return.
    public func finishAll() {
        for (_, s) in subs { s.continuation.finish() }
        subs = [:]
    }
}
