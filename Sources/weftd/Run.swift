import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import WeftCore

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the forwarder.")

    @Option(name: .shortAndLong, help: "The YAML configuration file.")
    var config: String

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "weftd")

        let cfg: WeftConfig
        do {
            cfg = try ConfigLoader.load(path: config)
        } catch let e as ConfigErrors {
            FileHandle.standardError.write(Data((e.description + "\n").utf8))
            throw ExitCode(1)
        }

        let state = RuntimeState(dir: cfg.admin.runtimeDir, adminSocket: cfg.admin.socket, logger: logger)
        do { try state.acquire() } catch {
            logger.error("\(error)")
            throw ExitCode(1)
        }

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
        let controller = Controller(base: cfg, dataplane: dataplane!, logger: logger, state: state)
        defer {
            controller.removeAll()
            dataplane?.destroy()
            EAL.cleanup()
            state.release()
            logger.info("weftd stopped")
        }

        do {
            let summary = try controller.apply(cfg)
            logger.info("configuration applied: \(summary)")
        } catch {
            logger.error("cannot apply \(config): \(error)")
            throw ExitCode(1)
        }

        let configPath = config
        let reload: @Sendable () -> AdminResponse = {
            do {
                let next = try ConfigLoader.load(path: configPath)
                var r = AdminResponse(ok: true)
                r.summary = try controller.apply(next)
                logger.notice("reload: \(r.summary!)")
                return r
            } catch {
                logger.error("reload rejected: \(error)")
                return .failure("\(error)")
            }
        }
        let admin = AdminServer(path: cfg.admin.socket) { req in
            AdminHandler.handle(req, controller: controller, reload: reload)
        }
        do { try admin.start() } catch {
            logger.error("\(error)")
            throw ExitCode(1)
        }
        defer { admin.stop() }
        logger.notice("weftd running: \(cfg.interfaces.count) interfaces, \(cfg.crossConnects.count) cross-connects, workers on lcores \(cfg.dataplane.workers); admin socket \(cfg.admin.socket)")

        let group = ServiceGroup(
            services: [LinkMonitor(controller: controller), ReloadOnHangup(reload: reload)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        try await group.run()
        logger.notice("shutting down: removing cross-connects and interfaces")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Refreshes the link state the workers read (they make no syscalls).
struct LinkMonitor: Service {
    let controller: Controller
    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            controller.pollLinks()
            try? await Task.sleep(nanoseconds: 200_000_000)
        }
    }
}

/// SIGHUP re-reads the configuration file and applies only the difference.
struct ReloadOnHangup: Service {
    let reload: @Sendable () -> AdminResponse
    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            _ = reload()
        }
    }
}
