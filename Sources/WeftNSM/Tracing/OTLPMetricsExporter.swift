import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Synchronization
import WeftMetrics
import WeftNSMProto

/// OTLP/gRPC export of the figures /metrics shows (NSM_METRICS_EXPORT_INTERVAL): every
/// interval the same families Prometheus scrapes are read and sent as OTLP metrics,
/// cumulative, with the same names and labels (as attributes): counters as monotonic
/// sums, gauges as gauges, histograms as explicit-bucket histograms. A failed export is
/// logged once per outage; the next one carries the totals anyway (cumulative).
public final class OTLPMetricsExporter: Sendable {
    public let endpoint: OTLPEndpoint
    let resource: OTLPResource
    let version: String
    let logger: Logger
    let interval: Duration
    let collect: @Sendable () async -> [MetricFamily]
    let startNanos = wallClockNanos()
    private struct State { var exports: UInt64 = 0, failures: UInt64 = 0; var failing = false }
    private let state = Mutex(State())
    private let runner = Mutex<Task<Void, Never>?>(nil)

    public init(endpoint: OTLPEndpoint, serviceName: String, version: String = "", interval: Duration, logger: Logger,
                collect: @escaping @Sendable () async -> [MetricFamily]) {
        self.endpoint = endpoint
        self.resource = OTLPResource(serviceName: serviceName, version: version)
        self.version = version
        self.interval = interval
        self.logger = logger
        self.collect = collect
    }

    public var counts: (exports: UInt64, failures: UInt64) { state.withLock { ($0.exports, $0.failures) } }

    public func start() {
        runner.withLock { r in
            guard r == nil else { return }
            r = Task { await self.run() }
        }
    }

    /// One last export (within `deadline`), then stop.
    public func shutdown(deadline: Duration = .seconds(5)) async {
        guard let task = runner.withLock({ $0 }) else { return }
        task.cancel()
        await task.value
        // The loop ends at cancellation; the last figures go out on a client of their own.
        let last = Task { await self.withClient { await self.exportOnce($0) } }
        let timer = Task {
            try? await Task.sleep(for: deadline)
            if !Task.isCancelled { last.cancel() }
        }
        await last.value
        timer.cancel()
    }

    private func withClient(_ body: (Opentelemetry_Proto_Collector_Metrics_V1_MetricsService.Client<HTTP2ClientTransport.Posix>) async -> Void) async {
        let transport: HTTP2ClientTransport.Posix
        do {
            transport = try endpoint.transport()
        } catch {
            logger.error("OpenTelemetry: cannot make a gRPC client for \(endpoint): \(error); metrics are not exported")
            return
        }
        let client = GRPCClient(transport: transport)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await client.runConnections() }
            await body(Opentelemetry_Proto_Collector_Metrics_V1_MetricsService.Client(wrapping: client))
            client.beginGracefulShutdown()
        }
    }

    private func run() async {
        await withClient { metrics in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { break }
                await exportOnce(metrics)
            }
        }
    }

    private func exportOnce(_ client: Opentelemetry_Proto_Collector_Metrics_V1_MetricsService.Client<HTTP2ClientTransport.Posix>) async {
        let families = await collect()
        let req = Self.request(families, resource: resource, version: version, start: startNanos, now: wallClockNanos())
        var opts = CallOptions.defaults
        opts.timeout = .seconds(10)
        opts.waitForReady = false
        do {
            _ = try await client.export(req, options: opts)
            let recovered = state.withLock { s -> Bool in
                s.exports += 1
                defer { s.failing = false }
                return s.failing
            }
            if recovered { logger.notice("OpenTelemetry: exporting metrics to \(endpoint) again") }
        } catch {
            let first = state.withLock { s -> Bool in
                s.failures += 1
                defer { s.failing = true }
                return !s.failing
            }
            let msg: Logger.Message = "OpenTelemetry: exporting metrics to \(endpoint) failed: \(error) (reported once per outage)"
            if first { logger.warning(msg) } else { logger.debug(msg) }
        }
    }

    /// Prometheus's families as one OTLP export request. A name that appears twice is
    /// merged into the first, as the exposition does.
    static func request(_ families: [MetricFamily], resource: OTLPResource, version: String, start: UInt64, now: UInt64)
        -> Opentelemetry_Proto_Collector_Metrics_V1_ExportMetricsServiceRequest {
        var order: [String] = []
        var merged: [String: MetricFamily] = [:]
        for f in families {
            if merged[f.name] == nil { order.append(f.name); merged[f.name] = f } else { merged[f.name]!.samples += f.samples }
        }
        var scope = Opentelemetry_Proto_Metrics_V1_ScopeMetrics()
        scope.scope = OTLP.scope(version: version)
        scope.metrics = order.compactMap { metric(merged[$0]!, start: start, now: now) }
        var rm = Opentelemetry_Proto_Metrics_V1_ResourceMetrics()
        rm.resource = resource.proto
        rm.scopeMetrics = [scope]
        var req = Opentelemetry_Proto_Collector_Metrics_V1_ExportMetricsServiceRequest()
        req.resourceMetrics = [rm]
        return req
    }

    static func attributes(_ labels: [(String, String)]) -> [Opentelemetry_Proto_Common_V1_KeyValue] {
        labels.map { OTLP.keyValue(($0.0, .string($0.1))) }
    }

    static func metric(_ f: MetricFamily, start: UInt64, now: UInt64) -> Opentelemetry_Proto_Metrics_V1_Metric? {
        var m = Opentelemetry_Proto_Metrics_V1_Metric()
        m.name = f.name
        m.description_p = f.help
        if f.name.hasSuffix("_seconds") { m.unit = "s" } else if f.name.hasSuffix("_bytes") { m.unit = "By" }
        func point(_ s: Sample) -> Opentelemetry_Proto_Metrics_V1_NumberDataPoint {
            var p = Opentelemetry_Proto_Metrics_V1_NumberDataPoint()
            p.attributes = attributes(s.labels)
            p.startTimeUnixNano = start
            p.timeUnixNano = now
            p.asDouble = s.value
            return p
        }
        switch f.type {
        case .counter:
            var sum = Opentelemetry_Proto_Metrics_V1_Sum()
            sum.isMonotonic = true
            sum.aggregationTemporality = .cumulative
            sum.dataPoints = f.samples.map(point)
            m.sum = sum
        case .gauge:
            var g = Opentelemetry_Proto_Metrics_V1_Gauge()
            g.dataPoints = f.samples.map(point)
            m.gauge = g
        case .histogram:
            // Prometheus's _bucket (cumulative, by `le`), _sum and _count samples, grouped by
            // their other labels, become one data point each with per-bucket counts.
            struct Group { var labels: [(String, String)]; var buckets: [(Double, Double)] = []; var sum = 0.0; var count = 0.0 }
            var order: [String] = []
            var groups: [String: Group] = [:]
            for s in f.samples {
                let labels = s.labels.filter { $0.0 != "le" }
                let key = labels.map { "\($0.0)=\($0.1)" }.joined(separator: "\u{1}")
                if groups[key] == nil { order.append(key); groups[key] = Group(labels: labels) }
                switch s.suffix {
                case "_bucket":
                    guard let le = s.labels.first(where: { $0.0 == "le" })?.1 else { continue }
                    let bound = le == "+Inf" ? Double.infinity : (Double(le) ?? .nan)
                    if !bound.isNaN { groups[key]!.buckets.append((bound, s.value)) }
                case "_sum": groups[key]!.sum = s.value
                case "_count": groups[key]!.count = s.value
                default: continue
                }
            }
            var h = Opentelemetry_Proto_Metrics_V1_Histogram()
            h.aggregationTemporality = .cumulative
            for key in order {
                let g = groups[key]!
                let finite = g.buckets.filter { $0.0.isFinite }.sorted { $0.0 < $1.0 }
                var p = Opentelemetry_Proto_Metrics_V1_HistogramDataPoint()
                p.attributes = attributes(g.labels)
                p.startTimeUnixNano = start
                p.timeUnixNano = now
                p.count = UInt64(max(0, g.count))
                p.sum = g.sum
                p.explicitBounds = finite.map(\.0)
                var prev = 0.0
                var counts: [UInt64] = []
                for b in finite {
                    counts.append(UInt64(max(0, b.1 - prev)))
                    prev = b.1
                }
                counts.append(UInt64(max(0, g.count - prev)))
                p.bucketCounts = counts
                h.dataPoints.append(p)
            }
            m.histogram = h
        }
        return m
    }
}
