import Foundation
import GRPCCore

/// A W3C Trace Context trace id: 16 bytes, never all zero.
public struct TraceID: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64, low: UInt64
    public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }
    public static func random() -> TraceID {
        var g = SystemRandomNumberGenerator()
        while true {
            let t = TraceID(high: g.next(), low: g.next())
            if t.high != 0 || t.low != 0 { return t }
        }
    }
    public var bytes: [UInt8] { bigEndianBytes(high) + bigEndianBytes(low) }
    /// 32 lowercase hex digits, as traceparent carries it.
    public var description: String { hex16(high) + hex16(low) }
}

/// A span id: 8 bytes, never all zero.
public struct SpanID: Hashable, Sendable, CustomStringConvertible {
    public var value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public static func random() -> SpanID {
        var g = SystemRandomNumberGenerator()
        while true {
            let v: UInt64 = g.next()
            if v != 0 { return SpanID(v) }
        }
    }
    public var bytes: [UInt8] { bigEndianBytes(value) }
    /// 16 lowercase hex digits.
    public var description: String { hex16(value) }
}

/// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and
/// `tracestate` gRPC metadata NSM's otelgrpc interceptors read and write. The span id is
/// the parent's as the receiver sees it: the caller's span for an incoming call, Weft's
/// client span for an outgoing one.
public struct TraceContext: Hashable, Sendable {
    public var traceID: TraceID
    public var spanID: SpanID
    /// trace-flags; bit 0 is "sampled".
    public var flags: UInt8
    /// The vendors' list, passed on unchanged ("" for none).
    public var traceState: String

    public init(traceID: TraceID, spanID: SpanID, flags: UInt8 = 1, traceState: String = "") {
        self.traceID = traceID; self.spanID = spanID; self.flags = flags; self.traceState = traceState
    }

    public var sampled: Bool { flags & 1 != 0 }

    public static let traceparentKey = "traceparent"
    public static let tracestateKey = "tracestate"

    /// Version 00: `00-<trace-id>-<parent-id>-<flags>`.
    public var traceparent: String {
        "00-\(traceID)-\(spanID)-" + String(format: "%02x", flags)
    }

    /// A traceparent header, or nil when it is not one (the header is then ignored, as
    /// the specification asks: the receiver starts a new trace). Accepts version 00 exactly
    /// and later versions by their version-00 prefix; refuses version ff, upper-case hex,
    /// all-zero ids and anything of the wrong length.
    public static func parse(traceparent: String, tracestate: String? = nil) -> TraceContext? {
        let s = Array(traceparent.utf8.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed())
        guard s.count >= 55, let version = hexValue(s[0..<2]), version != 0xff else { return nil }
        if version == 0 { guard s.count == 55 else { return nil } } else if s.count > 55, s[55] != UInt8(ascii: "-") { return nil }
        guard s[2] == UInt8(ascii: "-"), s[35] == UInt8(ascii: "-"), s[52] == UInt8(ascii: "-"),
              let hi = hexValue(s[3..<19]), let lo = hexValue(s[19..<35]), let span = hexValue(s[36..<52]),
              let flags = hexValue(s[53..<55]) else { return nil }
        guard hi != 0 || lo != 0, span != 0 else { return nil }
        return TraceContext(traceID: TraceID(high: hi, low: lo), spanID: SpanID(span), flags: UInt8(flags),
                            traceState: tracestate.flatMap(validTraceState) ?? "")
    }

    /// A tracestate list passed on as it came, unless it is malformed or too long (then
    /// dropped, as the specification allows): at most 32 `key=value` members, 512 bytes,
    /// printable ASCII.
    static func validTraceState(_ s: String) -> String? {
        let t = s.trimmingCharacters(in: .whitespaces)
        guard !t.isEmpty, t.utf8.count <= 512, t.utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7e }) else { return nil }
        let members = t.split(separator: ",", omittingEmptySubsequences: true)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard members.count <= 32 else { return nil }
        for m in members {
            guard let eq = m.firstIndex(of: "="), eq != m.startIndex, m.index(after: eq) != m.endIndex else { return nil }
        }
        return members.joined(separator: ",")
    }

    /// From a call's metadata: exactly one valid traceparent (several are not one).
    public static func extract(_ metadata: Metadata) -> TraceContext? {
        let parents = Array(metadata[stringValues: traceparentKey])
        guard parents.count == 1 else { return nil }
        let states = Array(metadata[stringValues: tracestateKey])
        return parse(traceparent: parents[0], tracestate: states.isEmpty ? nil : states.joined(separator: ","))
    }

    /// Into an outgoing call's metadata, replacing any there.
    public func inject(into metadata: inout Metadata) {
        metadata.removeAllValues(forKey: Self.traceparentKey)
        metadata.removeAllValues(forKey: Self.tracestateKey)
        metadata.addString(traceparent, forKey: Self.traceparentKey)
        if !traceState.isEmpty { metadata.addString(traceState, forKey: Self.tracestateKey) }
    }
}

/// Lowercase hex only (W3C: upper case makes the header invalid).
private func hexValue(_ s: ArraySlice<UInt8>) -> UInt64? {
    var v: UInt64 = 0
    for c in s {
        let d: UInt8
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
        default: return nil
        }
        v = v << 4 | UInt64(d)
    }
    return v
}

private func hex16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

private func bigEndianBytes(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * $0)) } }
