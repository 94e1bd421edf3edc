import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import SwiftProtobuf
import Synchronization
import WeftControl
import WeftKernel
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
        }
        return RPCError(code: c, message: description)
    }
}

func asRPC(_ e: Error) -> RPCError {
    if let e = e as? NSMError { return e.rpc }
    if let e = e as? RPCError { return e }
    return RPCError(code: .internalError, message: "\(e)")
}

/// `networkservice.NetworkService`.
struct NetworkServiceImpl: Networkservice_NetworkService.SimpleServiceProtocol {
    let forwarder: Forwarder

    func request(request: Networkservice_NetworkServiceRequest, context: ServerContext) async throws -> Connection_Connection {
        do {
            return try await forwarder.request(request, peerToken: nil, peerExpires: nil)
        } catch { throw asRPC(error) }
    }

    func close(request: Connection_Connection, context: ServerContext) async throws -> Google_Protobuf_Empty {
        do {
            try await forwarder.close(request)
            return Google_Protobuf_Empty()
        } catch { throw asRPC(error) }
    }
}

/// `connection.MonitorConnection`.
struct MonitorConnectionImpl: Connection_MonitorConnection.SimpleServiceProtocol {
    let hub: MonitorHub
    func monitorConnections(request: Connection_MonitorScopeSelector, response: RPCWriter<Connection_ConnectionEvent>,
                            context: ServerContext) async throws {
        let (id, stream) = await hub.subscribe(request)
        // The stream ends when the caller goes away (cancellation) or weftd shuts down.
        try await withTaskCancellationHandler {
            do {
                for await e in stream { try await response.write(e) }
            } catch {
                await hub.unsubscribe(id)
                throw error
            }
            await hub.unsubscribe(id)
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

    public init(registry: NSMURL, dialTimeout: Duration) {
        self.registry = registry
        self.dialTimeout = dialTimeout
        self.timeout = .seconds(15)
    }

    static func transport(_ url: NSMURL, dialTimeout: Duration) throws -> HTTP2ClientTransport.Posix {
        var cfg = HTTP2ClientTransport.Posix.Config.defaults
        cfg.connection.maxIdleTime = .seconds(5)
        cfg.backoff.initial = dialTimeout
        cfg.backoff.max = dialTimeout
        switch url {
        case .unix(let p):
            return try .http2NIOPosix(target: .unixDomainSocket(path: p), transportSecurity: .plaintext, config: cfg)
        case .tcp(let h, let port):
            return try .http2NIOPosix(target: .dns(host: h, port: port), transportSecurity: .plaintext, config: cfg)
        }
    }

    func with<R: Sendable>(_ url: NSMURL, _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
        try await withGRPCClient(transport: try Self.transport(url, dialTimeout: dialTimeout)) { try await body($0) }
    }

    var options: CallOptions {
        var o = CallOptions.defaults
        o.timeout = timeout
        o.waitForReady = false
        return o
    }

    public func findService(_ name: String) async throws -> Registry_NetworkService? {
        var q = Registry_NetworkServiceQuery()
        q.networkService.name = name
        let opts = options
        return try await with(registry) { c in
            try await Registry_NetworkServiceRegistry.Client(wrapping: c).find(q, options: opts) { resp in
                var found: Registry_NetworkService? = nil
                for try await r in resp.messages where !r.deleted && r.networkService.name == name { found = r.networkService }
                return found
            }
        }
    }

    public func findEndpoints(service: String?, name: String?) async throws -> [Registry_NetworkServiceEndpoint] {
        var q = Registry_NetworkServiceEndpointQuery()
        if let service { q.networkServiceEndpoint.networkServiceNames = [service] }
        if let name { q.networkServiceEndpoint.name = name }
        let opts = options
        return try await with(registry) { c in
            try await Registry_NetworkServiceEndpointRegistry.Client(wrapping: c).find(q, options: opts) { resp in
                var out: [Registry_NetworkServiceEndpoint] = []
                for try await r in resp.messages where !r.deleted {
                    let e = r.networkServiceEndpoint
                    if let name, e.name != name { continue }
                    if let service, !e.networkServiceNames.contains(service) { continue }
                    out.append(e)
                }
                return out
            }
        }
    }

    public func request(_ url: NSMURL, _ req: Networkservice_NetworkServiceRequest) async throws -> Connection_Connection {
        let opts = options
        return try await with(url) { c in
            try await Networkservice_NetworkService.Client(wrapping: c).request(req, options: opts)
        }
    }

    public func close(_ url: NSMURL, _ conn: Connection_Connection) async throws {
        let opts = options
        _ = try await with(url) { c in
            try await Networkservice_NetworkService.Client(wrapping: c).close(conn, options: opts)
        }
    }

    /// Register (or re-register) Weft as an endpoint of `nsName`; returns the expiry.
    public func register(_ nse: Registry_NetworkServiceEndpoint) async throws -> Registry_NetworkServiceEndpoint {
        let opts = options
        return try await with(registry) { c in
            try await Registry_NetworkServiceEndpointRegistry.Client(wrapping: c).register(nse, options: opts)
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
    private let servers = Mutex<[GRPCServer<HTTP2ServerTransport.Posix>]>([])

    public init(settings: NSMSettings, control: ControlPlane, logger: Logger, clock: NSMClock = SystemClock()) {
        self.settings = settings
        self.logger = logger
        self.clock = clock
        self.peers = GRPCPeers(registry: settings.connectTo, dialTimeout: settings.dialTimeout)
        self.forwarder = Forwarder(settings: settings, control: control, peers: peers, clock: clock, logger: logger)
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
        let stale = await forwarder.removeStale()
        if stale > 0 { logger.notice("removed \(stale) interfaces a previous weftd left behind") }
        let services: [any RegistrableRPCService] = [
            NetworkServiceImpl(forwarder: forwarder), MonitorConnectionImpl(hub: forwarder.monitor), HealthImpl(),
        ]
        var servers: [GRPCServer<HTTP2ServerTransport.Posix>] = []
        for url in settings.listenOn {
            let address: GRPCNIOTransportCore.SocketAddress
            switch url {
            case .unix(let p):
                if try Realizer.clearStaleSocket(p) { logger.notice("removed stale socket \(p)") }
                try? FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                address = .unixDomainSocket(path: p)
            case .tcp(let h, let port):
                address = h.contains(":") ? .ipv6(host: h, port: port) : .ipv4(host: h, port: port)
            }
            servers.append(GRPCServer(transport: .http2NIOPosix(address: address, transportSecurity: .plaintext), services: services))
        }
        let started = servers
        self.servers.withLock { $0 = started }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for s in servers { group.addTask { try await s.serve() } }
            for (s, url) in zip(servers, settings.listenOn) {
                if let a = try await s.listeningAddress { logger.notice("NSM API listening on \(url) (\(a))") }
            }
            if settings.register {
                group.addTask { [self] in await registrationLoop() }
            }
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

    /// Stop serving, then close every connection locally (no next-hop calls).
    public func stop() async {
        await stopServing()
        await forwarder.shutdown()
        for case .unix(let p) in settings.listenOn { unlink(p) }
    }
}
