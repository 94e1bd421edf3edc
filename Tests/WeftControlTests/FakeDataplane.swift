import Foundation
import WeftControl
import WeftDataplane
import WeftModel

/// A dataplane that records what the reconciler asks of it and can be told
/// to refuse a call: the control module's tests run without EAL or the C core.
final class FakeDataplane: DataplaneDriving {
    enum Call: Equatable, CustomStringConvertible {
        case attach(String), detach(UInt16), hold, release, addXC(UInt32, UInt32), delXC(UInt32)
        case addVLAN(UInt16, UInt16), addVXLAN(UInt16, UInt32), delTunnel(UInt32), underlay(UInt16), clearUnderlay(UInt16)
        case neighbour(UInt16), addP2MP, updateP2MP(UInt32), delP2MP(UInt32), destroy
        var description: String {
            switch self {
            case .attach(let n): return "attach \(n)"
            case .detach(let p): return "detach \(p)"
            case .hold: return "hold"
            case .release: return "release"
            case .addXC(let a, let b): return "xc \(a)-\(b)"
            case .delXC(let s): return "del-xc \(s)"
            case .addVLAN(let p, let v): return "vlan \(v) on \(p)"
            case .addVXLAN(let p, let v): return "vxlan \(v) on \(p)"
            case .delTunnel(let s): return "del-tunnel \(s)"
            case .underlay(let p): return "underlay \(p)"
            case .clearUnderlay(let p): return "clear-underlay \(p)"
            case .neighbour(let p): return "neighbour \(p)"
            case .addP2MP: return "p2mp"
            case .updateP2MP(let i): return "update-p2mp \(i)"
            case .delP2MP(let i): return "del-p2mp \(i)"
            case .destroy: return "destroy"
            }
        }
    }
    struct Refused: Error, CustomStringConvertible { let call: String; var description: String { "refused: \(call)" } }

    var calls: [Call] = []
    /// A call (its description's prefix) to refuse, once.
    var refuse: String?
    var nextPort: UInt16 = 0
    var nextSlot: UInt32 = 0
    var nextTunnel: UInt32 = 0
    var holds = 0
    /// What a worker would see: changes published outside a hold, or at release.
    var publishedXCs = Set<UInt32>()
    var pendingXCs = Set<UInt32>()
    var liveXCs = Set<UInt32>()
    var ports = Set<UInt16>()

    private func record(_ c: Call) throws {
        if let r = refuse, c.description.hasPrefix(r) {
            refuse = nil
            throw Refused(call: c.description)
        }
        calls.append(c)
    }
    /// Every cross-connect a worker could ever have seen.
    var everPublished = Set<UInt32>()
    private func publish() { if holds == 0 { publishedXCs = liveXCs; everPublished.formUnion(liveXCs) } }

    func attach(devargs: String, rxQueues: UInt16, mtu: UInt16, promiscuous: Bool, netns: String?) throws -> PortID {
        try record(.attach(devargs)); return newPort()
    }
    func attachKernel(ifname: String, netns: String?, backend: KernelBackend, rxQueues: UInt16, promiscuous: Bool,
                      fixPeerChecksum: Bool) throws -> PortID {
        try record(.attach(ifname)); return newPort()
    }
    func attachMemif(_ m: Dataplane.MemifSettings) throws -> PortID { try record(.attach(m.socket)); return newPort() }
    func createTestPort(name: String) throws -> PortID { try record(.attach(name)); return newPort() }
    private func newPort() -> PortID { defer { nextPort += 1 }; ports.insert(nextPort); return PortID(nextPort) }
    func detach(_ port: PortID) throws {
        try record(.detach(port.raw))
        ports.remove(port.raw)
        // Detaching publishes at once (the port must leave the poll lists first).
        publishedXCs = liveXCs
        everPublished.formUnion(liveXCs)
    }
    func info(_ port: PortID) throws -> PortInfo {
        PortInfo(deviceName: "fake\(port.raw)", driver: "fake", mac: "02:00:00:00:00:01", linkUp: true, speedMbps: 0,
                 rxQueues: 1, txQueues: 1, mtu: 1500, rxWorkers: [0], txIPv4ChecksumOffload: false)
    }
    func memifStatus(_ port: PortID) -> MemifStatus? { nil }
    func pollLinks() -> Int { 0 }
    func destroy() { calls.append(.destroy) }
    func hold() { calls.append(.hold); holds += 1 }
    func release() throws {
        // As the C core: the hold ends even when the publish fails.
        holds -= 1
        try record(.release)
        publish()
    }
    func addVLAN(uplink: PortID, id: UInt16) throws -> SideID {
        try record(.addVLAN(uplink.raw, id)); nextTunnel += 1; return SideID(raw: 0x8000_0000 | nextTunnel)
    }
    func addVXLAN(uplink: PortID, vni: UInt32, remote: [UInt8], dstPort: UInt16, localPort: UInt16) throws -> SideID {
        try record(.addVXLAN(uplink.raw, vni)); nextTunnel += 1; return SideID(raw: 0x8000_0000 | nextTunnel)
    }
    func deleteTunnel(_ side: SideID) throws { try record(.delTunnel(side.raw)) }
    func setUnderlay(_ port: PortID, _ u: Dataplane.Underlay) throws { try record(.underlay(port.raw)) }
    func clearUnderlay(_ port: PortID) throws { try record(.clearUnderlay(port.raw)) }
    func addStaticNeighbour(_ port: PortID, ip: [UInt8], mac: [UInt8]) throws { try record(.neighbour(port.raw)) }
    func neighbours() -> [Neighbour] { [] }
    func addCrossConnect(_ a: SideID, _ b: SideID) throws -> XCSlot {
        try record(.addXC(a.raw, b.raw))
        defer { nextSlot += 1 }
        liveXCs.insert(nextSlot)
        publish()
        return XCSlot(nextSlot)
    }
    func deleteCrossConnect(_ slot: XCSlot) throws {
        try record(.delXC(slot.raw))
        liveXCs.remove(slot.raw)
        offloaded[slot.raw] = nil
        publish()
    }
    /// Offload: what each cross-connect was asked; `nicCanOffload` false: the sides refuse.
    var offloadModes: [UInt32: Dataplane.OffloadMode] = [:]
    var offloaded: [UInt32: Bool] = [:]
    var nicCanOffload = false
    func offload(_ slot: XCSlot, _ mode: Dataplane.OffloadMode) throws {
        offloadModes[slot.raw] = mode
        offloaded[slot.raw] = mode != .off && nicCanOffload
        if mode == .required && !nicCanOffload {
            throw Refused(call: "offload required but not possible: no eswitch here")
        }
    }
    /// Rules that fail at the next check (a port reset), and those that did.
    var rulesToFail = Set<UInt32>()
    var failedLater = Set<UInt32>()
    func offloadCheck() -> Int {
        let now = rulesToFail.filter { offloaded[$0] == true }
        for s in now { offloaded[s] = false; failedLater.insert(s) }
        rulesToFail = []
        return now.count
    }
    func offloadStatus(_ slot: XCSlot) throws -> Dataplane.OffloadStatus {
        if failedLater.contains(slot.raw) {
            return Dataplane.OffloadStatus(offloaded: false, why: "the NIC's A->B rule failed later (port reset): back in software",
                                           packets: [5, 7], bytes: [500, 700])
        }
        let on = offloaded[slot.raw] ?? false
        return Dataplane.OffloadStatus(offloaded: on, why: on ? "" : (offloadModes[slot.raw] == .off ? "offload off" : "no eswitch here"),
                                       packets: on ? [5, 7] : [0, 0], bytes: on ? [500, 700] : [0, 0])
    }
    func addReplication(ingress: SideID, members: [SideID], cloneMinBytes: UInt32) throws -> (Dataplane.P2MPID, [XCSlot]) {
        try record(.addP2MP); return (Dataplane.P2MPID(raw: 1), members.indices.map { XCSlot(UInt32(1000 + $0)) })
    }
    func addBridge(members: [(side: SideID, shg: UInt16)], settings: Dataplane.BridgeSettings) throws -> (Dataplane.P2MPID, [XCSlot]) {
        try record(.addP2MP); return (Dataplane.P2MPID(raw: 2), members.indices.map { XCSlot(UInt32(2000 + $0)) })
    }
    func updateP2MP(_ id: Dataplane.P2MPID, members: [(side: SideID, shg: UInt16)]) throws -> [XCSlot] {
        try record(.updateP2MP(id.raw)); return members.indices.map { XCSlot(UInt32(3000 + $0)) }
    }
    func deleteP2MP(_ id: Dataplane.P2MPID) throws { try record(.delP2MP(id.raw)) }
    func bridgeMACs(_ id: Dataplane.P2MPID) -> [MACEntry] { [] }
    func bridgeStats(_ id: Dataplane.P2MPID) -> BridgeStats { BridgeStats(learned: 0, moves: 0, flooded: 0, limitDrops: 0) }
    func counters(_ port: PortID) -> InterfaceCounters { InterfaceCounters() }
    func counters(_ slot: XCSlot) -> CrossConnectCounters { CrossConnectCounters() }
    func workerStats() -> [WorkerStats] { [] }
    var dropReasons: [(name: String, description: String, stage: String)] {
        [("no-peer", "received on an interface with no cross-connect", "xconnect")]
    }
}
