import Foundation
import GRPCCore
import Synchronization
import WeftMetrics
import WeftNSMProto

/// NSM's figures for /metrics: Request and Close calls by outcome (gRPC
/// status), their latency, connections by mechanism and state, monitor
/// streams, and the limits that bound them.
public final class NSMMetrics: Sendable {
    private let calls = Mutex<[String: UInt64]>([:]) // "method code" -> count
    let requestSeconds = Histogram(), closeSeconds = Histogram()

    public init() {}

    func record(_ method: String, _ code: RPCError.Code?, since start: ContinuousClock.Instant) {
        let d = ContinuousClock.now - start
        (method == "request" ? requestSeconds : closeSeconds).observe(d)
        let key = "\(method) \(code.map(Self.name) ?? "OK")"
        calls.withLock { $0[key, default: 0] += 1 }
    }

    /// gRPC's canonical status names.
    static func name(_ c: RPCError.Code) -> String {
        switch c {
        case .cancelled: return "CANCELLED"
        case .unknown: return "UNKNOWN"
        case .invalidArgument: return "INVALID_ARGUMENT"
        case .deadlineExceeded: return "DEADLINE_EXCEEDED"
        case .notFound: return "NOT_FOUND"
        case .alreadyExists: return "ALREADY_EXISTS"
        case .permissionDenied: return "PERMISSION_DENIED"
        case .resourceExhausted: return "RESOURCE_EXHAUSTED"
        case .failedPrecondition: return "FAILED_PRECONDITION"
        case .aborted: return "ABORTED"
        case .outOfRange: return "OUT_OF_RANGE"
        case .unimplemented: return "UNIMPLEMENTED"
        case .internalError: return "INTERNAL"
        case .unavailable: return "UNAVAILABLE"
        case .dataLoss: return "DATA_LOSS"
        case .unauthenticated: return "UNAUTHENTICATED"
        default: return "CODE_\(c.rawValue)"
        }
    }

    var callCounts: [(method: String, code: String, count: UInt64)] {
        calls.withLock { $0 }.sorted { $0.key < $1.key }.map { k, v in
            let p = k.split(separator: " ", maxSplits: 1)
            return (String(p[0]), String(p[1]), v)
        }
    }
}

extension Forwarder {
    /// The NSM part of /metrics.
    public func metricFamilies() async -> [MetricFamily] {
        var f: [MetricFamily] = []
        f.append(.init("weft_nsm_calls_total", .counter, "NSM Request and Close calls Weft served, by gRPC status.",
                       metrics.callCounts.map { Sample([("method", $0.method), ("code", $0.code)], $0.count) }))
        f.append(.init("weft_nsm_call_duration_seconds", .histogram, "How long Weft took to answer an NSM Request or Close.",
                       metrics.requestSeconds.samples([("method", "request")]) + metrics.closeSeconds.samples([("method", "close")])))
        // Connections by the mechanism towards the caller, and whether the next hop's side is built.
        var by: [String: Int] = [:]
        for c in table.all {
            let mech = c.serverMechanism.type.isEmpty ? "none" : c.serverMechanism.type
            let state = c.crossConnect != nil ? "established" : "building"
            by["\(mech) \(state)", default: 0] += 1
        }
        f.append(.init("weft_nsm_connections", .gauge, "NSM connections Weft holds, by the caller's mechanism and state.",
                       by.sorted { $0.key < $1.key }.map { k, v in
                           let p = k.split(separator: " ", maxSplits: 1)
                           return Sample([("mechanism", String(p[0])), ("state", String(p[1]))], Double(v))
                       }))
        f.append(.init("weft_nsm_monitor_streams", .gauge, "MonitorConnections streams open now.", [Sample([], Double(await monitor.streams))]))
        f.append(.init("weft_nsm_monitor_refused_total", .counter, "MonitorConnections streams refused (nsm.max_monitor_streams).",
                       [Sample([], Double(await monitor.refused))]))
        f.append(.init("weft_nsm_monitor_overflowed_total", .counter, "Monitor streams ended because their reader fell behind.",
                       [Sample([], Double(await monitor.overflowed))]))
        f.append(.init("weft_limit", .gauge, "A configured bound on what callers can make Weft allocate.", [
            Sample([("limit", "nsm.max_connections")], Double(settings.maxConnections)),
            Sample([("limit", "nsm.max_connections_per_client")], Double(settings.maxConnectionsPerClient)),
            Sample([("limit", "nsm.max_monitor_streams")], Double(settings.maxMonitorStreams)),
        ]))
        return f
    }
}
