import Foundation

/// What the node runs, indexed for the checks one change needs: names,
/// claims (netdevs, memif sockets, PCI devices), uplinks and the tunnels on
/// them, which connection uses which interface. The APIs' changes (NSM,
/// weftctl) are validated against it, so a change costs O(changed), not a
/// re-validation of every object on the node; the rules and messages are
/// `Validator`'s, and a test holds the two to the same verdicts.
public struct NodeIndex: Sendable {
    public private(set) var interfaces: [String: InterfaceConfig] = [:]
    /// Cross-connect, replication-group and bridge-domain names.
    public private(set) var connections = Set<String>()
    /// Interface -> the connection that uses it.
    public private(set) var usedBy: [String: String] = [:]
    private var claims: [String: String] = [:]   // claim -> interface
    private var vlanUse: [String: String] = [:]  // "uplink/id" -> interface
    private var vxKeys: [String: String] = [:]   // "uplink|port|vni|remote" -> interface
    private var vxKeyOf: [String: String] = [:]  // interface -> its key
    private var membersOf: [String: [String]] = [:] // connection -> its interfaces
    private var tunnelsOn: [String: Int] = [:]   // uplink -> vlan/vxlan interfaces naming it
    /// VXLAN tunnels by remote address: how many use each VNI (NSM picks free ones).
    private var vniCount: [[UInt8]: [Int: Int]] = [:]

    /// The VNIs in use toward a remote.
    public func vnisInUse(remote: [UInt8]) -> Set<Int> { vniCount[remote].map { Set($0.keys) } ?? [] }

    public init() {}

    /// The index of a whole (validated) configuration.
    public init(_ c: WeftConfig) {
        for i in c.interfaces { add(i, vxlanPort: c.vxlanPort) }
        for x in c.crossConnects { add(x) }
        for g in c.replicationGroups { addConnection(g.name, members: [g.ingress] + g.members) }
        for d in c.bridgeDomains { addConnection(d.name, members: d.members.map(\.interface)) }
    }

    public func isUplink(_ name: String) -> Bool {
        interfaces[name]?.underlay != nil || (tunnelsOn[name] ?? 0) > 0
    }

    // MARK: checks

    /// The problems of one change: `removing` (connections and interfaces)
    /// goes first, then the additions. Nothing is changed here.
    public func check(adding added: [InterfaceConfig], crossConnects xcs: [CrossConnectConfig], removing names: Set<String>,
                      node c: WeftConfig) -> [ValidationIssue] {
        var out: [ValidationIssue] = []
        func issue(_ p: [PathElement], _ m: String) { out.append(ValidationIssue(path: p, message: m)) }

        // Removals: what goes must not leave a connection or a tunnel behind.
        let goingIfs = names.filter { interfaces[$0] != nil }
        for n in goingIfs.sorted() {
            if let conn = usedBy[n], !names.contains(conn) {
                issue([.key("interfaces"), .key(n)], "interface '\(n)' is used by '\(conn)'; remove that first")
            }
            if (tunnelsOn[n] ?? 0) > 0 {
                let riders = interfaces.values.filter { ($0.type == .vlan || $0.type == .vxlan) && $0.uplink == n && !names.contains($0.name) }
                if !riders.isEmpty {
                    issue([.key("interfaces"), .key(n)], "interface '\(n)' carries \(riders.map { "'\($0.name)'" }.sorted().joined(separator: ", ")); remove them first")
                }
            }
        }
        func present(_ n: String) -> InterfaceConfig? {
            if let i = added.first(where: { $0.name == n }) { return i }
            return names.contains(n) ? nil : interfaces[n]
        }

        // Interfaces.
        var newClaims: [String: String] = [:], newVLAN: [String: String] = [:], newVX: [String: String] = [:]
        var addedUplinks = Set<String>()
        for (i, itf) in added.enumerated() {
            let p: [PathElement] = [.key("interfaces"), .index(i)]
            if !isSimpleName(itf.name, max: 32, allowDot: true) {
                issue(p + [.key("name")], "'\(itf.name)' must be 1-32 characters of A-Z a-z 0-9 _ - .")
            } else if added[..<i].contains(where: { $0.name == itf.name }) || (interfaces[itf.name] != nil && !names.contains(itf.name)) {
                issue(p + [.key("name")], "interface '\(itf.name)' already exists")
            }
            for m in Validator.validate(interface: itf) { issue(p + m.path, m.message) }
            if let claim = Validator.claimKey(itf) {
                if let owner = newClaims[claim] ?? claims[claim].flatMap({ names.contains($0) ? nil : $0 }) {
                    issue(p, "uses the same \(claim) as interface '\(owner)'")
                } else { newClaims[claim] = itf.name }
            }
            if itf.underlay != nil { addedUplinks.insert(itf.name) }
            switch itf.type {
            case .vlan:
                if itf.via != nil && c.deviceSelectorFile == nil {
                    issue(p + [.key("via")], "needs device_selector_file to map the label to an uplink")
                }
                guard let up = itf.uplink else { break }
                addedUplinks.insert(up)
                if let u = present(up) {
                    if !u.type.isPort { issue(p + [.key("uplink")], "'\(up)' is a \(u.type.rawValue) interface; an uplink must be a port") }
                } else {
                    issue(p + [.key("uplink")], "no interface named '\(up)'")
                }
                if let v = itf.vlanID {
                    let key = "\(up)/\(v)"
                    if let other = newVLAN[key] ?? vlanUse[key].flatMap({ names.contains($0) ? nil : $0 }) {
                        issue(p + [.key("vlan_id")], "VLAN \(v) on '\(up)' is already interface '\(other)'")
                    } else { newVLAN[key] = itf.name }
                }
            case .vxlan:
                guard let up = itf.uplink else { break }
                guard let u = present(up) else { issue(p + [.key("uplink")], "no interface named '\(up)'"); continue }
                guard let ul = u.underlay else {
                    issue(p + [.key("uplink")], "'\(up)' has no underlay addresses; give it an `underlay` to carry VXLAN"); continue
                }
                addedUplinks.insert(up)
                if let r = itf.remote.flatMap(IPAddress.parse) {
                    if r.count == 4 && ul.ipv4 == nil { issue(p + [.key("remote")], "IPv4 remote but '\(up)' has no ipv4 underlay address") }
                    if r.count == 16 && ul.ipv6 == nil { issue(p + [.key("remote")], "IPv6 remote but '\(up)' has no ipv6 underlay address") }
                    let mine = (r.count == 4 ? ul.ipv4 : ul.ipv6).flatMap(IPAddress.parseCIDR)
                    let gw = r.count == 4 ? ul.gateway4 : ul.gateway6
                    if let mine, !IPAddress.samePrefix(r, mine.address, bits: mine.prefix), gw == nil {
                        issue(p + [.key("remote")], "\(itf.remote!) is not on '\(up)''s \(r.count == 4 ? "IPv4" : "IPv6") subnet and the underlay has no gateway\(r.count == 4 ? 4 : 6)")
                    }
                }
                if let remotePort = itf.port, remotePort != c.vxlanPort, itf.localPort == nil {
                    issue(p + [.key("port")], "the peer is sent to UDP \(remotePort) but Weft receives on \(c.vxlanPort) (local_port's default); set local_port: \(remotePort) (and add it to '\(up)''s underlay.vxlan_ports), or local_port: \(c.vxlanPort) if the peer sends there")
                }
                let local = itf.localPort ?? c.vxlanPort
                if local != c.vxlanPort && !ul.vxlanPorts.contains(local) {
                    issue(p + [.key("local_port")], "'\(up)' does not receive VXLAN on UDP \(local) (vxlan_port \(c.vxlanPort), underlay.vxlan_ports \(ul.vxlanPorts))")
                }
                if let vni = itf.vni, let r = itf.remote {
                    let key = "\(up)|\(local)|\(vni)|\(r)"
                    if let other = newVX[key] ?? vxKeys[key].flatMap({ names.contains($0) ? nil : $0 }) {
                        issue(p + [.key("vni")], "VNI \(vni) from \(r) on '\(up)' port \(local) is already interface '\(other)'")
                    } else { newVX[key] = itf.name }
                }
            default: break
            }
        }

        // A port that becomes an uplink must not be a connection's side.
        for up in addedUplinks.sorted() {
            if let conn = usedBy[up], !names.contains(conn) {
                issue([.key("interfaces")], "interface '\(up)' is in '\(conn)'; an uplink carrying tunnels cannot be a connection's side (cross-connect one of its vlan or vxlan interfaces)")
            }
        }

        // Cross-connects.
        if !xcs.isEmpty && c.labels[Capabilities.p2p] != "true" {
            issue([.key("cross_connects")], "this node's labels do not offer p2p")
        }
        var newUse: [String: String] = [:]
        for (i, x) in xcs.enumerated() {
            let p: [PathElement] = [.key("cross_connects"), .index(i)]
            if !isSimpleName(x.name, max: 64, allowDot: true) {
                issue(p + [.key("name")], "'\(x.name)' must be 1-64 characters of A-Z a-z 0-9 _ - .")
            } else if xcs[..<i].contains(where: { $0.name == x.name }) || (connections.contains(x.name) && !names.contains(x.name)) {
                issue(p + [.key("name")], "cross-connect '\(x.name)' already exists")
            }
            if x.a == x.b { issue(p + [.key("b")], "a cross-connect needs two different interfaces") }
            for (side, ifname) in [("a", x.a), ("b", x.b)] {
                if present(ifname) == nil {
                    issue(p + [.key(side)], "no interface named '\(ifname)'")
                } else if addedUplinks.contains(ifname) || (isUplink(ifname) && !names.contains(ifname)) {
                    issue(p + [.key(side)], "interface '\(ifname)' is an uplink carrying tunnels; cross-connect one of its vlan or vxlan interfaces (vlan_id 0 for untagged)")
                } else if let other = newUse[ifname] ?? usedBy[ifname].flatMap({ names.contains($0) ? nil : $0 }), other != x.name {
                    issue(p + [.key(side)], "interface '\(ifname)' is already in cross-connect '\(other)'")
                } else { newUse[ifname] = x.name }
            }
        }
        return out
    }

    // MARK: changes (after the dataplane took them)

    public mutating func apply(adding added: [InterfaceConfig], crossConnects xcs: [CrossConnectConfig], removing names: Set<String>,
                               node c: WeftConfig) {
        for n in names where connections.contains(n) { removeConnection(n) }
        for n in names { if let i = interfaces[n] { remove(i) } }
        for i in added { add(i, vxlanPort: c.vxlanPort) }
        for x in xcs { add(x) }
    }

    mutating func add(_ itf: InterfaceConfig, vxlanPort: Int = 4789) {
        interfaces[itf.name] = itf
        if let k = Validator.claimKey(itf) { claims[k] = itf.name }
        if itf.type == .vlan, let up = itf.uplink {
            tunnelsOn[up, default: 0] += 1
            if let v = itf.vlanID { vlanUse["\(up)/\(v)"] = itf.name }
        }
        if itf.type == .vxlan, let up = itf.uplink {
            tunnelsOn[up, default: 0] += 1
            if let vni = itf.vni, let r = itf.remote {
                let key = "\(up)|\(itf.localPort ?? vxlanPort)|\(vni)|\(r)"
                vxKeys[key] = itf.name
                vxKeyOf[itf.name] = key
                if let a = IPAddress.parse(r) { vniCount[a, default: [:]][vni, default: 0] += 1 }
            }
        }
    }

    mutating func remove(_ itf: InterfaceConfig) {
        interfaces[itf.name] = nil
        if let k = Validator.claimKey(itf), claims[k] == itf.name { claims[k] = nil }
        if (itf.type == .vlan || itf.type == .vxlan), let up = itf.uplink {
            tunnelsOn[up, default: 1] -= 1
            if tunnelsOn[up] == 0 { tunnelsOn[up] = nil }
        }
        if itf.type == .vlan, let up = itf.uplink, let v = itf.vlanID, vlanUse["\(up)/\(v)"] == itf.name { vlanUse["\(up)/\(v)"] = nil }
        if itf.type == .vxlan, let key = vxKeyOf.removeValue(forKey: itf.name) {
            if vxKeys[key] == itf.name { vxKeys[key] = nil }
            if let vni = itf.vni, let a = itf.remote.flatMap(IPAddress.parse), let n = vniCount[a]?[vni] {
                vniCount[a]?[vni] = n > 1 ? n - 1 : nil
                if vniCount[a]?.isEmpty == true { vniCount[a] = nil }
            }
        }
    }

    mutating func add(_ x: CrossConnectConfig) { addConnection(x.name, members: [x.a, x.b]) }

    mutating func addConnection(_ name: String, members: [String]) {
        connections.insert(name)
        membersOf[name] = members
        for m in members { usedBy[m] = name }
    }

    mutating func removeConnection(_ name: String) {
        connections.remove(name)
        for m in membersOf.removeValue(forKey: name) ?? [] where usedBy[m] == name { usedBy[m] = nil }
    }
}
