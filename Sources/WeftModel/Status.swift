import Foundation

// The values weftd reports (weftctl, the admin socket, NSM metrics) and the
// dataplane's settings: plain values, no DPDK. The dataplane module fills
// them; the admin module renders them.

/// What weftd shows for an interface.
public struct InterfaceStatus: Codable, Equatable, Sendable {
    public var name: String
    public var type: String
    public var backend: String
    public var detail: String
    /// The DPDK port; nil for a tunnel side (vlan), which rides its uplink's port.
    public var port: UInt16?
    public var device: String
    public var driver: String
    public var mac: String
    public var link: String
    public var mtu: UInt16
    public var rxQueues: UInt16
    public var rxWorkers: [UInt32]
    public var crossConnect: String?
    public var counters: InterfaceCounters
    /// TX offloads in use (e.g. "ipv4-cksum" for VXLAN outer headers).
    public var offloads: [String] = []
    /// What the driver did or could not do: offloads turned off on a veth peer,
    /// why `kernel` runs on AF_PACKET, the XDP mode.
    public var note: String = ""
    /// memif: the peer, the rings, and what happened on the control channel by reason.
    public var memif: MemifStatus?
    public init(name: String, type: String, backend: String, detail: String, port: UInt16? = nil, device: String, driver: String, mac: String, link: String, mtu: UInt16, rxQueues: UInt16, rxWorkers: [UInt32], crossConnect: String? = nil, counters: InterfaceCounters, offloads: [String] = [], note: String = "", memif: MemifStatus? = nil) {
        self.name = name; self.type = type; self.backend = backend; self.detail = detail; self.port = port; self.device = device; self.driver = driver; self.mac = mac; self.link = link; self.mtu = mtu; self.rxQueues = rxQueues; self.rxWorkers = rxWorkers; self.crossConnect = crossConnect; self.counters = counters; self.offloads = offloads; self.note = note; self.memif = memif
    }
}

public struct CrossConnectStatus: Codable, Equatable, Sendable {
    public var name: String
    public var a: String
    public var b: String
    public var counters: CrossConnectCounters
    /// "nic" (rte_flow rules in) or "software: <why not>".
    public var offload: String?
    public init(name: String, a: String, b: String, counters: CrossConnectCounters, offload: String? = nil) {
        self.name = name; self.a = a; self.b = b; self.counters = counters; self.offload = offload
    }
}

public struct P2MPStatus: Codable, Equatable, Sendable {
    public struct Member: Codable, Equatable, Sendable {
        public var interface: String
        public var splitHorizonGroup: Int
        /// toMember: frames sent to it; fromMember: frames it sent in.
        public var toMember: CrossConnectCounters.Direction
        public var fromMember: CrossConnectCounters.Direction
        public init(interface: String, splitHorizonGroup: Int, toMember: CrossConnectCounters.Direction, fromMember: CrossConnectCounters.Direction) {
            self.interface = interface; self.splitHorizonGroup = splitHorizonGroup; self.toMember = toMember; self.fromMember = fromMember
        }
    }
    public var name: String
    public var mode: String
    public var ingress: String?
    public var members: [Member]
    public var macs: [MACEntry]?
    public var stats: BridgeStats?
    public init(name: String, mode: String, ingress: String? = nil, members: [Member], macs: [MACEntry]? = nil, stats: BridgeStats? = nil) {
        self.name = name; self.mode = mode; self.ingress = ingress; self.members = members; self.macs = macs; self.stats = stats
    }
}

public struct DropStatus: Codable, Equatable, Sendable {
    public var reason: String
    /// The stage that drops for this reason (xconnect, egress, uplink, vxlan, p2mp, offload, driver).
    public var stage: String
    public var description: String
    public var count: UInt64
    /// Per interface, only where non-zero.
    public var byInterface: [String: UInt64]
    public init(reason: String, stage: String = "", description: String, count: UInt64, byInterface: [String: UInt64]) {
        self.reason = reason; self.stage = stage; self.description = description; self.count = count; self.byInterface = byInterface
    }
}

public struct ApplySummary: Codable, Equatable, Sendable, CustomStringConvertible {
    public var addedInterfaces: [String] = []
    public var removedInterfaces: [String] = []
    public var addedCrossConnects: [String] = []
    public var removedCrossConnects: [String] = []
    /// Replication groups and bridge domains.
    public var addedGroups: [String] = []
    public var removedGroups: [String] = []
    public var changedGroups: [String] = []
    public var unchanged: Int = 0
    public var description: String {
        if addedInterfaces.isEmpty && removedInterfaces.isEmpty && addedCrossConnects.isEmpty && removedCrossConnects.isEmpty
            && addedGroups.isEmpty && removedGroups.isEmpty && changedGroups.isEmpty {
            return "no changes (\(unchanged) objects unchanged)"
        }
        var parts: [String] = []
        if !removedCrossConnects.isEmpty { parts.append("removed cross-connects: \(removedCrossConnects.joined(separator: ", "))") }
        if !removedInterfaces.isEmpty { parts.append("removed interfaces: \(removedInterfaces.joined(separator: ", "))") }
        if !addedInterfaces.isEmpty { parts.append("added interfaces: \(addedInterfaces.joined(separator: ", "))") }
        if !addedCrossConnects.isEmpty { parts.append("added cross-connects: \(addedCrossConnects.joined(separator: ", "))") }
        if !removedGroups.isEmpty { parts.append("removed groups/domains: \(removedGroups.joined(separator: ", "))") }
        if !addedGroups.isEmpty { parts.append("added groups/domains: \(addedGroups.joined(separator: ", "))") }
        if !changedGroups.isEmpty { parts.append("members changed: \(changedGroups.joined(separator: ", "))") }
        parts.append("\(unchanged) unchanged")
        return parts.joined(separator: "; ")
    }
    public init(addedInterfaces: [String] = [], removedInterfaces: [String] = [], addedCrossConnects: [String] = [], removedCrossConnects: [String] = [], addedGroups: [String] = [], removedGroups: [String] = [], changedGroups: [String] = [], unchanged: Int = 0) {
        self.addedInterfaces = addedInterfaces; self.removedInterfaces = removedInterfaces; self.addedCrossConnects = addedCrossConnects; self.removedCrossConnects = removedCrossConnects; self.addedGroups = addedGroups; self.removedGroups = removedGroups; self.changedGroups = changedGroups; self.unchanged = unchanged
    }
}

/// A request that could not be applied. Nothing of it stays applied.
public struct ApplyError: Error, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}


public struct MemifStatus: Codable, Equatable, Sendable {
    public var connected: Bool
    public var rxRings: Int
    public var txRings: Int
    public var peer: String
    public var lastReason: String
    /// Control-channel events of this interface, and of its socket before a peer named an interface.
    public var events: [String: UInt64]
    public var socketEvents: [String: UInt64]
    public init(connected: Bool, rxRings: Int, txRings: Int, peer: String, lastReason: String, events: [String: UInt64], socketEvents: [String: UInt64]) {
        self.connected = connected; self.rxRings = rxRings; self.txRings = txRings; self.peer = peer; self.lastReason = lastReason; self.events = events; self.socketEvents = socketEvents
    }
}

public struct Neighbour: Codable, Equatable, Sendable {
    public var port: UInt16
    public var ip: String
    public var mac: String
    public var state: String
    public var users: UInt16
    public var probes: UInt32
    public var ageMs: UInt64
    public init(port: UInt16, ip: String, mac: String, state: String, users: UInt16, probes: UInt32, ageMs: UInt64) {
        self.port = port; self.ip = ip; self.mac = mac; self.state = state; self.users = users; self.probes = probes; self.ageMs = ageMs
    }
}

public struct MACEntry: Codable, Equatable, Sendable {
    public var mac: String
    public var member: Int
    public var worker: Int
    public var isStatic: Bool
    public var ageMs: UInt64
    public init(mac: String, member: Int, worker: Int, isStatic: Bool, ageMs: UInt64) {
        self.mac = mac; self.member = member; self.worker = worker; self.isStatic = isStatic; self.ageMs = ageMs
    }
}

public struct BridgeStats: Codable, Equatable, Sendable {
    public var learned: UInt64, moves: UInt64, flooded: UInt64, limitDrops: UInt64
    public init(learned: UInt64, moves: UInt64, flooded: UInt64, limitDrops: UInt64) {
        self.learned = learned; self.moves = moves; self.flooded = flooded; self.limitDrops = limitDrops
    }
}

public struct InterfaceCounters: Codable, Equatable, Sendable {
    public var rxPackets: UInt64 = 0, rxBytes: UInt64 = 0
    public var txPackets: UInt64 = 0, txBytes: UInt64 = 0
    /// Drop reason name -> count; only non-zero reasons.
    public var drops: [String: UInt64] = [:]
    public var totalDrops: UInt64 { drops.values.reduce(0, +) }
    public init(rxPackets: UInt64 = 0, rxBytes: UInt64 = 0, txPackets: UInt64 = 0, txBytes: UInt64 = 0, drops: [String: UInt64] = [:]) {
        self.rxPackets = rxPackets; self.rxBytes = rxBytes; self.txPackets = txPackets; self.txBytes = txBytes; self.drops = drops
    }
}

public struct CrossConnectCounters: Codable, Equatable, Sendable {
    public var aToB = Direction(), bToA = Direction()
    public init(aToB: Direction = Direction(), bToA: Direction = Direction()) { self.aToB = aToB; self.bToA = bToA }
    public struct Direction: Codable, Equatable, Sendable {
        public var packets: UInt64 = 0, bytes: UInt64 = 0, drops: UInt64 = 0
        public init(packets: UInt64 = 0, bytes: UInt64 = 0, drops: UInt64 = 0) {
            self.packets = packets; self.bytes = bytes; self.drops = drops
        }
    }
}

public struct WorkerStats: Codable, Equatable, Sendable {
    public var worker: Int
    public var lcore: UInt32
    public var queues: UInt32
    /// Of those, the ones polled now (idle pod-interface queues wait for an event).
    public var activeQueues: UInt32 = 0
    public var busyCycles: UInt64
    public var idleCycles: UInt64
    public var busyIterations: UInt64
    public var idleIterations: UInt64
    public var rxPackets: UInt64
    public var drops: [String: UInt64]
    /// Busy cycles per received packet: comparable with OVS pmd-stats-show.
    public var cyclesPerPacket: Double? { rxPackets == 0 ? nil : Double(busyCycles) / Double(rxPackets) }
    public init(worker: Int, lcore: UInt32, queues: UInt32, activeQueues: UInt32 = 0, busyCycles: UInt64, idleCycles: UInt64, busyIterations: UInt64, idleIterations: UInt64, rxPackets: UInt64, drops: [String: UInt64]) {
        self.worker = worker; self.lcore = lcore; self.queues = queues; self.activeQueues = activeQueues; self.busyCycles = busyCycles; self.idleCycles = idleCycles; self.busyIterations = busyIterations; self.idleIterations = idleIterations; self.rxPackets = rxPackets; self.drops = drops
    }
}

public enum KernelBackend: String, Codable, Sendable {
    case afXDP = "af_xdp", afPacket = "af_packet"
}

/// What the C core is created with. The defaults are the configuration file's
/// (`DataplaneConfig`): one set of defaults.
public struct DataplaneSettings: Sendable, Equatable {
    public var workerLcores: [UInt32]
    public var mbufs = UInt32(DataplaneConfig.defaults.mbufs)
    public var mbufCache = UInt32(DataplaneConfig.defaults.mbufCache)
    /// Room per mbuf (2,048 bytes of data + headroom); jumbo frames are chained.
    public var mbufDataRoom: UInt16 = 2176
    public var burst = UInt16(DataplaneConfig.defaults.burstSize)
    public var rxDescriptors = UInt16(DataplaneConfig.defaults.rxDescriptors)
    public var txDescriptors = UInt16(DataplaneConfig.defaults.txDescriptors)
    public var maxCrossConnects = UInt32(DataplaneConfig.defaults.maxCrossConnects)
    public var idleSleepMicroseconds = UInt32(DataplaneConfig.defaults.idleSleepUs)
    public var queuesSleep = DataplaneConfig.defaults.queuesSleep
    public var puntRate = UInt32(DataplaneConfig.defaults.puntRate)
    public init(workerLcores: [UInt32]) { self.workerLcores = workerLcores }
}

/// The packet trace: whether it runs, how many frames it still takes, and
/// what it wrote down for each traced frame (ports and connections by name).
public struct TraceStatus: Codable, Equatable, Sendable {
    public struct Frame: Codable, Equatable, Sendable {
        public var id: UInt32
        public var worker: UInt32
        /// TSC at reception; each line starts with the cycles since then.
        public var rxTSC: UInt64
        public var lines: [String]
        public init(id: UInt32, worker: UInt32, rxTSC: UInt64, lines: [String]) {
            self.id = id; self.worker = worker; self.rxTSC = rxTSC; self.lines = lines
        }
    }
    public var armed: Bool
    public var left: UInt32
    public var interface: String?
    public var frames: [Frame]
    public init(armed: Bool, left: UInt32, interface: String?, frames: [Frame]) {
        self.armed = armed; self.left = left; self.interface = interface; self.frames = frames
    }
}

/// What `weftctl capture start` asks for.
public struct CaptureRequest: Codable, Equatable, Sendable {
    public var interface: String
    /// rx, tx or both.
    public var direction: String = "both"
    /// The pcapng file weftd creates (absolute; never over an existing file).
    public var path: String
    public var count: Int = 0
    public var seconds: Int = 0
    public var filter: String = ""
    public var snaplen: Int = 9216
    public var slots: Int = 4096
    public init(interface: String, direction: String = "both", path: String, count: Int = 0, seconds: Int = 0, filter: String = "",
                snaplen: Int = 9216, slots: Int = 4096) {
        self.interface = interface; self.direction = direction; self.path = path; self.count = count; self.seconds = seconds
        self.filter = filter; self.snaplen = snaplen; self.slots = slots
    }
}

/// The current or last capture.
public struct CaptureStatus: Codable, Equatable, Sendable {
    public var interface: String
    public var direction: String
    public var path: String
    public var running: Bool
    /// Copies the workers made; copies not made (no free slot: the frame was
    /// forwarded, only its copy is missing); frames in the file; copies the filter left out.
    public var copied: UInt64, dropped: UInt64, written: UInt64, filtered: UInt64
    public var error: String?
    public var port: UInt16
    public init(interface: String, direction: String, path: String, running: Bool, copied: UInt64, dropped: UInt64, written: UInt64,
                filtered: UInt64, error: String?, port: UInt16) {
        self.interface = interface; self.direction = direction; self.path = path; self.running = running; self.copied = copied
        self.dropped = dropped; self.written = written; self.filtered = filtered; self.error = error; self.port = port
    }
}
