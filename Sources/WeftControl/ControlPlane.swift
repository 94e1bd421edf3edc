import Foundation
import Logging
import Synchronization
import WeftDataplane
import WeftMetrics
import WeftModel

/// The one owner of the C core and the kernel plumbing. The admin socket,
/// NSM's gRPC handlers, reload (SIGHUP) and timers all `await` it: calls into
/// the dataplane and netlink are made one at a time, by this actor, and no
/// lock guards them.
public actor ControlPlane {
    let controller: Controller
    /// The running configuration as of the last change, readable without
    /// awaiting (a value: readers never touch the dataplane).
    private let published: Mutex<WeftConfig>

    public init(controller: Controller) {
        self.controller = controller
        self.published = Mutex(controller.running)
    }

    /// Build the reconciler on the actor (the dataplane is not Sendable: it
    /// moves into the actor here and never leaves it).
    public init(base: WeftConfig, dataplane: any DataplaneDriving, logger: Logger, state: RuntimeState?) {
        let c = Controller(base: base, dataplane: dataplane, logger: logger, state: state)
        self.controller = c
        self.published = Mutex(c.running)
    }

    /// The running configuration after the last change (uplinks, tunnels, labels).
    public nonisolated var snapshot: WeftConfig { published.withLock { $0 } }

    private func changed<T>(_ body: () throws -> T) throws -> T {
        if isShutDown { throw ApplyError(message: "weftd is shutting down: no more changes") }
        let start = ContinuousClock.now
        defer {
            let r = controller.running; published.withLock { $0 = r }
            changeSeconds.observe(ContinuousClock.now - start)
        }
        return try body()
    }

    /// How long each change took (validation, kernel plumbing, the table publish).
    public nonisolated let changeSeconds = Histogram()

    // MARK: changes (each all or nothing)

    public func apply(_ desired: WeftConfig) throws -> ApplySummary { try changed { try controller.apply(desired) } }

    public func applyDynamic(adding interfaces: [InterfaceConfig], crossConnects: [CrossConnectConfig],
                             removing names: Set<String>) throws -> ApplySummary {
        try changed { try controller.applyDynamic(adding: interfaces, crossConnects: crossConnects, removing: names) }
    }

    public func addInterface(_ itf: InterfaceConfig) throws -> ApplySummary { try changed { try controller.addInterface(itf) } }
    public func deleteInterface(_ name: String) throws -> ApplySummary { try changed { try controller.deleteInterface(name) } }
    public func addCrossConnect(_ xc: CrossConnectConfig) throws -> ApplySummary { try changed { try controller.addCrossConnect(xc) } }
    public func deleteCrossConnect(_ name: String) throws -> ApplySummary { try changed { try controller.deleteCrossConnect(name) } }
    public func connect(name: String, members: [String], hints: [String: String]) throws -> ApplySummary {
        try changed { try controller.connect(name: name, members: members, hints: hints) }
    }
    public func disconnect(name: String) throws -> ApplySummary { try changed { try controller.disconnect(name: name) } }
    /// Shutdown: remove every connection and interface.
    public func removeAll() {
        guard !isShutDown else { return }
        controller.removeAll()
        let r = controller.running
        published.withLock { $0 = r }
    }

    /// The end: every connection and interface removed, then the workers
    /// stopped and the dataplane's memory freed. Nothing may be asked of the
    /// dataplane afterwards.
    public func shutdown() {
        guard !isShutDown else { return }
        removeAll()
        isShutDown = true
        controller.dataplane.destroy()
    }
    private(set) var isShutDown = false

    // MARK: status

    public var running: WeftConfig { controller.running }
    public func interfaceStatus() -> [InterfaceStatus] { isShutDown ? [] : controller.interfaceStatus() }
    public func crossConnectStatus() -> [CrossConnectStatus] { isShutDown ? [] : controller.crossConnectStatus() }
    public func dropStatus() -> [DropStatus] { isShutDown ? [] : controller.dropStatus() }
    public func p2mpStatus() -> [P2MPStatus] { isShutDown ? [] : controller.p2mpStatus() }
    public func neighbourStatus() -> [Neighbour] { isShutDown ? [] : controller.neighbourStatus() }
    public func workerStatus() -> [WorkerStats] { isShutDown ? [] : controller.workerStatus() }
    public func pollLinks() { if !isShutDown { controller.pollLinks() } }

    // MARK: capture

    public func captureStart(_ r: CaptureRequest) throws -> CaptureStatus {
        if isShutDown { throw ApplyError(message: "weftd is shutting down") }
        return try controller.captureStart(r)
    }
    public func captureStop() -> CaptureStatus? {
        guard !isShutDown else { return nil }
        controller.dataplane.captureStop()
        return controller.captureStatus()
    }
    public func captureStatus() -> CaptureStatus? { isShutDown ? nil : controller.captureStatus() }

    // MARK: packet trace

    public func traceStart(interface: String?, count: Int) throws -> TraceStatus {
        if isShutDown { throw ApplyError(message: "weftd is shutting down") }
        return try controller.traceStart(interface: interface, count: count)
    }
    public func traceStop() -> TraceStatus { if !isShutDown { controller.dataplane.traceStop() }; return traceShow() }
    public func traceClear() -> TraceStatus { if !isShutDown { controller.dataplane.traceClear() }; return traceShow() }
    public func traceShow() -> TraceStatus { isShutDown ? TraceStatus(armed: false, left: 0, interface: nil, frames: []) : controller.traceShow() }

    /// Kernel plumbing (netlink in pods' namespaces, sysctls) runs here too,
    /// in turn with the dataplane's calls.
    public func withKernel<T>(_ body: () throws -> T) rethrows -> T { try body() }
}
