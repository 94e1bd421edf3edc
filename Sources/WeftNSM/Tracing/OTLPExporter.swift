import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Synchronization
import WeftMetrics
import WeftNSMProto

/// An OTLP/gRPC collector: `host:port`, plaintext (NSM's default collector,
/// otel-collector.observability.svc.cluster.local:4317, takes plaintext gRPC).
public struct OTLPEndpoint: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) { self.host = host; self.port = port }
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// `host:port`, `[v6]:port`, or either after `http://` (a trailing `/` is allowed).
    public static func parse(_ text: String) throws -> OTLPEndpoint {
        var s = Substring(text.trimmingCharacters(in: .whitespaces))
        if s.lowercased().hasPrefix("https://") {
            throw NSMURL.ParseError(description: "'\(text)': TLS to the collector is not supported; give the collector's plaintext OTLP/gRPC address as host:port (e.g. otel-collector.observability:4317)")
        }
        if s.lowercased().hasPrefix("http://") { s = s.dropFirst("http://".count) }
        if s.hasSuffix("/") { s = s.dropLast() }
        let host: Substring, port: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]"), s[s.index(after: close)...].first == ":" else {
                throw NSMURL.ParseError(description: "'\(text)' is not [ipv6]:port")
            }
            host = s[s.index(after: s.startIndex)..<close]
            port = s[s.index(close, offsetBy: 2)...]
        } else {
            guard let colon = s.lastIndex(of: ":") else {
                throw NSMURL.ParseError(description: "'\(text)' is not host:port (OTLP/gRPC's port is usually 4317)")
            }
            host = s[..<colon]
            port = s[s.index(after: colon)...]
        }
        guard !host.isEmpty, !host.contains("/"), !host.contains(" ") else {
            throw NSMURL.ParseError(description: "'\(text)' has no host (host:port)")
        }
        guard let p = Int(port), (1...65535).contains(p) else { throw NSMURL.ParseError(description: "'\(text)': port must be 1..65535") }
        return OTLPEndpoint(host: String(host), port: p)
    }

    /// A plaintext HTTP/2 transport to the collector (an IPv6 literal as such, else a name
    /// or IPv4 address resolved as gRPC's dns target does).
    func transport() throws -> HTTP2ClientTransport.Posix {
        var cfg = HTTP2ClientTransport.Posix.Config.defaults
        cfg.backoff.initial = .milliseconds(250)
        cfg.backoff.max = .seconds(5)
        if host.contains(":") {
            return try .http2NIOPosix(target: .ipv6(host: host, port: port), transportSecurity: .plaintext, config: cfg)
        }
        return try .http2NIOPosix(target: .dns(host: host, port: port), transportSecurity: .plaintext, config: cfg)
    }
}

/// What every span and metric Weft exports says about its source (OTLP's resource).
struct OTLPResource: Sendable {
    var attributes: [(String, SpanValue)]

    init(serviceName: String, version: String) {
        var a: [(String, SpanValue)] = [("service.name", .string(serviceName)), ("service.namespace", .string("weft"))]
        if !version.isEmpty { a.append(("service.version", .string(version))) }
        var name = [CChar](repeating: 0, count: 256)
        if gethostname(&name, name.count - 1) == 0, name[0] != 0 {
            a.append(("host.name", .string(String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))))
        }
        a.append(("process.pid", .int(Int64(getpid()))))
        attributes = a
    }

    var proto: Opentelemetry_Proto_Resource_V1_Resource {
        var r = Opentelemetry_Proto_Resource_V1_Resource()
        r.attributes = attributes.map(OTLP.keyValue)
        return r
    }
}

/// Conversions to OTLP's messages.
enum OTLP {
    static let scopeName = "weft.nsm"

    static func value(_ v: SpanValue) -> Opentelemetry_Proto_Common_V1_AnyValue {
        var a = Opentelemetry_Proto_Common_V1_AnyValue()
        switch v {
        case .string(let s): a.stringValue = s
        case .int(let i): a.intValue = i
        case .bool(let b): a.boolValue = b
        case .double(let d): a.doubleValue = d
        case .strings(let l):
            var arr = Opentelemetry_Proto_Common_V1_ArrayValue()
            arr.values = l.map { value(.string($0)) }
            a.arrayValue = arr
        }
        return a
    }

    static func keyValue(_ kv: (String, SpanValue)) -> Opentelemetry_Proto_Common_V1_KeyValue {
        var k = Opentelemetry_Proto_Common_V1_KeyValue()
        k.key = kv.0
        k.value = value(kv.1)
        return k
    }

    static func scope(version: String) -> Opentelemetry_Proto_Common_V1_InstrumentationScope {
        var s = Opentelemetry_Proto_Common_V1_InstrumentationScope()
        s.name = scopeName
        s.version = version
        return s
    }

    static func span(_ d: SpanData) -> Opentelemetry_Proto_Trace_V1_Span {
        var s = Opentelemetry_Proto_Trace_V1_Span()
        s.traceID = Data(d.context.traceID.bytes)
        s.spanID = Data(d.context.spanID.bytes)
        if let p = d.parent { s.parentSpanID = Data(p.bytes) }
        s.traceState = d.context.traceState
        s.flags = UInt32(d.context.flags)
        s.name = d.name
        switch d.kind {
        case .internal: s.kind = .internal
        case .server: s.kind = .server
        case .client: s.kind = .client
        }
        s.startTimeUnixNano = d.startNanos
        s.endTimeUnixNano = d.endNanos
        s.attributes = d.attributes.map(keyValue)
        if let e = d.error {
            var st = Opentelemetry_Proto_Trace_V1_Status()
            st.code = .error
            st.message = e
            s.status = st
        }
        return s
    }

    static func traceRequest(_ spans: [SpanData], resource: OTLPResource, version: String)
        -> Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest {
        var scope = Opentelemetry_Proto_Trace_V1_ScopeSpans()
        scope.scope = self.scope(version: version)
        scope.spans = spans.map(span)
        var rs = Opentelemetry_Proto_Trace_V1_ResourceSpans()
        rs.resource = resource.proto
        rs.scopeSpans = [scope]
        var req = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest()
        req.resourceSpans = [rs]
        return req
    }
}

/// OTLP/gRPC export of Weft's spans, batched: finished spans wait in a bounded queue (a
/// full queue drops the span and counts it; a Request never waits for export) and go out
/// every `interval`, or sooner once a batch is full, in batches of at most `maxBatch`. A
/// batch the collector does not take is dropped and counted (no retries: the next batch
/// goes out on time). `shutdown` exports what is queued, within a deadline.
public final class OTLPTraceExporter: SpanSink, Sendable {
    public let endpoint: OTLPEndpoint
    let resource: OTLPResource
    let version: String
    let logger: Logger
    let maxQueue: Int, maxBatch: Int
    let interval: Duration, timeout: Duration

    private struct State {
        var queue: [SpanData] = []
        var exported: UInt64 = 0, dropped: UInt64 = 0, failed: UInt64 = 0, rejected: UInt64 = 0
        var sleeper: Task<Void, Never>?
        var wake = false
        var stopping = false
        var failing = false
    }
    private let state = Mutex(State())
    private let runner = Mutex<Task<Void, Never>?>(nil)

    public init(endpoint: OTLPEndpoint, serviceName: String, version: String = "", logger: Logger,
                maxQueue: Int = 2048, maxBatch: Int = 512, interval: Duration = .seconds(1), timeout: Duration = .seconds(10)) {
        self.endpoint = endpoint
        self.resource = OTLPResource(serviceName: serviceName, version: version)
        self.version = version
        self.logger = logger
        self.maxQueue = max(1, maxQueue)
        self.maxBatch = max(1, maxBatch)
        self.interval = interval
        self.timeout = timeout
    }

    /// Never blocks: a full queue drops the span (counted).
    public func enqueue(_ span: SpanData) {
        let sleeper: Task<Void, Never>? = state.withLock { s in
            guard s.queue.count < maxQueue else { s.dropped += 1; return nil }
            s.queue.append(span)
            guard s.queue.count >= maxBatch, !s.wake else { return nil }
            s.wake = true
            return s.sleeper
        }
        sleeper?.cancel()
    }

    /// Counts since start: spans the collector took, spans dropped because the queue was
    /// full, spans lost with a failed export, spans the collector rejected.
    public var counts: (exported: UInt64, dropped: UInt64, failed: UInt64, rejected: UInt64) {
        state.withLock { ($0.exported, $0.dropped, $0.failed, $0.rejected) }
    }
    var queued: Int { state.withLock { $0.queue.count } }

    public func start() {
        runner.withLock { r in
            guard r == nil else { return }
            r = Task { await self.run() }
        }
    }

    /// Export what is queued (within `deadline`), then stop.
    public func shutdown(deadline: Duration = .seconds(5)) async {
        let sleeper = state.withLock { s -> Task<Void, Never>? in
            s.stopping = true
            s.wake = true
            return s.sleeper
        }
        sleeper?.cancel()
        guard let task = runner.withLock({ $0 }) else { return }
        let timer = Task {
            try? await Task.sleep(for: deadline)
            if !Task.isCancelled { task.cancel() }
        }
        await task.value
        timer.cancel()
        let left = state.withLock { s in
            let n = s.queue.count
            s.dropped += UInt64(n)
            s.queue.removeAll()
            return n
        }
        if left > 0 { logger.warning("OpenTelemetry: \(left) spans not exported at shutdown (the collector at \(endpoint) did not take them in time)") }
    }

    private func run() async {
        let transport: HTTP2ClientTransport.Posix
        do {
            transport = try endpoint.transport()
        } catch {
            logger.error("OpenTelemetry: cannot make a gRPC client for \(endpoint): \(error); spans are not exported")
            return
        }
        let client = GRPCClient(transport: transport)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await client.runConnections() }
            let traces = Opentelemetry_Proto_Collector_Trace_V1_TraceService.Client(wrapping: client)
            while true {
                await waitForWork()
                let stopping = state.withLock { $0.stopping }
                while let batch = takeBatch() {
                    await export(batch, traces)
                    if Task.isCancelled { break }
                }
                if stopping || Task.isCancelled { break }
            }
            client.beginGracefulShutdown()
        }
    }

    /// Sleeps `interval`, or less when woken (a full batch, shutdown).
    private func waitForWork() async {
        let sleeper = Task<Void, Never> { [interval] in _ = try? await Task.sleep(for: interval) }
        let sleep = state.withLock { s -> Bool in
            if s.wake || s.stopping { return false }
            s.sleeper = sleeper
            return true
        }
        if sleep { await sleeper.value } else { sleeper.cancel() }
        state.withLock { s in
            s.sleeper = nil
            s.wake = false
        }
    }

    /// The next batch: up to maxBatch of the queued spans (nil: none).
    private func takeBatch() -> [SpanData]? {
        state.withLock { s in
            guard !s.queue.isEmpty else { return nil }
            let n = min(maxBatch, s.queue.count)
            let b = Array(s.queue.prefix(n))
            s.queue.removeFirst(n)
            return b
        }
    }

    private func export(_ batch: [SpanData], _ client: Opentelemetry_Proto_Collector_Trace_V1_TraceService.Client<HTTP2ClientTransport.Posix>) async {
        var opts = CallOptions.defaults
        opts.timeout = timeout
        opts.waitForReady = false
        let req = OTLP.traceRequest(batch, resource: resource, version: version)
        do {
            let resp = try await client.export(req, options: opts)
            let rejected = resp.hasPartialSuccess ? max(0, Int(resp.partialSuccess.rejectedSpans)) : 0
            let recovered = state.withLock { s -> Bool in
                s.exported += UInt64(batch.count - min(rejected, batch.count))
                s.rejected += UInt64(rejected)
                defer { s.failing = false }
                return s.failing
            }
            if recovered { logger.notice("OpenTelemetry: exporting spans to \(endpoint) again") }
            if rejected > 0 { logger.warning("OpenTelemetry: the collector at \(endpoint) rejected \(rejected) spans: \(resp.partialSuccess.errorMessage)") }
        } catch {
            let first = state.withLock { s -> Bool in
                s.failed += UInt64(batch.count)
                defer { s.failing = true }
                return !s.failing
            }
            let msg: Logger.Message = "OpenTelemetry: exporting \(batch.count) spans to \(endpoint) failed: \(error); they are dropped (reported once per outage)"
            if first { logger.warning(msg) } else { logger.debug(msg) }
        }
    }

    /// For /metrics: what became of the spans.
    public func metricFamilies() -> [MetricFamily] {
        let c = counts
        return [
            MetricFamily("weft_nsm_trace_spans_total", .counter,
                         "Spans of NSM Requests and Closes, by what became of them: exported to the OTLP collector, dropped (the export queue was full, or left at shutdown), failed (the export failed), rejected (by the collector).",
                         [Sample([("result", "exported")], c.exported), Sample([("result", "dropped")], c.dropped),
                          Sample([("result", "failed")], c.failed), Sample([("result", "rejected")], c.rejected)]),
            MetricFamily("weft_nsm_trace_queue", .gauge, "Spans waiting for export now.", [Sample([], Double(queued))]),
        ]
    }
}
