import Foundation
import WeftControl
import WeftKernel
import WeftModel

/// Weft's settings as an NSM forwarder. NSM's environment variables, with NSM's defaults
/// (reference §4.1), override the `nsm:` section of the YAML file.
public struct NSMSettings: Equatable, Sendable {
    public var name = "forwarder"
    public var nsName = "forwarder"
    public var labels: [String: String] = ["p2p": "true"]
    public var connectTo = NSMURL.unix("/connect.to.socket")
    public var listenOn: [NSMURL] = [.unix("/listen.on.socket")]
    public var dialTimeout: Duration = .milliseconds(750)
    public var maxTokenLifetime: Duration = .seconds(600)
    public var logLevel = "INFO"
    /// Outgoing mechanism preference order by type (NSM_MECHANISM_PRIORITY), e.g. ["KERNEL", "MEMIF"].
    public var mechanismPriority: [String] = []
    /// Register with the NSMgr at `connectTo` (off for a forwarder driven directly).
    public var register = true
    /// Plaintext and no tokens (NSM_INSECURE=true or `insecure: true`; labs and tests).
    public var insecure = false
    /// The SPIFFE Workload API (SPIFFE_ENDPOINT_SOCKET), as NSM's pods get it.
    public var spiffeSocket = "unix:///run/spire/sockets/agent.sock"
    /// How long to wait for the first SVID at start (NSM_SVID_TIMEOUT).
    public var svidTimeout: Duration = .seconds(60)
    /// Bounds on what callers can make Weft hold: connections on the node, connections
    /// of one client pod (its path's first segment name), MonitorConnections streams.
    public var maxConnections = 8192
    public var maxConnectionsPerClient = 1024
    public var maxMonitorStreams = 256
    /// OpenTelemetry: the OTLP/gRPC collector spans of every Request and Close go to
    /// (NSM_OPEN_TELEMETRY_ENDPOINT, host:port, plaintext); nil: no tracing.
    public var openTelemetryEndpoint: OTLPEndpoint?
    /// OTLP metrics export of /metrics' figures every interval (NSM_METRICS_EXPORT_INTERVAL),
    /// to the same collector; nil: none.
    public var metricsExportInterval: Duration?
    /// SR-IOV (NSM_SRIOV_CONFIG_FILE, NSM_PCI_DEVICES_PATH): nil serves no tokenID.
    public var sriovConfigFile: String?
    public var pciDevicesPath = "/sys/bus/pci/devices"
    /// VFIO (NSM_VFIO_PATH, NSM_CGROUP_PATH): the group devices, the cgroup v1 devices hierarchy.
    public var vfioPath = "/dev/vfio"
    public var cgroupPath = "/sys/fs/cgroup/devices"

    public init() {}

    public struct Error: Swift.Error, CustomStringConvertible {
        public var description: String
    }

    /// The `nsm:` section of the file, then NSM's variables over it.
    public static func load(file: NSMFileConfig?, env: [String: String], capabilities: [String: String]) throws -> NSMSettings {
        var fromFile: [String: String] = [:]
        if let f = file {
            fromFile["NSM_NAME"] = f.name
            fromFile["NSM_NSNAME"] = f.nsname
            fromFile["NSM_LISTEN_ON"] = f.listenOn?.joined(separator: ",")
            fromFile["NSM_CONNECT_TO"] = f.connectTo
            fromFile["NSM_DIAL_TIMEOUT"] = f.dialTimeout
            fromFile["NSM_MAX_TOKEN_LIFETIME"] = f.maxTokenLifetime
            fromFile["NSM_LOG_LEVEL"] = f.logLevel
            fromFile["NSM_MECHANISM_PRIORITY"] = f.mechanismPriority?.joined(separator: ",")
            fromFile["NSM_INSECURE"] = f.insecure.map { $0 ? "true" : "false" }
            fromFile["SPIFFE_ENDPOINT_SOCKET"] = f.spiffeSocket
            fromFile["NSM_SVID_TIMEOUT"] = f.svidTimeout
            fromFile["NSM_OPEN_TELEMETRY_ENDPOINT"] = f.openTelemetryEndpoint
            fromFile["NSM_METRICS_EXPORT_INTERVAL"] = f.metricsExportInterval
            fromFile["NSM_SRIOV_CONFIG_FILE"] = f.sriovConfigFile
            fromFile["NSM_PCI_DEVICES_PATH"] = f.pciDevicesPath
            fromFile["NSM_VFIO_PATH"] = f.vfioPath
            fromFile["NSM_CGROUP_PATH"] = f.cgroupPath
        }
        var base = NSMSettings()
        base.register = file?.register ?? true
        if let f = file {
            var bad: [String] = []
            if let v = f.maxConnections { if v >= 1 { base.maxConnections = v } else { bad.append("nsm.max_connections: \(v) must be at least 1") } }
            if let v = f.maxConnectionsPerClient { if v >= 1 { base.maxConnectionsPerClient = v } else { bad.append("nsm.max_connections_per_client: \(v) must be at least 1") } }
            if let v = f.maxMonitorStreams { if v >= 1 { base.maxMonitorStreams = v } else { bad.append("nsm.max_monitor_streams: \(v) must be at least 1") } }
            if !bad.isEmpty { throw Error(description: bad.joined(separator: "\n")) }
        }
        // A variable set but empty does not wipe the file's value.
        return try load(base: base, env: fromFile.merging(env.filter { !$0.value.isEmpty }) { _, e in e }, capabilities: capabilities)
    }

    /// Whether weftd serves the NSM API: an `nsm:` section or NSM_LISTEN_ON.
    public static func enabled(file: NSMFileConfig?, env: [String: String]) -> Bool {
        file != nil || (env["NSM_LISTEN_ON"].map { !$0.isEmpty } ?? false)
    }

    /// Apply NSM_* variables over `base`. Every malformed value is an error naming the variable.
    public static func load(base: NSMSettings = NSMSettings(), env: [String: String],
                            capabilities: [String: String]) throws -> NSMSettings {
        var s = base
        var problems: [String] = []
        func str(_ k: String) -> String? { env[k].flatMap { $0.isEmpty ? nil : $0 } }
        if let v = str("NSM_NAME") { s.name = v }
        if let v = str("NSM_NSNAME") { s.nsName = v }
        // The capability labels (p2p, p2mp-*) the dataplane offers, then NSM_LABELS over them.
        s.labels = capabilities.merging(s.labels) { _, new in new }
        if let v = env["NSM_LABELS"] {
            for kv in v.split(separator: ",") where !kv.trimmingCharacters(in: .whitespaces).isEmpty {
                let sep: Character = kv.contains(":") ? ":" : "="
                let p = kv.split(separator: sep, maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if p.count == 2, !p[0].isEmpty { s.labels[p[0]] = p[1] } else { problems.append("NSM_LABELS: '\(kv)' is not key:value") }
            }
        }
        if let v = str("NSM_SRIOV_CONFIG_FILE") {
            if v.hasPrefix("/") { s.sriovConfigFile = v } else { problems.append("NSM_SRIOV_CONFIG_FILE: '\(v)' is not an absolute path") }
        }
        if let v = str("NSM_PCI_DEVICES_PATH") {
            if v.hasPrefix("/") && (v.hasSuffix("/bus/pci/devices") || v.hasSuffix("/bus/pci/devices/")) { s.pciDevicesPath = v }
            else { problems.append("NSM_PCI_DEVICES_PATH: '\(v)' is not an absolute path ending in /bus/pci/devices") }
        }
        if let v = str("NSM_VFIO_PATH") {
            if v.hasPrefix("/") { s.vfioPath = v } else { problems.append("NSM_VFIO_PATH: '\(v)' is not an absolute path") }
        }
        if let v = str("NSM_CGROUP_PATH") {
            if v.hasPrefix("/") { s.cgroupPath = v } else { problems.append("NSM_CGROUP_PATH: '\(v)' is not an absolute path") }
        }
        if let v = str("NSM_CONNECT_TO") {
            do { s.connectTo = try NSMURL.parse(v) } catch { problems.append("NSM_CONNECT_TO: \(error)") }
        }
        if let v = str("NSM_LISTEN_ON") {
            var urls: [NSMURL] = []
            for u in v.split(separator: ",") {
                do { urls.append(try NSMURL.parse(String(u).trimmingCharacters(in: .whitespaces))) }
                catch { problems.append("NSM_LISTEN_ON: \(error)") }
            }
            if !urls.isEmpty { s.listenOn = urls }
        }
        if let v = str("NSM_DIAL_TIMEOUT") {
            if let d = parseGoDuration(v), d > .zero { s.dialTimeout = d } else { problems.append("NSM_DIAL_TIMEOUT: '\(v)' is not a duration such as 750ms or 2s") }
        }
        if let v = str("NSM_MAX_TOKEN_LIFETIME") {
            if let d = parseGoDuration(v), d > .zero { s.maxTokenLifetime = d } else { problems.append("NSM_MAX_TOKEN_LIFETIME: '\(v)' is not a duration such as 10m") }
        }
        if let v = str("NSM_LOG_LEVEL") {
            let ok = ["TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "PANIC"]
            if ok.contains(v.uppercased()) { s.logLevel = v.uppercased() } else { problems.append("NSM_LOG_LEVEL: '\(v)' is not one of \(ok.joined(separator: ", "))") }
        }
        if let v = str("NSM_INSECURE") {
            switch v.lowercased() {
            case "true", "1", "yes": s.insecure = true
            case "false", "0", "no": s.insecure = false
            default: problems.append("NSM_INSECURE: '\(v)' is not true or false")
            }
        }
        if let v = str("SPIFFE_ENDPOINT_SOCKET") {
            if v.hasPrefix("unix:") || v.hasPrefix("/") { s.spiffeSocket = v } else { problems.append("SPIFFE_ENDPOINT_SOCKET: '\(v)' is not unix:///path") }
        }
        if let v = str("NSM_SVID_TIMEOUT") {
            if let d = parseGoDuration(v), d > .zero { s.svidTimeout = d } else { problems.append("NSM_SVID_TIMEOUT: '\(v)' is not a duration such as 30s") }
        }
        if let v = str("NSM_REGISTRY_CLIENT_POLICIES") {
            // Weft's policies are NSM's own, built in: the policy sets NSM ships are
            // accepted by their paths; custom .rego files are not evaluated, so refused.
            let known = ["common", "registry", "client", "server", "monitor"]
            for entry in v.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
                let parts = entry.split(separator: "/").map(String.init)
                let builtIn = parts.count == 4 && parts[0] == "etc" && parts[1] == "nsm" && parts[2] == "opa" && known.contains(parts[3])
                    || parts.count == 5 && parts[0] == "etc" && parts[1] == "nsm" && parts[2] == "opa" && known.contains(parts[3]) && parts[4].hasSuffix(".rego")
                if !builtIn {
                    problems.append("NSM_REGISTRY_CLIENT_POLICIES: '\(entry)' is not one of NSM's built-in policy sets (etc/nsm/opa/{\(known.joined(separator: ","))}/...); custom OPA policies are not evaluated by Weft")
                }
            }
        }
        if let v = str("NSM_OPEN_TELEMETRY_ENDPOINT") {
            do { s.openTelemetryEndpoint = try OTLPEndpoint.parse(v) } catch {
                problems.append("NSM_OPEN_TELEMETRY_ENDPOINT (nsm.open_telemetry_endpoint): \(error)")
            }
        }
        if let v = str("NSM_METRICS_EXPORT_INTERVAL") {
            if let d = parseGoDuration(v), d >= .milliseconds(100) { s.metricsExportInterval = d } else {
                problems.append("NSM_METRICS_EXPORT_INTERVAL (nsm.metrics_export_interval): '\(v)' is not a duration of at least 100ms such as 10s")
            }
        }
        if let v = str("NSM_MECHANISM_PRIORITY") {
            s.mechanismPriority = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).uppercased() }
        }
        if !problems.isEmpty { throw Error(description: problems.joined(separator: "\n")) }
        return s
    }
}

/// An NSM endpoint address: `unix:///path` or `tcp://host:port`.
public enum NSMURL: Equatable, Sendable, CustomStringConvertible {
    case unix(String)
    case tcp(host: String, port: Int)

    public var description: String {
        switch self {
        case .unix(let p): return "unix://" + p
        case .tcp(let h, let p): return h.contains(":") ? "tcp://[\(h)]:\(p)" : "tcp://\(h):\(p)"
        }
    }

    public var isLocal: Bool { if case .unix = self { return true } else { return false } }

    public struct ParseError: Error, CustomStringConvertible { public var description: String }

    public static func parse(_ s: String) throws -> NSMURL {
        if s.hasPrefix("unix://") {
            let p = String(s.dropFirst("unix://".count))
            guard p.hasPrefix("/"), p.utf8.count <= 107 else {
                throw ParseError(description: "'\(s)': a unix URL needs an absolute socket path of at most 107 bytes (unix:///path)")
            }
            return .unix(p)
        }
        if s.hasPrefix("tcp://") {
            var rest = Substring(s.dropFirst("tcp://".count))
            if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
            let host: String, portText: Substring
            if rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]") else { throw ParseError(description: "'\(s)': unclosed '['") }
                host = String(rest[rest.index(after: rest.startIndex)..<close])
                let after = rest[rest.index(after: close)...]
                guard after.first == ":" else { throw ParseError(description: "'\(s)': tcp URLs need [host]:port") }
                portText = after.dropFirst()
            } else {
                guard let colon = rest.lastIndex(of: ":") else { throw ParseError(description: "'\(s)': tcp URLs need host:port") }
                host = String(rest[..<colon])
                portText = rest[rest.index(after: colon)...]
            }
            guard let port = Int(portText), (1...65535).contains(port) else {
                throw ParseError(description: "'\(s)': port must be 1..65535")
            }
            return .tcp(host: host.isEmpty ? "0.0.0.0" : host, port: port)
        }
        if s.hasPrefix("/") { return .unix(s) }
        throw ParseError(description: "'\(s)' is neither unix:///path nor tcp://host:port")
    }
}

/// Go's time.ParseDuration for the forms NSM's variables use: "750ms", "10m", "1h30m", "2.5s".
public func parseGoDuration(_ s: String) -> Duration? {
    let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
    var rest = Substring(s)
    var total = 0.0
    guard !rest.isEmpty else { return nil }
    if rest == "0" { return .zero }
    while !rest.isEmpty {
        let num = rest.prefix { $0.isNumber || $0 == "." }
        guard !num.isEmpty, let v = Double(num) else { return nil }
        rest = rest.dropFirst(num.count)
        guard let (u, f) = units.filter({ rest.hasPrefix($0.0) }).max(by: { $0.0.count < $1.0.count }) else { return nil }
        rest = rest.dropFirst(u.count)
        total += v * f
    }
    return .nanoseconds(Int64(total * 1e9))
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
