import Foundation
import GRPCCore
import Synchronization

/// An attribute's value, as OTLP's AnyValue carries it.
public enum SpanValue: Sendable, Equatable {
    case string(String), int(Int64), bool(Bool), double(Double), strings([String])
}

public enum SpanKind: Sendable { case `internal`, server, client }

/// A finished span, as the exporter sends it.
public struct SpanData: Sendable {
    public var context: TraceContext
    public var parent: SpanID?
    public var name: String
    public var kind: SpanKind
    public var startNanos: UInt64
    public var endNanos: UInt64
    public var attributes: [(String, SpanValue)]
    /// nil: unset (success); else the error's message.
    public var error: String?
}

/// Where a span is in the task tree: spans started below a span are its children.
/// Holds the caller's context (from `traceparent`) before Weft's server span starts, and
/// the caller's context unchanged when tracing is off (it is then passed on as it came).
enum TraceScope {
    @TaskLocal static var current: TraceContext?
}

/// One operation of Weft's. Ending it hands it to the exporter (when it records: its trace
/// is sampled). Attributes and status may be set from any task until it ends.
public final class Span: Sendable {
    public let context: TraceContext
    let parent: SpanID?
    let name: String
    let kind: SpanKind
    let startNanos: UInt64
    let sink: (any SpanSink)?
    private struct State { var attributes: [(String, SpanValue)]; var error: String?; var ended = false }
    private let state: Mutex<State>

    init(context: TraceContext, parent: SpanID?, name: String, kind: SpanKind, attributes: [(String, SpanValue)], sink: (any SpanSink)?) {
        self.context = context
        self.parent = parent
        self.name = name
        self.kind = kind
        self.sink = context.sampled ? sink : nil
        startNanos = wallClockNanos()
        state = Mutex(State(attributes: attributes))
    }

    public var isRecording: Bool { sink != nil }

    /// Sets (or replaces) an attribute.
    public func set(_ key: String, _ value: SpanValue) {
        guard isRecording else { return }
        state.withLock { s in
            if let i = s.attributes.firstIndex(where: { $0.0 == key }) { s.attributes[i].1 = value } else { s.attributes.append((key, value)) }
        }
    }
    public func set(_ key: String, _ value: String) { if !value.isEmpty { set(key, .string(value)) } }

    /// Status ERROR with this message.
    public func fail(_ message: String) { state.withLock { $0.error = message } }

    /// Status ERROR from a thrown error: its gRPC status (code and message), as the caller
    /// would get it; client and server spans also record the code (rpc.grpc.status_code).
    public func fail(_ error: Error) {
        let e = asRPC((error as? NextHopRefused)?.underlying ?? error)
        if kind != .internal { set("rpc.grpc.status_code", .int(Int64(e.code.rawValue))) }
        fail(e.message.isEmpty ? "\(e.code)" : e.message)
    }

    public func end() {
        let data: SpanData? = state.withLock { s in
            guard !s.ended else { return nil }
            s.ended = true
            return SpanData(context: context, parent: parent, name: name, kind: kind, startNanos: startNanos,
                            endNanos: max(startNanos, wallClockNanos()), attributes: s.attributes, error: s.error)
        }
        if let data, let sink { sink.enqueue(data) }
    }
}

/// What takes finished spans: the batching exporter (never blocks).
public protocol SpanSink: Sendable {
    func enqueue(_ span: SpanData)
}

/// Weft's tracer: spans in the task tree, W3C propagation in gRPC metadata. Sampling
/// follows the parent's flag (OpenTelemetry's ParentBased(AlwaysOn), NSM's default): a
/// trace Weft starts is sampled; a caller's unsampled trace stays unsampled (its spans get
/// ids and are propagated, but not exported).
public final class NSMTracer: Sendable {
    let sink: any SpanSink

    public init(sink: any SpanSink) { self.sink = sink }

    /// The context spans started now join (Weft's current span, else the caller's).
    public static var current: TraceContext? { TraceScope.current }

    /// A span under `parent` (default: the current one); a new trace without one.
    public func start(_ name: String, kind: SpanKind = .internal, parent: TraceContext? = NSMTracer.current,
                      attributes: [(String, SpanValue)] = []) -> Span {
        let ctx: TraceContext
        if let p = parent {
            ctx = TraceContext(traceID: p.traceID, spanID: .random(), flags: p.flags & 1, traceState: p.traceState)
        } else {
            ctx = TraceContext(traceID: .random(), spanID: .random(), flags: 1)
        }
        return Span(context: ctx, parent: parent?.spanID, name: name, kind: kind, attributes: attributes, sink: sink)
    }

    /// `body` in a span: the span is current in it, ends when it returns, and records
    /// an error it throws.
    public func withSpan<R>(_ name: String, kind: SpanKind = .internal, parent: TraceContext? = NSMTracer.current,
                            attributes: [(String, SpanValue)] = [], _ body: (Span) async throws -> R) async rethrows -> R {
        let span = start(name, kind: kind, parent: parent, attributes: attributes)
        defer { span.end() }
        do {
            return try await TraceScope.$current.withValue(span.context) { try await body(span) }
        } catch {
            span.fail(error)
            throw error
        }
    }
}

/// Nanoseconds since the Unix epoch.
func wallClockNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
