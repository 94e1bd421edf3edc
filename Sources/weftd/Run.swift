import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftMetrics
import WeftModel
import WeftNSM

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the forwarder.")

    @Option(name: .shortAndLong, help: "The YAML configuration file.")
    var config: String

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        // A socket whose peer went away must cost an EPIPE, never the process
        // (every write also uses MSG_NOSIGNAL; this covers libraries too).
        signal(SIGPIPE, SIG_IGN)
        let levels = LevelSwitch(logLevel)
        LoggingSystem.bootstrap { label in SwitchableLogHandler(inner: .standardError(label: label), levels: levels) }
        let logger = Logger(label: "weftd")

        let cfg: WeftConfig
        do {
            cfg = try ConfigLoader.load(path: config)
        } catch let e as ConfigErrors {
            FileHandle.standardError.write(Data((e.description + "\n").utf8))
            throw ExitCode(1)
        }

        let env = ProcessInfo.processInfo.environment
        var nsmSettings: NSMSettings? = nil
        if NSMSettings.enabled(file: cfg.nsm, env: env) {
            do {
                nsmSettings = try NSMSettings.load(file: cfg.nsm, env: env, capabilities: cfg.labels)
            } catch {
                FileHandle.standardError.write(Data("\(config): nsm: \(error)\n".utf8))
                throw ExitCode(1)
            }
            if let l = LevelSwitch.level(nsm: nsmSettings!.logLevel), env["NSM_LOG_LEVEL"] != nil || cfg.nsm?.logLevel != nil {
                levels.configured = l
            }
        }

        var workload: Task<Void, Never>? = nil
        defer { workload?.cancel() }
        var security: NSMSecurity? = nil
        if let s = nsmSettings {
            if s.insecure {
                logger.warning("NSM API: INSECURE: plaintext gRPC, no SPIFFE identity, no path tokens (NSM_INSECURE); no NSM cluster accepts this")
            } else {
                // As NSM's forwarders: wait (bounded) for the first X.509-SVID.
                let identity = IdentitySource(maxTokenLifetime: Double(s.maxTokenLifetime.components.seconds))
                let path: String
                do { path = try WorkloadAPIClient.socketPath(s.spiffeSocket) } catch {
                    logger.error("\(error)")
                    throw ExitCode(1)
                }
                let client = WorkloadAPIClient(socketPath: path, identity: identity, logger: logger)
                workload = Task { await client.run() }
                logger.notice("waiting up to \(s.svidTimeout) for an X.509-SVID from the SPIFFE Workload API at \(path)")
                let got = await withTaskGroup(of: SVID?.self) { g in
                    g.addTask { await identity.first() }
                    g.addTask { try? await Task.sleep(for: s.svidTimeout); return nil }
                    let r = await g.next() ?? nil
                    g.cancelAll()
                    if r == nil { identity.abandonWaiters() }
                    return r
                }
                guard got != nil else {
                    logger.error("no X.509-SVID from \(path) within \(s.svidTimeout); is the SPIRE agent running and this workload registered? (NSM_INSECURE=true runs without)")
                    workload?.cancel()
                    throw ExitCode(1)
                }
                security = NSMSecurity(identity: identity, logger: logger)
            }
        }

        let state = RuntimeState(dir: cfg.admin.runtimeDir, adminSocket: cfg.admin.socket, logger: logger)
        do { try state.acquire() } catch {
            logger.error("\(error)")
            throw ExitCode(1)
        }

        // Every pod interface holds a few fds (sockets, rings, eventfds, an XDP
        // program): a node with a thousand of them needs more than the usual 1,024.
        var lim = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lim) == 0, lim.rlim_cur < lim.rlim_max {
            let was = lim.rlim_cur
            lim.rlim_cur = lim.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lim) == 0 { logger.debug("open files: \(was) -> \(lim.rlim_max)") }
        }
        if lim.rlim_cur < 16384 {
            logger.warning("open files limited to \(lim.rlim_cur): each pod interface needs a few (raise LimitNOFILE / ulimit -n)")
        }

        // The drivers pci interfaces will be bound to, loaded before EAL: EAL enables
        // VFIO only if the module is there when it starts. Binding is the attach's.
        for why in PCIBinding().loadDrivers(for: cfg.interfaces) { logger.warning("\(why)") }

        let args = EALArguments.build(cfg)
        logger.info("EAL: \(args.dropFirst().joined(separator: " "))")
        do { try EAL.initialize(arguments: args) } catch {
            logger.error("\(error)")
            state.release()
            throw ExitCode(1)
        }
        var dataplane: Dataplane? = nil
        do {
            dataplane = try Dataplane(EALArguments.dataplaneSettings(cfg))
            try dataplane!.start()
        } catch {
            logger.error("\(error)")
            dataplane?.destroy()
            EAL.cleanup()
            state.release()
            throw ExitCode(1)
        }
        // The Swift runtime's threads predate EAL and may run on a worker's CPU: keep them
        // (and every thread they create) on the main lcore's.
        let moved = EAL.confineControlThreads()
        if moved > 0 { logger.debug("confined \(moved) control threads to the main lcore's CPUs") }
        let control = ControlPlane(base: cfg, dataplane: dataplane!, logger: logger, state: state)
        dataplane = nil // the control actor owns it now
        let teardown = DataplaneService(control: control, state: state, logger: logger)

        do {
            let summary = try await control.apply(cfg)
            logger.info("configuration applied: \(summary)")
        } catch {
            logger.error("cannot apply \(config): \(error)")
            await teardown.finish()
            throw ExitCode(1)
        }

        let configPath = config
        let reload: @Sendable () async -> AdminResponse = {
            do {
                let next = try ConfigLoader.load(path: configPath)
                var r = AdminResponse(ok: true)
                r.summary = try await control.apply(next)
                logger.notice("reload: \(r.summary!)")
                return r
            } catch {
                logger.error("reload rejected: \(error)")
                return .failure("\(error)")
            }
        }
        let admin = AdminServer(path: cfg.admin.socket) { req in
            await AdminHandler.handle(req, control: control, reload: reload)
        }
        do { try admin.start() } catch {
            logger.error("\(error)")
            await teardown.finish()
            throw ExitCode(1)
        }
        logger.notice("weftd running: \(cfg.interfaces.count) interfaces, \(cfg.crossConnects.count) cross-connects, workers on lcores \(cfg.dataplane.workers); admin socket \(cfg.admin.socket)")

        // Shutdown runs in reverse order: the NSM API first (its connections
        // closed locally), then the signals and timers, the admin socket, and
        // last the dataplane.
        var services: [any Service] = [teardown, AdminService(server: admin), LinkMonitor(control: control),
                                       ReloadOnHangup(reload: reload), TraceOnUSR(levels: levels, logger: logger)]
        var nsmAPI: NSMService? = nil
        if let s = nsmSettings {
            let sriov: SRIOVService?
            do { sriov = try SRIOVService.load(s, runtimeDir: cfg.admin.runtimeDir, logger: logger) } catch {
                logger.error("\(error)")
                await teardown.finish()
                throw ExitCode(1)
            }
            let nsm = NSMService(settings: s, control: control, logger: logger, security: security, version: weftVersion, sriov: sriov)
            nsmAPI = nsm
            services.append(NSMAPI(service: nsm, logger: logger))
            logger.notice("NSM forwarder '\(s.name)': listening on \(s.listenOn.map(\.description).joined(separator: ", ")), registry \(s.connectTo)\(s.register ? "" : " (not registering)")")
        }
        if cfg.metrics.prometheus, let (host, port) = MetricsConfig.parseListen(cfg.metrics.listenOn) {
            let forwarder = nsmAPI?.forwarder, nsmService = nsmAPI
            let server = MetricsServer(host: host, port: port, logger: logger) {
                var f = await control.metricFamilies()
                if let forwarder { f += await forwarder.metricFamilies() }
                f += nsmService?.tracingMetricFamilies() ?? []
                f += ProcessMetrics.families()
                return Exposition.render(f)
            }
            do {
                let bound = try await server.start()
                logger.notice("Prometheus metrics on http://\(host.isEmpty ? "*" : host):\(bound)/metrics")
            } catch {
                logger.error("metrics: cannot listen on \(cfg.metrics.listenOn): \(error)")
                await teardown.finish()
                throw ExitCode(1)
            }
            services.append(MetricsService(server: server))
        }
        let group = ServiceGroup(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        do { try await group.run() } catch {
            logger.error("\(error)")
        }
        await teardown.finish() // already done unless the group ended on an error
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// The dataplane's end as a lifecycle service: it waits for shutdown, then
/// (after every service that uses it has stopped) removes connections and
/// interfaces, stops the workers, frees DPDK's memory and EAL, and clears the
/// runtime state.
actor DataplaneService: Service {
    let control: ControlPlane
    let state: RuntimeState
    let logger: Logger
    private var done = false
    init(control: ControlPlane, state: RuntimeState, logger: Logger) {
        self.control = control
        self.state = state
        self.logger = logger
    }
    func run() async throws {
        try? await gracefulShutdown()
        await finish()
    }
    func finish() async {
        guard !done else { return }
        done = true
        logger.notice("shutting down: removing cross-connects and interfaces")
        await control.shutdown()
        EAL.cleanup()
        state.release()
        logger.info("weftd stopped")
    }
}

/// The admin socket's thread, stopped at shutdown.
struct AdminService: Service {
    let server: AdminServer
    func run() async throws {
        try? await gracefulShutdown()
        server.stop()
    }
}

/// Prometheus's /metrics, stopped at shutdown (before the dataplane goes).
struct MetricsService: Service {
    let server: MetricsServer
    func run() async throws {
        try? await gracefulShutdown()
        await server.stop()
    }
}

/// The process's own figures, as Prometheus's client libraries export them.
enum ProcessMetrics {
    static let started = Date()
    static func families() -> [MetricFamily] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        var rss = 0.0
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
           let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) {
            rss = pages * Double(sysconf(Int32(_SC_PAGESIZE)))
        }
        return [
            MetricFamily("weft_build_info", .gauge, "weftd's version (value 1).", [Sample([("version", weftVersion)], 1.0)]),
            MetricFamily("process_start_time_seconds", .gauge, "Start time of the process since the Unix epoch.",
                         [Sample([], started.timeIntervalSince1970)]),
            MetricFamily("process_open_fds", .gauge, "Open file descriptors.", [Sample([], Double(fds))]),
            MetricFamily("process_resident_memory_bytes", .gauge, "Resident memory.", [Sample([], rss)]),
        ]
    }
}

/// Refreshes the link state the workers read (they make no syscalls).
struct LinkMonitor: Service {
    let control: ControlPlane
    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await control.pollLinks()
            try? await Task.sleep(nanoseconds: 200_000_000)
        }
    }
}

/// SIGHUP re-reads the configuration file and applies only the difference.
struct ReloadOnHangup: Service {
    let reload: @Sendable () async -> AdminResponse
    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            _ = await reload()
        }
    }
}

/// The NSM API as a lifecycle service.
struct NSMAPI: Service {
    let service: NSMService
    let logger: Logger
    func run() async throws {
        do {
            try await withGracefulShutdownHandler {
                try await service.run()
            } onGracefulShutdown: {
                Task { await service.stopServing() }
            }
        } catch {
            logger.error("NSM API: \(error)")
        }
        // Before the dataplane goes: close every connection locally.
        logger.notice("shutting down: closing NSM connections locally")
        await service.stop()
    }
}

/// SIGUSR1 switches logging to trace, SIGUSR2 back to the configured level (as NSM's forwarders).
struct TraceOnUSR: Service {
    let levels: LevelSwitch
    let logger: Logger
    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sigusr1, .sigusr2)
        for await s in signals.cancelOnGracefulShutdown() {
            if s == .sigusr1 { levels.trace = true } else { levels.trace = false }
            logger.notice("log level now \(levels.level)")
        }
    }
}

/// The process's log level, switchable at runtime.
final class LevelSwitch: @unchecked Sendable {
    private let lock = NSLock()
    private var _configured: Logger.Level
    private var _trace = false
    init(_ l: Logger.Level) { _configured = l }
    var configured: Logger.Level {
        get { lock.lock(); defer { lock.unlock() }; return _configured }
        set { lock.lock(); _configured = newValue; lock.unlock() }
    }
    var trace: Bool {
        get { lock.lock(); defer { lock.unlock() }; return _trace }
        set { lock.lock(); _trace = newValue; lock.unlock() }
    }
    var level: Logger.Level { trace ? .trace : configured }

    static func level(nsm: String) -> Logger.Level? {
        switch nsm.uppercased() {
        case "TRACE": return .trace
        case "DEBUG": return .debug
        case "INFO": return .info
        case "WARN", "WARNING": return .warning
        case "ERROR": return .error
        case "FATAL", "PANIC": return .critical
        default: return nil
        }
    }
}

struct SwitchableLogHandler: LogHandler {
    var inner: StreamLogHandler
    let levels: LevelSwitch
    var logLevel: Logger.Level {
        get { levels.level }
        set { levels.configured = newValue }
    }
    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }
    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        var i = inner
        i.logLevel = .trace
        i.log(level: level, message: message, metadata: metadata, source: source, file: file, function: function, line: line)
    }
}
