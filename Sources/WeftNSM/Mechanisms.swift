import Foundation
import WeftControl
import WeftKernel
import WeftModel
import WeftNSMProto

/// NSM mechanism names and parameter keys (reference §3).
public enum Mech {
    public static let local = "LOCAL", remote = "REMOTE"
    public static let kernel = "KERNEL", memif = "MEMIF", vxlan = "VXLAN", vlan = "VLAN"
    public static let inodeURL = "inodeURL", name = "name", socketfile = "socketfile", mtu = "MTU"
    public static let srcIP = "src_ip", dstIP = "dst_ip", srcPort = "src_port", dstPort = "dst_port", vni = "vni"
    public static let origSrcIP = "orig_src_ip", origDstIP = "orig_dst_ip", vlanID = "vlan-id", via = "via"
    public static let linuxIfMaxLength = 15
    /// VFIO (NSM's api vfio/constants.go): the pod's device cgroup, and what Weft answers.
    public static let vfio = "VFIO", tokenID = "tokenID", pciAddress = "pciAddress", cgroupDir = "cgroupDir"
    public static let iommuGroup = "iommuGroup", vfioMajor = "vfioMajor", vfioMinor = "vfioMinor"
    public static let deviceMajor = "deviceMajor", deviceMinor = "deviceMinor"

    /// A MEMIF mechanism in NSM v1.1's form, as Weft answered it: `socketfile` is a path
    /// (v1.2's abstract sockets start with "@"). NSM uses `inodeURL` for both the pod's
    /// namespace (v1.2) and the socket file (v1.1); in this form it is Weft's own socket
    /// file (after grpcfd, its inode URL), never a namespace. A refresh or heal sends
    /// the answer back, so this is how Weft tells the two apart.
    public static func isMemifSocketFile(_ m: Connection_Mechanism) -> Bool {
        guard m.type == memif, let f = m.parameters[socketfile] else { return false }
        return !f.isEmpty && !f.hasPrefix("@")
    }

    /// `url` (a v1.1 memif's inodeURL sent back) names the socket file at `path`: its
    /// file:// URL, or its inode URL (grpcfd's rewrite of it).
    public static func namesSocketFile(_ url: String, path: String) -> Bool {
        if url == "file://" + path || url == path { return true }
        guard url.hasPrefix("inode://"), let u = InodeURL(url), let p = try? InodeURL(path: path) else { return false }
        return u == p
    }
}

/// A request refused at one step, with the gRPC code it maps to.
public struct NSMError: Error, CustomStringConvertible {
    public enum Code: Sendable { case invalidArgument, notFound, failedPrecondition, unavailable, internalError, alreadyExists, permissionDenied, resourceExhausted }
    public var code: Code
    public var step: String
    public var message: String
    public var description: String { "\(step): \(message)" }
    public init(_ code: Code, _ step: String, _ message: String) { self.code = code; self.step = step; self.message = message }
}

/// Where a pod's network namespace is, from a mechanism's `inodeURL`:
///  - `file:///proc/<pid>/ns/net`, `file:///var/run/netns/<name>` (or a bare path);
///  - `inode://<dev>/<ino>`: what grpcfd puts on the wire: the fd the peer passed
///    with it (ReceivedFiles), else the namespace looked up among /proc/*/ns/net and
///    /var/run/netns/* (needs hostPID).
public enum NetnsResolver {
    public static func resolve(_ url: String?, parameter: String = "mechanism.parameters.inodeURL") throws -> String {
        guard let url, !url.isEmpty else { throw NSMError(.invalidArgument, "mechanism", "\(parameter) is missing: the pod's network namespace") }
        if url.hasPrefix("inode://") {
            let parts = url.dropFirst("inode://".count).split(separator: "/")
            guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else {
                throw NSMError(.invalidArgument, "mechanism", "\(parameter) '\(url)' is not inode://<dev>/<ino>")
            }
            // An fd the peer passed (grpcfd); else a look among /proc and /var/run/netns
            // (needs hostPID, as NSM's forwarders without grpcfd do).
            if let p = ReceivedFiles.shared.path(InodeURL(dev: dev, ino: ino)) {
                // The fd came from the peer: it may be any file (found by fuzz_requests.py:
                // an fd of /proc/self/stat ended as INTERNAL from the netlink step).
                do { _ = try Netlink(netns: p) } catch {
                    throw NSMError(.invalidArgument, "mechanism", "\(parameter) '\(url)': the fd passed for it is not a network namespace")
                }
                return p
            }
            if let p = find(dev: dev, ino: ino) { return p }
            throw NSMError(.notFound, "mechanism", "\(parameter) '\(url)': no network namespace with that inode is visible (the process may have exited)")
        }
        let path: String
        if url.hasPrefix("file://") { path = String(url.dropFirst("file://".count)) }
        else if url.hasPrefix("/") { path = url }
        else { throw NSMError(.invalidArgument, "mechanism", "\(parameter) '\(url)' is neither file://<path> nor inode://<dev>/<ino>") }
        guard path.hasPrefix("/"), !path.contains(",") else {
            throw NSMError(.invalidArgument, "mechanism", "\(parameter) '\(url)' needs an absolute path")
        }
        guard NetNS.identity(path) != nil else {
            throw NSMError(.notFound, "mechanism", "\(parameter) '\(url)': \(path) does not exist")
        }
        // Must really be a network namespace: opening a netlink socket there proves it.
        do { _ = try Netlink(netns: path) } catch {
            throw NSMError(.invalidArgument, "mechanism", "\(parameter) '\(url)': \(path) is not a network namespace")
        }
        return path
    }

    static func find(dev: UInt64, ino: UInt64) -> String? {
        var candidates: [String] = []
        if let ns = try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns") {
            candidates += ns.map { "/var/run/netns/" + $0 }
        }
        if let procs = try? FileManager.default.contentsOfDirectory(atPath: "/proc") {
            candidates += procs.filter { $0.allSatisfy(\.isNumber) }.map { "/proc/\($0)/ns/net" }
        }
        for p in candidates {
            if let id = NetNS.identity(p), id.dev == dev, id.ino == ino { return p }
        }
        return nil
    }
}

/// Which mechanisms Weft serves and offers, and their parameter checks.
public enum MechanismPolicy {
    /// Server side (towards the caller): LOCAL KERNEL and MEMIF; REMOTE VXLAN (from another forwarder).
    public static let servedLocal: Set<String> = [Mech.kernel, Mech.memif]
    public static let servedRemote: Set<String> = [Mech.vxlan]
    static var servedText: String { "LOCAL KERNEL, MEMIF and REMOTE VXLAN" }

    static func served(_ m: Connection_Mechanism, vfio: Bool = false) -> Bool {
        m.cls == Mech.remote ? servedRemote.contains(m.type) : servedLocal.contains(m.type) || (vfio && m.type == Mech.vfio)
    }

    /// The server side (towards the caller): the mechanism already on the connection (a
    /// refresh), else the first supported preference, in the order offered. `vfio`: the
    /// node has SR-IOV VFs (LOCAL VFIO is served too).
    public static func chooseServer(current: Connection_Mechanism?, preferences: [Connection_Mechanism],
                                    vfio: Bool = false) throws -> Connection_Mechanism {
        let isServed: (Connection_Mechanism) -> Bool = { Self.served($0, vfio: vfio) }
        if let m = current, !m.type.isEmpty {
            guard isServed(m) else {
                throw NSMError(.invalidArgument, "mechanism", "connection.mechanism type '\(m.type)' (\(m.cls)) is not served here; Weft serves \(servedText)")
            }
            return m
        }
        if preferences.isEmpty {
            throw NSMError(.invalidArgument, "mechanism", "mechanism_preferences is empty; Weft serves \(servedText)")
        }
        if let m = preferences.first(where: isServed) { return m }
        let offered = preferences.map { "\($0.cls)/\($0.type)" }.joined(separator: ", ")
        throw NSMError(.invalidArgument, "mechanism", "none of the offered mechanisms (\(offered)) is served; Weft serves \(servedText)")
    }

    /// Interface name checks (Linux: 1-15 bytes, no '/', ':' or whitespace).
    public static func checkIfName(_ n: String, _ field: String) throws {
        if n.utf8.count > Mech.linuxIfMaxLength {
            throw NSMError(.invalidArgument, "mechanism", "\(field) '\(n)' is longer than \(Mech.linuxIfMaxLength) characters")
        }
        // The kernel's dev_valid_name works on bytes: NUL ends the name (Weft would answer
        // with a name the interface does not have), its isspace() includes 0xA0, the second
        // byte of "à", and a "%" makes the name a template ("%d" became "0") (found by
        // fuzz_requests.py: each ended as INTERNAL or a wrong answer).
        let kernelRefuses: (UInt8) -> Bool = { $0 == 0 || $0 == 0x2F || $0 == 0x3A || $0 == 0x25 || $0 == 0x20 || (0x09...0x0D).contains($0) || $0 == 0xA0 }
        if n.isEmpty || n == "." || n == ".." || n.contains(where: { $0.isWhitespace }) || n.utf8.contains(where: kernelRefuses) {
            throw NSMError(.invalidArgument, "mechanism", "\(field) '\(n)' is not a valid Linux interface name")
        }
    }

    /// This node's end of REMOTE mechanisms: the tunnel address (NSM_TUNNEL_IP or the
    /// uplink's underlay address) and VXLAN port (NSM_VXLAN_PORT).
    public struct Tunnel: Sendable, Equatable {
        public var ip: String
        public var port: Int
        public init(ip: String, port: Int) { self.ip = ip; self.port = port }
    }

    /// What Weft offers the next hop, by its URL scheme: LOCAL for unix (KERNEL with a
    /// name, MEMIF), REMOTE otherwise (VXLAN with src_ip/src_port for an Ethernet payload,
    /// and an empty VLAN), as NSM's filtermechanisms; ordered by NSM_MECHANISM_PRIORITY.
    public static func clientPreferences(nextHopLocal: Bool, connection: Connection_Connection, priority: [String],
                                         tunnel: Tunnel? = nil) -> [Connection_Mechanism] {
        var out: [Connection_Mechanism] = []
        if nextHopLocal {
            var k = Connection_Mechanism()
            k.cls = Mech.local
            k.type = Mech.kernel
            k.parameters[Mech.name] = defaultIfName(service: connection.networkService, id: connection.id)
            var m = Connection_Mechanism()
            m.cls = Mech.local
            m.type = Mech.memif
            out = [k, m]
        } else {
            if let t = tunnel, connection.payload != "IP" {
                var v = Connection_Mechanism()
                v.cls = Mech.remote
                v.type = Mech.vxlan
                v.parameters[Mech.srcIP] = t.ip
                v.parameters[Mech.srcPort] = String(t.port)
                out.append(v)
            }
            var l = Connection_Mechanism()
            l.cls = Mech.remote
            l.type = Mech.vlan
            out.append(l)
        }
        if !priority.isEmpty {
            out = out.enumerated().sorted { a, b in
                let ia = priority.firstIndex(of: a.element.type) ?? Int.max, ib = priority.firstIndex(of: b.element.type) ?? Int.max
                return ia != ib ? ia < ib : a.offset < b.offset
            }.map(\.element)
        }
        return out
    }

    /// NSM's VNI rule (reference §3): random, unique per (peer address, VNI), even when
    /// src <= dst comparing the address bytes (orig_* addresses when present), odd
    /// otherwise, so connections set up from either end never collide.
    public static func allocateVNI(src: [UInt8], dst: [UInt8], inUse: Set<Int>,
                                   random: () -> Int = { Int.random(in: 1..<(1 << 24)) }) -> Int? {
        let even = src.lexicographicallyPrecedes(dst) || src == dst
        for _ in 0..<64 {
            var v = random() & 0xff_ffff
            v = even ? v & ~1 : v | 1
            if v == 0 { continue }
            if !inUse.contains(v) { return v }
        }
        // Dense: walk the space of the right parity.
        var v = even ? 2 : 1
        while v < (1 << 24) { if !inUse.contains(v) { return v }; v += 2 }
        return nil
    }

    /// NSM's kernel client names the endpoint's interface after the service: at most 10
    /// characters of it, a dash and 4 characters of the connection id.
    /// The service's first 6 characters and 8 hex digits of a hash of the connection id
    /// (15 at most). NSM's own `service[:10]-id[:4]` collides in one endpoint pod after a
    /// few hundred connections (16^4 names); 16^8 does not.
    public static func defaultIfName(service: String, id: String) -> String {
        let ok = service.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
        let base = ok.isEmpty ? "nsm" : String(ok.prefix(6))
        return base + "-" + String(Names.hash(id).prefix(8))
    }
}

/// Stable short names for a connection's objects (FNV-1a of the connection id).
public enum Names {
    public static func hash(_ s: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(format: "%016llx", h)
    }
    /// Weft's interface (dataplane) name for one side.
    public static func interface(_ id: String, _ side: Side) -> String { "nsm-\(hash(id))-\(side.letter)" }
    public static func crossConnect(_ id: String) -> String { "nsm-\(hash(id))" }
    /// The host end of a veth pair: 15 characters.
    public static func hostVeth(_ id: String, _ side: Side) -> String { "wf" + hash(id).prefix(12) + side.letter }
    /// The host end's alias: found and removed at start after a crash.
    /// "weft-nsm:<forwarder name>:": a weftd removes only its own leftovers (two
    /// forwarders sharing a namespace do not remove each other's).
    public static func hostAliasPrefix(_ forwarder: String) -> String { "weft-nsm:\(forwarder):" }
    public static func hostAlias(_ forwarder: String, _ id: String, _ side: Side) -> String {
        hostAliasPrefix(forwarder) + side.word + "-" + id
    }
    /// The pod end's alias, as NSM's forwarders set it: server-/client- + first path segment id.
    public static func podAlias(_ firstSegmentID: String, _ side: Side) -> String { side.word + "-" + firstSegmentID }
    /// A pod interface's MAC: locally administered, unicast, from its alias.
    public static func podMAC(_ alias: String) -> [UInt8] {
        let h = hash(alias)
        var b: [UInt8] = [0x02]
        var i = h.startIndex
        for _ in 0..<5 {
            let j = h.index(i, offsetBy: 2)
            b.append(UInt8(h[i..<j], radix: 16)!)
            i = j
        }
        return b
    }
    /// NSM v1.2+ memif socket: abstract, inside the pod's namespace.
    public static func memifAbstract(_ id: String) -> String { "/tmp/memif/\(id)/memif.socket" }
}

public enum Side: Sendable {
    case server, client
    var letter: String { self == .server ? "s" : "c" }
    var word: String { self == .server ? "server" : "client" }
}
