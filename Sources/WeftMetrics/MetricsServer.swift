import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// `GET /metrics` over HTTP/1.1 for Prometheus (NSM_PROMETHEUS_LISTEN_ON,
/// default :8081). A scrape renders what `collect` returns; scrapes that
/// arrive while one is rendering share its answer, so a scraper storm costs
/// one collection at a time. Anything else gets 404 (or 405 for a method
/// other than GET/HEAD); a connection idle for 10 s is closed; at most
/// `maxConnections` are open at once (more are closed at accept).
public final class MetricsServer: Sendable {
    public let host: String
    public let port: Int
    let collect: @Sendable () async -> String
    let logger: Logger
    let maxConnections: Int
    private let group: MultiThreadedEventLoopGroup
    private let channel = Mutex<Channel?>(nil)
    let coalescer: Coalescer

    public init(host: String, port: Int, maxConnections: Int = 64, logger: Logger, collect: @escaping @Sendable () async -> String) {
        self.host = host
        self.port = port
        self.collect = collect
        self.logger = logger
        self.maxConnections = maxConnections
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.coalescer = Coalescer(collect)
    }

    /// Bind and serve; returns the bound port (useful with port 0).
    @discardableResult
    public func start() async throws -> Int {
        let open = ManagedAtomic(0)
        let max = maxConnections
        let coalescer = self.coalescer
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { ch in
                if open.wrappingIncrementThenLoad() > max {
                    open.wrappingDecrement()
                    return ch.close()
                }
                ch.closeFuture.whenComplete { _ in open.wrappingDecrement() }
                return ch.pipeline.eventLoop.makeCompletedFuture {
                    let sync = ch.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: .seconds(10)))
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(MetricsHandler(coalescer: coalescer))
                }
            }
            .childChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        let bindHost = host.isEmpty ? "::" : host
        let ch: Channel
        do {
            ch = try await bootstrap.bind(host: bindHost, port: port).get()
        } catch where host.isEmpty {
            // No IPv6 on this host: every IPv4 address.
            ch = try await bootstrap.bind(host: "0.0.0.0", port: port).get()
        }
        channel.withLock { $0 = ch }
        return ch.localAddress?.port ?? port
    }

    public func stop() async {
        if let ch = channel.withLock({ c -> Channel? in let x = c; c = nil; return x }) {
            try? await ch.close()
        }
        try? await group.shutdownGracefully()
    }
}

/// A small atomic counter without swift-atomics (one event loop thread and
/// closeFuture callbacks touch it).
final class ManagedAtomic: Sendable {
    private let v: Atomic<Int>
    init(_ x: Int) { v = Atomic(x) }
    func wrappingIncrementThenLoad() -> Int { v.wrappingAdd(1, ordering: .relaxed).newValue }
    func wrappingDecrement() { v.wrappingSubtract(1, ordering: .relaxed) }
}

/// One collection at a time; callers that arrive meanwhile get its result.
actor Coalescer {
    let collect: @Sendable () async -> String
    private var inFlight: Task<String, Never>?
    init(_ collect: @escaping @Sendable () async -> String) { self.collect = collect }
    func text() async -> String {
        if let t = inFlight { return await t.value }
        let t = Task { await collect() }
        inFlight = t
        let v = await t.value
        inFlight = nil
        return v
    }
}

final class MetricsHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let coalescer: Coalescer
    private var head: HTTPRequestHead?
    init(coalescer: Coalescer) { self.coalescer = coalescer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            answer(context: context, h)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }

    private func answer(context: ChannelHandlerContext, _ h: HTTPRequestHead) {
        let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
        guard h.method == .GET || h.method == .HEAD else {
            respond(context: context, h, status: .methodNotAllowed, body: "only GET /metrics\n", type: "text/plain")
            return
        }
        guard path == "/metrics" else {
            respond(context: context, h, status: .notFound, body: "weftd serves /metrics\n", type: "text/plain")
            return
        }
        let loop = context.eventLoop
        let box = NIOLoopBound((self, context), eventLoop: loop)
        let coalescer = self.coalescer
        Task {
            let text = await coalescer.text()
            loop.execute {
                let (me, ctx) = box.value
                me.respond(context: ctx, h, status: .ok, body: text, type: Exposition.contentType)
            }
        }
    }

    private func respond(context: ChannelHandlerContext, _ h: HTTPRequestHead, status: HTTPResponseStatus, body: String, type: String) {
        guard context.channel.isActive else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        if !h.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
        if h.method != .HEAD {
            var buf = context.channel.allocator.buffer(capacity: body.utf8.count)
            buf.writeString(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buf))), promise: nil)
        }
        let keep = h.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
            if !keep { channel.close(promise: nil) }
        }
    }
}
