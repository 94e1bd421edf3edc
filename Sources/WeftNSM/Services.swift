import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import SwiftProtobuf
import Synchronization
import Crypto
import X509
import WeftControl
import WeftKernel
import WeftMetrics
import WeftModel
import WeftNSMProto

extension NSMError {
    var rpc: RPCError {
        let c: RPCError.Code
        switch code {
        case .invalidArgument: c = .invalidArgument
        case .notFound: c = .notFound
        case .failedPrecondition: c = .failedPrecondition
        case .unavailable: c = .unavailable
        case .internalError: c = .internalError
        case .alreadyExists: c = .alreadyExists
        case .permissionDenied: c = .permissionDenied
        case .resourceExhausted: c = .resourceExhausted
        }
        return RPCError(code: c, message: description)
    }
}

func asRPC(_ e: Error) -> RPCError {
    if let e = e as? NSMError { return e.rpc }
    if let e = e as? RPCError { return e }
    return RPCError(code: .internalError, message: "\(e)")
}

/// `networkservice.NetworkService`. The caller's token, expiry and deadline come from
/// the call's metadata, its identity from the TLS handshake, its fds from `files`.
struct NetworkServiceImpl: Networkservice_NetworkService.ServiceProtocol {
    let forwarder: Forwarder
    /// The fds callers passed on their connection (grpcfd), found by the call's remote peer.
    var files: (@Sendable (ServerContext) -> (any NSMFiles)?)? = nil

    func caller(_ metadata: Metadata, _ context: ServerContext) -> NSMCaller {
        var c = NSMCaller.from(metadata: metadata, context: context)
        c.files = files?(context)
        return c
    }

    func request(request: ServerRequest<Networkservice_NetworkServiceRequest>, context: ServerContext) async throws
        -> ServerResponse<Connection_Connection> {
        let start = ContinuousClock.now
        var attrs = connectionAttributes(request.message.connection)
        let prefs = request.message.mechanismPreferences.map(\.type)
        if !prefs.isEmpty { attrs.append((NSMSpanKey.preferences, .strings(prefs))) }
        return try await forwarder.serve("Request", metadata: request.metadata, attributes: attrs) { span in
            do {
                let conn = try await forwarder.request(request.message, caller: caller(request.metadata, context))
                forwarder.metrics.record("request", nil, since: start)
                if let span {
                    // Weft's own segment follows the caller's in the answer's path.
                    let own = Int(conn.path.index) + 1
                    if own < conn.path.pathSegments.count { span.set(NSMSpanKey.connectionID, conn.path.pathSegments[own].id) }
                    span.set(NSMSpanKey.serverMechanism, conn.mechanism.type)
                    span.set(NSMSpanKey.endpoint, conn.networkServiceEndpointName)
                }
                return ServerResponse(message: conn)
            } catch {
                let e = asRPC(error)
                forwarder.metrics.record("request", e.code, since: start)
                throw e
            }
        }
    }

    func close(request: ServerRequest<Connection_Connection>, context: ServerContext) async throws
        -> ServerResponse<Google_Protobuf_Empty> {
        let start = ContinuousClock.now
        return try await forwarder.serve("Close", metadata: request.metadata, attributes: connectionAttributes(request.message)) { _ in
            do {
                try await forwarder.close(request.message, caller: caller(request.metadata, context))
                forwarder.metrics.record("close", nil, since: start)
                return ServerResponse(message: Google_Protobuf_Empty())
            } catch {
                let e = asRPC(error)
                forwarder.metrics.record("close", e.code, since: start)
                throw e
            }
        }
    }
}

/// `connection.MonitorConnection`.
struct MonitorConnectionImpl: Connection_MonitorConnection.SimpleServiceProtocol {
    let hub: MonitorHub
    func monitorConnections(request: Connection_MonitorScopeSelector, response: RPCWriter<Connection_ConnectionEvent>,
                            context: ServerContext) async throws {
        guard let (id, stream) = await hub.subscribe(request) else {
            throw RPCError(code: .resourceExhausted,
                           message: "monitor: \(await hub.maxSubscribers) streams are open already (nsm.max_monitor_streams)")
        }
        // The stream ends when the caller goes away (cancellation) or weftd shuts down.
        try await withTaskCancellationHandler {
            do {
                for await e in stream { try await response.write(e) }
            } catch {
                await hub.unsubscribe(id)
                throw error
            }
            await hub.unsubscribe(id)
            if await hub.endedByOverflow(id) {
                throw RPCError(code: .resourceExhausted,
                               message: "monitor: the stream fell \(await hub.maxQueued) events behind and was ended; subscribe again")
            }
        } onCancel: {
            Task { await hub.unsubscribe(id) }
        }
    }
}

/// `grpc.health.v1.Health`: SERVING for the services Weft serves (reference §1.1).
struct HealthImpl: Grpc_Health_V1_Health.SimpleServiceProtocol {
    static let served: Set<String> = ["", "networkservice.NetworkService", "connection.MonitorConnection", "grpc.health.v1.Health"]

    func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        guard Self.served.contains(request.service) else {
            throw RPCError(code: .notFound, message: "unknown service '\(request.service)'")
        }
        var r = Grpc_Health_V1_HealthCheckResponse()
        r.status = .serving
        return r
    }

    func watch(request: Grpc_Health_V1_HealthCheckRequest, response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
               context: ServerContext) async throws {
        var r = Grpc_Health_V1_HealthCheckResponse()
        r.status = Self.served.contains(request.service) ? .serving : .serviceUnknown
        try await response.write(r)
        while !Task.isCancelled { try await Task.sleep(nanoseconds: 1_000_000_000) }
    }
}

/// The registry and next hops over gRPC (plaintext; transport security is a later step).
public struct GRPCPeers: NSMPeers {
    let registry: NSMURL
    let timeout: Duration
    let dialTimeout: Duration
    /// mTLS and tokens on every call (nil: plaintext, NSM_INSECURE).
    let security: NSMSecurity?
    /// grpcfd on unix sockets (nil: no fds pass).
    let fdproxy: FDProxy?
    let logger: Logger?
    /// Client spans for the calls, when tracing is on. Either way the current trace
    /// context (Weft's span, else the caller's as it came) goes out as `traceparent`.
    let tracer: NSMTracer?

    public init(registry: NSMURL, dialTimeout: Duration, security: NSMSecurity? = nil, fdproxy: FDProxy? = nil,
                logger: Logger? = nil, tracer: NSMTracer? = nil) {
        self.logger = logger
        self.tracer = tracer
        self.registry = registry
        self.dialTimeout = dialTimeout
        self.timeout = .seconds(15)
        self.security = security
        self.fdproxy = fdproxy
    }

    static func transport(_ url: NSMURL, dialTimeout: Duration,
                          security: HTTP2ClientTransport.Posix.TransportSecurity) throws -> HTTP2ClientTransport.Posix {
        var cfg = HTTP2ClientTransport.Posix.Config.defaults
        cfg.connection.maxIdleTime = .seconds(5)
        cfg.backoff.initial = dialTimeout
        cfg.backoff.max = dialTimeout
        switch url {
        case .unix(let p):
            return try .http2NIOPosix(target: .unixDomainSocket(path: p), transportSecurity: security, config: cfg)
        case .tcp(let h, let port):
            return try .http2NIOPosix(target: .dns(host: h, port: port), transportSecurity: security, config: cfg)
        }
    }

    /// One call's connection: the client, NSM's token for the verified peer (with
    /// security), the peer's certificate, and the fds of the connection (grpcfd).
    struct Call {
        let client: GRPCClient<HTTP2ClientTransport.Posix>
        let metadata: Metadata
        let certificate: Certificate?
        let files: ProxyFiles?
    }

    /// One connection to `url` for `body`: on a unix socket through the fd proxy, with
    /// security mutual TLS.
    func with<R: Sendable>(_ url: NSMURL, _ body: (Call) async throws -> R) async throws -> R {
        let peer = PeerBox()
        let sec: HTTP2ClientTransport.Posix.TransportSecurity = try security.map { try $0.clientSecurity(peer: peer) } ?? .plaintext
        var target = url
        var dialer: FDProxy.Dialer? = nil
        if case .unix(let p) = url, let fdproxy {
            let d = try fdproxy.dial(p)
            dialer = d
            target = .unix(d.localPath)
        }
        defer { if let dialer { try? fdproxy?.undial(dialer) } }
        let files = dialer.map { ProxyFiles(proxy: fdproxy!, connection: .dialer($0.id)) }
        return try await withGRPCClient(transport: try Self.transport(target, dialTimeout: dialTimeout, security: sec)) { c in
            guard let security else { return try await body(Call(client: c, metadata: [:], certificate: nil, files: files)) }
            let (md, cert) = try await security.metadata(for: peer, timeout: dialTimeout + .seconds(2))
            return try await body(Call(client: c, metadata: md, certificate: cert, files: files))
        }
    }

    var options: CallOptions {
        var o = CallOptions.defaults
        o.timeout = timeout
        o.waitForReady = false
        return o
    }

    /// Registry calls carry NSM's registry path (grpcmetadata): Weft starts it empty,
    /// the registry adds its segments.
    static func registryMetadata(_ md: Metadata) -> Metadata {
        var m = traced(md)
        m.addString(#"{"Index":0,"PathSegments":[]}"#, forKey: NSMMetadata.path)
        return m
    }

    /// The call's metadata with the current trace context (W3C traceparent/tracestate).
    static func traced(_ md: Metadata) -> Metadata {
        guard let ctx = TraceScope.current else { return md }
        var m = md
        ctx.inject(into: &m)
        return m
    }

    /// `body` in a client span `<service>/<method>` (when tracing is on): the span is the
    /// parent the peer sees in `traceparent`.
    func span<R>(_ service: String, _ method: String, _ url: NSMURL, _ attributes: [(String, SpanValue)] = [],
                 _ body: (Span?) async throws -> R) async throws -> R {
        guard let tracer else { return try await body(nil) }
        let attrs = tracer.rpcAttributes(service, method) + [("server.address", .string(url.description))] + attributes
        return try await tracer.withSpan("\(service)/\(method)", kind: .client, attributes: attrs) { span in
            let r = try await body(span)
            span.set("rpc.grpc.status_code", .int(0))
            return r
        }
    }

    public func findService(_ name: String) async throws -> Registry_NetworkService? {
        var q = Registry_NetworkServiceQuery()
        q.networkService.name = name
        let opts = options
        return try await span("registry.NetworkServiceRegistry", "Find", registry, [(NSMSpanKey.networkService, .string(name))]) { _ in
            try await with(registry) { call in
                try await Registry_NetworkServiceRegistry.Client(wrapping: call.client).find(q, metadata: Self.registryMetadata(call.metadata), options: opts) { resp in
                    var found: Registry_NetworkService? = nil
                    for try await r in resp.messages where !r.deleted && r.networkService.name == name { found = r.networkService }
                    return found
                }
            }
        }
    }

    /// Endpoints registered by `inode://` URL (NSM's sendfd) come with their socket's
    /// fd on this connection: kept, and the URL becomes the fd's path.
    public func findEndpoints(service: String?, name: String?) async throws -> [Registry_NetworkServiceEndpoint] {
        var q = Registry_NetworkServiceEndpointQuery()
        if let service { q.networkServiceEndpoint.networkServiceNames = [service] }
        if let name { q.networkServiceEndpoint.name = name }
        let opts = options
        var attrs: [(String, SpanValue)] = []
        if let service { attrs.append((NSMSpanKey.networkService, .string(service))) }
        if let name { attrs.append((NSMSpanKey.endpoint, .string(name))) }
        return try await span("registry.NetworkServiceEndpointRegistry", "Find", registry, attrs) { span in
            try await with(registry) { call in
                var found = try await Registry_NetworkServiceEndpointRegistry.Client(wrapping: call.client).find(
                    q, metadata: Self.registryMetadata(call.metadata), options: opts) { resp in
                    var out: [Registry_NetworkServiceEndpoint] = []
                    for try await r in resp.messages where !r.deleted {
                        let e = r.networkServiceEndpoint
                        if let name, e.name != name { continue }
                        if let service, !e.networkServiceNames.contains(service) { continue }
                        out.append(e)
                    }
                    return out
                }
                for i in found.indices {
                    guard let inode = InodeURL(found[i].url) else { continue }
                    if let files = call.files, await files.claim(found[i].url, kind: .socket),
                       let path = ReceivedFiles.shared.path(inode) {
                        logger?.debug("grpcfd: endpoint \(found[i].name) at \(found[i].url) came as an fd (\(path))")
                        found[i].url = "unix://" + path
                    } else if let path = ReceivedFiles.shared.path(inode) {
                        found[i].url = "unix://" + path
                    }
                }
                span?.set("nsm.endpoints.found", .int(Int64(found.count)))
                return found
            }
        }
    }

    public func request(_ url: NSMURL, _ req: Networkservice_NetworkServiceRequest) async throws -> Connection_Connection {
        let opts = options
        var attrs = connectionAttributes(req.connection)
        if !req.mechanismPreferences.isEmpty { attrs.append((NSMSpanKey.preferences, .strings(req.mechanismPreferences.map(\.type)))) }
        return try await span("networkservice.NetworkService", "Request", url, attrs) { span in
            try await with(url) { call in
                let client = Networkservice_NetworkService.Client(wrapping: call.client)
                let md = Self.traced(call.metadata)
                let conn = try await client.request(req, metadata: md, options: opts)
                span?.set(NSMSpanKey.clientMechanism, conn.mechanism.type)
                // NSM's client authorize (next_token_signed): the next hop's segment is signed
                // by the key it showed in TLS; else its connection is closed and refused.
                if let cert = call.certificate {
                    let next = Int(req.connection.path.index) + 1
                    let segs = conn.path.pathSegments
                    let key = P256.Signing.PublicKey(cert.publicKey)
                    if next >= segs.count || key == nil || !NSMToken.verifyES256(segs[next].token, key: key!) {
                        _ = try? await client.close(conn, metadata: md, options: opts)
                        throw NSMError(.permissionDenied, "connect",
                                       "policy next_token_signed failed: the next hop's path segment \(next) is not signed by its TLS key")
                    }
                }
                // grpcfd: the endpoint's pod namespace came as an fd with its answer.
                if let files = call.files, let u = conn.mechanism.parameters[Mech.inodeURL], u.hasPrefix("inode://") {
                    await files.claim(u, kind: .netns)
                }
                return conn
            }
        }
    }

    public func close(_ url: NSMURL, _ conn: Connection_Connection) async throws {
        let opts = options
        try await span("networkservice.NetworkService", "Close", url, connectionAttributes(conn)) { _ in
            _ = try await with(url) { call in
                try await Networkservice_NetworkService.Client(wrapping: call.client).close(conn, metadata: Self.traced(call.metadata), options: opts)
            }
        }
    }

    /// Register (or re-register) Weft as an endpoint of `nsName`; returns the expiry.
    /// A `unix://` URL is registered as NSM's sendfd does: as the socket's
    /// `inode://dev/ino`, its fd passed on the connection.
    public func register(_ nse: Registry_NetworkServiceEndpoint) async throws -> Registry_NetworkServiceEndpoint {
        let opts = options
        return try await with(registry) { call in
            var e = nse
            var original: String? = nil
            if let files = call.files, case .unix(let path)? = try? NSMURL.parse(nse.url) {
                let fd = open(path, 0o10000000 /* O_PATH */ | O_CLOEXEC)
                if fd >= 0 {
                    defer { _ = Glibc.close(fd) }
                    if let inode = try? InodeURL(fd: fd) {
                        try files.proxy.send(fd, to: files.connection)
                        original = e.url
                        e.url = inode.description
                    }
                }
            }
            var r = try await Registry_NetworkServiceEndpointRegistry.Client(wrapping: call.client).register(
                e, metadata: Self.registryMetadata(call.metadata), options: opts)
            if let original, r.url == e.url { r.url = original }
            return r
        }
    }
}

/// The NSM API of one weftd: gRPC server(s) on NSM_LISTEN_ON and the registration loop.
public final class NSMService: Sendable {
    public let forwarder: Forwarder
    let settings: NSMSettings
    let peers: GRPCPeers
    let logger: Logger
    let clock: NSMClock
    let security: NSMSecurity?
    /// grpcfd: fds alongside gRPC on the unix sockets (nil if it could not start).
    let fdproxy: FDProxy?
    private let servers = Mutex<[GRPCServer<HTTP2ServerTransport.Posix>]>([])
    /// OpenTelemetry (NSM_OPEN_TELEMETRY_ENDPOINT): the spans' exporter, and the
    /// metrics' (NSM_METRICS_EXPORT_INTERVAL); nil: off.
    public let traceExporter: OTLPTraceExporter?
    public let metricsExporter: OTLPMetricsExporter?

    /// `security` nil: plaintext and no tokens (NSM_INSECURE). `version`: weftd's, in
    /// what OpenTelemetry exports (service.version).
    public init(settings: NSMSettings, control: ControlPlane, logger: Logger, clock: NSMClock = SystemClock(),
                security: NSMSecurity? = nil, version: String = "", sriov: SRIOVService? = nil) {
        self.settings = settings
        self.logger = logger
        self.clock = clock
        self.security = security
        let exporter = settings.openTelemetryEndpoint.map {
            OTLPTraceExporter(endpoint: $0, serviceName: settings.name, version: version, logger: logger)
        }
        self.traceExporter = exporter
        let tracer = exporter.map { NSMTracer(sink: $0) }
        let dir = control.snapshot.admin.runtimeDir + "/grpcfd"
        var proxy: FDProxy? = nil
        do {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            chmod(dir, 0o700)
            proxy = try FDProxy(directory: dir)
        } catch {
            logger.error("grpcfd: the fd proxy did not start (\(error)); fds will not pass, netns inode URLs are looked up in /proc")
        }
        self.fdproxy = proxy
        self.peers = GRPCPeers(registry: settings.connectTo, dialTimeout: settings.dialTimeout, security: security, fdproxy: proxy,
                                logger: logger, tracer: tracer)
        let forwarder = Forwarder(settings: settings, control: control, peers: peers, clock: clock, logger: logger,
                                  security: security, tracer: tracer, sriov: sriov)
        self.forwarder = forwarder
        if let endpoint = settings.openTelemetryEndpoint, let interval = settings.metricsExportInterval {
            // The figures /metrics shows of the dataplane and of NSM.
            metricsExporter = OTLPMetricsExporter(endpoint: endpoint, serviceName: settings.name, version: version,
                                                  interval: interval, logger: logger) { [exporter] in
                await control.metricFamilies() + forwarder.metricFamilies() + (exporter?.metricFamilies() ?? [])
            }
        } else {
            metricsExporter = nil
        }
    }

    /// What Weft registers (reference §1.3).
    public var endpoint: Registry_NetworkServiceEndpoint {
        var e = Registry_NetworkServiceEndpoint()
        e.name = settings.name
        e.networkServiceNames = [settings.nsName]
        var l = Registry_NetworkServiceLabels()
        l.labels = settings.labels
        e.networkServiceLabels = [settings.nsName: l]
        e.url = (settings.listenOn.first(where: \.isLocal) ?? settings.listenOn[0]).description
        return e
    }

    /// Serve until cancelled; register and keep the registration fresh.
    public func run() async throws {
        if let e = traceExporter {
            e.start()
            logger.notice("OpenTelemetry: spans of NSM Requests and Closes to the OTLP/gRPC collector at \(e.endpoint)")
        } else if settings.metricsExportInterval != nil {
            logger.notice("OpenTelemetry: metrics_export_interval is set but no open_telemetry_endpoint: nothing is exported")
        }
        if let m = metricsExporter {
            m.start()
            logger.notice("OpenTelemetry: metrics to \(m.endpoint) every \(m.interval)")
        }
        let stale = await forwarder.removeStale()
        if stale > 0 { logger.notice("removed \(stale) interfaces a previous weftd left behind") }
        var ns = NetworkServiceImpl(forwarder: forwarder)
        if let fdproxy {
            ns.files = { ctx in ProxyFiles(proxy: fdproxy, connection: .served(remotePeer: ctx.remotePeer)) }
        }
        let services: [any RegistrableRPCService] = [ns, MonitorConnectionImpl(hub: forwarder.monitor), HealthImpl()]
        var servers: [GRPCServer<HTTP2ServerTransport.Posix>] = []
        for (i, url) in settings.listenOn.enumerated() {
            let address: GRPCNIOTransportCore.SocketAddress
            switch url {
            case .unix(let p):
                if try Realizer.clearStaleSocket(p) { logger.notice("removed stale socket \(p)") }
                try? FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                if let fdproxy {
                    // grpcfd: the public socket is the proxy's; gRPC serves its private one.
                    let backend = "\(fdproxy.directory)/api-\(i).sock"
                    unlink(backend)
                    let fd = try listenUnix(p)
                    defer { close(fd) }
                    try fdproxy.serve(listening: fd, backend: backend)
                    address = .unixDomainSocket(path: backend)
                } else {
                    address = .unixDomainSocket(path: p)
                }
            case .tcp(let h, let port):
                address = h.contains(":") ? .ipv6(host: h, port: port) : .ipv4(host: h, port: port)
            }
            let sec: HTTP2ServerTransport.Posix.TransportSecurity = try security?.serverSecurity() ?? .plaintext
            servers.append(GRPCServer(transport: .http2NIOPosix(address: address, transportSecurity: sec), services: services))
        }
        let started = servers
        self.servers.withLock { $0 = started }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for s in servers { group.addTask { try await s.serve() } }
            for (s, url) in zip(servers, settings.listenOn) {
                // A server that failed to start reports its own error through serve().
                if let a = try? await s.listeningAddress { logger.notice("NSM API listening on \(url) (\(a))") }
            }
            if settings.register {
                group.addTask { [self] in await registrationLoop() }
            }
            let monitor = NetnsMonitor(forwarder: forwarder, logger: logger)
            group.addTask { await monitor.run() }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Register, then re-register at 2/3 of the remaining time to the returned expiry;
    /// on failure retry every 200 ms (NSM's registry client), logging once per outage.
    func registrationLoop() async {
        var failing = false, registered = false
        while !Task.isCancelled {
            do {
                let r = try await peers.register(endpoint)
                let msg: Logger.Message = "registered as '\(settings.name)' for '\(settings.nsName)' at \(settings.connectTo) with labels \(Capabilities.describe(settings.labels))"
                if failing || !registered { logger.notice(msg) } else { logger.debug(msg) }
                registered = true
                failing = false
                var wait = 20.0
                if r.hasExpirationTime {
                    let left = r.expirationTime.date.timeIntervalSince(clock.now())
                    wait = max(0.2, left * 2 / 3)
                }
                try await clock.sleep(until: clock.now().addingTimeInterval(wait))
            } catch is CancellationError {
                return
            } catch {
                if !failing { logger.warning("cannot register with the NSMgr at \(settings.connectTo): \(error); retrying every 200 ms") }
                failing = true
                try? await Task.sleep(nanoseconds: 200_000_000)
            }
        }
    }

    /// Stop accepting requests: monitors end, servers shut down gracefully.
    public func stopServing() async {
        await forwarder.monitor.finishAll()
        for s in servers.withLock({ $0 }) { s.beginGracefulShutdown() }
    }

    /// Stop serving, then close every connection locally (no next-hop calls); then
    /// export the spans and metrics left (bounded).
    public func stop() async {
        await stopServing()
        await forwarder.shutdown()
        for case .unix(let p) in settings.listenOn { unlink(p) }
        await traceExporter?.shutdown()
        await metricsExporter?.shutdown()
    }

    /// For /metrics: what became of the spans (none when tracing is off).
    public func tracingMetricFamilies() -> [MetricFamily] { traceExporter?.metricFamilies() ?? [] }
}
