import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SwiftProtobuf
import WeftNSMProto
import XCTest

/// OpenTelemetry end to end: weftd (nsm.open_telemetry_endpoint) exports the spans of NSM
/// Requests and Closes over OTLP/gRPC to a collector of the test's own
/// (Tests/peers/otlp_receiver.py: grpcio with the official opentelemetry-proto messages,
/// so what Weft encodes is decoded by OTLP's own classes); the caller's `traceparent`
/// starts Weft's spans, and the endpoint gets Weft's.
final class NSMTracingSystemTests: SystemTestCase {
    typealias Node = NSMSystemTests.Node

    /// The test's OTLP collector: a Python process writing what it receives as JSON lines.
    final class Receiver {
        let process = Process()
        let out: String
        var port = 0

        init() throws {
            out = "/tmp/weft-otlp-\(uniqueTag())-\(getpid()).jsonl"
            FileManager.default.createFile(atPath: out, contents: nil)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", Paths.root.appendingPathComponent("Tests/peers/otlp_receiver.py").path, "--out", out]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardInput = FileHandle.nullDevice
            try process.run()
            var got = Data()
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline, !String(decoding: got, as: UTF8.self).contains("\n") {
                let chunk = pipe.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                got += chunk
            }
            let line = String(decoding: got, as: UTF8.self)
            guard line.hasPrefix("listening "), let p = Int(line.dropFirst("listening ".count).trimmingCharacters(in: .whitespacesAndNewlines)) else {
                if process.isRunning { process.terminate() }
                throw ReceiverDidNotStart(description: "otlp_receiver.py did not start (scripts/install.sh installs opentelemetry-proto): '\(line)'")
            }
            port = p
        }

        /// Every row received so far.
        var rows: [[String: Any]] {
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }
        var spans: [Span] { rows.filter { $0["kind"] as? String == "span" }.map(Span.init) }
        var metrics: [[String: Any]] { rows.filter { $0["kind"] as? String == "metric" } }

        func stop() {
            if process.isRunning {
                process.terminate()
                let deadline = Date().addingTimeInterval(10)
                while process.isRunning && Date() < deadline { usleep(50_000) }
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                process.waitUntilExit()
            }
            unlink(out)
        }
    }

    struct ReceiverDidNotStart: Error, CustomStringConvertible { var description: String }

    /// A span as the receiver wrote it.
    struct Span: CustomStringConvertible {
        let row: [String: Any]
        init(_ row: [String: Any]) { self.row = row }
        var name: String { row["name"] as? String ?? "" }
        var traceID: String { row["trace_id"] as? String ?? "" }
        var spanID: String { row["span_id"] as? String ?? "" }
        var parent: String { row["parent_span_id"] as? String ?? "" }
        var kind: String { row["span_kind"] as? String ?? "" }
        var status: String { row["status_code"] as? String ?? "" }
        var statusMessage: String { row["status_message"] as? String ?? "" }
        var traceState: String { row["trace_state"] as? String ?? "" }
        var start: UInt64 { (row["start"] as? NSNumber)?.uint64Value ?? 0 }
        var end: UInt64 { (row["end"] as? NSNumber)?.uint64Value ?? 0 }
        var attributes: [String: Any] { row["attributes"] as? [String: Any] ?? [:] }
        var resource: [String: Any] { row["resource"] as? [String: Any] ?? [:] }
        func string(_ k: String) -> String? { attributes[k] as? String }
        func int(_ k: String) -> Int? { (attributes[k] as? NSNumber)?.intValue }
        var description: String { "\(name) [\(kind)] \(spanID) <- \(parent) \(status) \(statusMessage) \(attributes)" }
    }

    /// The test endpoint, recording the trace context of each call it gets.
    final class TracingEndpoint: Networkservice_NetworkService.ServiceProtocol, @unchecked Sendable {
        let inner: TestEndpoint
        private let lock = NSLock()
        private var _requests: [(traceparent: [String], tracestate: [String])] = []
        private var _closes: [(traceparent: [String], tracestate: [String])] = []
        var requests: [(traceparent: [String], tracestate: [String])] { lock.withLock { _requests } }
        var closes: [(traceparent: [String], tracestate: [String])] { lock.withLock { _closes } }

        init(_ inner: TestEndpoint) { self.inner = inner }

        static func context(_ md: Metadata) -> (traceparent: [String], tracestate: [String]) {
            (Array(md[stringValues: "traceparent"]), Array(md[stringValues: "tracestate"]))
        }
        /// The mechanism types of the first Request's preferences.
        var offered: [String] { inner.rec.requests.first?.mechanismPreferences.map(\.type) ?? [] }
        func request(request: ServerRequest<Networkservice_NetworkServiceRequest>, context: ServerContext) async throws
            -> ServerResponse<Connection_Connection> {
            lock.withLock { _requests.append(Self.context(request.metadata)) }
            return ServerResponse(message: try await inner.request(request: request.message, context: context))
        }
        func close(request: ServerRequest<Connection_Connection>, context: ServerContext) async throws
            -> ServerResponse<Google_Protobuf_Empty> {
            lock.withLock { _closes.append(Self.context(request.metadata)) }
            return ServerResponse(message: try await inner.close(request: request.message, context: context))
        }
    }

    static func hex(_ n: Int) -> String { (0..<n).map { _ in String(format: "%x", Int.random(in: 0...15)) }.joined() }

    /// A caller's W3C context: its trace id and its span (Weft's parent).
    static func callerContext() -> (trace: String, span: String, header: String) {
        let t = "4bf9" + hex(28), s = "00f0" + hex(12)
        return (t, s, "00-\(t)-\(s)-01")
    }

    func withTracedNode(metricsInterval: String? = nil, _ body: (Node, Receiver, TracingEndpoint) async throws -> Void) async throws {
        let rx = try Receiver()
        addTeardownBlock { rx.stop() }
        var extra = "\n  open_telemetry_endpoint: 127.0.0.1:\(rx.port)"
        if let metricsInterval { extra += "\n  metrics_export_interval: \(metricsInterval)" }
        let n = Node(metrics: true, nsmExtra: extra)
        let ep = TracingEndpoint(n.endpoint)
        n.endpointService = ep
        try await n.start()
        addTeardownBlock { await n.stop() }
        XCTAssertTrue(n.weftd.log.contains("OpenTelemetry: spans of NSM Requests and Closes to the OTLP/gRPC collector at 127.0.0.1:\(rx.port)"),
                      n.weftd.log)
        try await body(n, rx, ep)
    }

    func request(_ n: Node, _ r: Networkservice_NetworkServiceRequest, _ md: Metadata) async throws -> Connection_Connection {
        try await withNSM(n.nsmSocket) { try await Networkservice_NetworkService.Client(wrapping: $0).request(r, metadata: md) }
    }

    /// The spans of one trace once `names` have all arrived.
    func spans(_ rx: Receiver, trace: String, names: [String], timeout: TimeInterval = 20) async throws -> [Span] {
        var got: [Span] = []
        try await NSMSystemTests.waitFor("spans \(names) of trace \(trace)", timeout: timeout) {
            got = rx.spans.filter { $0.traceID == trace }
            let have = Set(got.map(\.name))
            return names.allSatisfy(have.contains)
        }
        return got
    }

    static let requestSteps = ["path", "authorize", "serialize", "begin", "timeout", "monitor", "metrics", "mechanism.server",
                               "ipcontext", "crossconnect", "discover", "mechanism.client", "connect"]

    /// A Request and a Close, each with a caller's traceparent: Weft's server span joins the
    /// caller's trace, each chain step is a child of the one before it, the registry and
    /// endpoint calls are client spans, and the endpoint's traceparent names Weft's span.
    func testRequestAndCloseSpansJoinTheCallersTraceAndReachTheEndpoint() async throws {
        try await withTracedNode(metricsInterval: "500ms") { n, rx, ep in
            let caller = Self.callerContext()
            var md: Metadata = [:]
            md.addString(caller.header, forKey: "traceparent")
            md.addString("weft-test=caller", forKey: "tracestate")
            let req = kernelRequest(n)
            let conn = try await request(n, req, md)
            let weftID = conn.path.pathSegments[2].id

            let server = "networkservice.NetworkService/Request"
            let all = try await spans(rx, trace: caller.trace, names: [server] + Self.requestSteps.map { "\($0)/Request" }
                                      + ["registry.NetworkServiceRegistry/Find", "registry.NetworkServiceEndpointRegistry/Find"])
            func one(_ name: String, kind: String = "SPAN_KIND_INTERNAL") throws -> Span {
                let s = all.filter { $0.name == name && $0.kind == kind }
                XCTAssertEqual(s.count, 1, "\(name) [\(kind)]: \(all)")
                return try XCTUnwrap(s.first)
            }
            // The server span: a child of the caller's span, in its trace, with its tracestate.
            let root = try one(server, kind: "SPAN_KIND_SERVER")
            XCTAssertEqual(root.parent, caller.span)
            XCTAssertEqual(root.traceState, "weft-test=caller")
            XCTAssertEqual(root.status, "STATUS_CODE_UNSET")
            XCTAssertEqual(root.string("rpc.system"), "grpc")
            XCTAssertEqual(root.string("rpc.service"), "networkservice.NetworkService")
            XCTAssertEqual(root.string("rpc.method"), "Request")
            XCTAssertEqual(root.int("rpc.grpc.status_code"), 0)
            XCTAssertEqual(root.string("nsm.network_service"), "icmp-responder")
            XCTAssertEqual(root.string("nsm.connection.caller_id"), req.connection.id)
            XCTAssertEqual(root.string("nsm.connection.id"), weftID)
            XCTAssertEqual(root.string("nsm.mechanism.server"), "KERNEL")
            XCTAssertEqual(root.string("nsm.network_service_endpoint"), n.endpoint.name)
            XCTAssertEqual(root.attributes["nsm.mechanism.preferences"] as? [String], ["KERNEL"])
            XCTAssertEqual(root.resource["service.name"] as? String, n.name)
            XCTAssertEqual(root.row["scope"] as? String, "weft.nsm")

            // The chain: each step's span is the parent of the next one's.
            var parent = root
            for step in Self.requestSteps {
                let s = try one("\(step)/Request")
                XCTAssertEqual(s.parent, parent.spanID, "\(step)'s parent: \(s) under \(parent)")
                XCTAssertEqual(s.string("weft.step"), step)
                XCTAssertEqual(s.string("nsm.connection.id"), weftID, step)
                XCTAssertEqual(s.status, "STATUS_CODE_UNSET", "\(s)")
                XCTAssertGreaterThanOrEqual(s.start, parent.start, step)
                XCTAssertLessThanOrEqual(s.end, parent.end, step)
                parent = s
            }
            XCTAssertEqual(try one("path/Request").string("nsm.connection.caller_id"), req.connection.id)
            XCTAssertEqual(try one("begin/Request").attributes["nsm.refresh"] as? Bool, false)
            XCTAssertEqual(try one("mechanism.server/Request").string("nsm.mechanism.server"), "KERNEL")
            XCTAssertEqual(try one("ipcontext/Request").attributes["nsm.ip_context.src_ip_addrs"] as? [String], ["172.16.1.101/32"])
            XCTAssertEqual(try one("ipcontext/Request").attributes["nsm.ip_context.dst_ip_addrs"] as? [String], ["172.16.1.100/32"])
            XCTAssertEqual(try one("crossconnect/Request").string("weft.cross_connect")?.isEmpty, false)
            let discover = try one("discover/Request")
            XCTAssertEqual(discover.string("nsm.network_service_endpoint"), n.endpoint.name)
            XCTAssertEqual(discover.string("nsm.next_hop.url"), "unix://" + n.nseSocket)
            // What Weft offered the endpoint (its LOCAL mechanisms), and what the endpoint chose.
            let clientMech = try one("mechanism.client/Request")
            XCTAssertEqual(clientMech.attributes["nsm.mechanism.preferences"] as? [String], ep.offered)
            XCTAssertTrue(ep.offered.contains("KERNEL"), "\(ep.offered)")
            XCTAssertEqual(clientMech.string("nsm.mechanism.client"), "KERNEL")
            let connect = try one("connect/Request")
            XCTAssertEqual(connect.string("nsm.mechanism.client"), "KERNEL")

            // The registry look-ups are the discover step's client calls.
            for name in ["registry.NetworkServiceRegistry/Find", "registry.NetworkServiceEndpointRegistry/Find"] {
                let s = try one(name, kind: "SPAN_KIND_CLIENT")
                XCTAssertEqual(s.parent, discover.spanID, "\(s)")
                XCTAssertEqual(s.string("server.address"), "unix://" + n.registrySocket)
                XCTAssertEqual(s.string("nsm.network_service"), "icmp-responder")
            }
            // The endpoint's Request: a client span under connect; the endpoint got it as its parent.
            let toNSE = try one(server, kind: "SPAN_KIND_CLIENT")
            XCTAssertEqual(toNSE.parent, connect.spanID)
            XCTAssertEqual(toNSE.string("server.address"), "unix://" + n.nseSocket)
            XCTAssertEqual(toNSE.string("rpc.method"), "Request")
            XCTAssertEqual(toNSE.int("rpc.grpc.status_code"), 0)
            XCTAssertEqual(toNSE.string("nsm.mechanism.client"), "KERNEL")
            XCTAssertEqual(toNSE.string("nsm.connection.caller_id"), weftID, "the endpoint is sent Weft's id")
            let got = try XCTUnwrap(ep.requests.first)
            XCTAssertEqual(got.traceparent, ["00-\(caller.trace)-\(toNSE.spanID)-01"])
            XCTAssertEqual(got.tracestate, ["weft-test=caller"])
            XCTAssertTrue(all.contains { $0.spanID == toNSE.spanID })

            // Close, in a trace of its own.
            let closer = Self.callerContext()
            var cmd: Metadata = [:]
            cmd.addString(closer.header, forKey: "traceparent")
            _ = try await withNSM(n.nsmSocket) { try await Networkservice_NetworkService.Client(wrapping: $0).close(conn, metadata: cmd) }
            let closeSteps = ["path", "authorize", "serialize", "begin", "crossconnect", "connect"]
            let closed = try await spans(rx, trace: closer.trace, names: ["networkservice.NetworkService/Close"] + closeSteps.map { "\($0)/Close" })
            let croot = try XCTUnwrap(closed.first { $0.name == "networkservice.NetworkService/Close" && $0.kind == "SPAN_KIND_SERVER" })
            XCTAssertEqual(croot.parent, closer.span)
            XCTAssertEqual(croot.int("rpc.grpc.status_code"), 0)
            let pathClose = try XCTUnwrap(closed.first { $0.name == "path/Close" })
            XCTAssertEqual(pathClose.parent, croot.spanID)
            XCTAssertEqual(pathClose.string("nsm.close.reason"), "close")
            let connectClose = try XCTUnwrap(closed.first { $0.name == "connect/Close" })
            XCTAssertEqual(connectClose.string("nsm.connection.id"), weftID)
            let closeNSE = try XCTUnwrap(closed.first { $0.name == "networkservice.NetworkService/Close" && $0.kind == "SPAN_KIND_CLIENT" })
            XCTAssertEqual(closeNSE.parent, connectClose.spanID)
            XCTAssertEqual(ep.closes.last?.traceparent, ["00-\(closer.trace)-\(closeNSE.spanID)-01"])

            // The same figures as /metrics, as OTLP metrics (nsm.metrics_export_interval).
            try await NSMSystemTests.waitFor("OTLP metrics of the Request and the Close") {
                rx.metrics.contains { $0["name"] as? String == "weft_nsm_calls_total"
                    && ($0["attributes"] as? [String: Any])?["method"] as? String == "close" }
            }
            let calls = rx.metrics.filter { $0["name"] as? String == "weft_nsm_calls_total" }
            let lastRequest = try XCTUnwrap(calls.last { ($0["attributes"] as? [String: Any])?["method"] as? String == "request" })
            XCTAssertEqual(lastRequest["type"] as? String, "sum")
            XCTAssertEqual(lastRequest["monotonic"] as? Bool, true)
            XCTAssertEqual((lastRequest["attributes"] as? [String: Any])?["code"] as? String, "OK")
            XCTAssertEqual(lastRequest["value"] as? Double, 1)
            let hist = try XCTUnwrap(rx.metrics.last { $0["name"] as? String == "weft_nsm_call_duration_seconds"
                && ($0["attributes"] as? [String: Any])?["method"] as? String == "request" })
            XCTAssertEqual(hist["type"] as? String, "histogram")
            XCTAssertEqual(hist["unit"] as? String, "s")
            XCTAssertEqual(hist["count"] as? Int, 1)
            let buckets = try XCTUnwrap(hist["bucket_counts"] as? [Int])
            XCTAssertEqual(buckets.reduce(0, +), 1)
            XCTAssertEqual(buckets.count, (hist["bounds"] as? [Double] ?? []).count + 1)
            XCTAssertTrue(rx.metrics.contains { $0["name"] as? String == "weft_nsm_trace_spans_total" })

            // /metrics counts the spans exported.
            let exported = sh("curl -s \(n.metricsURL) | grep '^weft_nsm_trace_spans_total{result=\"exported\"}'").out
            XCTAssertFalse(exported.isEmpty || exported.hasSuffix(" 0\n"), exported)
        }
    }

    /// A refused Request: every span on the way records the error (status ERROR, the gRPC
    /// code on the server and client spans). A malformed traceparent is ignored (a trace
    /// of Weft's own); a request without one starts a trace too. At shutdown, Weft's own
    /// Closes are traced and flushed.
    func testFailedRequestSpansCarryTheErrorAndBadTraceparentsAreIgnored() async throws {
        try await withTracedNode { n, rx, ep in
            n.endpoint.refuse = true
            var md: Metadata = [:]
            let bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01" // upper case: not valid
            md.addString(bad, forKey: "traceparent")
            do {
                _ = try await request(n, kernelRequest(n), md)
                XCTFail("the refused request succeeded")
            } catch let e as RPCError {
                XCTAssertEqual(e.code, .unavailable, e.message)
            }
            var root: Span? = nil
            try await NSMSystemTests.waitFor("the failed Request's server span") {
                root = rx.spans.first { $0.name == "networkservice.NetworkService/Request" && $0.kind == "SPAN_KIND_SERVER" }
                return root != nil
            }
            let r = try XCTUnwrap(root)
            XCTAssertEqual(r.parent, "", "a malformed traceparent is ignored: \(r)")
            XCTAssertNotEqual(r.traceID, "4bf92f3577b34da6a3ce929d0e0e4736")
            XCTAssertEqual(r.status, "STATUS_CODE_ERROR")
            XCTAssertEqual(r.int("rpc.grpc.status_code"), 14)
            XCTAssertTrue(r.statusMessage.contains("no endpoint accepted the request"), r.statusMessage)
            let all = try await spans(rx, trace: r.traceID, names: ["connect/Request", "discover/Request", "path/Request"])
            for name in ["path/Request", "discover/Request", "connect/Request"] {
                let s = try XCTUnwrap(all.first { $0.name == name })
                XCTAssertEqual(s.status, "STATUS_CODE_ERROR", "\(s)")
            }
            let toNSE = try XCTUnwrap(all.first { $0.name == "networkservice.NetworkService/Request" && $0.kind == "SPAN_KIND_CLIENT" })
            XCTAssertEqual(toNSE.status, "STATUS_CODE_ERROR")
            XCTAssertEqual(toNSE.int("rpc.grpc.status_code"), 7, "the endpoint's PERMISSION_DENIED")
            XCTAssertTrue(toNSE.statusMessage.contains("test endpoint refuses"), toNSE.statusMessage)
            XCTAssertEqual(ep.requests.first?.traceparent, ["00-\(r.traceID)-\(toNSE.spanID)-01"])

            // No traceparent: a new trace; the connection stays up for shutdown.
            n.endpoint.refuse = false
            let conn = try await request(n, kernelRequest(n), [:])
            let weftID = conn.path.pathSegments[2].id
            try await NSMSystemTests.waitFor("the second Request's server span") {
                rx.spans.contains { $0.name == "networkservice.NetworkService/Request" && $0.kind == "SPAN_KIND_SERVER"
                    && $0.string("nsm.connection.id") == weftID && $0.parent == "" && $0.status == "STATUS_CODE_UNSET" }
            }
            XCTAssertNotEqual(ep.requests.last?.traceparent.first?.contains(r.traceID), true)

            // Shutdown closes the connection locally, in a trace of its own, exported before weftd exits.
            XCTAssertEqual(n.weftd.stop(), 0, n.weftd.log)
            let shutdown = rx.spans.filter { $0.name == "forwarder/Close" && $0.string("nsm.connection.id") == weftID }
            XCTAssertEqual(shutdown.count, 1, "\(rx.spans.filter { $0.name.hasSuffix("/Close") })\n\(n.weftd.log.suffix(2000))")
            XCTAssertEqual(shutdown.first?.string("nsm.close.reason"), "shutdown")
            XCTAssertEqual(shutdown.first?.parent, "")
        }
    }

    /// An unreachable collector costs nothing: Requests succeed, spans are counted as
    /// failed exports, and weftd stops in time.
    func testUnreachableCollectorNeverBlocksRequests() async throws {
        // A port nothing listens on.
        let n = Node(metrics: true, nsmExtra: "\n  open_telemetry_endpoint: 127.0.0.1:9")
        try await n.start()
        addTeardownBlock { await n.stop() }
        let start = Date()
        let conn = try await n.request(kernelRequest(n))
        try await n.close(conn)
        XCTAssertLessThan(Date().timeIntervalSince(start), 15)
        try await NSMSystemTests.waitFor("failed exports counted", timeout: 40) {
            let out = sh("curl -s \(n.metricsURL) | grep '^weft_nsm_trace_spans_total{result=\"failed\"}'").out
            return !out.isEmpty && !out.hasSuffix(" 0\n")
        }
        XCTAssertTrue(n.weftd.log.contains("OpenTelemetry: exporting"), n.weftd.log)
        let t = Date()
        XCTAssertEqual(n.weftd.stop(), 0)
        XCTAssertLessThan(Date().timeIntervalSince(t), 15)
    }

    func kernelRequest(_ n: Node) -> Networkservice_NetworkServiceRequest {
        nsmRequest(service: "icmp-responder", params: ["inodeURL": "file:///var/run/netns/\(n.nsc)", "name": "nsm-1"])
    }
}
