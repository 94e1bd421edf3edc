import Foundation
import Synchronization

// Prometheus's text exposition format (version 0.0.4), written by hand: Weft's
// figures are snapshots read at scrape time (the C core's counters, the
// control plane's tables), not values pushed into a registry as they change,
// so a collector that renders what it is given fits better than a metrics
// backend that owns the values.

public enum MetricType: String, Sendable {
    case counter, gauge, histogram
}

/// One sample line: the family's name plus `suffix` ("_bucket", "_sum",
/// "_count" for histograms), its labels in order, and its value.
public struct Sample: Sendable, Equatable {
    public var suffix: String
    public var labels: [(String, String)]
    public var value: Double
    public init(_ labels: [(String, String)] = [], _ value: Double, suffix: String = "") {
        self.labels = labels; self.value = value; self.suffix = suffix
    }
    public init(_ labels: [(String, String)] = [], _ value: UInt64, suffix: String = "") {
        self.init(labels, Double(value), suffix: suffix)
    }
    public static func == (a: Sample, b: Sample) -> Bool {
        a.suffix == b.suffix && a.value == b.value && a.labels.map(\.0) == b.labels.map(\.0) && a.labels.map(\.1) == b.labels.map(\.1)
    }
}

/// A metric family: `# HELP`, `# TYPE` and its samples.
public struct MetricFamily: Sendable, Equatable {
    public var name: String
    public var help: String
    public var type: MetricType
    public var samples: [Sample]
    public init(_ name: String, _ type: MetricType, _ help: String, _ samples: [Sample]) {
        self.name = name; self.type = type; self.help = help; self.samples = samples
    }
}

public enum Exposition {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The families in order; a name that appears twice is merged into the first
    /// (the format allows one HELP/TYPE block per name).
    public static func render(_ families: [MetricFamily]) -> String {
        var order: [String] = []
        var merged: [String: MetricFamily] = [:]
        for f in families {
            if merged[f.name] == nil { order.append(f.name); merged[f.name] = f } else { merged[f.name]!.samples += f.samples }
        }
        var out = ""
        out.reserveCapacity(order.count * 256)
        for name in order {
            let f = merged[name]!
            out += "# HELP \(name) \(escapeHelp(f.help))\n# TYPE \(name) \(f.type.rawValue)\n"
            for s in f.samples {
                out += name + s.suffix
                if !s.labels.isEmpty {
                    out += "{"
                    out += s.labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",")
                    out += "}"
                }
                out += " " + number(s.value) + "\n"
            }
        }
        return out
    }

    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    /// Label values: backslash, double quote and newline escaped.
    static func escapeLabel(_ s: String) -> String {
        var o = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": o += "\\\\"
            case "\"": o += "\\\""
            case "\n": o += "\\n"
            default: o.unicodeScalars.append(c)
            }
        }
        return o
    }

    /// HELP text: backslash and newline escaped.
    static func escapeHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// A histogram of durations in seconds, cumulative buckets as Prometheus
/// expects. Observations come from the control plane's tasks, never from a
/// worker.
public final class Histogram: Sendable {
    public let bounds: [Double]
    private struct State { var counts: [UInt64]; var sum: Double = 0; var count: UInt64 = 0 }
    private let state: Mutex<State>

    /// Bounds from 1 ms to 60 s, roughly ×2.5 apart: table changes and NSM requests.
    public static let secondsBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    public init(bounds: [Double] = Histogram.secondsBounds) {
        self.bounds = bounds
        state = Mutex(State(counts: [UInt64](repeating: 0, count: bounds.count)))
    }

    public func observe(_ seconds: Double) {
        state.withLock { s in
            if let i = bounds.firstIndex(where: { seconds <= $0 }) { s.counts[i] += 1 }
            s.sum += seconds
            s.count += 1
        }
    }

    public func observe(_ d: Duration) {
        let (sec, atto) = d.components
        observe(Double(sec) + Double(atto) / 1e18)
    }

    public var count: UInt64 { state.withLock { $0.count } }

    /// The `_bucket`, `_sum` and `_count` samples, with `labels` first.
    public func samples(_ labels: [(String, String)] = []) -> [Sample] {
        let s = state.withLock { $0 }
        var out: [Sample] = []
        var cum: UInt64 = 0
        for (i, b) in bounds.enumerated() {
            cum += s.counts[i]
            out.append(Sample(labels + [("le", Exposition.number(b))], cum, suffix: "_bucket"))
        }
        out.append(Sample(labels + [("le", "+Inf")], s.count, suffix: "_bucket"))
        out.append(Sample(labels, s.sum, suffix: "_sum"))
        out.append(Sample(labels, s.count, suffix: "_count"))
        return out
    }
}
