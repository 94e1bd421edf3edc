import CWeftKernel
import Foundation
import WeftModel

/// A failed kernel operation: what, on which object, and why.
public struct KernelError: Error, CustomStringConvertible {
    public var operation: String
    public var errno: Int32
    public var detail: String
    public var description: String {
        "\(operation): \(String(cString: strerror(errno)))\(detail.isEmpty ? "" : " (\(detail))")"
    }
}

/// rtnetlink inside one network namespace (libmnl, CShims/kernel/src/netlink.c).
/// One Netlink is used by one task at a time (the control actor's).
public final class Netlink {
    let nl: OpaquePointer
    public let netns: String?

    public init(netns: String?) throws {
        var h: OpaquePointer?
        wf_clear_last_error()
        let rc = wf_nl_open(netns, &h)
        guard rc == 0, let h else { throw Netlink.error(rc, "open netlink in \(netns ?? "weftd's namespace")") }
        nl = h
        self.netns = netns
    }
    deinit { wf_nl_close(nl) }

    static func error(_ rc: Int32, _ op: String) -> KernelError {
        var buf = [CChar](repeating: 0, count: 512)
        wf_last_error(&buf, buf.count)
        return KernelError(operation: op, errno: -rc, detail: String(cString: buf))
    }

    func check(_ rc: Int32, _ op: @autoclosure () -> String) throws {
        if rc < 0 { throw Netlink.error(rc, op()) }
    }

    public struct Link: Sendable {
        public var index: Int32
        public var name: String
        public var alias: String
        public var mtu: UInt32
        public var up: Bool
        public var mac: [UInt8]
    }

    static func link(_ l: wf_nl_link) -> Link {
        var l = l
        let name = withUnsafeBytes(of: &l.name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let alias = withUnsafeBytes(of: &l.alias) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let mac = withUnsafeBytes(of: &l.mac) { Array($0) }
        return Link(index: l.index, name: name, alias: alias, mtu: l.mtu, up: l.up != 0, mac: mac)
    }

    public func links() throws -> [Link] {
        var cap = 1024
        while true {
            var buf = [wf_nl_link](repeating: wf_nl_link(), count: cap)
            let n = wf_nl_link_list(nl, &buf, Int32(buf.count))
            try check(n, "list links")
            // A full buffer may have cut the list short: ask again with room.
            if Int(n) < cap { return buf[0..<Int(n)].map(Netlink.link) }
            cap *= 4
        }
    }

    public func index(of name: String) throws -> Int32? {
        let rc = wf_nl_link_index(nl, name)
        if rc == -ENODEV { return nil }
        try check(rc, "find link \(name)")
        return rc
    }

    public func link(_ index: Int32) throws -> Link {
        var l = wf_nl_link()
        try check(wf_nl_link_get(nl, index, &l), "read link \(index)")
        return Netlink.link(l)
    }

    public func addVeth(name: String, peer: String, peerNetns: String?, mtu: UInt32, peerMAC: [UInt8]? = nil) throws {
        wf_clear_last_error()
        let rc: Int32
        if let mac = peerMAC {
            rc = mac.withUnsafeBufferPointer { wf_nl_veth_add(nl, name, peer, peerNetns, mtu, $0.baseAddress, $0.count) }
        } else {
            rc = wf_nl_veth_add(nl, name, peer, peerNetns, mtu, nil, 0)
        }
        try check(rc, "create veth \(name) with peer \(peer) in \(peerNetns ?? "weftd's namespace")")
    }

    public func set(_ index: Int32, alias: String? = nil, mtu: UInt32 = 0, up: Bool? = nil) throws {
        let u: Int32 = up.map { $0 ? 1 : 0 } ?? -1
        try check(wf_nl_link_set(nl, index, alias, mtu, u), "set link \(index)")
    }

    /// Turn TX checksum offload of an interface of this namespace on or off
    /// (ethtool ioctl); returns whether it was on.
    @discardableResult
    public func setTxChecksum(_ name: String, _ on: Bool) throws -> Bool {
        let rc = wf_ethtool_tx_csum(netns, name, on ? 1 : 0)
        try check(rc, "turn TX checksum offload \(on ? "on" : "off") on \(name)")
        return rc == 1
    }

    /// Moves a link of this namespace into the namespace at `netns` (a path), keeping its name.
    public func move(_ index: Int32, toNetns netns: String) throws {
        try check(wf_nl_link_move(nl, index, netns, nil), "move link \(index) to \(netns)")
    }

    /// Renames a link of this namespace (it must be down).
    public func rename(_ index: Int32, to name: String) throws {
        try check(wf_nl_link_move(nl, index, nil, name), "rename link \(index) to \(name)")
    }

    public func delete(_ index: Int32) throws {
        try check(wf_nl_link_del(nl, index), "delete link \(index)")
    }

    /// A PF's settings for its VF `vf` (nil: left as they are): MAC (all zeros
    /// clears it), VLAN (0: none), spoof check, trust.
    public struct VFSettings: Equatable, Sendable {
        public var vf: UInt32
        public var mac: [UInt8]?
        public var vlan: Int?
        public var spoofCheck: Bool?
        public var trust: Bool?
        public init(vf: UInt32, mac: [UInt8]? = nil, vlan: Int? = nil, spoofCheck: Bool? = nil, trust: Bool? = nil) {
            self.vf = vf; self.mac = mac; self.vlan = vlan; self.spoofCheck = spoofCheck; self.trust = trust
        }

        var c: wf_vf_settings {
            var s = wf_vf_settings()
            s.vf = vf
            if let mac, mac.count == 6 {
                s.set_mac = 1
                withUnsafeMutableBytes(of: &s.mac) { $0.copyBytes(from: mac) }
            }
            s.vlan = Int32(clamping: vlan ?? -1)
            s.spoofchk = spoofCheck.map { $0 ? 1 : 0 } ?? -1
            s.trust = trust.map { $0 ? 1 : 0 } ?? -1
            return s
        }

        func validate() throws {
            if let mac, mac.count != 6 { throw KernelError(operation: "VF \(vf) settings", errno: EINVAL, detail: "a MAC address is 6 bytes, not \(mac.count)") }
        }
    }

    /// The RTM_SETLINK message `setVF` sends (for tests: the bytes on the wire).
    public static func vfMessage(pfIndex: Int32, _ s: VFSettings, seq: UInt32 = 1) throws -> [UInt8] {
        try s.validate()
        var buf = [UInt8](repeating: 0, count: 8192)
        var c = s.c
        wf_clear_last_error()
        let n = buf.withUnsafeMutableBytes { wf_vf_msg($0.baseAddress, $0.count, seq, pfIndex, &c) }
        if n < 0 { throw Netlink.error(n, "build VF \(s.vf) settings") }
        return Array(buf[0..<Int(n)])
    }

    public func setVF(pfIndex: Int32, _ s: VFSettings) throws {
        try s.validate()
        var c = s.c
        wf_clear_last_error()
        try check(wf_nl_vf_set(nl, pfIndex, &c), "set VF \(s.vf) of interface \(pfIndex)")
    }

    public func addAddress(_ index: Int32, _ cidr: CIDR) throws {
        try check(cidr.address.withUnsafeBufferPointer { wf_nl_addr_add(nl, index, cidr.family, $0.baseAddress, $0.count, cidr.prefix) },
                  "add address \(cidr)")
    }

    public func addRoute(_ index: Int32, _ dst: CIDR, via gateway: [UInt8]?) throws {
        let rc = dst.address.withUnsafeBufferPointer { d in
            if let gateway {
                return gateway.withUnsafeBufferPointer {
                    wf_nl_route_add(nl, index, dst.family, d.baseAddress, d.count, dst.prefix, $0.baseAddress, $0.count)
                }
            }
            return wf_nl_route_add(nl, index, dst.family, d.baseAddress, d.count, dst.prefix, nil, 0)
        }
        try check(rc, "add route \(dst)\(gateway.map { " via " + CIDR.text($0) } ?? "")")
    }

    public func deleteAddress(_ index: Int32, _ cidr: CIDR) throws {
        try check(cidr.address.withUnsafeBufferPointer { wf_nl_addr_del(nl, index, cidr.family, $0.baseAddress, $0.count, cidr.prefix) },
                  "delete address \(cidr)")
    }

    /// The main table.
    public static let mainTable: UInt32 = 254

    /// A route in `table`; `onLink`: the gateway is taken as on the link (NSM's next hops).
    public func route(add: Bool, _ index: Int32, _ dst: CIDR, via gateway: [UInt8]?, table: UInt32 = Netlink.mainTable,
                      onLink: Bool = false) throws {
        let rc = dst.address.withUnsafeBufferPointer { d in
            if let gateway {
                return gateway.withUnsafeBufferPointer {
                    wf_nl_route(nl, add ? 1 : 0, index, dst.family, d.baseAddress, d.count, dst.prefix, $0.baseAddress, $0.count,
                                table, onLink ? 1 : 0)
                }
            }
            return wf_nl_route(nl, add ? 1 : 0, index, dst.family, d.baseAddress, d.count, dst.prefix, nil, 0, table, 0)
        }
        try check(rc, "\(add ? "add" : "delete") route \(dst)\(gateway.map { " via " + CIDR.text($0) } ?? "") table \(table)")
    }

    /// A policy rule (NSM's PolicyRoute): traffic from `from` (any when nil), of IP
    /// protocol `proto` (0: any), from/to the port ranges, looks up `table`.
    public struct Rule: Equatable, Sendable {
        public var family: Int32
        public var from: CIDR?
        public var proto: UInt8 = 0
        public var sport: ClosedRange<UInt16>?
        public var dport: ClosedRange<UInt16>?
        public var table: UInt32
        public init(family: Int32, from: CIDR?, proto: UInt8 = 0, sport: ClosedRange<UInt16>? = nil,
                    dport: ClosedRange<UInt16>? = nil, table: UInt32) {
            self.family = family; self.from = from; self.proto = proto; self.sport = sport; self.dport = dport; self.table = table
        }
    }

    public func rule(add: Bool, _ r: Rule) throws {
        let src = r.from?.address ?? []
        let rc = src.withUnsafeBufferPointer { p -> Int32 in
            var c = wf_nl_rule()
            c.family = r.family
            c.src = r.from == nil ? nil : p.baseAddress
            c.src_len = p.count
            c.src_plen = r.from?.prefix ?? 0
            c.ipproto = r.proto
            c.sport_lo = r.sport?.lowerBound ?? 0; c.sport_hi = r.sport?.upperBound ?? 0
            c.dport_lo = r.dport?.lowerBound ?? 0; c.dport_hi = r.dport?.upperBound ?? 0
            c.table = r.table
            return wf_nl_rule(nl, add ? 1 : 0, &c)
        }
        try check(rc, "\(add ? "add" : "delete") rule\(r.from.map { " from \($0)" } ?? "") table \(r.table)")
    }

    public func addNeighbour(_ index: Int32, ip: [UInt8], mac: [UInt8]) throws {
        let family = ip.count == 4 ? AF_INET : AF_INET6
        try check(ip.withUnsafeBufferPointer { i in
            mac.withUnsafeBufferPointer { wf_nl_neigh_add(nl, index, family, i.baseAddress, i.count, $0.baseAddress, $0.count) }
        }, 
                  "add neighbour \(CIDR.text(ip))")
    }

    /// Delete every link whose alias is `alias` (NSM deletes an earlier link with the
    /// deterministic alias before creating a new one).
    @discardableResult
    public func deleteLinks(alias: String) throws -> Int {
        var n = 0
        for l in try links() where l.alias == alias {
            try delete(l.index)
            n += 1
        }
        return n
    }
}

/// Network namespaces by path (/proc/<pid>/ns/net, /var/run/netns/<name>).
public enum NetNS {
    /// The namespace file's device and inode (two paths name the same
    /// namespace when both match), or nil when it is not one.
    public static func identity(_ path: String) -> (dev: UInt64, ino: UInt64)? {
        var dev: UInt64 = 0, ino: UInt64 = 0
        return wf_netns_inode(path, &dev, &ino) == 0 ? (dev, ino) : nil
    }

    /// Write a sysctl inside the namespace (e.g. "net/ipv6/conf/nsm-1/disable_ipv6").
    public static func sysctl(_ path: String, _ key: String, _ value: String) throws {
        let rc = wf_netns_sysctl(path, key, value)
        if rc < 0 { throw Netlink.error(rc, "sysctl \(key)=\(value) in \(path)") }
    }

    /// Delete a link of weftd's own namespace by name; false when there is none.
    @discardableResult
    public static func deleteLink(_ name: String) throws -> Bool {
        let rc = wf_netlink_link_delete(name)
        if rc == -ENODEV { return false }
        if rc < 0 { throw Netlink.error(rc, "delete link \(name)") }
        return true
    }
}
