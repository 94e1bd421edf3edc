import Foundation
import Logging
import WeftDataplane
import WeftKernel
import WeftModel

/// The reconciler: keeps the desired state and realizes it in the dataplane
/// as one transaction (validate, diff, check the machine, apply with rollback).
/// Not thread-safe and not Sendable: the control actor (`ControlPlane`) owns
/// it and makes every call; tests drive it directly, with a fake dataplane.
public final class Controller {
    struct RunningInterface {
        var config: InterfaceConfig
        var side: SideID
        var port: PortID?      // nil for tunnel sides
        var uplink: String?    // tunnel sides: the uplink interface's name
        var backend: String
        var heldSockets: [Int32] = [] // shared uplinks: the VXLAN ports held from the kernel
    }
    struct RunningCrossConnect {
        var config: CrossConnectConfig
        var slot: XCSlot
    }
    enum P2MPConfig: Equatable {
        case replicate(ReplicationGroupConfig)
        case bridge(BridgeDomainConfig)
        var name: String { switch self { case .replicate(let g): return g.name; case .bridge(let d): return d.name } }
        var interfaces: [String] {
            switch self {
            case .replicate(let g): return [g.ingress] + g.members
            case .bridge(let d): return d.members.map(\.interface)
            }
        }
        /// Same connection apart from its member list: changeable in place.
        func sameShape(_ o: P2MPConfig) -> Bool {
            switch (self, o) {
            case (.replicate(let a), .replicate(let b)): return a.ingress == b.ingress && a.cloneMinBytes == b.cloneMinBytes
            case (.bridge(let a), .bridge(let b)):
                return a.macLimit == b.macLimit && a.macAgeSeconds == b.macAgeSeconds && a.staticMACs.isEmpty && b.staticMACs.isEmpty
            default: return false
            }
        }
    }
    struct RunningP2MP {
        var config: P2MPConfig
        var id: Dataplane.P2MPID
        var slots: [String: XCSlot] // member interface -> its counters
    }
    var p2mps: [String: RunningP2MP] = [:]

    public let dataplane: any DataplaneDriving
    let logger: Logger
    /// The running state, as a configuration (base sections + live objects in order).
    public private(set) var running: WeftConfig
    var interfaces: [String: RunningInterface] = [:]
    var crossConnects: [String: RunningCrossConnect] = [:]
    var deviceSeq = 0
    let state: RuntimeState?
    /// How `pci` interfaces' devices are bound to (and given back from) their driver.
    public var pciBinding = PCIBinding()

    public init(base: WeftConfig, dataplane: any DataplaneDriving, logger: Logger, state: RuntimeState?) {
        precondition(base.vxlanPort > 0, "validated configuration")
        var b = base
        b.interfaces = []
        b.crossConnects = []
        self.running = b
        self.dataplane = dataplane
        self.logger = logger
        self.state = state
        if dataplane is Dataplane { pciBinding.vfioReady = { EAL.vfioEnabled } }
    }

    // MARK: operations (each is validate -> diff -> apply)

    public func apply(_ desired: WeftConfig) throws -> ApplySummary {
        // Connections made through the NSM API are not the file's: a reload keeps them.
        var d = desired
        d.interfaces += running.interfaces.filter { dynamicNames.contains($0.name) }
        d.crossConnects += running.crossConnects.filter { dynamicNames.contains($0.name) }
        return try applyChange(d, validate: !dynamicNames.isEmpty)
    }

    /// The running state, read under the lock (for other threads than the caller of apply).
    public var snapshot: WeftConfig { running }

    /// Names of the objects the NSM API made (kept across file reloads).
    var dynamicNames = Set<String>()
    /// The running objects, indexed for checking one change.
    var index = NodeIndex()

    /// One all-or-nothing change on behalf of an API (NSM): remove the named objects
    /// (cross-connects before interfaces), add the given ones. On any failure nothing changes.
    /// Checked against the node's index: the cost is that of the change, not of the node.
    public func applyDynamic(adding interfaces: [InterfaceConfig], crossConnects: [CrossConnectConfig],
                             removing names: Set<String>) throws -> ApplySummary {
        let summary = try change(adding: interfaces, crossConnects: crossConnects, removing: names)
        dynamicNames.subtract(names)
        dynamicNames.formUnion(interfaces.map(\.name) + crossConnects.map(\.name))
        return summary
    }

    public func addInterface(_ itf: InterfaceConfig) throws -> ApplySummary {
        if interfaces[itf.name] != nil { throw ApplyError(message: "interface '\(itf.name)' already exists") }
        return try change(adding: [itf], crossConnects: [], removing: [])
    }

    public func deleteInterface(_ name: String) throws -> ApplySummary {
        guard interfaces[name] != nil else { throw ApplyError(message: "no interface named '\(name)'") }
        if let conn = index.usedBy[name] {
            throw ApplyError(message: crossConnects[conn] != nil
                ? "interface '\(name)' is used by cross-connect '\(conn)'; delete the cross-connect first"
                : "interface '\(name)' is a member of '\(conn)'; change or delete it first")
        }
        return try change(adding: [], crossConnects: [], removing: [name])
    }

    public func addCrossConnect(_ xc: CrossConnectConfig) throws -> ApplySummary {
        if crossConnects[xc.name] != nil { throw ApplyError(message: "cross-connect '\(xc.name)' already exists") }
        return try change(adding: [], crossConnects: [xc], removing: [])
    }

    public func deleteCrossConnect(_ name: String) throws -> ApplySummary {
        guard crossConnects[name] != nil else { throw ApplyError(message: "no cross-connect named '\(name)'") }
        return try change(adding: [], crossConnects: [], removing: [name])
    }

    /// What the last change cost the control side: objects checked and steps
    /// done (a change through the APIs costs the same on a node with 1 or
    /// 10,000 connections; a file reload checks the whole file).
    public private(set) var lastChangeWork = (checked: 0, steps: 0)

    /// A change of a few objects: checked against the index, realized as one
    /// held transaction, recorded. Names that are not running are ignored.
    func change(adding added: [InterfaceConfig], crossConnects xcs: [CrossConnectConfig], removing names: Set<String>) throws -> ApplySummary {
        let issues = index.check(adding: added, crossConnects: xcs, removing: names, node: running)
        if !issues.isEmpty { throw ApplyError(message: issues.map(\.description).joined(separator: "\n")) }
        let removeXC = names.filter { crossConnects[$0] != nil }.sorted()
        // Tunnel sides before the ports that carry them; ports first when adding.
        let removeIf = names.filter { interfaces[$0] != nil }.sorted {
            let a = interfaces[$0]!.config.type.isPort, b = interfaces[$1]!.config.type.isPort
            return a != b ? !a : $0 < $1
        }
        let addIf = added.sorted { $0.type.isPort && !$1.type.isPort }
        // `via` labels of new vlan interfaces, through the device-selector file.
        if added.contains(where: { $0.type == .vlan && $0.via != nil }) {
            var view = running
            view.interfaces = Array(index.interfaces.values.filter { !names.contains($0.name) }) + added
            pendingUplinks = try resolveUplinks(view)
        }
        var releasing = Set<String>()
        for n in removeIf {
            let l = Realizer.leftovers(interfaces[n]!.config, runtimeDir: running.admin.runtimeDir)
            releasing.formUnion(l.sockets + l.links)
        }
        var problems: [String] = []
        for itf in addIf {
            for i in Realizer.precheck(itf, runtimeDir: running.admin.runtimeDir, releasing: releasing, pci: pciBinding.sysfs) {
                problems.append("interface '\(itf.name)': \(i)")
            }
        }
        if !problems.isEmpty { throw ApplyError(message: problems.joined(separator: "\n") + "\nNothing was applied.") }

        let steps: [Step] = removeXC.map { .removeCrossConnect($0) } + removeIf.map { .removeInterface($0) }
            + addIf.map { .addInterface($0) } + xcs.map { .addCrossConnect($0) }
        let removedLeftovers = removeIf.map { Realizer.leftovers(interfaces[$0]!.config, runtimeDir: running.admin.runtimeDir) }
        try transact(steps)
        lastChangeWork = (added.count + xcs.count + names.count, steps.count)

        // The running configuration keeps the order objects came in.
        if !removeXC.isEmpty { running.crossConnects.removeAll { names.contains($0.name) } }
        if !removeIf.isEmpty { running.interfaces.removeAll { names.contains($0.name) } }
        running.interfaces += added
        running.crossConnects += xcs
        index.apply(adding: added, crossConnects: xcs, removing: names, node: running)
        for l in removedLeftovers { state?.forget(sockets: l.sockets, links: l.links) }
        for itf in added {
            let l = Realizer.leftovers(itf, runtimeDir: running.admin.runtimeDir)
            state?.note(sockets: l.sockets, links: l.links)
        }
        return ApplySummary(addedInterfaces: addIf.map(\.name), removedInterfaces: removeIf.sorted(),
                            addedCrossConnects: xcs.map(\.name), removedCrossConnects: removeXC,
                            unchanged: interfaces.count + crossConnects.count - added.count - xcs.count)
    }

    /// Run the steps as one held change. On a failure the steps done are
    /// undone inside the same hold: the workers never see a partial change.
    private func transact(_ steps: [Step]) throws {
        quietSteps = steps.count > Self.loudStepLimit
        defer { quietSteps = false }
        var undo: [Step] = []
        dataplane.hold()
        var failure: (what: String, error: Error)?
        for step in steps {
            do {
                undo.append(try perform(step))
            } catch {
                failure = (describe(step), error)
                break
            }
        }
        if failure == nil {
            do { try dataplane.release() } catch {
                // Nothing was published: the additions are in the control state only.
                failure = ("publishing the new table", error)
                dataplane.hold()
            }
        }
        if let failure {
            logger.error("apply failed at \(failure.what): \(failure.error); rolling back \(undo.count) step(s)")
            for u in undo.reversed() {
                do { _ = try perform(u) } catch { logger.error("rollback of \(describe(u)) failed: \(error)") }
            }
            do { try dataplane.release() } catch { logger.error("rollback: publishing the restored table failed: \(error)") }
            throw ApplyError(message: "\(failure.what) failed: \(failure.error). Nothing was applied.")
        }
    }

    /// Remove every cross-connect and interface (shutdown).
    public func removeAll() {
        var d = running
        d.interfaces = []
        d.crossConnects = []
        d.replicationGroups = []
        d.bridgeDomains = []
        do { _ = try applyChange(d) } catch { logger.error("teardown: \(error)") }
    }

    // MARK: the transaction

    private enum Step {
        case addInterface(InterfaceConfig)
        case removeInterface(String)
        case addCrossConnect(CrossConnectConfig)
        case removeCrossConnect(String)
        case addP2MP(P2MPConfig)
        case removeP2MP(String)
        case updateP2MP(P2MPConfig)
    }

    static func p2mpConfigs(_ c: WeftConfig) -> [P2MPConfig] {
        c.replicationGroups.map { .replicate($0) } + c.bridgeDomains.map { .bridge($0) }
    }

    private func applyChange(_ desired: WeftConfig, validate: Bool = false) throws -> ApplySummary {
        if validate {
            let issues = Validator.validate(desired)
            if !issues.isEmpty { throw ApplyError(message: issues.map(\.description).joined(separator: "\n")) }
        }
        var restartOnly: [String] = []
        if desired.eal != running.eal { restartOnly.append("eal") }
        if desired.dataplane != running.dataplane { restartOnly.append("dataplane") }
        if desired.admin != running.admin { restartOnly.append("admin") }
        if desired.vxlanPort != running.vxlanPort { restartOnly.append("vxlan_port") }
        if !restartOnly.isEmpty {
            throw ApplyError(message: "\(restartOnly.joined(separator: ", ")) changed; these sections take effect only when weftd restarts. Nothing was applied.")
        }

        // Diff by name; a changed definition is a remove plus an add.
        let want = Dictionary(uniqueKeysWithValues: desired.interfaces.map { ($0.name, $0) })
        var removeIf = Set(running.interfaces.filter { want[$0.name] != $0 }.map(\.name))
        // A tunnel side goes (and comes back) with its uplink.
        for (n, r) in interfaces where r.uplink.map(removeIf.contains) == true { removeIf.insert(n) }
        let desiredUplinks = try resolveUplinks(desired)
        for (n, r) in interfaces where r.uplink != nil && desiredUplinks[n] != nil && desiredUplinks[n] != r.uplink {
            removeIf.insert(n) // `via` now maps elsewhere
        }
        // Ports first, then the tunnels they carry.
        let addIf = desired.interfaces.filter { interfaces[$0.name]?.config != $0 || removeIf.contains($0.name) }
            .sorted { $0.type.isPort && !$1.type.isPort }
        let wantXC = Dictionary(uniqueKeysWithValues: desired.crossConnects.map { ($0.name, $0) })
        let removeXC = running.crossConnects.filter {
            wantXC[$0.name] != $0 || removeIf.contains($0.a) || removeIf.contains($0.b)
        }.map(\.name)
        let removeXCSet = Set(removeXC)
        let addXC = desired.crossConnects.filter { crossConnects[$0.name] == nil || removeXCSet.contains($0.name) }

        // Groups and domains: a member list change is made in place (the other
        // members lose nothing); any other change, or a member interface being
        // re-created, re-creates the connection.
        let wantP2MP = Dictionary(uniqueKeysWithValues: Self.p2mpConfigs(desired).map { ($0.name, $0) })
        var removeP2MP: [String] = [], addP2MP: [P2MPConfig] = [], updateP2MP: [P2MPConfig] = []
        for (name, r) in p2mps.sorted(by: { $0.key < $1.key }) {
            guard let w = wantP2MP[name] else { removeP2MP.append(name); continue }
            if w == r.config { if r.config.interfaces.contains(where: removeIf.contains) { removeP2MP.append(name); addP2MP.append(w) }; continue }
            let keptTouched = Set(r.config.interfaces).intersection(w.interfaces).contains(where: removeIf.contains)
            if w.sameShape(r.config) && !keptTouched {
                updateP2MP.append(w)
            } else {
                removeP2MP.append(name); addP2MP.append(w)
            }
        }
        for w in Self.p2mpConfigs(desired) where p2mps[w.name] == nil { addP2MP.append(w) }

        // Check the machine before touching anything.
        var releasing = Set<String>()
        for n in removeIf {
            if let r = interfaces[n] {
                let l = Realizer.leftovers(r.config, runtimeDir: running.admin.runtimeDir)
                releasing.formUnion(l.sockets + l.links)
            }
        }
        var problems: [String] = []
        for itf in addIf {
            for i in Realizer.precheck(itf, runtimeDir: running.admin.runtimeDir, releasing: releasing, pci: pciBinding.sysfs) {
                problems.append("interface '\(itf.name)': \(i)")
            }
        }
        if !problems.isEmpty { throw ApplyError(message: problems.joined(separator: "\n") + "\nNothing was applied.") }

        let steps: [Step] = removeXC.map { .removeCrossConnect($0) }
            + removeP2MP.map { .removeP2MP($0) }
            // Members leaving in place must be released before their interfaces go.
            + updateP2MP.map { .updateP2MP($0) }
            + running.interfaces.filter { removeIf.contains($0.name) }
                .sorted { !$0.type.isPort && $1.type.isPort }.map { .removeInterface($0.name) }
            + addIf.map { .addInterface($0) }
            + addXC.map { .addCrossConnect($0) }
            + addP2MP.map { .addP2MP($0) }

        // Additions reach the workers together, in one table publish at the end
        // (a 100,000-connection file is one publish, not 300,000). A big apply
        // logs one line per object at debug and a summary at info.
        try transact(steps)
        // Keep the desired order for display and for the next diff.
        running.interfaces = desired.interfaces
        running.crossConnects = desired.crossConnects
        running.deviceSelectorFile = desired.deviceSelectorFile
        running.replicationGroups = desired.replicationGroups
        running.bridgeDomains = desired.bridgeDomains
        running.labels = desired.labels
        index = NodeIndex(running)
        lastChangeWork = (desired.interfaces.count + desired.crossConnects.count, steps.count)
        saveState()
        if steps.count > Self.loudStepLimit {
            logger.info("applied as one change: \(addIf.count) interface(s) and \(addXC.count) cross-connect(s) added, \(removeIf.count) interface(s) and \(removeXC.count) cross-connect(s) removed, \(addP2MP.count + updateP2MP.count) group(s) added or changed, \(removeP2MP.count) removed (each at debug level)")
        }
        let changed = Set(addIf.map(\.name)).union(removeIf)
        let addedXC = Set(addXC.map(\.name))
        let unchanged = desired.interfaces.filter { !changed.contains($0.name) }.count
            + desired.crossConnects.filter { !removeXCSet.contains($0.name) && !addedXC.contains($0.name) }.count
        let touched = Set(removeP2MP + addP2MP.map(\.name) + updateP2MP.map(\.name))
        let unchangedGroups = Self.p2mpConfigs(desired).filter { !touched.contains($0.name) }.count
        return ApplySummary(addedInterfaces: addIf.map(\.name), removedInterfaces: removeIf.sorted(),
                            addedCrossConnects: addXC.map(\.name), removedCrossConnects: removeXC,
                            addedGroups: addP2MP.map(\.name), removedGroups: removeP2MP, changedGroups: updateP2MP.map(\.name),
                            unchanged: unchanged + unchangedGroups)
    }

    /// Uplink names of the desired vlan interfaces, with `via` labels mapped
    /// through the device-selector file (label -> NIC -> the interface on it).
    private var pendingUplinks: [String: String] = [:]
    private func resolveUplinks(_ c: WeftConfig) throws -> [String: String] {
        var out: [String: String] = [:]
        var selector: [String: String]?
        for itf in c.interfaces where itf.type == .vlan {
            if let u = itf.uplink { out[itf.name] = u; continue }
            guard let via = itf.via else { continue }
            if selector == nil { selector = try Realizer.deviceSelector(path: c.deviceSelectorFile ?? "") }
            guard let nic = selector![via] else {
                throw ApplyError(message: "interface '\(itf.name)': via '\(via)' matches no interface in \(c.deviceSelectorFile ?? ""). Nothing was applied.")
            }
            guard let up = c.interfaces.first(where: { $0.type.isPort && ($0.iface == nic || $0.name == nic) }) else {
                throw ApplyError(message: "interface '\(itf.name)': via '\(via)' maps to NIC '\(nic)', which no port interface uses. Nothing was applied.")
            }
            out[itf.name] = up.name
        }
        pendingUplinks = out
        return out
    }

    private func describe(_ s: Step) -> String {
        switch s {
        case .addInterface(let i): return "adding interface '\(i.name)'"
        case .removeInterface(let n): return "removing interface '\(n)'"
        case .addCrossConnect(let x): return "adding cross-connect '\(x.name)'"
        case .removeCrossConnect(let n): return "removing cross-connect '\(n)'"
        case .addP2MP(let c): return "adding '\(c.name)'"
        case .removeP2MP(let n): return "removing '\(n)'"
        case .updateP2MP(let c): return "changing the members of '\(c.name)'"
        }
    }

    static let loudStepLimit = 64
    private var quietSteps = false
    private func stepLog(_ message: @autoclosure () -> Logger.Message) {
        if quietSteps { logger.debug(message()) } else { logger.info(message()) }
    }

    /// Do one step; return its inverse.
    private func perform(_ step: Step) throws -> Step {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer {
            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            logger.debug("dataplane: \(describe(step)) took \(String(format: "%.2f", ms)) ms")
        }
        switch step {
        case .addInterface(let itf) where itf.type == .vlan:
            guard let up = pendingUplinks[itf.name] ?? itf.uplink, let u = interfaces[up], let port = u.port else {
                throw ApplyError(message: "vlan interface '\(itf.name)': uplink is not a running port interface")
            }
            let side = try dataplane.addVLAN(uplink: port, id: UInt16(itf.vlanID ?? 0))
            let backend = "vlan \(itf.vlanID ?? 0) on \(up)"
            interfaces[itf.name] = RunningInterface(config: itf, side: side, port: nil, uplink: up, backend: backend)
            stepLog("interface \(itf.name): \(backend)")
            return .removeInterface(itf.name)
        case .addInterface(let itf) where itf.type == .vxlan:
            guard let up = itf.uplink, let u = interfaces[up], let port = u.port else {
                throw ApplyError(message: "vxlan interface '\(itf.name)': uplink is not a running port interface")
            }
            let remote = try IPAddress.parse(itf.remote ?? "").orThrow("vxlan interface '\(itf.name)': bad remote")
            let node = running.vxlanPort
            let side = try dataplane.addVXLAN(uplink: port, vni: UInt32(itf.vni ?? 0), remote: remote,
                                              dstPort: UInt16(itf.port ?? node), localPort: UInt16(itf.localPort ?? node))
            let backend = "vxlan on \(up)"
            interfaces[itf.name] = RunningInterface(config: itf, side: side, port: nil, uplink: up, backend: backend)
            stepLog("interface \(itf.name): \(backend), VNI \(itf.vni ?? 0) to \(itf.remote ?? "")")
            return .removeInterface(itf.name)
        case .addInterface(let itf):
            let (port, backend) = try attach(itf)
            var held: [Int32] = []
            if let u = itf.underlay {
                do {
                    let d = Realizer.underlay(u, nodeVXLANPort: running.vxlanPort)
                    if u.kernelShared { held = try Realizer.holdVXLANPorts(u, ports: d.vxlanPorts) }
                    try dataplane.setUnderlay(port, d)
                    for n in u.neighbours {
                        try dataplane.addStaticNeighbour(port, ip: IPAddress.parse(n.ip)!, mac: parseMAC(n.mac)!)
                    }
                } catch {
                    held.forEach { close($0) }
                    try? dataplane.clearUnderlay(port)
                    try? dataplane.detach(port)
                    throw error
                }
            }
            interfaces[itf.name] = RunningInterface(config: itf, side: SideID(port), port: port, uplink: nil, backend: backend,
                                                    heldSockets: held)
            stepLog("interface \(itf.name): \(backend) port \(port)\(itf.underlay.map { " underlay \([$0.ipv4, $0.ipv6].compactMap { $0 }.joined(separator: " "))" } ?? "")")
            return .removeInterface(itf.name)
        case .removeInterface(let name):
            guard let r = interfaces[name] else { throw ApplyError(message: "no interface '\(name)'") }
            if let port = r.port {
                if r.config.underlay != nil { try dataplane.clearUnderlay(port) }
                try dataplane.detach(port)
                r.heldSockets.forEach { close($0) }
                if r.config.type == .pci {
                    if let why = pciBinding.restore(r.config) { logger.warning("\(name): \(why)") }
                    else if r.config.bind == true, r.config.restore != false {
                        stepLog("\(name): \(r.config.pci ?? "") given back to its kernel driver (\(pciBinding.sysfs.driver(normalizedPCI(r.config.pci ?? "") ?? "") ?? "none"))")
                    }
                }
            } else {
                try dataplane.deleteTunnel(r.side)
            }
            interfaces[name] = nil
            stepLog("interface \(name) removed")
            return .addInterface(r.config)
        case .addCrossConnect(let x):
            guard let a = interfaces[x.a], let b = interfaces[x.b] else {
                throw ApplyError(message: "cross-connect '\(x.name)' names an interface that does not exist")
            }
            let slot = try dataplane.addCrossConnect(a.side, b.side)
            // The NIC's rules when the sides allow; the software path is there meanwhile
            // and stays when they do not (`required`: the cross-connect is refused).
            do {
                try dataplane.offload(slot, Dataplane.OffloadMode(rawValue: running.dataplane.offload.rawValue) ?? .auto)
            } catch {
                try? dataplane.deleteCrossConnect(slot)
                throw error
            }
            crossConnects[x.name] = RunningCrossConnect(config: x, slot: slot)
            stepLog("cross-connect \(x.name): \(x.a) <-> \(x.b)")
            return .removeCrossConnect(x.name)
        case .removeCrossConnect(let name):
            guard let r = crossConnects[name] else { throw ApplyError(message: "no cross-connect '\(name)'") }
            try dataplane.deleteCrossConnect(r.slot)
            crossConnects[name] = nil
            stepLog("cross-connect \(name) removed")
            return .addCrossConnect(r.config)
        case .addP2MP(let c):
            func side(_ n: String) throws -> SideID {
                try interfaces[n].orThrow("'\(c.name)' names interface '\(n)', which is not running").side
            }
            switch c {
            case .replicate(let g):
                let (id, slots) = try dataplane.addReplication(ingress: try side(g.ingress), members: try g.members.map(side),
                                                               cloneMinBytes: UInt32(g.cloneMinBytes))
                p2mps[g.name] = RunningP2MP(config: c, id: id, slots: Dictionary(uniqueKeysWithValues: zip(g.members, slots)))
                stepLog("replication group \(g.name): \(g.ingress) -> \(g.members.joined(separator: ", "))")
            case .bridge(let d):
                var st = Dataplane.BridgeSettings()
                st.macLimit = UInt32(d.macLimit)
                st.ageMs = UInt32(d.macAgeSeconds * 1000)
                st.statics = d.staticMACs.map { s in (parseMAC(s.mac)!, d.members.firstIndex { $0.interface == s.interface }!) }
                let (id, slots) = try dataplane.addBridge(members: try d.members.map { (try side($0.interface), UInt16($0.splitHorizonGroup)) },
                                                          settings: st)
                p2mps[d.name] = RunningP2MP(config: c, id: id, slots: Dictionary(uniqueKeysWithValues: zip(d.members.map(\.interface), slots)))
                stepLog("bridge domain \(d.name): \(d.members.map(\.interface).joined(separator: ", "))")
            }
            return .removeP2MP(c.name)
        case .removeP2MP(let name):
            guard let r = p2mps[name] else { throw ApplyError(message: "no group or domain '\(name)'") }
            try dataplane.deleteP2MP(r.id)
            p2mps[name] = nil
            stepLog("\(name) removed")
            return .addP2MP(r.config)
        case .updateP2MP(let c):
            guard let r = p2mps[c.name] else { throw ApplyError(message: "no group or domain '\(c.name)'") }
            let members: [(String, UInt16)]
            switch c {
            case .replicate(let g): members = g.members.map { ($0, 0) }
            case .bridge(let d): members = d.members.map { ($0.interface, UInt16($0.splitHorizonGroup)) }
            }
            // Joining members may be interfaces added in this same change: resolved now.
            let sides = try members.map { (try interfaces[$0.0].orThrow("'\(c.name)' names interface '\($0.0)', which is not running").side, $0.1) }
            let slots = try dataplane.updateP2MP(r.id, members: sides)
            p2mps[c.name] = RunningP2MP(config: c, id: r.id, slots: Dictionary(uniqueKeysWithValues: zip(members.map(\.0), slots)))
            stepLog("\(c.name): members now \(members.map(\.0).joined(separator: ", "))")
            return .updateP2MP(r.config)
        }
    }

    private func attach(_ itf: InterfaceConfig) throws -> (PortID, String) {
        deviceSeq += 1
        let device = "w\(deviceSeq)"
        let workers = running.dataplane.workers.count
        let rxq = UInt16(itf.rxQueues ?? 1)
        let mtu = UInt16(itf.mtu ?? 0)
        if itf.type == .memif, (itf.role ?? .server) == .server, itf.abstract != true {
            let path = Realizer.memifSocket(itf, runtimeDir: running.admin.runtimeDir)
            if try Realizer.clearStaleSocket(path) { logger.notice("removed stale memif socket \(path)") }
        }
        switch itf.type {
        case .ring:
            return (try dataplane.createTestPort(name: device), "ring")
        case .memif:
            var m = Dataplane.MemifSettings(socket: Realizer.memifSocket(itf, runtimeDir: running.admin.runtimeDir))
            m.abstract = itf.abstract == true
            m.client = itf.role == .client
            m.id = UInt32(itf.id ?? 0)
            m.secret = itf.secret
            m.ipMode = itf.mode == .ip
            m.netns = itf.netns
            m.rxQueues = rxq
            m.mac = itf.mac.flatMap(parseMAC)
            m.mtu = mtu
            return (try dataplane.attachMemif(m), "memif")
        case .afPacket, .afXDP, .kernel:
            if let mtu = itf.mtu { try Realizer.setKernelMTU(itf.iface ?? "", netns: itf.netns, mtu: mtu) }
            // `kernel` is AF_PACKET: it keeps the pod's offloads (partial checksums and
            // TSO super-frames are honoured) and measured no slower than AF_XDP on veth
            // (perf/RESULTS.md); `af_xdp` is there for those who want it.
            let backend: KernelBackend = itf.type == .afXDP ? .afXDP : .afPacket
            return (try dataplane.attachKernel(ifname: itf.iface ?? "", netns: itf.netns, backend: backend, rxQueues: rxq,
                                               promiscuous: true, fixPeerChecksum: true),
                    backend.rawValue)
        case .pci:
            // Bound to its driver before DPDK probes it; given back if the attach fails.
            let bound = try pciBinding.prepare(itf)
            if bound { stepLog("\(itf.name): PCI device \(itf.pci ?? "") bound to \(PCIBinding.driver(itf))") }
            let args = Realizer.devargs(itf, device: device, runtimeDir: running.admin.runtimeDir, workers: workers)
            do {
                return (try dataplane.attach(devargs: args, rxQueues: rxq, mtu: mtu, promiscuous: true, netns: nil), "pci")
            } catch {
                if bound, let why = pciBinding.restore(itf) { logger.warning("\(itf.name): \(why)") }
                throw error
            }
        default:
            let args = Realizer.devargs(itf, device: device, runtimeDir: running.admin.runtimeDir, workers: workers)
            return (try dataplane.attach(devargs: args, rxQueues: rxq, mtu: mtu, promiscuous: true, netns: itf.netns),
                    itf.type.rawValue)
        }
    }

    private func saveState() {
        guard let state else { return }
        var sockets: [String] = [], links: [String] = []
        for r in interfaces.values {
            let l = Realizer.leftovers(r.config, runtimeDir: running.admin.runtimeDir)
            sockets += l.sockets
            links += l.links
        }
        state.record(sockets: sockets.sorted(), links: links.sorted())
    }

    // MARK: inspection

    public func pollLinks() {
        // The NIC's rules as well: one that failed puts its connection back in software.
        if dataplane.offloadCheck() > 0 {
            for (name, r) in crossConnects.sorted(by: { $0.key < $1.key }) {
                if let st = try? dataplane.offloadStatus(r.slot), !st.offloaded, st.why.contains("failed later") {
                    logger.warning("cross-connect \(name): \(st.why)")
                }
            }
        }
        if dataplane.pollLinks() > 0 {
            for (name, r) in interfaces.sorted(by: { $0.key < $1.key }) {
                if let p = r.port, let i = try? dataplane.info(p) { logger.debug("link \(name): \(i.linkUp ? "up" : "down")") }
            }
        }
    }

    public func interfaceStatus() -> [InterfaceStatus] {
        return running.interfaces.compactMap { cfg in
            guard let r = interfaces[cfg.name] else { return nil }
            // A tunnel side shows its uplink's port state; its traffic is in the cross-connect counters.
            let port = r.port ?? r.uplink.flatMap { interfaces[$0]?.port }
            let info = port.flatMap { try? dataplane.info($0) }
            let xc = running.crossConnects.first { $0.a == cfg.name || $0.b == cfg.name }?.name
            return InterfaceStatus(
                name: cfg.name, type: cfg.type.rawValue, backend: r.backend, detail: detail(cfg), port: r.port?.raw,
                device: info?.deviceName ?? "", driver: info?.driver ?? "", mac: info?.mac ?? "",
                link: info.map { $0.linkUp ? "up" : "down" } ?? "unknown", mtu: info?.mtu ?? 0,
                rxQueues: r.port == nil ? 0 : info?.rxQueues ?? 0, rxWorkers: r.port == nil ? [] : info?.rxWorkers ?? [],
                crossConnect: xc, counters: r.port.map { dataplane.counters($0) } ?? connectionCounters(cfg.name),
                offloads: r.port != nil && info?.txIPv4ChecksumOffload == true ? ["ipv4-cksum"] : [],
                note: r.port == nil ? "" : info?.note ?? "",
                memif: cfg.type == .memif ? r.port.flatMap { dataplane.memifStatus($0) } : nil)
        }
    }

    /// A tunnel side (vlan, vxlan) has no port of its own: its RX and TX are its
    /// connection's (frames as they are, without the tunnel's headers); the
    /// uplink's port counts what crossed the wire.
    func connectionCounters(_ name: String) -> InterfaceCounters {
        if let x = running.crossConnects.first(where: { $0.a == name || $0.b == name }), let r = crossConnects[x.name] {
            let c = dataplane.counters(r.slot)
            let (from, to) = x.a == name ? (c.aToB, c.bToA) : (c.bToA, c.aToB)
            return InterfaceCounters(rxPackets: from.packets, rxBytes: from.bytes, txPackets: to.packets, txBytes: to.bytes)
        }
        for g in p2mps.values {
            if let slot = g.slots[name] {
                let c = dataplane.counters(slot)
                return InterfaceCounters(rxPackets: c.bToA.packets, rxBytes: c.bToA.bytes, txPackets: c.aToB.packets,
                                         txBytes: c.aToB.bytes)
            }
        }
        return InterfaceCounters()
    }

    func detail(_ c: InterfaceConfig) -> String {
        switch c.type {
        case .memif:
            return "\((c.role ?? .server).rawValue) \(c.abstract == true ? "@" : "")\(Realizer.memifSocket(c, runtimeDir: running.admin.runtimeDir)) id \(c.id ?? 0)"
        case .afPacket, .afXDP, .kernel: return c.iface ?? ""
        case .tap: return Realizer.tapName(c)
        case .pci: return c.pci ?? ""
        case .vdev: return Redact.devargs(c.devargs ?? "")
        case .null, .ring: return ""
        case .vlan: return "id \(c.vlanID ?? 0) \(c.uplink.map { "uplink \($0)" } ?? "via \(c.via ?? "")")"
        case .vxlan:
            return "vni \(c.vni ?? 0) remote \(c.remote ?? "") port \(c.port ?? running.vxlanPort) local \(c.localPort ?? running.vxlanPort)"
        }
    }

    public func crossConnectStatus() -> [CrossConnectStatus] {
        return running.crossConnects.compactMap { x in
            guard let r = crossConnects[x.name] else { return nil }
            var counters = dataplane.counters(r.slot)
            let off = try? dataplane.offloadStatus(r.slot)
            if let off {
                // What the NIC switched never reached a worker: its rules' counts add up with the
                // software's (those of rules that failed later too).
                counters.aToB.packets += off.packets[0]; counters.aToB.bytes += off.bytes[0]
                counters.bToA.packets += off.packets[1]; counters.bToA.bytes += off.bytes[1]
            }
            return CrossConnectStatus(name: x.name, a: x.a, b: x.b, counters: counters,
                                      offload: off.map { $0.offloaded ? "nic" : "software: " + $0.why })
        }
    }

    public func dropStatus() -> [DropStatus] {
        let ifs = interfaceStatus()
        let workers = workerStatus()
        return dataplane.dropReasons.map { reason in
            var by: [String: UInt64] = [:]
            for i in ifs { if let n = i.counters.drops[reason.name], n > 0 { by[i.name] = n } }
            // Node-wide totals come from the workers: they outlive removed interfaces.
            // The kernel's own ring drops are counted by the drivers, per interface.
            var total = workers.reduce(0) { $0 + ($1.drops[reason.name] ?? 0) }
            if reason.name == "rx-ring-full" { total += by.values.reduce(0, +) }
            return DropStatus(reason: reason.name, stage: reason.stage, description: reason.description, count: total, byInterface: by)
        }
    }

    public func p2mpStatus() -> [P2MPStatus] {
        return Self.p2mpConfigs(running).compactMap { c in
            guard let r = p2mps[c.name] else { return nil }
            func member(_ n: String, _ shg: Int) -> P2MPStatus.Member {
                let k = r.slots[n].map { dataplane.counters($0) } ?? CrossConnectCounters()
                return .init(interface: n, splitHorizonGroup: shg, toMember: k.aToB, fromMember: k.bToA)
            }
            switch c {
            case .replicate(let g):
                return P2MPStatus(name: g.name, mode: "replicate", ingress: g.ingress, members: g.members.map { member($0, 0) })
            case .bridge(let d):
                let macs = dataplane.bridgeMACs(r.id)
                // Member indices can have holes after changes: map them through the running slots.
                return P2MPStatus(name: d.name, mode: "bridge", ingress: nil,
                                  members: d.members.map { member($0.interface, $0.splitHorizonGroup) },
                                  macs: macs, stats: dataplane.bridgeStats(r.id))
            }
        }
    }

    /// A connection chosen by hint labels (NSM style): p2p, p2mp=replicate
    /// (the first member is the ingress) or p2mp=bridge. A repeated request
    /// for an existing name changes its members in place.
    public func connect(name: String, members: [String], hints: [String: String]) throws -> ApplySummary {
        let mode = try Capabilities.mode(hints: hints, offered: running.labels)
        var d = running
        d.crossConnects.removeAll { $0.name == name }
        d.replicationGroups.removeAll { $0.name == name }
        d.bridgeDomains.removeAll { $0.name == name }
        switch mode {
        case .p2p:
            guard members.count == 2 else { throw ApplyError(message: "p2p needs exactly 2 members, got \(members.count)") }
            d.crossConnects.append(.init(name: name, a: members[0], b: members[1]))
        case .replicate:
            guard let ingress = members.first, members.count >= 2 else { throw ApplyError(message: "p2mp=replicate needs an ingress and at least one member") }
            d.replicationGroups.append(.init(name: name, ingress: ingress, members: Array(members.dropFirst())))
        case .bridge:
            d.bridgeDomains.append(.init(name: name, members: members.map { .init(interface: $0) }))
        }
        return try applyChange(d, validate: true)
    }

    public func disconnect(name: String) throws -> ApplySummary {
        var d = running
        let before = d.crossConnects.count + d.replicationGroups.count + d.bridgeDomains.count
        d.crossConnects.removeAll { $0.name == name }
        d.replicationGroups.removeAll { $0.name == name }
        d.bridgeDomains.removeAll { $0.name == name }
        guard d.crossConnects.count + d.replicationGroups.count + d.bridgeDomains.count < before else {
            throw ApplyError(message: "no connection named '\(name)'")
        }
        return try applyChange(d, validate: true)
    }

    public func neighbourStatus() -> [Neighbour] {
        return dataplane.neighbours()
    }

    public func workerStatus() -> [WorkerStats] {
        return dataplane.workerStats()
    }

    // MARK: capture

    var capturedInterface = ""

    public func captureStart(_ r: CaptureRequest) throws -> CaptureStatus {
        guard let itf = interfaces[r.interface] else { throw ApplyError(message: "capture: no interface named '\(r.interface)'") }
        guard let port = itf.port else {
            throw ApplyError(message: "capture: '\(r.interface)' is a tunnel side with no port of its own; capture its uplink '\(itf.uplink ?? "?")'")
        }
        guard ["rx", "tx", "both"].contains(r.direction) else { throw ApplyError(message: "capture: direction must be rx, tx or both") }
        guard r.path.hasPrefix("/") else { throw ApplyError(message: "capture: the file must be an absolute path") }
        guard r.count >= 0, r.seconds >= 0, r.seconds <= 86400 else { throw ApplyError(message: "capture: count and seconds must be 0 or more (seconds at most 86400)") }
        var s = CaptureSettings(port: port, rx: r.direction != "tx", tx: r.direction != "rx", path: r.path, interfaceName: r.interface)
        s.snaplen = UInt32(clamping: r.snaplen)
        s.slots = UInt32(clamping: r.slots)
        s.count = UInt64(r.count)
        s.seconds = UInt32(r.seconds)
        s.filter = r.filter
        try dataplane.captureStart(s)
        capturedInterface = r.interface
        return captureStatus()!
    }

    public func captureStatus() -> CaptureStatus? {
        guard var s = dataplane.captureStatus() else { return nil }
        s.interface = capturedInterface
        return s
    }

    // MARK: packet trace

    /// The interface being traced (nil: every interface).
    var tracedInterface: String?

    public func traceStart(interface: String?, count: Int) throws -> TraceStatus {
        guard (1...Dataplane.traceMax).contains(count) else { throw ApplyError(message: "trace: --count must be 1..\(Dataplane.traceMax)") }
        var port: PortID? = nil
        if let name = interface {
            guard let r = interfaces[name] else { throw ApplyError(message: "trace: no interface named '\(name)'") }
            // A tunnel side (vlan, vxlan) arrives on its uplink's port.
            guard let p = r.port ?? r.uplink.flatMap({ interfaces[$0]?.port }) else {
                throw ApplyError(message: "trace: '\(name)' has no port to trace")
            }
            port = p
        }
        try dataplane.traceStart(port: port, count: UInt32(count))
        tracedInterface = interface
        return traceShow()
    }

    /// What the core wrote down, with ports and connection slots by name.
    public func traceShow() -> TraceStatus {
        var ports: [UInt16: String] = [:]
        for (name, r) in interfaces { if let p = r.port { ports[p.raw] = name } }
        // Connection slots by direction: a cross-connect's a->b / b->a; a group member's
        // slot counts frames to it (0) and from it (1).
        var slots: [String: String] = [:]
        for (name, r) in crossConnects {
            slots["\(r.slot.raw):0"] = "connection \(name) (\(r.config.a) -> \(r.config.b))"
            slots["\(r.slot.raw):1"] = "connection \(name) (\(r.config.b) -> \(r.config.a))"
        }
        var groups: [UInt32: String] = [:]
        for (g, r) in p2mps {
            groups[r.id.raw] = g
            for (member, slot) in r.slots {
                slots["\(slot.raw):0"] = "\(g): to member \(member)"
                slots["\(slot.raw):1"] = "\(g): from member \(member)"
            }
        }
        let state = dataplane.traceState()
        let frames = dataplane.tracedFrames().map { f in
            TraceStatus.Frame(id: f.id, worker: f.worker, rxTSC: f.rxTSC,
                              lines: f.lines.map { Self.name($0, ports: ports, slots: slots, groups: groups) })
        }
        return TraceStatus(armed: state.armed, left: state.left, interface: tracedInterface, frames: frames)
    }

    /// {port:N}, {xcd:SLOT:DIR} and {grp:N} in a trace line, replaced by names.
    static func name(_ line: String, ports: [UInt16: String], slots: [String: String], groups: [UInt32: String]) -> String {
        var out = ""
        var rest = Substring(line)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else { out += rest[open...]; rest = ""; break }
            let tag = rest[rest.index(after: open)..<close]
            let parts = tag.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0] == "port", let n = UInt16(parts[1]) {
                out += ports[n] ?? "port \(n)"
            } else if parts.count == 2, parts[0] == "xcd" {
                out += slots[String(parts[1])] ?? "connection slot \(parts[1])"
            } else if parts.count == 2, parts[0] == "grp", let n = UInt32(parts[1]) {
                out += groups[n] ?? "group \(n)"
            } else {
                out += rest[open...close]
            }
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }
}

extension Optional {
    func orThrow(_ message: @autoclosure () -> String) throws -> Wrapped {
        guard let v = self else { throw ApplyError(message: message()) }
        return v
    }
}
