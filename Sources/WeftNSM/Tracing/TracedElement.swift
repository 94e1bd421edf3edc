import Foundation
import GRPCCore
import WeftNSMProto

/// One chain element in a span of its own, as NSM's trace chain wraps each of its
/// elements: `<step>/Request` and `<step>/Close`. A span holds its element's work and the
/// rest of the chain after it (each step's span is the parent of the next step's), so
/// the trace shows where a Request spent its time and which step failed. Attributes are
/// read from the request once the step has run: the connection, and what the step decided.
struct TracedElement: NSMElement {
    let step: String
    let inner: any NSMElement
    let tracer: NSMTracer

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        let span = tracer.start("\(step)/Request", attributes: [("weft.step", .string(step))])
        defer { span.end() }
        do {
            let result = try await TraceScope.$current.withValue(span.context) { try await inner.request(&r, next: next) }
            if span.isRecording { describe(r, span) }
            return result
        } catch {
            if span.isRecording { describe(r, span) }
            span.fail(error)
            throw error
        }
    }

    func close(_ c: NSMClose, next: NSMNext) async throws {
        let span = tracer.start("\(step)/Close", attributes: [("weft.step", .string(step))])
        defer { span.end() }
        if span.isRecording {
            span.set(NSMSpanKey.connectionID, c.id ?? c.connection.id)
            span.set(NSMSpanKey.closeReason, c.reason.rawValue)
        }
        do {
            try await TraceScope.$current.withValue(span.context) { try await inner.close(c, next: next) }
        } catch {
            span.fail(error)
            throw error
        }
    }

    /// What the step leaves in the request, by step.
    func describe(_ r: NSMRequest, _ span: Span) {
        span.set(NSMSpanKey.connectionID, r.conn.id)
        span.set(NSMSpanKey.networkService, r.conn.networkService)
        switch step {
        case NSMStep.path:
            span.set("nsm.path.index", .int(Int64(r.conn.path.index)))
            span.set(NSMSpanKey.callerConnectionID, r.callerID)
        case NSMStep.begin:
            span.set("nsm.refresh", .bool(r.isRefresh))
        case NSMStep.serverMechanism:
            span.set(NSMSpanKey.serverMechanism, r.serverMechanism.type)
            span.set("weft.interface", r.state.server?.interface.name ?? "")
        case NSMStep.ipContext:
            // What was applied in the pods (the next hop's answer), else what was asked.
            let ip = r.state.context.hasIpContext ? r.state.context.ipContext : r.conn.context.ipContext
            if !ip.srcIpAddrs.isEmpty { span.set("nsm.ip_context.src_ip_addrs", .strings(ip.srcIpAddrs)) }
            if !ip.dstIpAddrs.isEmpty { span.set("nsm.ip_context.dst_ip_addrs", .strings(ip.dstIpAddrs)) }
        case NSMStep.crossConnect:
            span.set("weft.cross_connect", r.state.crossConnect ?? "")
        case NSMStep.discover, NSMStep.connect:
            span.set(NSMSpanKey.endpoint, r.conn.networkServiceEndpointName)
            span.set(NSMSpanKey.nextHop, r.nextHopURL?.description ?? "")
            span.set(NSMSpanKey.clientMechanism, r.state.nextHop.mechanism.type)
        case NSMStep.clientMechanism:
            if !r.clientPreferences.isEmpty { span.set(NSMSpanKey.preferences, .strings(r.clientPreferences.map(\.type))) }
            span.set(NSMSpanKey.clientMechanism, r.state.nextHop.mechanism.type)
            span.set("weft.interface", r.state.client?.interface.name ?? "")
        default:
            break
        }
    }
}

/// The steps' names in span names (`<step>/Request`).
enum NSMStep {
    static let path = "path", authorize = "authorize", serialize = "serialize", begin = "begin", timeout = "timeout"
    static let monitor = "monitor", metrics = "metrics", serverMechanism = "mechanism.server", ipContext = "ipcontext"
    static let crossConnect = "crossconnect", discover = "discover", clientMechanism = "mechanism.client", connect = "connect"
}

/// Attribute keys (gRPC's from OpenTelemetry's semantic conventions; NSM's under `nsm.`).
enum NSMSpanKey {
    static let connectionID = "nsm.connection.id"
    static let callerConnectionID = "nsm.connection.caller_id"
    static let networkService = "nsm.network_service"
    static let endpoint = "nsm.network_service_endpoint"
    static let serverMechanism = "nsm.mechanism.server"
    static let clientMechanism = "nsm.mechanism.client"
    static let preferences = "nsm.mechanism.preferences"
    static let nextHop = "nsm.next_hop.url"
    static let closeReason = "nsm.close.reason"
}

extension NSMTracer {
    /// A gRPC call's span (server or client), with OpenTelemetry's rpc.* attributes.
    func rpcAttributes(_ service: String, _ method: String) -> [(String, SpanValue)] {
        [("rpc.system", .string("grpc")), ("rpc.service", .string(service)), ("rpc.method", .string(method))]
    }
}

extension Forwarder {
    /// An incoming NSM call: in a server span `networkservice.NetworkService/<method>` that
    /// joins the caller's trace (its `traceparent`), when tracing is on; else the caller's
    /// context is only passed on to the next hop.
    func serve<R>(_ method: String, metadata: Metadata, attributes: [(String, SpanValue)],
                  _ body: (Span?) async throws -> R) async throws -> R {
        let remote = TraceContext.extract(metadata)
        guard let tracer else { return try await TraceScope.$current.withValue(remote) { try await body(nil) } }
        return try await tracer.withSpan("networkservice.NetworkService/\(method)", kind: .server, parent: remote,
                                         attributes: tracer.rpcAttributes("networkservice.NetworkService", method) + attributes) { span in
            let r = try await body(span)
            span.set("rpc.grpc.status_code", .int(0))
            return r
        }
    }

    /// A Close of Weft's own (expiry, a pod gone, shutdown): a trace of its own.
    func traced(close reason: NSMClose.Reason, id: String, _ body: () async throws -> Void) async throws {
        guard let tracer else { return try await body() }
        try await tracer.withSpan("forwarder/Close", parent: nil,
                                  attributes: [(NSMSpanKey.connectionID, .string(id)), (NSMSpanKey.closeReason, .string(reason.rawValue))]) { _ in
            try await body()
        }
    }

    /// The chain's elements, each in a span of its own when tracing is on.
    static func traced(_ elements: [(String, any NSMElement)], _ tracer: NSMTracer?) -> [any NSMElement] {
        guard let tracer else { return elements.map(\.1) }
        return elements.map { TracedElement(step: $0.0, inner: $0.1, tracer: tracer) }
    }
}

/// Attributes of a connection as a caller sent it.
func connectionAttributes(_ c: Connection_Connection) -> [(String, SpanValue)] {
    var a: [(String, SpanValue)] = []
    if !c.id.isEmpty { a.append((NSMSpanKey.callerConnectionID, .string(c.id))) }
    if !c.networkService.isEmpty { a.append((NSMSpanKey.networkService, .string(c.networkService))) }
    if !c.networkServiceEndpointName.isEmpty { a.append((NSMSpanKey.endpoint, .string(c.networkServiceEndpointName))) }
    if c.hasMechanism, !c.mechanism.type.isEmpty { a.append(("nsm.mechanism.type", .string(c.mechanism.type))) }
    return a
}
