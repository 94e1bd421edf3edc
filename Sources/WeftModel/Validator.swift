import Foundation

public struct ValidationIssue: Equatable, Sendable, CustomStringConvertible {
    public var path: [PathElement]
    public var message: String
    public var description: String { "\(render(path)): \(message)" }
    public init(path: [PathElement], message: String) { self.path = path; self.message = message }
}

/// Static checks of a decoded configuration: ranges, names, references.
/// Checks that need the machine (does the kernel interface exist?) are in
/// `Realizer.precheck`, run before anything is applied.
public enum Validator {
    public static func validate(_ c: WeftConfig) -> [ValidationIssue] {
        var out: [ValidationIssue] = []
        func issue(_ p: [PathElement], _ m: String) { out.append(ValidationIssue(path: p, message: m)) }

        // eal
        let e = c.eal
        if !(0..<128).contains(e.mainLcore) { issue([.key("eal"), .key("main_lcore")], "must be 0..127") }
        if e.memoryMB < 64 { issue([.key("eal"), .key("memory_mb")], "must be at least 64") }
        if !isSimpleName(e.filePrefix, max: 32) {
            issue([.key("eal"), .key("file_prefix")], "must be 1-32 characters of A-Z a-z 0-9 _ -")
        }

        // metrics
        if MetricsConfig.parseListen(c.metrics.listenOn) == nil {
            issue([.key("metrics"), .key("listen_on")],
                  "'\(c.metrics.listenOn)' is not host:port, [ipv6]:port or :port with a port in 1..65535")
        }
        if let b = c.metrics.badEnvironment {
            issue([.key("metrics"), .key("prometheus")], "NSM_PROMETHEUS='\(b)' is not a boolean (true/false/1/0)")
        }

        // dataplane
        let d = c.dataplane
        let dp: [PathElement] = [.key("dataplane")]
        if d.workers.isEmpty { issue(dp + [.key("workers")], "needs at least one worker lcore") }
        if d.workers.count > 16 { issue(dp + [.key("workers")], "at most 16 workers") }
        for (i, w) in d.workers.enumerated() {
            if !(0..<128).contains(w) { issue(dp + [.key("workers"), .index(i)], "lcore must be 0..127") }
            if w == e.mainLcore { issue(dp + [.key("workers"), .index(i)], "lcore \(w) is eal.main_lcore; workers need their own lcores") }
            if d.workers.firstIndex(of: w) != i { issue(dp + [.key("workers"), .index(i)], "lcore \(w) listed twice") }
        }
        if !(1...256).contains(d.burstSize) { issue(dp + [.key("burst_size")], "must be 1..256") }
        for (k, v) in [("rx_descriptors", d.rxDescriptors), ("tx_descriptors", d.txDescriptors)]
        where !(64...16384).contains(v) || v & (v - 1) != 0 {
            issue(dp + [.key(k)], "must be a power of two in 64..16384")
        }
        if !(1024...4_194_304).contains(d.mbufs) { issue(dp + [.key("mbufs")], "must be 1024..4194304") }
        if !(0...512).contains(d.mbufCache) { issue(dp + [.key("mbuf_cache")], "must be 0..512") }
        if !(1...1_048_576).contains(d.maxCrossConnects) { issue(dp + [.key("max_cross_connects")], "must be 1..1048576") }
        if !(0...100_000).contains(d.idleSleepUs) { issue(dp + [.key("idle_sleep_us")], "must be 0..100000") }
        if !(0...10_000_000).contains(d.puntRate) { issue(dp + [.key("punt_rate")], "must be 0..10000000 frames per second (0: no limit)") }

        // admin
        if !c.admin.socket.hasPrefix("/") || c.admin.socket.utf8.count > 107 {
            issue([.key("admin"), .key("socket")], "must be an absolute path of at most 107 bytes")
        }
        if !c.admin.runtimeDir.hasPrefix("/") { issue([.key("admin"), .key("runtime_dir")], "must be an absolute path") }

        // interfaces
        var seen: [String: Int] = [:]
        for (i, itf) in c.interfaces.enumerated() {
            let p: [PathElement] = [.key("interfaces"), .index(i)]
            if !isSimpleName(itf.name, max: 32, allowDot: true) {
                issue(p + [.key("name")], "'\(itf.name)' must be 1-32 characters of A-Z a-z 0-9 _ - .")
            } else if let first = seen[itf.name] {
                issue(p + [.key("name")], "duplicate interface name '\(itf.name)' (first at interfaces[\(first)])")
            } else {
                seen[itf.name] = i
            }
            for m in validate(interface: itf) { issue(p + m.path, m.message) }
        }
        // Two interfaces must not claim the same kernel netdev or memif socket.
        var claims: [String: Int] = [:]
        for (i, itf) in c.interfaces.enumerated() {
            guard let claim = claimKey(itf) else { continue }
            if let first = claims[claim] {
                issue([.key("interfaces"), .index(i)], "uses the same \(claim) as interfaces[\(first)]")
            } else { claims[claim] = i }
        }

        // VLAN sides: their uplink is a port interface, each (uplink, id) once.
        var vlanUse: [String: Int] = [:]
        var uplinks = Set<String>()
        for (i, itf) in c.interfaces.enumerated() where itf.type == .vlan {
            let p: [PathElement] = [.key("interfaces"), .index(i)]
            if itf.via != nil && c.deviceSelectorFile == nil {
                issue(p + [.key("via")], "needs device_selector_file to map the label to an uplink")
            }
            guard let up = itf.uplink else { continue }
            uplinks.insert(up)
            if let u = c.interfaces.first(where: { $0.name == up }) {
                if !u.type.isPort { issue(p + [.key("uplink")], "'\(up)' is a \(u.type.rawValue) interface; an uplink must be a port") }
            } else {
                issue(p + [.key("uplink")], "no interface named '\(up)'")
            }
            if let v = itf.vlanID {
                let key = "\(up)/\(v)"
                if let first = vlanUse[key] { issue(p + [.key("vlan_id")], "VLAN \(v) on '\(up)' is already interfaces[\(first)]") }
                else { vlanUse[key] = i }
            }
        }

        // VXLAN sides: uplink with an underlay of the remote's family, a port it listens on.
        if !(1...65535).contains(c.vxlanPort) { issue([.key("vxlan_port")], "must be 1..65535") }
        var vxKeys: [String: Int] = [:]
        for (i, itf) in c.interfaces.enumerated() where itf.type == .vxlan {
            let p: [PathElement] = [.key("interfaces"), .index(i)]
            guard let up = itf.uplink else { continue }
            guard let u = c.interfaces.first(where: { $0.name == up }) else {
                issue(p + [.key("uplink")], "no interface named '\(up)'"); continue
            }
            guard let ul = u.underlay else {
                issue(p + [.key("uplink")], "'\(up)' has no underlay addresses; give it an `underlay` to carry VXLAN"); continue
            }
            uplinks.insert(up)
            if let r = itf.remote.flatMap(IPAddress.parse) {
                if r.count == 4 && ul.ipv4 == nil { issue(p + [.key("remote")], "IPv4 remote but '\(up)' has no ipv4 underlay address") }
                if r.count == 16 && ul.ipv6 == nil { issue(p + [.key("remote")], "IPv6 remote but '\(up)' has no ipv6 underlay address") }
                // Off the underlay's subnet, the next hop is the gateway of that family.
                let mine = (r.count == 4 ? ul.ipv4 : ul.ipv6).flatMap(IPAddress.parseCIDR)
                let gw = r.count == 4 ? ul.gateway4 : ul.gateway6
                if let mine, !IPAddress.samePrefix(r, mine.address, bits: mine.prefix), gw == nil {
                    issue(p + [.key("remote")], "\(itf.remote!) is not on '\(up)''s \(r.count == 4 ? "IPv4" : "IPv6") subnet and the underlay has no gateway\(r.count == 4 ? 4 : 6)")
                }
            }
            if let remotePort = itf.port, remotePort != c.vxlanPort, itf.localPort == nil {
                // A peer that sends to `port` usually sends from it too (the kernel's vxlan dstport).
                issue(p + [.key("port")], "the peer is sent to UDP \(remotePort) but Weft receives on \(c.vxlanPort) (local_port's default); set local_port: \(remotePort) (and add it to '\(up)''s underlay.vxlan_ports), or local_port: \(c.vxlanPort) if the peer sends there")
            }
            let local = itf.localPort ?? c.vxlanPort
            if local != c.vxlanPort && !ul.vxlanPorts.contains(local) {
                issue(p + [.key("local_port")], "'\(up)' does not receive VXLAN on UDP \(local) (vxlan_port \(c.vxlanPort), underlay.vxlan_ports \(ul.vxlanPorts))")
            }
            if let vni = itf.vni, let r = itf.remote {
                let key = "\(up)|\(local)|\(vni)|\(r)"
                if let first = vxKeys[key] { issue(p + [.key("vni")], "VNI \(vni) from \(r) on '\(up)' port \(local) is already interfaces[\(first)]") }
                else { vxKeys[key] = i }
            }
        }
        // An interface with underlay addresses is an uplink even before it carries a tunnel.
        for itf in c.interfaces where itf.underlay != nil { uplinks.insert(itf.name) }

        // Capabilities: each kind of connection needs its label on.
        if !c.crossConnects.isEmpty && c.labels[Capabilities.p2p] != "true" {
            issue([.key("cross_connects")], "this node's labels do not offer p2p")
        }
        if !c.replicationGroups.isEmpty && c.labels[Capabilities.replicate] != "true" {
            issue([.key("replication_groups")], "this node's labels do not offer p2mp-replicate")
        }
        if !c.bridgeDomains.isEmpty && c.labels[Capabilities.bridge] != "true" {
            issue([.key("bridge_domains")], "this node's labels do not offer p2mp-bridge")
        }

        // cross-connects
        var xcNames: [String: Int] = [:]
        var used: [String: (Int, String)] = [:]
        for (i, x) in c.crossConnects.enumerated() {
            let p: [PathElement] = [.key("cross_connects"), .index(i)]
            if !isSimpleName(x.name, max: 64, allowDot: true) {
                issue(p + [.key("name")], "'\(x.name)' must be 1-64 characters of A-Z a-z 0-9 _ - .")
            } else if let first = xcNames[x.name] {
                issue(p + [.key("name")], "duplicate cross-connect name '\(x.name)' (first at cross_connects[\(first)])")
            } else { xcNames[x.name] = i }
            if x.a == x.b { issue(p + [.key("b")], "a cross-connect needs two different interfaces") }
            for (side, ifname) in [("a", x.a), ("b", x.b)] {
                if seen[ifname] == nil {
                    issue(p + [.key(side)], "no interface named '\(ifname)'")
                } else if uplinks.contains(ifname) {
                    issue(p + [.key(side)], "interface '\(ifname)' is an uplink carrying tunnels; cross-connect one of its vlan or vxlan interfaces (vlan_id 0 for untagged)")
                } else if let (j, other) = used[ifname], j != i {
                    issue(p + [.key(side)], "interface '\(ifname)' is already in cross-connect '\(other)'")
                } else { used[ifname] = (i, x.name) }
            }
        }
        // Point-to-multipoint: members exist, one connection per interface, names unique across kinds.
        func member(_ p: [PathElement], _ name: String, of conn: String) {
            if seen[name] == nil { issue(p, "no interface named '\(name)'"); return }
            if uplinks.contains(name) { issue(p, "interface '\(name)' is an uplink; use one of its vlan or vxlan interfaces"); return }
            if let (_, other) = used[name] { issue(p, "interface '\(name)' is already in '\(other)'"); return }
            used[name] = (-1, conn)
        }
        for (i, g) in c.replicationGroups.enumerated() {
            let p: [PathElement] = [.key("replication_groups"), .index(i)]
            if !isSimpleName(g.name, max: 64, allowDot: true) { issue(p + [.key("name")], "'\(g.name)' must be 1-64 characters of A-Z a-z 0-9 _ - .") }
            else if xcNames[g.name] != nil { issue(p + [.key("name")], "duplicate connection name '\(g.name)'") }
            else { xcNames[g.name] = -1 }
            if g.members.isEmpty || g.members.count > 128 { issue(p + [.key("members")], "needs 1..128 members") }
            if g.members.contains(g.ingress) { issue(p + [.key("members")], "a replication group cannot include its own ingress '\(g.ingress)'") }
            if !(64...65535).contains(g.cloneMinBytes) { issue(p + [.key("clone_min_bytes")], "must be 64..65535") }
            member(p + [.key("ingress")], g.ingress, of: g.name)
            for (j, m) in g.members.enumerated() where m != g.ingress { member(p + [.key("members"), .index(j)], m, of: g.name) }
        }
        for (i, d) in c.bridgeDomains.enumerated() {
            let p: [PathElement] = [.key("bridge_domains"), .index(i)]
            if !isSimpleName(d.name, max: 64, allowDot: true) { issue(p + [.key("name")], "'\(d.name)' must be 1-64 characters of A-Z a-z 0-9 _ - .") }
            else if xcNames[d.name] != nil { issue(p + [.key("name")], "duplicate connection name '\(d.name)'") }
            else { xcNames[d.name] = -1 }
            if d.members.count < 2 || d.members.count > 128 { issue(p + [.key("members")], "a bridge domain needs 2..128 members") }
            if !(1...1_048_576).contains(d.macLimit) { issue(p + [.key("mac_limit")], "must be 1..1048576") }
            if !(1...86_400).contains(d.macAgeSeconds) { issue(p + [.key("mac_age_seconds")], "must be 1..86400") }
            if d.staticMACs.count > 16 { issue(p + [.key("static_macs")], "at most 16") }
            for (j, m) in d.members.enumerated() {
                member(p + [.key("members"), .index(j), .key("interface")], m.interface, of: d.name)
                if !(0...65535).contains(m.splitHorizonGroup) { issue(p + [.key("members"), .index(j), .key("split_horizon_group")], "must be 0..65535") }
            }
            for (j, s) in d.staticMACs.enumerated() {
                if parseMAC(s.mac) == nil { issue(p + [.key("static_macs"), .index(j), .key("mac")], "'\(s.mac)' is not a MAC address") }
                if !d.members.contains(where: { $0.interface == s.interface }) {
                    issue(p + [.key("static_macs"), .index(j), .key("interface")], "'\(s.interface)' is not a member of '\(d.name)'")
                }
            }
        }
        return out
    }

    /// Checks of one interface alone (also used for weftctl's runtime add).
    public static func validate(interface itf: InterfaceConfig) -> [ValidationIssue] {
        var out: [ValidationIssue] = []
        func issue(_ k: String, _ m: String) { out.append(ValidationIssue(path: [.key(k)], message: m)) }
        let kernelTypes: [InterfaceType] = [.afPacket, .afXDP, .kernel, .tap]

        // Keys that belong to another type are mistakes, not silent no-ops.
        let given: [(String, Bool)] = [
            ("iface", itf.iface != nil), ("role", itf.role != nil), ("socket", itf.socket != nil),
            ("abstract", itf.abstract != nil), ("id", itf.id != nil), ("secret", itf.secret != nil), ("mode", itf.mode != nil),
            ("pci", itf.pci != nil), ("devargs", itf.devargs != nil), ("mac", itf.mac != nil),
            ("driver", itf.driver != nil), ("bind", itf.bind != nil), ("restore", itf.restore != nil),
            ("uplink", itf.uplink != nil), ("via", itf.via != nil), ("vlan_id", itf.vlanID != nil),
            ("rx_queues", itf.rxQueues != nil), ("mtu", itf.mtu != nil),
            ("vni", itf.vni != nil), ("remote", itf.remote != nil), ("port", itf.port != nil),
            ("local_port", itf.localPort != nil), ("underlay", itf.underlay != nil), ("netns", itf.netns != nil),
        ]
        let ports = InterfaceType.allCases.filter(\.isPort)
        let applies: [String: [InterfaceType]] = [
            "iface": kernelTypes, "role": [.memif], "socket": [.memif], "abstract": [.memif], "id": [.memif],
            "secret": [.memif], "mode": [.memif], "pci": [.pci], "devargs": [.pci, .vdev],
            "driver": [.pci], "bind": [.pci], "restore": [.pci], "mac": [.memif, .tap],
            "uplink": [.vlan, .vxlan], "via": [.vlan], "vlan_id": [.vlan], "rx_queues": ports, "mtu": ports,
            "vni": [.vxlan], "remote": [.vxlan], "port": [.vxlan], "local_port": [.vxlan],
            "underlay": ports, "netns": [.memif, .afPacket, .afXDP, .kernel, .tap],
        ]
        for (k, present) in given where present && !(applies[k]!.contains(itf.type)) {
            issue(k, "does not apply to \(itf.type.rawValue) interfaces")
        }

        if kernelTypes.contains(itf.type) && itf.type != .tap {
            if let i = itf.iface { if !isIfName(i) { issue("iface", "'\(i)' is not a valid kernel interface name (1-15 characters, no '/', ':' or spaces)") } }
            else { issue("iface", "required for \(itf.type.rawValue) interfaces") }
        }
        if let ns = itf.netns, !ns.hasPrefix("/") || ns.contains(",") {
            issue("netns", "must be an absolute path to a network namespace (/proc/<pid>/ns/net, /var/run/netns/<name>)")
        }
        if itf.type == .tap, let i = itf.iface, !isIfName(i) {
            issue("iface", "'\(i)' is not a valid kernel interface name (1-15 characters)")
        }
        if itf.type == .memif {
            if let id = itf.id, !(0...Int(UInt32.max)).contains(id) { issue("id", "must be 0..4294967295") }
            if let s = itf.socket {
                if s.isEmpty || s.utf8.count > 107 { issue("socket", "must be 1-107 bytes") }
                else if itf.abstract != true && !s.hasPrefix("/") { issue("socket", "must be an absolute path (or set abstract: true)") }
                if s.contains(",") || s.contains("=") { issue("socket", "must not contain ',' or '='") }
            }
            if let sec = itf.secret, sec.isEmpty || sec.utf8.count > 23 || sec.contains(",") {
                issue("secret", "must be 1-23 characters without ','")
            }
        }
        if itf.type == .pci {
            if let a = itf.pci { if normalizedPCI(a) == nil { issue("pci", "'\(a)' is not a PCI address (DDDD:BB:DD.F)") } }
            else { issue("pci", "required for pci interfaces") }
            if let d = itf.driver, d.isEmpty || d.utf8.count > 64
                || !d.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-" }) {
                issue("driver", "'\(d)' is not a kernel driver name (letters, digits, '_' and '-', e.g. vfio-pci)")
            }
            if itf.restore != nil, itf.bind != true { issue("restore", "applies only with bind: true (weftd gives back only what it bound)") }
        }
        if itf.type == .vdev {
            if let a = itf.devargs {
                if !a.hasPrefix("net_") { issue("devargs", "must name a DPDK net vdev, e.g. net_null0,size=64") }
            } else { issue("devargs", "required for vdev interfaces") }
        }
        if itf.type == .vlan {
            if itf.uplink == nil && itf.via == nil { issue("uplink", "required for vlan interfaces (or 'via' with device_selector_file)") }
            if itf.uplink != nil && itf.via != nil { issue("via", "give either 'uplink' or 'via', not both") }
            if let v = itf.vlanID { if !(0...4094).contains(v) { issue("vlan_id", "must be 0..4094 (0: the untagged uplink)") } }
            else { issue("vlan_id", "required for vlan interfaces (0 for the untagged uplink)") }
        }
        if itf.type == .vxlan {
            if itf.uplink == nil { issue("uplink", "required for vxlan interfaces") }
            if let v = itf.vni { if !(0...0xffffff).contains(v) { issue("vni", "must be 0..16777215") } }
            else { issue("vni", "required for vxlan interfaces") }
            if let r = itf.remote { if IPAddress.parse(r) == nil { issue("remote", "'\(r)' is not an IPv4 or IPv6 address") } }
            else { issue("remote", "required for vxlan interfaces") }
            for (k, v) in [("port", itf.port), ("local_port", itf.localPort)] {
                if let v, !(1...65535).contains(v) { issue(k, "must be 1..65535") }
            }
        }
        if let u = itf.underlay {
            for m in validate(underlay: u) { out.append(ValidationIssue(path: [.key("underlay")] + m.path, message: m.message)) }
            if u.kernelShared && ![.afPacket, .afXDP, .kernel].contains(itf.type) {
                out.append(ValidationIssue(path: [.key("underlay"), .key("kernel_shared")],
                                           message: "only a kernel netdev uplink (af_packet, af_xdp, kernel) can be shared with the kernel"))
            }
        }
        if let mac = itf.mac, parseMAC(mac) == nil { issue("mac", "'\(mac)' is not a MAC address (xx:xx:xx:xx:xx:xx)") }
        if let q = itf.rxQueues, !(1...8).contains(q) { issue("rx_queues", "must be 1..8") }
        if let m = itf.mtu, !(68...9702).contains(m) { issue("mtu", "must be 68..9702") }
        return out
    }

    static func validate(underlay u: UnderlayConfig) -> [ValidationIssue] {
        var out: [ValidationIssue] = []
        func issue(_ p: [PathElement], _ m: String) { out.append(ValidationIssue(path: p, message: m)) }
        if u.ipv4 == nil && u.ipv6 == nil { issue([.key("ipv4")], "an underlay needs ipv4 or ipv6 (address/prefix)") }
        if let a = u.ipv4, IPAddress.parseCIDR(a).map({ $0.address.count == 4 }) != true {
            issue([.key("ipv4")], "'\(a)' is not an IPv4 address with prefix (e.g. 192.0.2.1/24)")
        }
        if let a = u.ipv6, IPAddress.parseCIDR(a).map({ $0.address.count == 16 }) != true {
            issue([.key("ipv6")], "'\(a)' is not an IPv6 address with prefix (e.g. 2001:db8::1/64)")
        }
        if let g = u.gateway4, IPAddress.parse(g)?.count != 4 { issue([.key("gateway4")], "'\(g)' is not an IPv4 address") }
        if let g = u.gateway6, IPAddress.parse(g)?.count != 16 { issue([.key("gateway6")], "'\(g)' is not an IPv6 address") }
        if u.gateway4 != nil && u.ipv4 == nil { issue([.key("gateway4")], "needs ipv4") }
        if u.gateway6 != nil && u.ipv6 == nil { issue([.key("gateway6")], "needs ipv6") }
        let minMTU = u.ipv6 != nil ? 1280 : 576
        if !(minMTU...9702).contains(u.mtu) { issue([.key("mtu")], "must be \(minMTU)..9702") }
        if u.vxlanPorts.count > 3 { issue([.key("vxlan_ports")], "at most 3 besides the node's vxlan_port") }
        for (i, p) in u.vxlanPorts.enumerated() where !(1...65535).contains(p) { issue([.key("vxlan_ports"), .index(i)], "must be 1..65535") }
        for (i, n) in u.neighbours.enumerated() {
            if IPAddress.parse(n.ip) == nil { issue([.key("neighbours"), .index(i), .key("ip")], "'\(n.ip)' is not an IP address") }
            if parseMAC(n.mac) == nil { issue([.key("neighbours"), .index(i), .key("mac")], "'\(n.mac)' is not a MAC address") }
        }
        return out
    }

    /// What an interface takes exclusive hold of, if anything.
    static func inNetns(_ itf: InterfaceConfig) -> String { itf.netns.map { " in netns \($0)" } ?? "" }

    static func claimKey(_ itf: InterfaceConfig) -> String? {
        switch itf.type {
        case .afPacket, .afXDP, .kernel, .tap: return itf.iface.map { "kernel interface '\($0)'" + inNetns(itf) }
        // A server and a client may share a socket and id (a loop within one node).
        case .memif: return itf.socket.map { "memif \((itf.role ?? .server).rawValue) socket '\($0)' with id \(itf.id ?? 0)" + (itf.abstract == true ? inNetns(itf) : "") }
        case .pci: return itf.pci.flatMap(normalizedPCI).map { "PCI device \($0)" }
        default: return nil
        }
    }
}

public func isSimpleName(_ s: String, max: Int, allowDot: Bool = false) -> Bool {
    guard !s.isEmpty, s.utf8.count <= max else { return false }
    return s.unicodeScalars.allSatisfy {
        ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-"
            || (allowDot && $0 == ".")
    }
}

/// Linux interface names: 1-15 bytes, no '/', ':' or whitespace, not "." or "..".
public func isIfName(_ s: String) -> Bool {
    guard !s.isEmpty, s.utf8.count <= 15, s != ".", s != ".." else { return false }
    return !s.unicodeScalars.contains { $0 == "/" || $0 == ":" || $0 == "," || $0 == "=" || $0.properties.isWhitespace }
}

/// "0000:05:00.0" or "05:00.0" -> "0000:05:00.0".
public func normalizedPCI(_ s: String) -> String? {
    let parts = s.lowercased().split(separator: ":", omittingEmptySubsequences: false)
    let hex = CharacterSet(charactersIn: "0123456789abcdef")
    func isHex(_ x: Substring, _ n: Int) -> Bool { x.count == n && x.unicodeScalars.allSatisfy(hex.contains) }
    var domain = Substring("0000"), rest = parts
    if parts.count == 3 { domain = parts[0]; rest = Array(parts[1...]) }
    guard rest.count == 2, isHex(domain, 4), isHex(rest[0], 2) else { return nil }
    let df = rest[1].split(separator: ".", omittingEmptySubsequences: false)
    guard df.count == 2, isHex(df[0], 2), df[1].count == 1, let f = Int(df[1]), f <= 7 else { return nil }
    return "\(domain):\(rest[0]):\(df[0]).\(f)"
}

public func parseMAC(_ s: String) -> [UInt8]? {
    let p = s.split(separator: ":")
    guard p.count == 6 else { return nil }
    let b = p.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
    return b.count == 6 ? b : nil
}
