import Foundation
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftModel

/// Admin requests map one to one onto the controller's operations: the same
/// functions the configuration file goes through.
enum AdminHandler {
    static func handle(_ req: AdminRequest, control: ControlPlane, reload: @Sendable () async -> AdminResponse) async -> AdminResponse {
        func applying(_ body: () async throws -> ApplySummary) async -> AdminResponse {
            do {
                var r = AdminResponse(ok: true)
                r.summary = try await body()
                return r
            } catch {
                return .failure("\(error)")
            }
        }
        var r = AdminResponse(ok: true)
        switch req.command {
        case .showInterfaces: r.interfaces = await control.interfaceStatus()
        case .showCrossConnects: r.crossConnects = await control.crossConnectStatus()
        case .showDrops: r.drops = await control.dropStatus()
        case .showNeighbours: r.neighbours = await control.neighbourStatus()
        case .showGroups:
            r.groups = await control.p2mpStatus()
            r.labels = await control.running.labels
        case .connect:
            guard let n = req.name, let m = req.members else { return .failure("connect needs 'name' and 'members'") }
            return await applying { try await control.connect(name: n, members: m, hints: req.labels ?? [:]) }
        case .disconnect:
            guard let n = req.name else { return .failure("disconnect needs 'name'") }
            return await applying { try await control.disconnect(name: n) }
        case .showWorkers:
            r.workers = await control.workerStatus()
            r.tscHz = EAL.tscHz
        case .addInterface:
            guard let i = req.interface else { return .failure("add-interface needs 'interface'") }
            return await applying { try await control.addInterface(i) }
        case .deleteInterface:
            guard let n = req.name else { return .failure("delete-interface needs 'name'") }
            return await applying { try await control.deleteInterface(n) }
        case .addCrossConnect:
            guard let x = req.crossConnect else { return .failure("add-cross-connect needs 'crossConnect'") }
            return await applying { try await control.addCrossConnect(x) }
        case .deleteCrossConnect:
            guard let n = req.name else { return .failure("delete-cross-connect needs 'name'") }
            return await applying { try await control.deleteCrossConnect(n) }
        case .reload:
            return await reload()
        case .traceStart:
            let count = req.count ?? 10
            do { r.trace = try await control.traceStart(interface: req.name, count: count) } catch { return .failure("\(error)") }
        case .traceStop: r.trace = await control.traceStop()
        case .traceShow: r.trace = await control.traceShow()
        case .traceClear: r.trace = await control.traceClear()
        case .captureStart:
            guard let c = req.capture else { return .failure("capture-start needs 'capture'") }
            do { r.captureStatus = try await control.captureStart(c) } catch { return .failure("\(error)") }
        case .captureStop:
            guard let s = await control.captureStop() else { return .failure("no capture has run") }
            r.captureStatus = s
        case .captureStatus:
            guard let s = await control.captureStatus() else { return .failure("no capture has run") }
            r.captureStatus = s
        }
        return r
    }
}
