import Foundation
import Logging
import Synchronization
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

/// Weft as an NSM forwarder: a chain of small elements (Chain/), as NSM's SDK builds
/// its forwarders, each doing one part of Request and undoing it in Close:
///
///     path         updatepath, updatetoken: Weft's segment, id and expiry
///     authorize    Weft's token for the caller; NSM's policies on the path (mTLS only)
///     serialize    one Request / Close per connection at a time
///     begin        the connection table: build, refresh, reselect, rebuild
///     timeout      expiry timers (armed on success, cancelled on Close)
///     monitor      UPDATE / DELETE events
///     metrics      the dataplane's counters into Weft's path segment
///     server mech  the caller's side (veth / memif / VXLAN), before anything else
///     context      the IP context in both pods
///     cross-connect the dataplane change (both interfaces and the cross-connect)
///     discover     registry look-up and round robin over the candidates
///     client mech  what to offer the next hop, and its side once it chose
///     connect      the next hop's Request / Close, and the checks of its answer
///
/// With OpenTelemetry on (`tracer`), each element runs in a span of its own
/// (`<step>/Request`, `<step>/Close`, Tracing/TracedElement.swift), under the server
/// span of the call.
public final class Forwarder: Sendable {
    public let settings: NSMSettings
    public let monitor: MonitorHub
    /// Request / Close outcomes and latencies, for /metrics.
    public let metrics = NSMMetrics()
    /// OpenTelemetry spans (nil: off).
    public let tracer: NSMTracer?
    let control: ControlPlane
    let logger: Logger
    let table = ConnectionTable()
    let serial = KeyedSerial()
    let timers: ExpiryTimers
    /// Request and Close from outside, and expiries, enter at the top.
    let chain: NSMNext
    /// Shutdown enters after serialization (which it has closed).
    let afterSerialize: NSMNext

    public init(settings: NSMSettings, control: ControlPlane, peers: NSMPeers, clock: NSMClock = SystemClock(), logger: Logger,
                security: NSMSecurity? = nil, newID: @escaping @Sendable () -> String = { UUID().uuidString.lowercased() },
                tracer: NSMTracer? = nil, sriov: SRIOVService? = nil) {
        self.settings = settings
        self.tracer = tracer
        self.monitor = MonitorHub(maxSubscribers: settings.maxMonitorStreams)
        self.control = control
        self.logger = logger
        let plumbing = Plumbing(logger: logger, runtimeDir: control.snapshot.admin.runtimeDir, forwarderName: settings.name,
                                node: { [control] in control.snapshot }, sriov: sriov)
        // The timers fire into the chain that holds them: through a route set below.
        let route = ExpiryRoute()
        timers = ExpiryTimers(clock: clock) { id in await route.fire(id) }
        let inner = Self.traced([
            (NSMStep.begin, BeginElement(table: table, logger: logger, maxConnections: settings.maxConnections,
                                         maxPerClient: settings.maxConnectionsPerClient, servesVFIO: sriov != nil)),
            (NSMStep.timeout, TimeoutElement(timers: timers)),
            (NSMStep.monitor, MonitorElement(hub: monitor)),
            (NSMStep.metrics, MetricsElement(control: control)),
            (NSMStep.serverMechanism, ServerMechanismElement(control: control, plumbing: plumbing)),
            (NSMStep.ipContext, ContextElement(control: control, plumbing: plumbing, logger: logger)),
            (NSMStep.crossConnect, CrossConnectElement(control: control, logger: logger)),
            (NSMStep.discover, DiscoverElement(peers: peers, clock: clock, roundRobin: RoundRobin(), registry: settings.connectTo)),
            (NSMStep.clientMechanism, ClientMechanismElement(control: control, plumbing: plumbing, priority: settings.mechanismPriority)),
            (NSMStep.connect, ConnectElement(peers: peers, logger: logger)),
        ], tracer)
        let outer = Self.traced([
            (NSMStep.path, PathElement(name: settings.name, maxTokenLifetime: settings.maxTokenLifetime.seconds, clock: clock,
                                       newID: newID, table: table)),
            (NSMStep.authorize, AuthorizeElement(security: security, clock: clock)),
            (NSMStep.serialize, SerializeElement(serial: serial)),
        ], tracer)
        chain = NSMNext(outer + inner)
        afterSerialize = NSMNext(inner)
        route.set { [weak self] id in await self?.expire(id) }
    }

    /// Links and v1.1 memif socket files a crashed weftd left behind (kill -9): removed
    /// at start, before any connection exists (a heal builds its socket anew).
    public func removeStale() async -> Int {
        let dir = control.snapshot.admin.runtimeDir
        return await control.withKernel { [settings, logger] in
            Plumbing.removeStale(forwarder: settings.name, logger: logger)
                + Plumbing.removeStaleMemifSockets(runtimeDir: dir, logger: logger)
        }
    }

    public var connectionIDs: [String] { table.ids }
    public var all: [Connection_Connection] { table.all.map(\.own) }

    /// `peerToken` / `peerExpires`: the caller's token and its expiry from its gRPC
    /// metadata, if it sent them.
    public func request(_ req: Networkservice_NetworkServiceRequest, peerToken: String? = nil, peerExpires: Date? = nil) async throws -> Connection_Connection {
        try await request(req, caller: NSMCaller(token: peerToken, expires: peerExpires))
    }

    public func request(_ req: Networkservice_NetworkServiceRequest, caller: NSMCaller) async throws -> Connection_Connection {
        var r = NSMRequest(req, caller: caller)
        return try await chain.request(&r)
    }

    public func close(_ c: Connection_Connection, caller: NSMCaller = NSMCaller()) async throws {
        var close = NSMClose(c, reason: .close)
        close.caller = caller
        try await chain.close(close)
    }

    /// A connection's timer fired: Close it everywhere (if it is still there).
    func expire(_ id: String) async { await close(id: id, reason: .expired) }

    /// Close one of Weft's connections everywhere, for a reason of Weft's own.
    func close(id: String, reason: NSMClose.Reason) async {
        var c = NSMClose(Connection_Connection(), reason: reason)
        c.id = id
        do { try await traced(close: reason, id: id) { try await chain.close(c) } } catch {
            logger.debug("connection \(id): \(reason.rawValue): \(error)")
        }
    }

    /// SIGTERM: close every connection locally, without calling the next hops. Requests
    /// in flight finish first; new ones are refused.
    public func shutdown() async {
        timers.cancelAll()
        await serial.close()
        timers.cancelAll()
        for st in table.all {
            var c = NSMClose(st.own, reason: .shutdown)
            c.id = st.id
            try? await traced(close: .shutdown, id: st.id) { try await afterSerialize.close(c) }
        }
    }
}

/// Where the expiry timers send a fired key, set once the forwarder exists.
final class ExpiryRoute: Sendable {
    private let target = Mutex<(@Sendable (String) async -> Void)?>(nil)
    func set(_ t: @escaping @Sendable (String) async -> Void) { target.withLock { $0 = t } }
    func fire(_ id: String) async {
        guard let t = target.withLock({ $0 }) else { return }
        await t(id)
    }
}
