import Foundation
import Logging
import WeftControl
import WeftKernel
import WeftModel
import WeftNSMProto

/// One side of a connection as realized: the dataplane interface and, for KERNEL, the
/// veth pair whose far end lives in the pod.
struct RealizedSide: Equatable, Sendable {
    var side: Side
    var type: String
    var interface: InterfaceConfig
    var netns: String?
    /// KERNEL: host end (root namespace) and pod end.
    var hostVeth: String?
    var podIfName: String?
    var podMAC: [UInt8] = []
    /// MEMIF: the socket, as told to the pod ("@/..." for abstract).
    var socketfile: String?
    /// VXLAN: the inner MTU the tunnel carries.
    var tunnelMTU: Int?
    /// KERNEL with a tokenID: the SR-IOV VF (PCI address) in the pod, its netdev's name
    /// in weftd's namespace (it goes back under it), and its representor (the Weft side).
    var vf: String?
    var vfNetdev: String?
    /// VFIO: what the pod's device cgroups were allowed.
    var cgroupGrant: SRIOVService.CgroupGrant?
}

/// Builds and removes the kernel side of mechanisms. Every step registers its undo.
final class Plumbing: Sendable {
    let logger: Logger
    let runtimeDir: String
    /// NSM_NAME: marks the host ends of this forwarder's veths.
    let forwarderName: String
    /// The node's running configuration (uplinks, tunnel addresses, VXLAN port, selector).
    let node: @Sendable () -> WeftConfig
    /// SR-IOV VFs for KERNEL requests with a tokenID (nil: none configured).
    let sriov: SRIOVService?

    init(logger: Logger, runtimeDir: String, forwarderName: String, node: @escaping @Sendable () -> WeftConfig,
         sriov: SRIOVService? = nil) {
        self.sriov = sriov
        self.forwarderName = forwarderName
        self.logger = logger
        self.runtimeDir = runtimeDir
        self.node = node
    }

    /// This node's tunnel end for an address family (4 or 16 bytes): the uplink that has an
    /// underlay address of that family (NSM_TUNNEL_IP overrides it when the file is loaded).
    struct TunnelEnd {
        var uplink: String
        var address: [UInt8]
        var mtu: Int
        var port: Int
    }

    func tunnelEnd(family bytes: Int) -> TunnelEnd? {
        let c = node()
        for itf in c.interfaces where itf.type.isPort {
            guard let u = itf.underlay, let a = bytes == 4 ? u.ipv4 : u.ipv6,
                  let p = IPAddress.parseCIDR(a), p.address.count == bytes else { continue }
            return TunnelEnd(uplink: itf.name, address: p.address, mtu: u.mtu, port: c.vxlanPort)
        }
        return nil
    }

    /// The tunnel Weft offers to a remote next hop (IPv4 when it has one).
    var offeredTunnel: MechanismPolicy.Tunnel? {
        guard let t = tunnelEnd(family: 4) ?? tunnelEnd(family: 16) else { return nil }
        return MechanismPolicy.Tunnel(ip: CIDR.text(t.address), port: t.port)
    }

    /// VNIs in use towards a peer address.
    func vnisInUse(remote: [UInt8]) -> Set<Int> {
        Set(node().interfaces.filter { $0.type == .vxlan && $0.remote.flatMap(IPAddress.parse) == remote }.compactMap(\.vni))
    }

    static func overhead(_ family: Int) -> Int { family == 4 ? 54 : 74 }

    func param(_ m: Connection_Mechanism, _ k: String, _ side: Side) -> String { "\(side == .server ? "mechanism" : "the next hop's mechanism").parameters.\(k)" }

    func address(_ m: Connection_Mechanism, _ k: String, _ side: Side) throws -> [UInt8] {
        guard let v = m.parameters[k], !v.isEmpty else {
            throw NSMError(.invalidArgument, "mechanism", "\(param(m, k, side)) is missing")
        }
        guard let a = IPAddress.parse(v) else {
            throw NSMError(.invalidArgument, "mechanism", "\(param(m, k, side)) '\(v)' is not an IP address")
        }
        return a
    }

    func port(_ m: Connection_Mechanism, _ k: String, _ side: Side) throws -> Int {
        guard let v = m.parameters[k], !v.isEmpty else { return 4789 }
        guard let p = Int(v), (1...65535).contains(p) else {
            throw NSMError(.invalidArgument, "mechanism", "\(param(m, k, side)) '\(v)' is not a UDP port")
        }
        return p
    }

    /// Prepare one side for `mech` (KERNEL: create the veth pair into the pod namespace;
    /// MEMIF: pick the socket). Returns the side and the mechanism with the parameters
    /// Weft sets.
    func prepare(_ mech: Connection_Mechanism, side: Side, connectionID: String, firstSegmentID: String, mtu: UInt32,
                 viaLabel: String? = nil, undo: inout [() -> Void]) throws -> (RealizedSide, Connection_Mechanism) {
        var m = mech
        let ifName = Names.interface(connectionID, side)
        switch mech.type {
        case Mech.kernel:
            let ns = try NetnsResolver.resolve(mech.parameters[Mech.inodeURL])
            let podName = mech.parameters[Mech.name] ?? MechanismPolicy.defaultIfName(service: "nsm", id: connectionID)
            try MechanismPolicy.checkIfName(podName, "mechanism.parameters.name")
            if let token = mech.parameters["tokenID"], !token.isEmpty {
                guard let sriov else {
                    throw NSMError(.invalidArgument, "mechanism", "mechanism.parameters.tokenID is set but this forwarder has no SR-IOV configuration (NSM_SRIOV_CONFIG_FILE)")
                }
                return try prepareVF(m, sriov: sriov, token: token, ns: ns, podName: podName, side: side, connectionID: connectionID,
                                     firstSegmentID: firstSegmentID, mtu: mtu, undo: &undo)
            }
            let host = Names.hostVeth(connectionID, side)
            let pod = try step("netlink in pod namespace \(ns)") { try Netlink(netns: ns) }
            let root = try step("netlink") { try Netlink(netns: nil) }
            // An earlier link with the deterministic alias is removed first (NSM does the same).
            let podAlias = Names.podAlias(firstSegmentID, side)
            _ = try? pod.deleteLinks(alias: podAlias)
            if let stale = try? root.index(of: host) { try? root.delete(stale) }
            if let clash = try? pod.index(of: podName) {
                let l = try? pod.link(clash)
                throw NSMError(.alreadyExists, "kernel interface", "an interface named '\(podName)' already exists in \(ns) (alias '\(l?.alias ?? "")')")
            }
            try step("create veth \(host) <-> \(podName) in \(ns)") {
                // The pod's MAC follows from the connection: a rebuilt interface (heal,
                // restart) keeps it, so the pods' neighbour caches stay right.
                try root.addVeth(name: host, peer: podName, peerNetns: ns, mtu: mtu, peerMAC: Names.podMAC(podAlias))
            }
            undo.append { [logger] in
                if let i = try? root.index(of: host) {
                    do { try root.delete(i) } catch { logger.warning("undo: cannot delete \(host): \(error)") }
                }
            }
            guard let hi = try root.index(of: host), let pi = try pod.index(of: podName) else {
                throw NSMError(.internalError, "kernel interface", "veth \(host)/\(podName) vanished after creation")
            }
            // The pod's stack must hand over complete frames: with TX checksum offload on,
            // a veth passes partial checksums (and, with it, TSO super-frames) to whatever
            // reads its peer. NSM's own kernel forwarders turn it off on both ends too.
            _ = try step("turn off TX checksum offload on \(podName) in \(ns)") { try pod.setTxChecksum(podName, false) }
            _ = try step("turn off TX checksum offload on \(host)") { try root.setTxChecksum(host, false) }
            try step("configure \(host)") { try root.set(hi, alias: Names.hostAlias(forwarderName, connectionID, side), up: true) }
            try step("configure \(podName) in \(ns)") { try pod.set(pi, alias: podAlias, up: true) }
            let mac = (try? pod.link(pi).mac) ?? []
            var itf = InterfaceConfig(name: ifName, type: .kernel, iface: host)
            if mtu > 0 { itf.mtu = Int(mtu) }
            m.parameters[Mech.name] = podName
            return (RealizedSide(side: side, type: Mech.kernel, interface: itf, netns: ns, hostVeth: host, podIfName: podName, podMAC: mac), m)

        case Mech.memif:
            // NSM v1.2+: an abstract socket inside the pod's namespace; v1.1 (no
            // namespace given): a socket file of Weft's, named by inodeURL. A heal of a
            // v1.1 connection carries Weft's earlier answer, whose inodeURL is that
            // socket file (gone after a restart), not a namespace: it was refused (found
            // by NSMChaosSystemTests, seed 1). A URL that is a namespace still means v1.2.
            let ownSocket = dirOwnSocket(mech, connectionID: connectionID)
            if !ownSocket, let url = mech.parameters[Mech.inodeURL], !url.isEmpty {
                let ns = try NetnsResolver.resolve(url)
                let name = Names.memifAbstract(connectionID)
                let itf = InterfaceConfig(name: ifName, type: .memif, role: .server, socket: name, abstract: true, netns: ns)
                m.parameters[Mech.socketfile] = "@" + name
                return (RealizedSide(side: side, type: Mech.memif, interface: itf, netns: ns, socketfile: "@" + name), m)
            }
            let dir = runtimeDir + "/memif/" + Names.hash(connectionID)
            let path = dir + "/memif.socket"
            try step("create \(dir)") {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            }
            undo.append { try? FileManager.default.removeItem(atPath: dir) }
            let itf = InterfaceConfig(name: ifName, type: .memif, role: .server, socket: path)
            m.parameters[Mech.socketfile] = path
            m.parameters[Mech.inodeURL] = "file://" + path
            return (RealizedSide(side: side, type: Mech.memif, interface: itf, netns: nil, socketfile: path), m)

        case Mech.vfio where side == .server:
            // NSM's VFIO (sdk-sriov's vfio server): the token's VF and its IOMMU group on
            // vfio-pci, the pod's containers allowed the container and group devices, the
            // numbers answered for the pod to mknod; Weft's side is the VF's representor.
            guard let sriov else {
                throw NSMError(.invalidArgument, "mechanism", "VFIO needs SR-IOV on this node (NSM_SRIOV_CONFIG_FILE)")
            }
            guard let token = mech.parameters[Mech.tokenID], !token.isEmpty else {
                throw NSMError(.invalidArgument, "mechanism", "mechanism.parameters.tokenID is missing: VFIO needs an SR-IOV token")
            }
            guard let cg = mech.parameters[Mech.cgroupDir], !cg.isEmpty else {
                throw NSMError(.invalidArgument, "mechanism", "mechanism.parameters.cgroupDir is missing: the client's device cgroup is needed")
            }
            let a = try sriov.acquireVFIO(token: token)
            undo.append { sriov.release(a.vf.address) }
            guard let rep = a.representor else {
                throw NSMError(.failedPrecondition, "sr-iov", "VF \(a.vf.address) (VF \(a.vf.number) of \(a.vf.pf)) has no representor: its PF is not in switchdev mode, and Weft cross-connects a VF through its representor")
            }
            let grant = try sriov.allow(cgroupDir: cg, devices: [a.container, a.device])
            undo.append { sriov.revoke(grant) }
            let root = try step("netlink") { try Netlink(netns: nil) }
            guard let ri = try root.index(of: rep) else {
                throw NSMError(.failedPrecondition, "sr-iov", "representor \(rep) of VF \(a.vf.address) is not in weftd's namespace")
            }
            try step("set representor \(rep) up") { try root.set(ri, mtu: mtu, up: true) }
            var itf = InterfaceConfig(name: ifName, type: .kernel, iface: rep)
            if mtu > 0 { itf.mtu = Int(mtu) }
            m.parameters[Mech.pciAddress] = a.vf.address
            m.parameters[Mech.iommuGroup] = String(a.group)
            m.parameters[Mech.vfioMajor] = String(a.container[0])
            m.parameters[Mech.vfioMinor] = String(a.container[1])
            m.parameters[Mech.deviceMajor] = String(a.device[0])
            m.parameters[Mech.deviceMinor] = String(a.device[1])
            return (RealizedSide(side: side, type: Mech.vfio, interface: itf, vf: a.vf.address, cgroupGrant: grant), m)

        case Mech.vxlan where side == .server:
            // Another forwarder's client side offered src_ip/src_port; Weft answers with
            // dst_ip/dst_port, the VNI (NSM's parity rule) and the tunnel MTU.
            let src = try address(mech, Mech.srcIP, side)
            let srcPort = try port(mech, Mech.srcPort, side)
            guard let me = tunnelEnd(family: src.count) else {
                throw NSMError(.invalidArgument, "mechanism", "mechanism.parameters.src_ip \(CIDR.text(src)) is IPv\(src.count == 4 ? 4 : 6) but this node has no IPv\(src.count == 4 ? 4 : 6) tunnel address")
            }
            let inUse = vnisInUse(remote: src)
            var vni: Int
            if let v = mech.parameters[Mech.vni], !v.isEmpty {
                guard let n = Int(v), (1..<(1 << 24)).contains(n) else {
                    throw NSMError(.invalidArgument, "mechanism", "mechanism.parameters.vni '\(v)' is not a 24-bit VNI")
                }
                if inUse.contains(n) {
                    throw NSMError(.alreadyExists, "mechanism", "mechanism.parameters.vni \(n) is already in use towards \(CIDR.text(src))")
                }
                vni = n
            } else {
                let a = mech.parameters[Mech.origSrcIP].flatMap(IPAddress.parse) ?? src
                let b = mech.parameters[Mech.origDstIP].flatMap(IPAddress.parse) ?? me.address
                guard let n = MechanismPolicy.allocateVNI(src: a, dst: b, inUse: inUse) else {
                    throw NSMError(.unavailable, "mechanism", "no free VNI towards \(CIDR.text(src))")
                }
                vni = n
            }
            m.parameters[Mech.dstIP] = CIDR.text(me.address)
            m.parameters[Mech.dstPort] = String(me.port)
            m.parameters[Mech.vni] = String(vni)
            let tmtu = me.mtu - Plumbing.overhead(src.count)
            m.parameters[Mech.mtu] = String(tmtu)
            let itf = InterfaceConfig(name: ifName, type: .vxlan, uplink: me.uplink, vni: vni, remote: CIDR.text(src), port: srcPort)
            return (RealizedSide(side: side, type: Mech.vxlan, interface: itf, tunnelMTU: tmtu), m)

        case Mech.vxlan:
            // The next hop (another forwarder) answered with dst_ip/dst_port and the VNI.
            let dst = try address(mech, Mech.dstIP, side)
            let dstPort = try port(mech, Mech.dstPort, side)
            guard let me = tunnelEnd(family: dst.count) else {
                throw NSMError(.failedPrecondition, "mechanism", "\(param(mech, Mech.dstIP, side)) \(CIDR.text(dst)) is of a family this node has no tunnel address for")
            }
            guard let v = mech.parameters[Mech.vni], let vni = Int(v), (1..<(1 << 24)).contains(vni) else {
                throw NSMError(.failedPrecondition, "mechanism", "\(param(mech, Mech.vni, side)) '\(mech.parameters[Mech.vni] ?? "")' is not a 24-bit VNI")
            }
            if vnisInUse(remote: dst).contains(vni) {
                throw NSMError(.alreadyExists, "mechanism", "VNI \(vni) towards \(CIDR.text(dst)) is already in use here")
            }
            let itf = InterfaceConfig(name: ifName, type: .vxlan, uplink: me.uplink, vni: vni, remote: CIDR.text(dst), port: dstPort)
            return (RealizedSide(side: side, type: Mech.vxlan, interface: itf, tunnelMTU: me.mtu - Plumbing.overhead(dst.count)), m)

        case Mech.vlan where side == .client:
            // A remote-VLAN endpoint answered with vlan-id and the connection label `via`;
            // `via` picks the uplink through the device selector; no `via`: the tunnel uplink.
            guard let v = mech.parameters[Mech.vlanID], let id = Int(v), (0...4094).contains(id) else {
                throw NSMError(.failedPrecondition, "mechanism", "\(param(mech, Mech.vlanID, side)) '\(mech.parameters[Mech.vlanID] ?? "")' is not a VLAN id 0..4094")
            }
            var itf = InterfaceConfig(name: ifName, type: .vlan, vlanID: id)
            if let via = viaLabel, !via.isEmpty {
                let c = node()
                guard let file = c.deviceSelectorFile else {
                    throw NSMError(.invalidArgument, "mechanism", "connection.labels.via '\(via)' needs a device selector (NSM_DEVICE_SELECTOR_FILE / device_selector_file)")
                }
                let sel = (try? Realizer.deviceSelector(path: file)) ?? [:]
                guard let nic = sel[via], c.interfaces.contains(where: { $0.type.isPort && ($0.iface == nic || $0.name == nic) }) else {
                    throw NSMError(.invalidArgument, "mechanism", "connection.labels.via '\(via)' matches no uplink of this node (device selector \(file))")
                }
                itf.via = via
            } else {
                guard let up = tunnelEnd(family: 4) ?? tunnelEnd(family: 16) else {
                    throw NSMError(.failedPrecondition, "mechanism", "VLAN without a `via` label needs an uplink with an underlay address")
                }
                itf.uplink = up.uplink
            }
            return (RealizedSide(side: side, type: Mech.vlan, interface: itf), m)

        default:
            throw NSMError(.invalidArgument, "mechanism", "mechanism type '\(mech.type)' (\(mech.cls)) is not served on the \(side.word) side; Weft serves \(MechanismPolicy.servedText) towards callers, and LOCAL KERNEL/MEMIF or REMOTE VXLAN/VLAN towards next hops")
        }
    }

    /// KERNEL with a tokenID: the token's VF goes into the pod (moved, renamed, up, as
    /// NSM's inject does) and its representor is Weft's side of the connection. A VF
    /// without a representor (its PF not in switchdev mode) would be switched by the NIC
    /// alone, past Weft: refused. A refresh or heal finds the VF in the pod already.
    func prepareVF(_ mech: Connection_Mechanism, sriov: SRIOVService, token: String, ns: String, podName: String, side: Side,
                   connectionID: String, firstSegmentID: String, mtu: UInt32,
                   undo: inout [() -> Void]) throws -> (RealizedSide, Connection_Mechanism) {
        var m = mech
        let a = try sriov.acquireKernelOrHeld(token: token, podNetns: ns, podName: podName)
        undo.append { sriov.release(a.vf.address) }
        guard let rep = a.representor else {
            throw NSMError(.failedPrecondition, "sr-iov", "VF \(a.vf.address) (VF \(a.vf.number) of \(a.vf.pf)) has no representor: its PF is not in switchdev mode, and Weft cross-connects a VF through its representor")
        }
        let pod = try step("netlink in pod namespace \(ns)") { try Netlink(netns: ns) }
        let root = try step("netlink") { try Netlink(netns: nil) }
        let podAlias = Names.podAlias(firstSegmentID, side)
        if !a.inPod {
            if let clash = try? pod.index(of: podName) {
                let l = try? pod.link(clash)
                throw NSMError(.alreadyExists, "kernel interface", "an interface named '\(podName)' already exists in \(ns) (alias '\(l?.alias ?? "")')")
            }
            guard let vi = try root.index(of: a.netdev) else {
                throw NSMError(.failedPrecondition, "sr-iov", "VF \(a.vf.address)'s interface \(a.netdev) is not in weftd's namespace")
            }
            try step("set \(a.netdev) down") { try root.set(vi, up: false) }
            try step("move VF \(a.vf.address) (\(a.netdev)) into \(ns)") { try root.move(vi, toNetns: ns) }
            undo.append { [logger] in Plumbing.returnVF(podNetns: ns, names: [podName, a.netdev], to: a.netdev, logger: logger) }
            guard let pi = try pod.index(of: a.netdev) else {
                throw NSMError(.internalError, "sr-iov", "\(a.netdev) vanished while moving into \(ns)")
            }
            try step("rename \(a.netdev) to \(podName) in \(ns)") { try pod.rename(pi, to: podName) }
        }
        guard let pi = try pod.index(of: podName) else {
            throw NSMError(.internalError, "sr-iov", "VF interface \(podName) is not in \(ns)")
        }
        try step("configure \(podName) in \(ns)") { try pod.set(pi, alias: podAlias, mtu: mtu, up: true) }
        guard let ri = try root.index(of: rep) else {
            throw NSMError(.failedPrecondition, "sr-iov", "representor \(rep) of VF \(a.vf.address) is not in weftd's namespace")
        }
        try step("set representor \(rep) up") { try root.set(ri, mtu: mtu, up: true) }
        let mac = (try? pod.link(pi).mac) ?? []
        var itf = InterfaceConfig(name: Names.interface(connectionID, side), type: .kernel, iface: rep)
        if mtu > 0 { itf.mtu = Int(mtu) }
        m.parameters[Mech.name] = podName
        m.parameters["pciAddress"] = a.vf.address
        return (RealizedSide(side: side, type: Mech.kernel, interface: itf, netns: ns, podIfName: podName, podMAC: mac,
                             vf: a.vf.address, vfNetdev: a.netdev), m)
    }

    /// The VF back in weftd's namespace under its own name (down first, as NSM does).
    /// A pod namespace that is gone gave the VF back to the host's namespace by itself.
    static func returnVF(podNetns ns: String, names: [String], to name: String, logger: Logger) {
        guard let pod = try? Netlink(netns: ns) else { return }
        guard let i = names.lazy.compactMap({ try? pod.index(of: $0) }).first else { return }
        do {
            try pod.set(i, alias: "", up: false)
            if (try? pod.link(i).name) != name { try pod.rename(i, to: name) }
            try pod.move(i, toNetns: "/proc/\(getpid())/ns/net")
        } catch { logger.warning("cannot give VF interface \(names[0]) in \(ns) back to weftd's namespace: \(error)") }
    }

    /// A v1.1 memif's refresh or heal: `socketfile` is Weft's path for this connection and
    /// inodeURL is not a namespace that resolves (it is the socket file, maybe gone).
    func dirOwnSocket(_ mech: Connection_Mechanism, connectionID: String) -> Bool {
        let path = runtimeDir + "/memif/" + Names.hash(connectionID) + "/memif.socket"
        guard Mech.isMemifSocketFile(mech), mech.parameters[Mech.socketfile] == path else { return false }
        guard let url = mech.parameters[Mech.inodeURL], !url.isEmpty else { return true }
        if Mech.namesSocketFile(url, path: path) { return true }
        return url.hasPrefix("inode://") && (try? NetnsResolver.resolve(url)) == nil
    }

    /// Remove what `prepare` built (veth pair: deleting the host end removes both).
    func remove(_ s: RealizedSide) {
        if let g = s.cgroupGrant { sriov?.revoke(g) }
        if let vf = s.vf {
            if let ns = s.netns, let pod = s.podIfName, let own = s.vfNetdev {
                Plumbing.returnVF(podNetns: ns, names: [pod, own], to: own, logger: logger)
            }
            sriov?.release(vf)
        }
        if let host = s.hostVeth, let root = try? Netlink(netns: nil), let i = try? root.index(of: host) {
            do { try root.delete(i) } catch { logger.warning("cannot delete \(host): \(error)") }
        }
        if s.type == Mech.memif, s.netns == nil, let p = s.socketfile {
            try? FileManager.default.removeItem(atPath: (p as NSString).deletingLastPathComponent)
        }
    }

    /// Apply the IP context inside the pod's namespace, as NSM's kernel forwarders do
    /// (sdk-kernel's ipaddress, routes, iprule, ipneighbor, pinggrouprange):
    /// the NSC side (server) gets src_ip_addrs and src_routes, the NSE side (client)
    /// dst_ip_addrs and dst_routes; routes to the peer's addresses with the peer's
    /// prefix, on the link; routes' next hops (the peer's first address of the family
    /// when none is given) on the link (RTNH_F_ONLINK); each policy route a table of
    /// its own and a rule (from, proto, ports) that looks it up; neighbours from
    /// ip_neighbors plus the peer's address -> the peer's MAC; MTU from the context;
    /// ping_group_range opened so unprivileged ping works. `previous`: the context
    /// applied before (a refresh): what it had and `ctx` has not is removed.
    func applyContext(_ ctx: Connectioncontext_ConnectionContext, on s: RealizedSide, peer: RealizedSide?,
                      previous: Connectioncontext_ConnectionContext? = nil) throws {
        guard s.type == Mech.kernel, let ns = s.netns, let name = s.podIfName else { return }
        let nl = try step("netlink in \(ns)") { try Netlink(netns: ns) }
        guard let idx = try nl.index(of: name) else {
            throw NSMError(.internalError, "ip context", "interface \(name) is gone from \(ns)")
        }
        let want = try KernelContext(ctx, side: s.side, key: s.interface.name)
        // Below 1,280 bytes the kernel takes IPv6 off the link (RFC 8200's minimum), and
        // an IPv6 address or route then fails with ENODEV (found by fuzz_requests.py, seed
        // 20261129: INTERNAL).
        if ctx.mtu > 0, ctx.mtu < 1280,
           want.addresses.contains(where: { $0.family == AF_INET6 }) || want.routes.contains(where: { $0.dst.family == AF_INET6 }) {
            throw NSMError(.invalidArgument, "ip context", "IPv6 addresses and routes need an MTU of at least 1280; context.MTU is \(ctx.mtu)")
        }
        if let previous, let had = try? KernelContext(previous, side: s.side, key: s.interface.name) {
            for a in had.addresses where !want.addresses.contains(a) {
                try? nl.deleteAddress(idx, a)
            }
            for r in had.routes where !want.routes.contains(r) {
                try? nl.route(add: false, idx, r.dst, via: r.via, table: r.table, onLink: r.onLink)
            }
            for r in had.rules where !want.rules.contains(r) { try? nl.rule(add: false, r) }
        }
        if ctx.mtu > 0 { try contextStep("set MTU \(ctx.mtu) on \(name)") { try nl.set(idx, mtu: ctx.mtu) } }
        try? NetNS.sysctl(ns, "net/ipv6/conf/\(name)/disable_ipv6", "0")
        try? NetNS.sysctl(ns, "net/ipv4/ping_group_range", "0 2147483647")
        for a in want.addresses {
            try contextStep("add address \(a) to \(name) in \(ns)") { try nl.addAddress(idx, a) }
        }
        for r in want.routes {
            try contextStep("add route \(r.dst)\(r.via.map { " via " + CIDR.text($0) } ?? "") table \(r.table) on \(name)") {
                try nl.route(add: true, idx, r.dst, via: r.via, table: r.table, onLink: r.onLink)
            }
        }
        for r in want.rules where !(previous.flatMap { try? KernelContext($0, side: s.side, key: s.interface.name) }?.rules.contains(r) ?? false) {
            try contextStep("add rule\(r.from.map { " from \($0)" } ?? "") lookup \(r.table) in \(ns)") { try nl.rule(add: true, r) }
        }
        for n in want.neighbours {
            try contextStep("add neighbour \(CIDR.text(n.0)) on \(name)") { try nl.addNeighbour(idx, ip: n.0, mac: n.1) }
        }
        if let peer, peer.podMAC.count == 6 {
            for c in want.peers {
                try contextStep("add neighbour \(CIDR.text(c.address)) -> peer MAC on \(name)") { try nl.addNeighbour(idx, ip: c.address, mac: peer.podMAC) }
            }
        }
    }

    /// What only Close has to undo of a context: the policy rules (addresses and
    /// routes go with the interface).
    func removeContext(_ ctx: Connectioncontext_ConnectionContext, on s: RealizedSide) {
        guard s.type == Mech.kernel, let ns = s.netns,
              let k = try? KernelContext(ctx, side: s.side, key: s.interface.name), !k.rules.isEmpty,
              let nl = try? Netlink(netns: ns) else { return }
        for r in k.rules {
            do { try nl.rule(add: false, r) } catch { logger.debug("removing \(r) in \(ns): \(error)") }
        }
    }

    func step<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as NSMError { throw e } catch {
            throw NSMError(.internalError, what, "\(error)")
        }
    }

    /// A step of an IP context, which comes from the caller (through the next hop's
    /// answer): what the kernel refuses of it is the caller's error, not Weft's. Whether
    /// it takes a gateway, an address or a rule depends on the kernel and the namespace
    /// (found by fuzz_requests.py: a route via "::" ended as INTERNAL).
    func contextStep<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as NSMError { throw e } catch let e as KernelError {
            switch e.errno {
            case EINVAL, ERANGE, EAFNOSUPPORT, EADDRNOTAVAIL, ENETUNREACH, EHOSTUNREACH, EOPNOTSUPP:
                throw NSMError(.invalidArgument, "ip context", "\(what): \(e)")
            case EEXIST:
                throw NSMError(.alreadyExists, "ip context", "\(what): \(e)")
            default:
                throw NSMError(.internalError, what, "\(e)")
            }
        } catch {
            throw NSMError(.internalError, what, "\(error)")
        }
    }

    /// Remove the v1.1 memif socket directories (runtime_dir/memif/<16 hex>) a crashed
    /// weftd left behind. Only the veths were removed before: a connection that was not
    /// healed after the crash kept its socket file for good (found by NSMChaosSystemTests).
    static func removeStaleMemifSockets(runtimeDir: String, logger: Logger) -> Int {
        let base = runtimeDir + "/memif"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: base) else { return 0 }
        var n = 0
        for d in names where d.count == 16 && d.allSatisfy(\.isHexDigit) {
            do {
                try FileManager.default.removeItem(atPath: base + "/" + d)
                n += 1
                logger.notice("removed stale NSM memif socket \(base)/\(d)/memif.socket")
            } catch { logger.warning("cannot remove stale \(base)/\(d): \(error)") }
        }
        return n
    }

    /// Remove veths a crashed weftd left behind (their host ends carry Weft's alias).
    static func removeStale(forwarder: String, logger: Logger) -> Int {
        guard let root = try? Netlink(netns: nil), let links = try? root.links() else { return 0 }
        var n = 0
        for l in links where l.alias.hasPrefix(Names.hostAliasPrefix(forwarder)) {
            do {
                try root.delete(l.index)
                n += 1
                logger.notice("removed stale NSM interface \(l.name) (\(l.alias))")
            } catch { logger.warning("cannot remove stale \(l.name): \(error)") }
        }
        return n
    }
}

func parseMAC(_ s: String) -> [UInt8]? {
    let p = s.split(separator: ":")
    guard p.count == 6 else { return nil }
    let b = p.compactMap { UInt8($0, radix: 16) }
    return b.count == 6 ? b : nil
}


/// One side's part of an IP context, as kernel objects: what `applyContext` adds and
/// what a refresh compares. Every malformed field is an INVALID_ARGUMENT naming it.
struct KernelContext {
    struct Route: Equatable {
        var dst: CIDR
        var via: [UInt8]?
        var table: UInt32
        var onLink: Bool
    }
    var addresses: [CIDR] = []
    var peers: [CIDR] = []
    var routes: [Route] = []
    var rules: [Netlink.Rule] = []
    var neighbours: [([UInt8], [UInt8])] = []

    /// `key`: what makes this side's policy tables its own (its interface's name).
    init(_ ctx: Connectioncontext_ConnectionContext, side: Side, key: String) throws {
        let ip = ctx.ipContext
        let server = side == .server
        let field = server ? "src" : "dst", peerField = server ? "dst" : "src"
        for a in server ? ip.srcIpAddrs : ip.dstIpAddrs {
            guard let c = CIDR(a) else { throw NSMError(.invalidArgument, "ip context", "context.ip_context.\(field)_ip_addrs '\(a)' is not an address/prefix") }
            addresses.append(c)
        }
        for a in server ? ip.dstIpAddrs : ip.srcIpAddrs {
            guard let c = CIDR(a) else { throw NSMError(.invalidArgument, "ip context", "context.ip_context.\(peerField)_ip_addrs '\(a)' is not an address/prefix") }
            peers.append(c)
            // The route to the peer with the peer's prefix, on the link (sdk-kernel's routes).
            routes.append(Route(dst: c.network, via: nil, table: Netlink.mainTable, onLink: false))
        }
        func nextHop(_ r: Connectioncontext_Route, dst: CIDR, what: String, peerDefault: Bool) throws -> [UInt8]? {
            if !r.nextHop.isEmpty {
                guard let g = IPAddress.parse(r.nextHop), g.count == dst.address.count else {
                    throw NSMError(.invalidArgument, "ip context", "\(what) nextHop '\(r.nextHop)' is not an address of the prefix's family")
                }
                return g
            }
            return peerDefault ? peers.first(where: { $0.address.count == dst.address.count })?.address : nil
        }
        /// Routes of src/dst_routes go via the peer when they name no next hop; policy
        /// routes without one are on the link (as sdk-kernel's iprule).
        func route(_ r: Connectioncontext_Route, table: UInt32, what: String, peerDefault: Bool = true) throws -> Route {
            guard let c = CIDR(r.prefix) else { throw NSMError(.invalidArgument, "ip context", "\(what) prefix '\(r.prefix)' is not a prefix") }
            let dst = c.network
            let gw = try nextHop(r, dst: dst, what: what, peerDefault: peerDefault)
            if gw == nil || dst.address == gw! && dst.prefix == UInt8(dst.address.count * 8) {
                return Route(dst: dst, via: nil, table: table, onLink: false)
            }
            return Route(dst: dst, via: gw, table: table, onLink: true)
        }
        for r in server ? ip.srcRoutes : ip.dstRoutes {
            routes.append(try route(r, table: Netlink.mainTable, what: "context.ip_context.\(field)_routes"))
        }
        // Policy routes (sdk-kernel's iprule), in the caller's pod.
        if server {
            for (i, p) in ip.policies.enumerated() {
                let what = "context.ip_context.policies[\(i)]"
                var from: CIDR? = nil
                if !p.from.isEmpty {
                    guard let c = CIDR(p.from) else { throw NSMError(.invalidArgument, "ip context", "\(what).from '\(p.from)' is not a prefix") }
                    from = c.network
                }
                var proto: UInt8 = 0
                if !p.proto.isEmpty {
                    guard let v = UInt8(p.proto) else { throw NSMError(.invalidArgument, "ip context", "\(what).proto '\(p.proto)' is not an IP protocol number") }
                    proto = v
                }
                func ports(_ s: String, _ name: String) throws -> ClosedRange<UInt16>? {
                    if s.isEmpty { return nil }
                    let parts = s.split(separator: "-", omittingEmptySubsequences: false)
                    guard parts.count <= 2, let lo = UInt16(parts[0]), let hi = UInt16(parts.last!), lo >= 1, lo <= hi else {
                        throw NSMError(.invalidArgument, "ip context", "\(what).\(name) '\(s)' is not a port or a range such as 8000-8080")
                    }
                    return lo...hi
                }
                let sport = try ports(p.srcPort, "src_port"), dport = try ports(p.dstPort, "dst_port")
                var family = from?.family
                if family == nil, let first = p.routes.first, let c = CIDR(first.prefix) { family = c.family }
                let fam = family ?? AF_INET
                let table = KernelContext.table(key: key, policy: "\(p.from);\(p.proto);\(p.srcPort);\(p.dstPort)")
                var prs = p.routes
                if prs.isEmpty {
                    var d = Connectioncontext_Route()
                    d.prefix = fam == AF_INET ? "0.0.0.0/0" : "::/0"
                    prs = [d]
                }
                for r in prs {
                    let kr = try route(r, table: table, what: "\(what).routes", peerDefault: false)
                    guard kr.dst.family == fam else {
                        throw NSMError(.invalidArgument, "ip context", "\(what): route \(r.prefix) is not of the rule's family")
                    }
                    routes.append(kr)
                }
                rules.append(Netlink.Rule(family: fam, from: from, proto: proto, sport: sport, dport: dport, table: table))
            }
        }
        for n in ip.ipNeighbors {
            guard let a = IPAddress.parse(n.ip), let mac = parseMAC(n.hardwareAddress) else {
                throw NSMError(.invalidArgument, "ip context", "context.ip_context.ip_neighbors entry \(n.ip) \(n.hardwareAddress) is not an address and a MAC")
            }
            neighbours.append((a, mac))
        }
    }

    /// A policy's routing table: stable for the same side and policy, in 1,000 ..<
    /// 2^31 (clear of the kernel's own and the usual hand-made tables).
    static func table(key: String, policy: String) -> UInt32 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in (key + "|" + policy).utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return 1000 + UInt32(h % UInt64(Int32.max - 1000))
    }
}
