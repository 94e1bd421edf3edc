import Foundation
import GRPCCore
import Logging
import SwiftProtobuf
import Synchronization
import WeftMetrics
import WeftModel
import WeftNSMProto
import XCTest
@testable import WeftNSM

/// W3C traceparent/tracestate, the tracer's parent links and sampling, the exporter's
/// bounded queue, OTLP encoding, and the OpenTelemetry settings.
final class TracingTests: XCTestCase {
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736", span = "00f067aa0ba902b7"

    // MARK: traceparent

    func testParsesAndFormatsTraceparent() throws {
        let c = try XCTUnwrap(TraceContext.parse(traceparent: "00-\(trace)-\(span)-01", tracestate: "congo=t61rcWkgMzE"))
        XCTAssertEqual(c.traceID.description, trace)
        XCTAssertEqual(c.spanID.description, span)
        XCTAssertEqual(c.flags, 1)
        XCTAssertTrue(c.sampled)
        XCTAssertEqual(c.traceState, "congo=t61rcWkgMzE")
        XCTAssertEqual(c.traceparent, "00-\(trace)-\(span)-01")
        XCTAssertEqual(c.traceID.bytes.count, 16)
        XCTAssertEqual(c.traceID.bytes.first, 0x4b)
        XCTAssertEqual(c.spanID.bytes, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        let unsampled = try XCTUnwrap(TraceContext.parse(traceparent: "00-\(trace)-\(span)-00"))
        XCTAssertFalse(unsampled.sampled)
        XCTAssertEqual(unsampled.traceparent, "00-\(trace)-\(span)-00")
        // Surrounding blanks are allowed; a later version is read by its version-00 part.
        XCTAssertNotNil(TraceContext.parse(traceparent: "  00-\(trace)-\(span)-01\t"))
        XCTAssertEqual(TraceContext.parse(traceparent: "01-\(trace)-\(span)-01-what-the-future-brings")?.spanID.description, span)
        XCTAssertNotNil(TraceContext.parse(traceparent: "cc-\(trace)-\(span)-01"))
        // Fresh ids: never zero, formatted to full width.
        for _ in 0..<100 {
            let t = TraceID.random(), s = SpanID.random()
            XCTAssertEqual(t.description.count, 32)
            XCTAssertEqual(s.description.count, 16)
            XCTAssertEqual(TraceContext.parse(traceparent: TraceContext(traceID: t, spanID: s).traceparent)?.traceID, t)
        }
        XCTAssertEqual(SpanID(1).description, "0000000000000001")
    }

    func testMalformedTraceparentsAreIgnored() {
        let bad = [
            "", "00", "garbage", "00-\(trace)-\(span)", "00-\(trace)-\(span)-0", "00-\(trace)-\(span)-011",
            "00-\(trace.uppercased())-\(span)-01",           // upper case
            "00-\(trace)-\(span.uppercased())-01",
            "00-00000000000000000000000000000000-\(span)-01", // all-zero trace id
            "00-\(trace)-0000000000000000-01",                 // all-zero span id
            "ff-\(trace)-\(span)-01",                          // version ff
            "0g-\(trace)-\(span)-01",
            "00_\(trace)-\(span)-01", "00-\(trace)_\(span)-01", "00-\(trace)-\(span)_01",
            "00-\(trace.dropLast())x-\(span)-01", "00-\(trace)-\(span)-0x",
            "00-\(trace)-\(span)-01-extra",                    // version 00 has exactly 55 characters
            "01-\(trace)-\(span)-01extra",                     // a later version's extra part starts with '-'
            "00-\(trace)\(span)-01---", "00-\(trace)-\(span)-01\u{0}", "00-\(trace)-\(span)-é1",
            String(repeating: "-", count: 55), String(repeating: "\u{1F600}", count: 60),
        ]
        for b in bad { XCTAssertNil(TraceContext.parse(traceparent: b), "'\(b)' was accepted") }
        // Random bytes never crash the parser.
        var g = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789abcdefABCDEF-xz \u{0}")
        for _ in 0..<5000 {
            let n = Int.random(in: 0...70, using: &g)
            let s = String((0..<n).map { _ in alphabet.randomElement(using: &g)! })
            if let c = TraceContext.parse(traceparent: s) { XCTAssertEqual(c.traceparent.count, 55) }
        }
    }

    func testTracestateIsPassedOnOnlyWhenWellFormed() throws {
        func state(_ s: String) -> String? { TraceContext.parse(traceparent: "00-\(trace)-\(span)-01", tracestate: s)?.traceState }
        XCTAssertEqual(state("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        XCTAssertEqual(state(""), "")
        XCTAssertEqual(state("novalue"), "", "a member without '=' drops the list")
        XCTAssertEqual(state("=x"), "")
        XCTAssertEqual(state("k=" + String(repeating: "v", count: 600)), "", "longer than 512 bytes")
        XCTAssertEqual(state((0..<33).map { "k\($0)=v" }.joined(separator: ",")), "", "more than 32 members")
        XCTAssertEqual(state("k=v\u{7}"), "", "control characters")
        // A bad tracestate never invalidates the traceparent.
        XCTAssertNotNil(TraceContext.parse(traceparent: "00-\(trace)-\(span)-01", tracestate: "\u{0}\u{0}"))
    }

    func testExtractAndInjectInGRPCMetadata() async throws {
        var md: Metadata = [:]
        XCTAssertNil(TraceContext.extract(md))
        md.addString("00-\(trace)-\(span)-01", forKey: "traceparent")
        md.addString("a=1", forKey: "tracestate")
        md.addString("b=2", forKey: "tracestate")
        let c = try XCTUnwrap(TraceContext.extract(md))
        XCTAssertEqual(c.traceState, "a=1,b=2")
        // Two traceparents are not one.
        var two = md
        two.addString("00-\(trace)-\(span)-00", forKey: "traceparent")
        XCTAssertNil(TraceContext.extract(two))
        // Injection replaces what was there.
        var out: Metadata = [:]
        out.addString("00-\(trace)-0000000000000001-01", forKey: "traceparent")
        out.addString("old=1", forKey: "tracestate")
        out.addString("keep", forKey: "nsm-client-token")
        let mine = TraceContext(traceID: c.traceID, spanID: SpanID(0xabc), flags: 1, traceState: c.traceState)
        mine.inject(into: &out)
        XCTAssertEqual(Array(out[stringValues: "traceparent"]), ["00-\(trace)-0000000000000abc-01"])
        XCTAssertEqual(Array(out[stringValues: "tracestate"]), ["a=1,b=2"])
        XCTAssertEqual(Array(out[stringValues: "nsm-client-token"]), ["keep"])
        var bare: Metadata = [:]
        TraceContext(traceID: c.traceID, spanID: SpanID(1)).inject(into: &bare)
        XCTAssertTrue(Array(bare[stringValues: "tracestate"]).isEmpty)
        // The registry and next-hop calls carry the current context.
        XCTAssertTrue(Array(GRPCPeers.traced([:])[stringValues: "traceparent"]).isEmpty)
        TraceScope.$current.withValue(mine) {
            XCTAssertEqual(Array(GRPCPeers.traced([:])[stringValues: "traceparent"]), [mine.traceparent])
            XCTAssertEqual(Array(GRPCPeers.registryMetadata([:])[stringValues: "traceparent"]), [mine.traceparent])
        }
    }

    // MARK: tracer

    final class Collect: SpanSink, @unchecked Sendable {
        private let lock = NSLock()
        private var _spans: [SpanData] = []
        var spans: [SpanData] { lock.withLock { _spans } }
        func enqueue(_ span: SpanData) { lock.withLock { _spans.append(span) } }
    }

    func testSpansNestInTheTaskTreeAndRecordErrors() async throws {
        let sink = Collect()
        let tracer = NSMTracer(sink: sink)
        let caller = try XCTUnwrap(TraceContext.parse(traceparent: "00-\(trace)-\(span)-01", tracestate: "x=y"))
        try await tracer.withSpan("server", kind: .server, parent: caller, attributes: [("a", .int(1))]) { s in
            XCTAssertEqual(NSMTracer.current, s.context)
            await tracer.withSpan("child") { c in
                c.set("k", "v")
                c.set("k", "w")
                c.set("empty", "")
            }
            do {
                try await tracer.withSpan("failing", kind: .client) { _ in
                    throw RPCError(code: .permissionDenied, message: "no")
                }
            } catch {}
            do {
                try await tracer.withSpan("nsm") { _ in throw NSMError(.notFound, "discover", "nothing there") }
            } catch {}
        }
        XCTAssertNil(NSMTracer.current)
        let spans = sink.spans
        XCTAssertEqual(spans.map(\.name), ["child", "failing", "nsm", "server"])
        let server = spans[3]
        XCTAssertEqual(server.context.traceID.description, trace)
        XCTAssertEqual(server.parent?.description, span)
        XCTAssertEqual(server.context.traceState, "x=y")
        XCTAssertNil(server.error)
        for s in spans.prefix(3) {
            XCTAssertEqual(s.parent, server.context.spanID)
            XCTAssertEqual(s.context.traceID, server.context.traceID)
            XCTAssertGreaterThanOrEqual(s.startNanos, server.startNanos)
            XCTAssertLessThanOrEqual(s.endNanos, server.endNanos)
        }
        XCTAssertEqual(spans[0].attributes.map(\.0), ["k"])
        XCTAssertEqual(spans[0].attributes.first?.1, .string("w"))
        XCTAssertEqual(spans[1].error, "no")
        XCTAssertEqual(spans[1].attributes.first { $0.0 == "rpc.grpc.status_code" }?.1, .int(7))
        XCTAssertTrue(spans[2].error?.contains("nothing there") == true, "\(spans[2].error ?? "")")
        XCTAssertNil(spans[2].attributes.first { $0.0 == "rpc.grpc.status_code" }, "internal spans carry no gRPC code")
        // A new trace without a parent; an unsampled caller's trace is propagated, not recorded.
        let root = tracer.start("root", parent: nil)
        XCTAssertTrue(root.isRecording)
        XCTAssertNil(root.parent)
        root.end()
        root.end()
        XCTAssertEqual(sink.spans.count, 5, "a span ends once")
        let unsampled = try XCTUnwrap(TraceContext.parse(traceparent: "00-\(trace)-\(span)-00"))
        await tracer.withSpan("quiet", parent: unsampled) { s in
            XCTAssertFalse(s.isRecording)
            XCTAssertEqual(s.context.traceparent.suffix(3), "-00")
            XCTAssertNotEqual(s.context.spanID.description, span)
        }
        XCTAssertEqual(sink.spans.count, 5)
    }

    /// The next hop as a peer sees it: the trace context each call carries.
    final class ContextPeers: NSMPeers, @unchecked Sendable {
        let inner: FakePeers
        private let lock = NSLock()
        private var _seen: [TraceContext?] = []
        var seen: [TraceContext?] { lock.withLock { _seen } }
        init(_ inner: FakePeers) { self.inner = inner }
        private func note() { let c = NSMTracer.current; lock.withLock { _seen.append(c) } }
        func findService(_ name: String) async throws -> Registry_NetworkService? { try await inner.findService(name) }
        func findEndpoints(service: String?, name: String?) async throws -> [Registry_NetworkServiceEndpoint] {
            try await inner.findEndpoints(service: service, name: name)
        }
        func request(_ url: NSMURL, _ req: Networkservice_NetworkServiceRequest) async throws -> Connection_Connection {
            note()
            return try await inner.request(url, req)
        }
        func close(_ url: NSMURL, _ conn: Connection_Connection) async throws {
            note()
            try await inner.close(url, conn)
        }
    }

    /// The chain over a fake dataplane: with tracing off the caller's context is passed on
    /// unchanged; with it on, each step is a child of the one before, the next hop is
    /// called under the connect step, and a failure marks every span on its way.
    func testTheChainsSpansAndWhatTheNextHopGets() async throws {
        let node = FakeNode()
        defer { node.remove() }
        let fake = FakePeers()
        fake.add(service: "svc")
        fake.add(endpoint: "nse-1", service: "svc", url: "unix:///nse-1.sock")
        let peers = ContextPeers(fake)
        var md: Metadata = [:]
        md.addString("00-\(trace)-\(span)-01", forKey: "traceparent")

        let off = Forwarder(settings: NSMFixtures.settings, control: node.control, peers: peers, logger: Logger(label: "test"))
        _ = try await off.serve("Request", metadata: md, attributes: []) { span in
            XCTAssertNil(span)
            return try await off.request(NSMFixtures.memifRequest(nscID: "nsc-off"))
        }
        XCTAssertEqual(peers.seen.last??.traceparent, "00-\(trace)-\(span)-01", "passed on as it came")
        await off.shutdown()

        let sink = Collect()
        let on = Forwarder(settings: NSMFixtures.settings, control: node.control, peers: peers, logger: Logger(label: "test"),
                           tracer: NSMTracer(sink: sink))
        let conn = try await on.serve("Request", metadata: md, attributes: []) { _ in
            try await on.request(NSMFixtures.memifRequest(nscID: "nsc-on"))
        }
        let spans = sink.spans
        let server = try XCTUnwrap(spans.first { $0.name == "networkservice.NetworkService/Request" })
        XCTAssertEqual(server.kind, .server)
        XCTAssertEqual(server.parent?.description, span)
        var parent = server
        for step in ["path", "authorize", "serialize", "begin", "timeout", "monitor", "metrics", "mechanism.server", "ipcontext",
                     "crossconnect", "discover", "mechanism.client", "connect"] {
            let s = try XCTUnwrap(spans.first { $0.name == "\(step)/Request" }, step)
            XCTAssertEqual(s.parent, parent.context.spanID, step)
            XCTAssertEqual(s.context.traceID.description, trace)
            XCTAssertEqual(s.attributes.first { $0.0 == "nsm.connection.id" }?.1, .string(conn.path.pathSegments[2].id), step)
            parent = s
        }
        XCTAssertEqual(peers.seen.last??.spanID, parent.context.spanID, "the next hop's parent is the connect step")
        XCTAssertEqual(parent.attributes.first { $0.0 == "nsm.network_service_endpoint" }?.1, .string("nse-1"))

        // The next hop refuses: every span from the server's to connect's says so.
        fake.setAnswer { _, _ in throw RPCError(code: .permissionDenied, message: "refused here") }
        let before = sink.spans.count
        do {
            _ = try await on.serve("Request", metadata: [:], attributes: []) { _ in
                try await on.request(NSMFixtures.memifRequest(nscID: "nsc-refused"))
            }
            XCTFail("the refused request succeeded")
        } catch {}
        let failed = Array(sink.spans.dropFirst(before))
        let root = try XCTUnwrap(failed.first { $0.name == "networkservice.NetworkService/Request" })
        XCTAssertNil(root.parent)
        XCTAssertNotNil(root.error)
        XCTAssertEqual(root.attributes.first { $0.0 == "rpc.grpc.status_code" }?.1, .int(Int64(RPCError.Code.unavailable.rawValue)))
        XCTAssertEqual(failed.first { $0.name == "connect/Request" }?.error, "refused here")
        for name in ["path/Request", "discover/Request", "mechanism.client/Request"] {
            XCTAssertNotNil(failed.first { $0.name == name }?.error, name)
        }
        await on.shutdown()
        // Shutdown's local Closes: a trace each, the reason on every span.
        let closes = sink.spans.filter { $0.name == "forwarder/Close" }
        XCTAssertEqual(closes.count, 1)
        XCTAssertNil(closes.first?.parent)
        XCTAssertEqual(closes.first?.attributes.first { $0.0 == "nsm.close.reason" }?.1, .string("shutdown"))
    }

    // MARK: exporter

    func testTheQueueIsBoundedAndNeverBlocks() {
        let e = OTLPTraceExporter(endpoint: OTLPEndpoint(host: "127.0.0.1", port: 9), serviceName: "t", logger: Logger(label: "t"),
                                  maxQueue: 3, maxBatch: 2)
        let tracer = NSMTracer(sink: e)
        for i in 0..<5 { tracer.start("s\(i)", parent: nil).end() }
        XCTAssertEqual(e.counts.dropped, 2)
        XCTAssertEqual(e.queued, 3)
        let fam = e.metricFamilies()
        XCTAssertEqual(fam.first?.name, "weft_nsm_trace_spans_total")
        XCTAssertTrue(Exposition.render(fam).contains("weft_nsm_trace_spans_total{result=\"dropped\"} 2"))
    }

    func testShutdownWithAnUnreachableCollectorEndsInTime() async {
        let e = OTLPTraceExporter(endpoint: OTLPEndpoint(host: "127.0.0.1", port: 9), serviceName: "t", logger: Logger(label: "t"),
                                  interval: .seconds(30))
        e.start()
        let tracer = NSMTracer(sink: e)
        for i in 0..<10 { tracer.start("s\(i)", parent: nil).end() }
        let t = ContinuousClock.now
        await e.shutdown(deadline: .seconds(3))
        XCTAssertLessThan(ContinuousClock.now - t, .seconds(6))
        let c = e.counts
        XCTAssertEqual(c.exported, 0)
        XCTAssertEqual(c.failed + c.dropped, 10)
    }

    func testOTLPEncodingRoundTrips() throws {
        let ctx = try XCTUnwrap(TraceContext.parse(traceparent: "00-\(trace)-\(span)-01", tracestate: "a=b"))
        var d = SpanData(context: ctx, parent: SpanID(0x1122334455667788), name: "path/Request", kind: .server,
                         startNanos: 1_700_000_000_000_000_000, endNanos: 1_700_000_000_500_000_000,
                         attributes: [("s", .string("x")), ("i", .int(-3)), ("b", .bool(true)), ("d", .double(0.5)),
                                      ("l", .strings(["KERNEL", "MEMIF"]))], error: nil)
        let ok = OTLP.span(d)
        d.error = "boom"
        let failed = OTLP.span(d)
        let req = OTLP.traceRequest([d], resource: OTLPResource(serviceName: "forwarder", version: "1.2"), version: "1.2")
        let back = try Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest(serializedBytes: try req.serializedBytes() as [UInt8])
        let s = try XCTUnwrap(back.resourceSpans.first?.scopeSpans.first?.spans.first)
        XCTAssertEqual(s.traceID.map { String(format: "%02x", $0) }.joined(), trace)
        XCTAssertEqual(s.spanID.map { String(format: "%02x", $0) }.joined(), span)
        XCTAssertEqual(s.parentSpanID.map { String(format: "%02x", $0) }.joined(), "1122334455667788")
        XCTAssertEqual(s.kind, .server)
        XCTAssertEqual(s.traceState, "a=b")
        XCTAssertEqual(s.flags, 1)
        XCTAssertEqual(s.attributes.map(\.key), ["s", "i", "b", "d", "l"])
        XCTAssertEqual(s.attributes[1].value.intValue, -3)
        XCTAssertEqual(s.attributes[4].value.arrayValue.values.map(\.stringValue), ["KERNEL", "MEMIF"])
        XCTAssertEqual(s.status.code, .error)
        XCTAssertEqual(s.status.message, "boom")
        XCTAssertFalse(ok.hasStatus, "success leaves the status unset")
        XCTAssertEqual(failed.status.code, .error)
        XCTAssertEqual(back.resourceSpans[0].scopeSpans[0].scope.name, "weft.nsm")
        let res = back.resourceSpans[0].resource.attributes
        XCTAssertEqual(res.first { $0.key == "service.name" }?.value.stringValue, "forwarder")
        XCTAssertEqual(res.first { $0.key == "service.version" }?.value.stringValue, "1.2")
    }

    func testMetricsAreTheExpositionsFigures() throws {
        let h = Histogram(bounds: [0.1, 1])
        h.observe(0.05); h.observe(0.5); h.observe(0.7); h.observe(3)
        let families = [
            MetricFamily("weft_nsm_calls_total", .counter, "calls", [Sample([("method", "request"), ("code", "OK")], 4.0)]),
            MetricFamily("weft_nsm_monitor_streams", .gauge, "streams", [Sample([], 2.0)]),
            MetricFamily("weft_nsm_call_duration_seconds", .histogram, "latency", h.samples([("method", "request")])),
            MetricFamily("weft_nsm_calls_total", .counter, "calls", [Sample([("method", "close"), ("code", "OK")], 1.0)]),
        ]
        let req = OTLPMetricsExporter.request(families, resource: OTLPResource(serviceName: "f", version: ""), version: "",
                                              start: 1, now: 2)
        let m = req.resourceMetrics[0].scopeMetrics[0].metrics
        XCTAssertEqual(m.map(\.name), ["weft_nsm_calls_total", "weft_nsm_monitor_streams", "weft_nsm_call_duration_seconds"])
        XCTAssertTrue(m[0].sum.isMonotonic)
        XCTAssertEqual(m[0].sum.aggregationTemporality, .cumulative)
        XCTAssertEqual(m[0].sum.dataPoints.map(\.asDouble), [4, 1])
        XCTAssertEqual(m[0].sum.dataPoints[1].attributes.map(\.value.stringValue), ["close", "OK"])
        XCTAssertEqual(m[1].gauge.dataPoints.first?.asDouble, 2)
        let p = try XCTUnwrap(m[2].histogram.dataPoints.first)
        XCTAssertEqual(m[2].unit, "s")
        XCTAssertEqual(p.explicitBounds, [0.1, 1])
        XCTAssertEqual(p.bucketCounts, [1, 2, 1])
        XCTAssertEqual(p.count, 4)
        XCTAssertEqual(p.sum, 4.25, accuracy: 1e-9)
        XCTAssertEqual(p.attributes.map(\.key), ["method"])
        XCTAssertEqual(p.startTimeUnixNano, 1)
        XCTAssertEqual(p.timeUnixNano, 2)
    }

    // MARK: settings

    func testOpenTelemetrySettings() throws {
        func load(_ env: [String: String], file: NSMFileConfig? = nil) throws -> NSMSettings {
            try NSMSettings.load(file: file, env: env, capabilities: [:])
        }
        let off = try load([:])
        XCTAssertNil(off.openTelemetryEndpoint)
        XCTAssertNil(off.metricsExportInterval)
        XCTAssertEqual(try load(["NSM_OPEN_TELEMETRY_ENDPOINT": "otel-collector.observability.svc.cluster.local:4317"]).openTelemetryEndpoint,
                       OTLPEndpoint(host: "otel-collector.observability.svc.cluster.local", port: 4317))
        XCTAssertEqual(try load(["NSM_OPEN_TELEMETRY_ENDPOINT": "http://127.0.0.1:4317/"]).openTelemetryEndpoint,
                       OTLPEndpoint(host: "127.0.0.1", port: 4317))
        let v6 = try XCTUnwrap(try load(["NSM_OPEN_TELEMETRY_ENDPOINT": "[::1]:4317"]).openTelemetryEndpoint)
        XCTAssertEqual(v6, OTLPEndpoint(host: "::1", port: 4317))
        XCTAssertEqual(v6.description, "[::1]:4317")
        XCTAssertEqual(try load(["NSM_METRICS_EXPORT_INTERVAL": "10s"]).metricsExportInterval, .seconds(10))
        for (k, v, says) in [("NSM_OPEN_TELEMETRY_ENDPOINT", "https://collector:4317", "TLS"),
                             ("NSM_OPEN_TELEMETRY_ENDPOINT", "collector", "host:port"),
                             ("NSM_OPEN_TELEMETRY_ENDPOINT", "collector:0", "1..65535"),
                             ("NSM_OPEN_TELEMETRY_ENDPOINT", ":4317", "no host"),
                             ("NSM_OPEN_TELEMETRY_ENDPOINT", "[::1:4317", "[ipv6]:port"),
                             ("NSM_METRICS_EXPORT_INTERVAL", "often", "duration"),
                             ("NSM_METRICS_EXPORT_INTERVAL", "10ms", "at least 100ms")] {
            do {
                _ = try load([k: v])
                XCTFail("\(k)=\(v) was accepted")
            } catch {
                XCTAssertTrue("\(error)".contains(k), "\(error)")
                XCTAssertTrue("\(error)".contains(says), "\(k)=\(v): \(error)")
            }
        }
        // The file's nsm: keys, and the variables over them.
        let cfg = try ConfigLoader.parse("""
            nsm:
              name: fwd
              open_telemetry_endpoint: collector.example:4317
              metrics_export_interval: 30s
            """, file: "t.yaml")
        let fromFile = try load([:], file: cfg.nsm)
        XCTAssertEqual(fromFile.openTelemetryEndpoint, OTLPEndpoint(host: "collector.example", port: 4317))
        XCTAssertEqual(fromFile.metricsExportInterval, .seconds(30))
        let overridden = try load(["NSM_OPEN_TELEMETRY_ENDPOINT": "other:4317", "NSM_METRICS_EXPORT_INTERVAL": ""], file: cfg.nsm)
        XCTAssertEqual(overridden.openTelemetryEndpoint, OTLPEndpoint(host: "other", port: 4317))
        XCTAssertEqual(overridden.metricsExportInterval, .seconds(30), "an empty variable keeps the file's value")
        var bad = NSMFileConfig()
        bad.openTelemetryEndpoint = "https://x:1"
        XCTAssertThrowsError(try load([:], file: bad)) { XCTAssertTrue("\($0)".contains("nsm.open_telemetry_endpoint"), "\($0)") }
        XCTAssertThrowsError(try ConfigLoader.parse("nsm:\n  open_telemetry_endpoint: [1]\n", file: "t.yaml"))
    }
}
