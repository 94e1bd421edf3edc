import Foundation
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftModel

/// Admin requests map one to one onto the controller's operations: the same
/// functions the configuration file goes through.
enum AdminHandler {
    static func handle(_ req: AdminRequest, controller: Controller, reload: () -> AdminResponse) -> AdminResponse {
        func applying(_ body: () throws -> ApplySummary) -> AdminResponse {
            do {
                var r = AdminResponse(ok: true)
                r.summary = try body()
                return r
            } catch {
                return .failure("\(error)")
            }
        }
        var r = AdminResponse(ok: true)
        switch req.command {
        case .showInterfaces: r.interfaces = controller.interfaceStatus()
        case .showCrossConnects: r.crossConnects = controller.crossConnectStatus()
        case .showDrops: r.drops = controller.dropStatus()
        case .showNeighbours: r.neighbours = controller.neighbourStatus()
        case .showGroups:
            r.groups = controller.p2mpStatus()
            r.labels = controller.running.labels
        case .connect:
            guard let n = req.name, let m = req.members else { return .failure("connect needs 'name' and 'members'") }
            return applying { try controller.connect(name: n, members: m, hints: req.labels ?? [:]) }
        case .disconnect:
            guard let n = req.name else { return .failure("disconnect needs 'name'") }
            return applying { try controller.disconnect(name: n) }
        case .showWorkers:
            r.workers = controller.workerStatus()
            r.tscHz = EAL.tscHz
        case .addInterface:
            guard let i = req.interface else { return .failure("add-interface needs 'interface'") }
            return applying { try controller.addInterface(i) }
        case .deleteInterface:
            guard let n = req.name else { return .failure("delete-interface needs 'name'") }
            return applying { try controller.deleteInterface(n) }
        case .addCrossConnect:
            guard let x = req.crossConnect else { return .failure("add-cross-connect needs 'crossConnect'") }
            return applying { try controller.addCrossConnect(x) }
        case .deleteCrossConnect:
            guard let n = req.name else { return .failure("delete-cross-connect needs 'name'") }
            return applying { try controller.deleteCrossConnect(n) }
        case .reload:
            return reload()
        }
        return r
    }
}
