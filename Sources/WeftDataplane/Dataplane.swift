import CWeft
import Foundation
import WeftModel

/// A DPDK ethdev port id. Only meaningful inside one weftd process.
public struct PortID: Hashable, Codable, Sendable, CustomStringConvertible {
    public let raw: UInt16
    public init(_ raw: UInt16) { self.raw = raw }
    public var description: String { String(raw) }
}

/// What a cross-connect joins: a port, or a tunnel carried by an uplink port.
public struct SideID: Hashable, Codable, Sendable {
    public let raw: UInt32
    public init(raw: UInt32) { self.raw = raw }
    public init(_ port: PortID) { raw = UInt32(port.raw) }
    public var isTunnel: Bool { raw & WF_SIDE_TUNNEL != 0 }
}

/// A cross-connect's slot in the core: its counter index.
public struct XCSlot: Hashable, Codable, Sendable {
    public let raw: UInt32
    public init(_ raw: UInt32) { self.raw = raw }
}

/// Every failure of a call into the C core: the operation, the object it was
/// about, the errno and the reason the core or DPDK logged.
public struct DataplaneError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let object: String
    public let errno: Int32
    public let reason: String

    public var description: String {
        var s = "\(operation) \(object): \(String(cString: strerror(errno)))"
        if !reason.isEmpty { s += " (\(reason))" }
        return s
    }
}

/// The one funnel from `0 / -errno` to a typed error. A memif secret never
/// reaches an error message (DPDK logs devargs as given).
@discardableResult
func check(_ rc: Int32, _ operation: String, _ object: String) throws -> Int32 {
    if rc >= 0 { return rc }
    var buf = [CChar](repeating: 0, count: 512)
    wf_last_error(&buf, buf.count)
    wf_clear_last_error()
    throw DataplaneError(operation: operation, object: Redact.devargs(object), errno: -rc,
                         reason: Redact.devargs(String(cString: buf)))
}

public enum DropReason: CaseIterable {
    /// Names, descriptions and stages come from the C core's per-stage lists.
    public static var all: [(name: String, description: String, stage: String)] {
        (0..<UInt32(WF_DROP_MAX.rawValue)).map {
            (String(cString: wf_drop_reason_name($0)), String(cString: wf_drop_reason_description($0)),
             String(cString: wf_drop_reason_stage($0)))
        }
    }
}

/// EAL lifecycle. EAL can be initialised once per process.
public enum EAL {
    public static func initialize(arguments: [String]) throws {
        let cargs = arguments.map { strdup($0) }
        defer { cargs.forEach { free($0) } }
        let ptrs: [UnsafePointer<CChar>?] = cargs.map { UnsafePointer($0) }
        let rc = ptrs.withUnsafeBufferPointer { wf_eal_init(Int32(arguments.count), $0.baseAddress) }
        try check(rc, "EAL init", arguments.dropFirst().joined(separator: " "))
    }
    public static func cleanup() { _ = wf_eal_cleanup() }
    public static var tscHz: UInt64 { wf_tsc_hz() }
    /// EAL enabled VFIO at init (the vfio module was loaded then): vfio-pci devices can be probed.
    public static var vfioEnabled: Bool { wf_eal_vfio_enabled() == 1 }
    /// Keep every thread of the process but the workers on the main lcore's CPUs;
    /// returns how many threads were moved.
    @discardableResult
    public static func confineControlThreads() -> Int { Int(wf_confine_control_threads()) }
}





public struct PortInfo: Equatable, Sendable {
    public var deviceName: String
    public var driver: String
    public var mac: String
    public var linkUp: Bool
    public var speedMbps: UInt32
    public var rxQueues: UInt16
    public var txQueues: UInt16
    public var mtu: UInt16
    public var rxWorkers: [UInt32]
    public var txIPv4ChecksumOffload: Bool
    /// What the driver did or could not do (offloads, fallbacks), for `show interfaces`.
    public var note: String = ""
    public init(deviceName: String, driver: String, mac: String, linkUp: Bool, speedMbps: UInt32, rxQueues: UInt16,
                txQueues: UInt16, mtu: UInt16, rxWorkers: [UInt32], txIPv4ChecksumOffload: Bool, note: String = "") {
        self.deviceName = deviceName; self.driver = driver; self.mac = mac; self.linkUp = linkUp; self.speedMbps = speedMbps
        self.rxQueues = rxQueues; self.txQueues = txQueues; self.mtu = mtu; self.rxWorkers = rxWorkers
        self.txIPv4ChecksumOffload = txIPv4ChecksumOffload; self.note = note
    }
}

/// Weft's own drivers for kernel interfaces.

/// Typed wrapper over the C core. Not thread-safe: one control thread (the
/// Controller's lock) drives it; the workers run in C.
public final class Dataplane {
    private var handle: OpaquePointer?
    public let settings: DataplaneSettings
    private var started = false

    /// The C handle; using a destroyed dataplane is a programmer error.
    var dp: OpaquePointer {
        guard let handle else { preconditionFailure("dataplane used after destroy()") }
        return handle
    }

    public init(_ s: DataplaneSettings) throws {
        var cfg = wf_dp_config()
        cfg.n_workers = UInt32(s.workerLcores.count)
        withUnsafeMutableBytes(of: &cfg.worker_lcores) { raw in
            let p = raw.bindMemory(to: UInt32.self)
            for (i, l) in s.workerLcores.prefix(Int(WF_MAX_WORKERS)).enumerated() { p[i] = l }
        }
        cfg.mbufs = s.mbufs
        cfg.mbuf_cache = s.mbufCache
        cfg.mbuf_data_room = s.mbufDataRoom
        cfg.burst = s.burst
        cfg.rx_desc = s.rxDescriptors
        cfg.tx_desc = s.txDescriptors
        cfg.max_xconnects = s.maxCrossConnects
        cfg.idle_sleep_us = s.idleSleepMicroseconds
        cfg.queues_sleep = s.queuesSleep ? 1 : 0
        cfg.punt_rate = s.puntRate
        var out: OpaquePointer?
        try check(wf_dp_create(&cfg, &out), "create", "dataplane")
        handle = out!
        settings = s
    }

    /// Stop the workers, detach every port and free the core's memory.
    /// Must run before EAL.cleanup(); idempotent.
    public func destroy() {
        guard let h = handle else { return }
        wf_dp_destroy(h)
        handle = nil
    }

    deinit { destroy() }

    public func start() throws {
        try check(wf_dp_start(dp), "start", "workers")
        started = true
    }

    public func stop() {
        _ = wf_dp_stop(dp)
        started = false
    }

    public func attach(devargs: String, rxQueues: UInt16 = 1, mtu: UInt16 = 0, promiscuous: Bool = true,
                       netns: String? = nil) throws -> PortID {
        var port: UInt16 = 0
        let rc = devargs.withCString { cs -> Int32 in
            withOptionalCString(netns) { ns in
                var req = wf_port_attach(devargs: cs, rx_queues: rxQueues, promiscuous: promiscuous ? 1 : 0, pad: 0,
                                         mtu: mtu, netns: ns)
                return wf_port_attach(dp, &req, &port)
            }
        }
        try check(rc, "attach", devargs)
        return PortID(port)
    }

    /// A kernel interface through Weft's own AF_PACKET or AF_XDP driver (no DPDK port).
    /// `fixPeerChecksum`: AF_XDP cannot see partial checksums, so a veth peer's TX
    /// checksum offload is turned off (and the port's note says so).
    public func attachKernel(ifname: String, netns: String? = nil, backend: KernelBackend, rxQueues: UInt16 = 1,
                             promiscuous: Bool = true, fixPeerChecksum: Bool = true) throws -> PortID {
        var port: UInt16 = 0
        let rc = ifname.withCString { n -> Int32 in
            withOptionalCString(netns) { ns in
                var req = wf_kif_attach()
                req.ifname = n
                req.netns = ns
                req.backend = UInt8(backend == .afPacket ? WF_KIF_AF_PACKET.rawValue : WF_KIF_AF_XDP.rawValue)
                req.promiscuous = promiscuous ? 1 : 0
                req.rx_queues = rxQueues
                req.fix_peer_csum = fixPeerChecksum ? 1 : 0
                return wf_kif_attach(dp, &req, &port)
            }
        }
        try check(rc, "attach \(backend.rawValue)", ifname + (netns.map { " in \($0)" } ?? ""))
        return PortID(port)
    }

    /// A memif interface through Weft's own driver (no DPDK port).
    public struct MemifSettings: Sendable {
        public var socket: String
        public var abstract = false
        public var client = false
        public var id: UInt32 = 0
        public var secret: String?
        public var netns: String?
        public var ipMode = false
        public var rxQueues: UInt16 = 1
        public var mac: [UInt8]?
        public var mtu: UInt16 = 0
        public var log2RingSize: UInt8 = 0
        public var bufferSize: UInt16 = 0
        public init(socket: String) { self.socket = socket }
    }

    public func attachMemif(_ m: MemifSettings) throws -> PortID {
        var port: UInt16 = 0
        let rc = m.socket.withCString { sock in
            withOptionalCString(m.netns) { ns in
                withOptionalCString(m.secret) { sec -> Int32 in
                    var c = wf_memif_cfg()
                    c.socket = sock
                    c.netns = ns
                    c.secret = sec
                    c.id = m.id
                    c.client = m.client ? 1 : 0
                    c.abstract = m.abstract ? 1 : 0
                    c.ip_mode = m.ipMode ? 1 : 0
                    c.log2_ring = m.log2RingSize
                    c.rx_queues = m.rxQueues
                    c.buffer_size = m.bufferSize
                    c.mtu = m.mtu
                    if let mac = m.mac, mac.count == 6 {
                        withUnsafeMutableBytes(of: &c.mac) { $0.copyBytes(from: mac) }
                    }
                    return wf_memif_attach(dp, &c, &port)
                }
            }
        }
        // The secret never goes into an error or a log line.
        try check(rc, "attach memif \(m.client ? "client" : "server")", "\(m.abstract ? "@" : "")\(m.socket) id \(m.id)")
        return PortID(port)
    }


    public func memifStatus(_ port: PortID) -> MemifStatus? {
        var s = wf_memif_stats()
        guard wf_memif_stats(dp, port.raw, &s) == 0 else { return nil }
        func events<T>(_ t: T) -> [String: UInt64] {
            withUnsafeBytes(of: t) { raw in
                var m: [String: UInt64] = [:]
                for (i, v) in raw.bindMemory(to: UInt64.self).enumerated() where v != 0 {
                    if let n = wf_memif_event_name(UInt32(i)) { m[String(cString: n)] = v }
                }
                return m
            }
        }
        return MemifStatus(connected: s.connected != 0, rxRings: Int(s.rx_rings), txRings: Int(s.tx_rings),
                           peer: cString(s.peer_name), lastReason: cString(s.last_reason),
                           events: events(s.events), socketEvents: events(s.socket_events))
    }

    /// Stage tests: the events thread's work, on the calling thread.
    @discardableResult
    public func serviceEvents(timeoutMs: Int32 = 0) -> Int { Int(wf_events_service(dp, timeoutMs)) }

    public func createTestPort(name: String) throws -> PortID {
        var port: UInt16 = 0
        try check(wf_testport_create(dp, name, &port), "create ring port", name)
        return PortID(port)
    }

    public func detach(_ port: PortID) throws {
        try check(wf_port_detach(dp, port.raw), "detach", "port \(port)")
    }

    public func info(_ port: PortID) throws -> PortInfo {
        var i = wf_port_info()
        try check(wf_port_info(dp, port.raw, &i), "info", "port \(port)")
        let mac = withUnsafeBytes(of: i.mac) { $0.map { String(format: "%02x", $0) }.joined(separator: ":") }
        let workers = withUnsafeBytes(of: i.rx_worker) { Array($0.bindMemory(to: UInt32.self).prefix(Int(i.rx_queues))) }
        return PortInfo(deviceName: cString(i.name), driver: cString(i.driver), mac: mac,
                        linkUp: i.link_up != 0, speedMbps: i.link_speed_mbps,
                        rxQueues: i.rx_queues, txQueues: i.tx_queues, mtu: i.mtu, rxWorkers: workers,
                        txIPv4ChecksumOffload: i.tx_ip4_cksum_offload != 0, note: cString(i.note))
    }

    @discardableResult
    public func pollLinks() -> Int { Int(wf_link_poll(dp)) }

    /// Hold publishing: additions made until `release()` reach the workers
    /// together, in one table rebuild (removals still publish at once).
    public func hold() { _ = wf_dp_hold(dp) }

    /// Publish what was added since `hold()`. On error the additions are in the
    /// control state but not published: the caller rolls them back.
    public func release() throws {
        try check(wf_dp_release(dp), "publish", "the batched changes")
    }

    public func addCrossConnect(_ a: PortID, _ b: PortID) throws -> XCSlot {
        try addCrossConnect(SideID(a), SideID(b))
    }

    public func addCrossConnect(_ a: SideID, _ b: SideID) throws -> XCSlot {
        var slot: UInt32 = 0
        try check(wf_xc_add(dp, a.raw, b.raw, &slot), "cross-connect", "sides \(a.raw) and \(b.raw)")
        return XCSlot(slot)
    }

    /// An 802.1Q VLAN on an uplink port (id 0: the raw untagged uplink).
    public func addVLAN(uplink: PortID, id: UInt16) throws -> SideID {
        var side: UInt32 = 0
        try check(wf_vlan_add(dp, uplink.raw, id, &side), "add VLAN \(id)", "on port \(uplink)")
        return SideID(raw: side)
    }

    /// An uplink's underlay: its addresses, gateway, MTU and VXLAN ports.
    public struct Underlay: Equatable, Sendable {
        public var ipv4: (address: [UInt8], prefix: Int)?
        public var ipv6: (address: [UInt8], prefix: Int)?
        public var gateway4: [UInt8]?
        public var gateway6: [UInt8]?
        public var mtu: Int = 1500
        public var vxlanPorts: [UInt16] = [4789]
        public var kernelShared = false
        public init() {}
        public static func == (a: Underlay, b: Underlay) -> Bool {
            a.ipv4?.address == b.ipv4?.address && a.ipv4?.prefix == b.ipv4?.prefix && a.ipv6?.address == b.ipv6?.address
                && a.ipv6?.prefix == b.ipv6?.prefix && a.gateway4 == b.gateway4 && a.gateway6 == b.gateway6
                && a.mtu == b.mtu && a.vxlanPorts == b.vxlanPorts && a.kernelShared == b.kernelShared
        }
    }

    public func setUnderlay(_ port: PortID, _ u: Underlay) throws {
        func bad(_ why: String) -> DataplaneError {
            DataplaneError(operation: "set underlay", object: "port \(port)", errno: EINVAL, reason: why)
        }
        if let v4 = u.ipv4, v4.address.count != 4 || !(0...32).contains(v4.prefix) { throw bad("ipv4 is 4 bytes with a prefix of 0-32") }
        if let v6 = u.ipv6, v6.address.count != 16 || !(0...128).contains(v6.prefix) { throw bad("ipv6 is 16 bytes with a prefix of 0-128") }
        if let g = u.gateway4, g.count != 4 { throw bad("gateway4 is 4 bytes, not \(g.count)") }
        if let g = u.gateway6, g.count != 16 { throw bad("gateway6 is 16 bytes, not \(g.count)") }
        guard (68...65535).contains(u.mtu) else { throw bad("MTU \(u.mtu) is outside 68-65535") }
        var c = wf_underlay_cfg()
        func copy<T>(_ bytes: [UInt8], into field: inout T) {
            withUnsafeMutableBytes(of: &field) { raw in raw.copyBytes(from: bytes.prefix(raw.count)) }
        }
        if let v4 = u.ipv4 { c.has_ip4 = 1; c.prefix4 = UInt8(v4.prefix); copy(v4.address, into: &c.ip4) }
        if let v6 = u.ipv6 { c.has_ip6 = 1; c.prefix6 = UInt8(v6.prefix); copy(v6.address, into: &c.ip6) }
        if let g = u.gateway4 { copy(g, into: &c.gw4) }
        if let g = u.gateway6 { copy(g, into: &c.gw6) }
        c.mtu = UInt16(u.mtu)
        c.kernel_shared = u.kernelShared ? 1 : 0
        c.n_vxlan_ports = UInt16(min(u.vxlanPorts.count, 4))
        withUnsafeMutableBytes(of: &c.vxlan_ports) { raw in
            for (i, p) in u.vxlanPorts.prefix(4).enumerated() { raw.storeBytes(of: p, toByteOffset: i * 2, as: UInt16.self) }
        }
        try check(wf_underlay_set(dp, port.raw, &c), "set underlay", "port \(port)")
    }

    public func clearUnderlay(_ port: PortID) throws {
        try check(wf_underlay_clear(dp, port.raw), "clear underlay", "port \(port)")
    }

    public func addStaticNeighbour(_ port: PortID, ip: [UInt8], mac: [UInt8]) throws {
        guard ip.count == 4 || ip.count == 16 else {
            throw DataplaneError(operation: "add static neighbour", object: "port \(port)", errno: EINVAL,
                                 reason: "an IP address is 4 or 16 bytes, not \(ip.count)")
        }
        guard mac.count == 6 else {
            throw DataplaneError(operation: "add static neighbour", object: "port \(port)", errno: EINVAL,
                                 reason: "a MAC address is 6 bytes, not \(mac.count)")
        }
        var ipb = ip + [UInt8](repeating: 0, count: 16 - ip.count)
        var m = mac
        try check(wf_neighbour_static(dp, port.raw, ip.count == 16 ? 1 : 0, &ipb, &m), "add static neighbour", "port \(port)")
    }


    public func neighbours() -> [Neighbour] {
        let n = Int(wf_neighbour_list(dp, nil, 0))
        guard n > 0 else { return [] }
        var buf = [wf_neighbour_info](repeating: wf_neighbour_info(), count: n)
        let got = Int(wf_neighbour_list(dp, &buf, UInt32(n)))
        return buf.prefix(min(got, n)).map { e in
            let ip = withUnsafeBytes(of: e.ip) { Array($0) }
            let mac = withUnsafeBytes(of: e.mac) { $0.map { String(format: "%02x", $0) }.joined(separator: ":") }
            let states = ["incomplete", "reachable", "static", "failed"]
            return Neighbour(port: e.port, ip: e.is_v6 != 0 ? IPAddress.format6(ip) : IPAddress.format4(Array(ip.prefix(4))),
                             mac: mac, state: Int(e.state) < states.count ? states[Int(e.state)] : "?",
                             users: e.users, probes: e.probes, ageMs: e.age_ms)
        }
    }

    public func addVXLAN(uplink: PortID, vni: UInt32, remote: [UInt8], dstPort: UInt16, localPort: UInt16) throws -> SideID {
        guard remote.count == 4 || remote.count == 16 else {
            throw DataplaneError(operation: "add VXLAN VNI \(vni)", object: "on port \(uplink)", errno: EINVAL,
                                 reason: "the remote is 4 or 16 bytes, not \(remote.count)")
        }
        var c = wf_vxlan_cfg()
        c.uplink = uplink.raw
        c.is_v6 = remote.count == 16 ? 1 : 0
        c.vni = vni
        withUnsafeMutableBytes(of: &c.remote) { $0.copyBytes(from: remote) }
        c.dst_port = dstPort
        c.local_port = localPort
        var side: UInt32 = 0
        try check(wf_vxlan_add(dp, &c, &side), "add VXLAN VNI \(vni)", "on port \(uplink)")
        return SideID(raw: side)
    }

    /// Stage tests: handle punted ARP/ND/ICMP and neighbour timers now, then
    /// one poll so that worker 0 transmits what the control plane built.
    /// Refused (EBUSY) while the underlay thread runs (a started dataplane).
    @discardableResult
    public func underlayService() throws -> Int {
        let n = Int(try check(wf_underlay_service(dp), "service", "the underlay"))
        pollOnce()
        return n
    }

    // MARK: point-to-multipoint

    public struct P2MPID: Hashable, Codable, Sendable {
        public let raw: UInt32
        public init(raw: UInt32) { self.raw = raw }
    }

    public func addReplication(ingress: SideID, members: [SideID], cloneMinBytes: UInt32 = 256) throws -> (P2MPID, [XCSlot]) {
        var ms = members.map { wf_p2mp_member(side: $0.raw, shg: 0, pad: 0) }
        var slots = [UInt32](repeating: 0, count: max(members.count, 1))
        var id: UInt32 = 0
        try check(wf_replicate_add(dp, ingress.raw, &ms, UInt32(ms.count), cloneMinBytes, &id, &slots),
                  "add replication group", "of \(members.count) members")
        return (P2MPID(raw: id), slots.prefix(members.count).map(XCSlot.init))
    }

    public struct BridgeSettings: Sendable {
        public var macLimit: UInt32 = 4096
        public var ageMs: UInt32 = 300_000
        public var statics: [(mac: [UInt8], member: Int)] = []
        public init() {}
    }

    public func addBridge(members: [(side: SideID, shg: UInt16)], settings: BridgeSettings) throws -> (P2MPID, [XCSlot]) {
        var ms = members.map { wf_p2mp_member(side: $0.side.raw, shg: $0.shg, pad: 0) }
        var c = wf_bridge_cfg()
        c.mac_limit = settings.macLimit
        c.age_ms = settings.ageMs
        c.n_static = UInt32(settings.statics.count)
        withUnsafeMutableBytes(of: &c.static_mac) { raw in
            for (i, s) in settings.statics.prefix(16).enumerated() {
                for (b, v) in s.mac.prefix(6).enumerated() { raw[i * 6 + b] = v }
            }
        }
        withUnsafeMutableBytes(of: &c.static_member) { raw in
            for (i, s) in settings.statics.prefix(16).enumerated() { raw.storeBytes(of: UInt16(s.member), toByteOffset: i * 2, as: UInt16.self) }
        }
        var slots = [UInt32](repeating: 0, count: max(members.count, 1))
        var id: UInt32 = 0
        try check(wf_bridge_add(dp, &c, &ms, UInt32(ms.count), &id, &slots), "add bridge domain", "of \(members.count) members")
        return (P2MPID(raw: id), slots.prefix(members.count).map(XCSlot.init))
    }

    /// New member list in one publish (members that stay are untouched).
    public func updateP2MP(_ id: P2MPID, members: [(side: SideID, shg: UInt16)]) throws -> [XCSlot] {
        var ms = members.map { wf_p2mp_member(side: $0.side.raw, shg: $0.shg, pad: 0) }
        var slots = [UInt32](repeating: 0, count: max(members.count, 1))
        try check(wf_p2mp_update(dp, id.raw, &ms, UInt32(ms.count), &slots), "update group/domain", "\(id.raw)")
        return slots.prefix(members.count).map(XCSlot.init)
    }

    public func deleteP2MP(_ id: P2MPID) throws {
        try check(wf_p2mp_del(dp, id.raw), "remove group/domain", "\(id.raw)")
    }


    public func bridgeMACs(_ id: P2MPID) -> [MACEntry] {
        let n = Int(wf_bridge_macs(dp, id.raw, nil, 0))
        guard n > 0 else { return [] }
        var buf = [wf_mac_entry](repeating: wf_mac_entry(), count: n)
        let got = Int(wf_bridge_macs(dp, id.raw, &buf, UInt32(n)))
        return buf.prefix(min(n, got)).map { e in
            MACEntry(mac: withUnsafeBytes(of: e.mac) { $0.map { String(format: "%02x", $0) }.joined(separator: ":") },
                     member: Int(e.member), worker: Int(e.worker), isStatic: e.is_static != 0, ageMs: e.age_ms)
        }
    }


    public func bridgeStats(_ id: P2MPID) -> BridgeStats {
        var s = wf_bridge_stats()
        _ = wf_bridge_stats(dp, id.raw, &s)
        return BridgeStats(learned: s.learned, moves: s.moves, flooded: s.flooded, limitDrops: s.limit_drops)
    }

    /// Tests: a frame as a kernel interface would hand it over, with a partial
    /// checksum and, with `gsoSize`, as a super-frame to be segmented.
    @_spi(Testing)
    public func injectWithOffload(_ port: PortID, frame: [UInt8], l2: Int, l3: Int, l4: Int, tcp: Bool,
                                  ipv6: Bool, gsoSize: Int = 0) throws {
        var ol = wf_test_offload(l2_len: UInt16(l2), l3_len: UInt16(l3), l4_len: UInt16(l4), l4_proto: tcp ? 6 : 17,
                                 ipv6: ipv6 ? 1 : 0, gso_size: UInt16(gsoSize))
        try check(frame.withUnsafeBufferPointer { wf_testport_inject_offload(dp, port.raw, $0.baseAddress, UInt32($0.count), &ol) },
                  "inject with offload", "port \(port)")
    }

    public func injectMany(_ port: PortID, frame: [UInt8], count: Int) -> Int {
        Int(frame.withUnsafeBufferPointer { wf_testport_inject_n(dp, port.raw, $0.baseAddress, UInt32($0.count), UInt32(count)) })
    }

    @discardableResult
    public func discard(_ port: PortID) -> Int { Int(wf_testport_discard(dp, port.raw)) }

    public func deleteTunnel(_ side: SideID) throws {
        try check(wf_tunnel_del(dp, side.raw), "remove tunnel", "side \(side.raw)")
    }

    /// NIC offload of a P2P cross-connect (rte_flow transfer rules; control/flow.c).
    public enum OffloadMode: String, Codable, Sendable, CaseIterable {
        case off, auto, required
        var c: Int32 {
            switch self {
            case .off: return Int32(WF_OFFLOAD_OFF.rawValue)
            case .auto: return Int32(WF_OFFLOAD_AUTO.rawValue)
            case .required: return Int32(WF_OFFLOAD_REQUIRED.rawValue)
            }
        }
    }

    public struct OffloadStatus: Equatable, Sendable {
        public var offloaded: Bool
        /// Why not ("" when offloaded).
        public var why: String
        /// The rules' COUNT, A->B then B->A.
        public var packets: [UInt64], bytes: [UInt64]
        public init(offloaded: Bool, why: String, packets: [UInt64], bytes: [UInt64]) {
            self.offloaded = offloaded; self.why = why; self.packets = packets; self.bytes = bytes
        }
    }

    /// Offloads when the sides allow (`auto`: the software path otherwise, the reason
    /// kept; `required`: an error with the reason); `off` removes any rules.
    public func offload(_ slot: XCSlot, _ mode: OffloadMode) throws {
        try check(wf_xc_offload(dp, slot.raw, mode.c), "offload cross-connect", "slot \(slot.raw)")
    }

    public func offloadStatus(_ slot: XCSlot) throws -> OffloadStatus {
        var st = wf_offload_status()
        try check(wf_xc_offload_status(dp, slot.raw, &st), "offload status", "slot \(slot.raw)")
        let why = withUnsafeBytes(of: &st.why) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        return OffloadStatus(offloaded: st.offloaded != 0, why: why, packets: [st.packets.0, st.packets.1], bytes: [st.bytes.0, st.bytes.1])
    }

    /// Reads the offloaded connections' rule counts; a rule that fails is taken as gone and
    /// its connection goes back to software. Returns how many did.
    public func offloadCheck() -> Int { Int(wf_xc_offload_check(dp)) }

    /// Tests: the cross-connect marked offloaded with rules that are not there.
    func testPretendOffloaded(_ slot: XCSlot, packets: [UInt64], bytes: [UInt64]) throws {
        try check(packets.withUnsafeBufferPointer { p in bytes.withUnsafeBufferPointer { b in
            wf_test_offload_pretend(dp, slot.raw, p.baseAddress, b.baseAddress) } }, "pretend offload", "slot \(slot.raw)")
    }

    /// The DPDK ethdev behind a port; nil for Weft's own drivers.
    public func ethdev(_ port: PortID) -> UInt16? {
        let rc = wf_port_ethdev(dp, port.raw)
        return rc < 0 ? nil : UInt16(rc)
    }

    /// The rules the NIC would be given, one line per direction.
    public func describeOffload(_ slot: XCSlot) throws -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        try check(wf_xc_offload_describe(dp, slot.raw, &buf, buf.count), "describe offload", "slot \(slot.raw)")
        return String(cString: buf)
    }

    public func deleteCrossConnect(_ slot: XCSlot) throws {
        try check(wf_xc_del(dp, slot.raw), "remove cross-connect", "slot \(slot.raw)")
    }

    public func counters(_ port: PortID) -> InterfaceCounters {
        var s = wf_if_stats()
        guard wf_if_stats(dp, port.raw, &s) == 0 else { return InterfaceCounters() }
        var c = InterfaceCounters(rxPackets: s.rx_packets, rxBytes: s.rx_bytes, txPackets: s.tx_packets, txBytes: s.tx_bytes)
        c.drops = dropMap(s.drops)
        return c
    }

    public func counters(_ slot: XCSlot) -> CrossConnectCounters {
        var s = wf_xc_stats()
        guard wf_xc_stats(dp, slot.raw, &s) == 0 else { return CrossConnectCounters() }
        return CrossConnectCounters(
            aToB: .init(packets: s.packets.0, bytes: s.bytes.0, drops: s.drops.0),
            bToA: .init(packets: s.packets.1, bytes: s.bytes.1, drops: s.drops.1))
    }

    /// The work of publishing: the last table's new bytes and parts, the
    /// sides whose way was recomputed (a change costs what it touched).
    public struct TableStats: Equatable, Sendable {
        public var publishes: UInt64, lastBytes: UInt64, lastParts: UInt32, lastSides: UInt32, totalBytes: UInt64
    }

    public func tableStats() -> TableStats {
        var s = wf_table_stats()
        _ = wf_table_stats(dp, &s)
        return TableStats(publishes: s.publishes, lastBytes: s.last_bytes, lastParts: s.last_parts, lastSides: s.last_sides,
                          totalBytes: s.total_bytes)
    }

    public func workerStats() -> [WorkerStats] {
        let n = max(settings.workerLcores.count, 1)
        return (0..<n).compactMap { w in
            var s = wf_worker_stats()
            guard wf_worker_stats(dp, UInt32(w), &s) == 0 else { return nil }
            return WorkerStats(worker: w, lcore: s.lcore, queues: s.polls_assigned, activeQueues: s.polls_active,
                               busyCycles: s.busy_cycles,
                               idleCycles: s.idle_cycles, busyIterations: s.busy_iterations,
                               idleIterations: s.idle_iterations, rxPackets: s.rx_packets, drops: dropMap(s.drops))
        }
    }

    // Test hooks: the same path the workers run, on the calling thread.
    @discardableResult
    public func pollOnce(worker: UInt32 = 0) -> Int { Int(wf_dp_poll_once(dp, worker)) }
    public var mbufsAvailable: UInt32 { wf_dp_mbufs_available(dp) }

    /// perf/stage-bench.sh: (TSC cycles, packets) of `iterations` closed-loop polls.
    public func benchCrossConnect(_ a: PortID, _ b: PortID, iterations: UInt32) throws -> (cycles: UInt64, packets: UInt64) {
        var c: UInt64 = 0, p: UInt64 = 0
        try check(wf_bench_xconnect(dp, a.raw, b.raw, iterations, &c, &p), "bench", "cross-connect")
        return (c, p)
    }

    public func benchIOBaseline(_ a: PortID, _ b: PortID, iterations: UInt32) throws -> (cycles: UInt64, packets: UInt64) {
        var c: UInt64 = 0, p: UInt64 = 0
        try check(wf_bench_io_baseline(dp, a.raw, b.raw, iterations, &c, &p), "bench", "io baseline")
        return (c, p)
    }

    public func benchRoundTrip(pod: PortID, uplink: PortID, reflectIPv4: Bool, iterations: UInt32) throws -> (cycles: UInt64, packets: UInt64) {
        var c: UInt64 = 0, p: UInt64 = 0
        try check(wf_bench_roundtrip(dp, pod.raw, uplink.raw, reflectIPv4 ? 1 : 0, iterations, &c, &p), "bench", "round trip")
        return (c, p)
    }

    public func benchReplicate(ingress: PortID, members: [PortID], iterations: UInt32) throws -> (cycles: UInt64, frames: UInt64) {
        var c: UInt64 = 0, f: UInt64 = 0
        var ms = members.map(\.raw)
        try check(wf_bench_replicate(dp, ingress.raw, &ms, UInt32(ms.count), iterations, &c, &f), "bench", "replication")
        return (c, f)
    }

    public func inject(_ port: PortID, frame: [UInt8]) throws {
        try check(frame.withUnsafeBufferPointer { wf_testport_inject(dp, port.raw, $0.baseAddress, UInt32($0.count)) },
                  "inject", "port \(port)")
    }

    public func collect(_ port: PortID) throws -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 70000)
        let n = try check(buf.withUnsafeMutableBufferPointer { wf_testport_collect(dp, port.raw, $0.baseAddress, UInt32($0.count)) },
                          "collect", "port \(port)")
        return n == 0 ? nil : Array(buf.prefix(Int(n)))
    }
}

private func dropMap<T>(_ tuple: T) -> [String: UInt64] {
    withUnsafeBytes(of: tuple) { raw in
        var m: [String: UInt64] = [:]
        for (i, v) in raw.bindMemory(to: UInt64.self).enumerated() where v != 0 {
            if let n = wf_drop_reason_name(UInt32(i)) { m[String(cString: n)] = v }
        }
        return m
    }
}

private func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}

func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}

extension Dataplane {
    /// Underlay next hops the node can track (a tunnel to one more fails with "neighbour table full").
    public static let maxNeighbours = Int(WF_MAX_NEIGHBOURS)
}

// MARK: - Packet trace

/// One traced frame as the core wrote it down; lines name ports {port:N} and
/// connection slots {xc:N}.
public struct TracedFrame: Sendable, Equatable {
    public var id: UInt32
    public var worker: UInt32
    public var rxTSC: UInt64
    public var lines: [String]
}

extension Dataplane {
    /// Frames a trace keeps at most.
    public static let traceMax = Int(WF_TRACE_MAX)

    /// Trace the next `count` frames received on `port` (nil: any port).
    public func traceStart(port: PortID?, count: UInt32) throws {
        try check(wf_trace_start(dp, port?.raw ?? UInt16(WF_PORT_NONE), count), "trace", "start")
    }
    public func traceStop() { _ = wf_trace_stop(dp) }
    public func traceClear() { _ = wf_trace_clear(dp) }
    /// (armed, frames still to trace)
    public func traceState() -> (armed: Bool, left: UInt32) {
        var a: UInt32 = 0, l: UInt32 = 0
        _ = wf_trace_state(dp, &a, &l)
        return (a != 0, l)
    }
    public func tracedFrames() -> [TracedFrame] {
        let n = wf_trace_count(dp)
        let info = UnsafeMutablePointer<wf_trace_info>.allocate(capacity: 1)
        defer { info.deallocate() }
        var out: [TracedFrame] = []
        for i in 0..<n {
            guard wf_trace_get(dp, i, info) == 0 else { break }
            let lines: [String] = withUnsafeBytes(of: &info.pointee.lines) { raw in
                (0..<Int(min(info.pointee.n_lines, UInt32(WF_TRACE_LINES)))).map { k in
                    let base = raw.baseAddress!.advanced(by: k * Int(WF_TRACE_LINE_LEN)).assumingMemoryBound(to: CChar.self)
                    return String(cString: base)
                }
            }
            out.append(TracedFrame(id: info.pointee.id, worker: info.pointee.worker, rxTSC: info.pointee.rx_tsc, lines: lines))
        }
        return out
    }
}

// MARK: - Capture

public struct CaptureSettings: Sendable {
    public var port: PortID
    public var rx: Bool, tx: Bool
    public var snaplen: UInt32 = 9216
    public var slots: UInt32 = 4096
    public var count: UInt64 = 0
    public var seconds: UInt32 = 0
    public var filter: String = ""
    public var path: String
    public var interfaceName: String
    public init(port: PortID, rx: Bool, tx: Bool, path: String, interfaceName: String) {
        self.port = port; self.rx = rx; self.tx = tx; self.path = path; self.interfaceName = interfaceName
    }
}

extension Dataplane {
    public func captureStart(_ s: CaptureSettings) throws {
        var p = wf_capture_params()
        p.port = s.port.raw
        p.dirs = UInt8((s.rx ? 1 : 0) | (s.tx ? 2 : 0))
        p.snaplen = s.snaplen
        p.slots = s.slots
        p.count = s.count
        p.seconds = s.seconds
        let rc = s.filter.withCString { f in
            s.path.withCString { path in
                s.interfaceName.withCString { name in
                    p.filter = f; p.path = path; p.ifname = name
                    return wf_capture_start(dp, &p)
                }
            }
        }
        try check(rc, "capture", s.interfaceName)
    }
    public func captureStop() { _ = wf_capture_stop(dp) }
    public func captureStatus() -> CaptureStatus? {
        let info = UnsafeMutablePointer<wf_capture_info>.allocate(capacity: 1)
        defer { info.deallocate() }
        guard wf_capture_status(dp, info) == 0 else { return nil }
        let i = info.pointee
        let path = withUnsafeBytes(of: i.path) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        let err = withUnsafeBytes(of: i.error) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        return CaptureStatus(interface: "", direction: i.dirs == 3 ? "both" : i.dirs == 1 ? "rx" : "tx", path: path,
                             running: i.running != 0, copied: i.copied, dropped: i.dropped, written: i.written,
                             filtered: i.filtered, error: err.isEmpty ? nil : err, port: i.port)
    }
}
