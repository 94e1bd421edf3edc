import Foundation
import Yams
import WeftDataplane
import WeftKernel
import WeftModel

/// How an interface of the configuration becomes a DPDK port: devargs, the
/// checks against the machine made before anything is applied, and what it
/// leaves on the machine (socket files, kernel devices) for cleanup.
public enum Realizer {
    /// The memif socket of an interface: configured, or one per interface in the runtime dir.
    public static func memifSocket(_ itf: InterfaceConfig, runtimeDir: String) -> String {
        itf.socket ?? "\(runtimeDir)/memif-\(itf.name).sock"
    }

    /// The kernel name of a tap interface Weft creates.
    public static func tapName(_ itf: InterfaceConfig) -> String {
        itf.iface ?? String("wf-\(itf.name)".prefix(15))
    }

    /// Checks needing the machine. Returns problems, each naming the key.
    public static func precheck(_ itf: InterfaceConfig, runtimeDir: String, releasing: Set<String> = [],
                                pci sysfs: PCISysfs = PCISysfs()) -> [ValidationIssue] {
        var out: [ValidationIssue] = []
        func issue(_ k: String, _ m: String) { out.append(ValidationIssue(path: [.key(k)], message: m)) }
        if let ns = itf.netns {
            if NetNS.identity(ns) == nil {
                issue("netns", "network namespace '\(ns)' does not exist")
                return out
            }
        }
        switch itf.type {
        case .afPacket, .afXDP, .kernel:
            if itf.netns != nil { break } // looked up inside that namespace when attached
            if let i = itf.iface, if_nametoindex(i) == 0 {
                issue("iface", "kernel interface '\(i)' does not exist in weftd's network namespace")
            }
        case .tap:
            let n = tapName(itf)
            if if_nametoindex(n) != 0 && !releasing.contains(n) {
                issue("iface", "kernel interface '\(n)' already exists; a tap interface must be new")
            }
        case .memif:
            if itf.abstract != true {
                let path = memifSocket(itf, runtimeDir: runtimeDir)
                let dir = (path as NSString).deletingLastPathComponent
                var isDir: ObjCBool = false
                if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) || !isDir.boolValue {
                    issue("socket", "memif socket directory '\(dir)' does not exist")
                } else if access(dir, W_OK | X_OK) != 0 && (itf.role ?? .server) == .server {
                    issue("socket", "memif socket directory '\(dir)' is not writable")
                } else if (itf.role ?? .server) == .server, !releasing.contains(path) {
                    var st = stat()
                    if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFSOCK {
                        issue("socket", "'\(path)' exists and is not a socket")
                    }
                }
            }
        case .pci:
            if let a = itf.pci.flatMap(normalizedPCI), !sysfs.exists(a) {
                issue("pci", "no PCI device \(a) on this machine")
            } else if let a = itf.pci.flatMap(normalizedPCI), itf.bind != true {
                let now = sysfs.driver(a), want = PCIBinding.driver(itf)
                if now != want {
                    issue("driver", "PCI device \(a) is bound to \(now ?? "no driver"), not \(want): bind it to \(want) first, or set bind: true")
                }
            }
        case .null, .ring, .vdev, .vlan, .vxlan:
            break
        }
        return out
    }

    /// DPDK devargs for an interface. `device` is a unique DPDK device suffix.
    public static func devargs(_ itf: InterfaceConfig, device: String, runtimeDir: String, workers: Int) -> String {
        switch itf.type {
        case .memif, .afPacket, .afXDP, .kernel:
            return "" // Weft's own drivers: never attached through DPDK devargs
        case .tap:
            var a = "net_tap_\(device),iface=\(tapName(itf))"
            if let m = itf.mac { a += ",mac=\(m)" }
            return a
        case .null:
            return "net_null_\(device),no-rx=1"
        case .pci:
            let addr = normalizedPCI(itf.pci!)!
            return itf.devargs.map { "\(addr),\($0)" } ?? addr
        case .vdev, .ring, .vlan, .vxlan:
            return itf.devargs ?? ""
        }
    }

    /// Before a memif server binds its socket file: a socket file nobody
    /// has bound (left by a crashed process, weftd or not) is removed; one
    /// that a live socket is bound to is in use, and that is an error.
    /// Liveness comes from /proc/net/unix, never from connecting: a memif
    /// client that connects and closes at once can make DPDK 22.11's memif
    /// PMD in the serving process panic its interrupt thread.
    public static func clearStaleSocket(_ path: String) throws -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return false }
        if let table = try? String(contentsOfFile: "/proc/net/unix", encoding: .utf8),
           table.split(separator: "\n").contains(where: { $0.hasSuffix(" " + path) }) {
            throw ApplyError(message: "memif socket \(path) is in use by another process")
        }
        unlink(path)
        return true
    }

    /// The `mtu` of a kernel interface Weft attaches: set on the interface itself.
    static func setKernelMTU(_ ifname: String, netns: String?, mtu: Int) throws {
        let nl = try Netlink(netns: netns)
        guard let i = try nl.index(of: ifname) else {
            throw ApplyError(message: "kernel interface '\(ifname)' does not exist")
        }
        if try nl.link(i).mtu != UInt32(mtu) { try nl.set(i, mtu: UInt32(mtu)) }
    }

    /// NSM's device-selector file (NSM_DEVICE_SELECTOR_FILE): `via` label -> host NIC name.
    ///   interfaces: [{name: eth1, matches: [{labelSelector: [{via: gw0}]}]}]
    public static func deviceSelector(path: String) throws -> [String: String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ApplyError(message: "cannot read device selector file \(path)")
        }
        struct File: Decodable {
            struct Interface: Decodable {
                struct Match: Decodable { var labelSelector: [[String: String]]? }
                var name: String
                var matches: [Match]?
            }
            var interfaces: [Interface]?
        }
        let f: File
        do { f = try YAMLDecoder().decode(File.self, from: text) } catch {
            throw ApplyError(message: "device selector file \(path): \(error)")
        }
        var map: [String: String] = [:]
        for i in f.interfaces ?? [] {
            for m in i.matches ?? [] { for sel in m.labelSelector ?? [] { if let v = sel["via"] { map[v] = i.name } } }
        }
        return map
    }

    /// The C core's view of an uplink's underlay (validated config in, bytes out).
    public static func underlay(_ u: UnderlayConfig, nodeVXLANPort: Int) -> Dataplane.Underlay {
        var d = Dataplane.Underlay()
        d.ipv4 = u.ipv4.flatMap(IPAddress.parseCIDR)
        d.ipv6 = u.ipv6.flatMap(IPAddress.parseCIDR)
        d.gateway4 = u.gateway4.flatMap(IPAddress.parse)
        d.gateway6 = u.gateway6.flatMap(IPAddress.parse)
        d.mtu = u.mtu
        var ports = [UInt16(nodeVXLANPort)]
        for p in u.vxlanPorts where !ports.contains(UInt16(p)) { ports.append(UInt16(p)) }
        d.vxlanPorts = ports
        d.kernelShared = u.kernelShared
        return d
    }

    /// On an uplink shared with the kernel, bind the VXLAN ports at the tunnel
    /// addresses so that the kernel does not answer Weft's tunnel traffic with
    /// ICMP port-unreachable (nothing reads them; Weft takes the packets first
    /// from the same netdev). Fails clearly if the kernel already uses a port.
    public static func holdVXLANPorts(_ u: UnderlayConfig, ports: [UInt16]) throws -> [Int32] {
        var fds: [Int32] = []
        do {
            for addr in [u.ipv4, u.ipv6].compactMap({ $0.flatMap(IPAddress.parseCIDR)?.address }) {
                for port in ports { fds.append(try bindUDP(addr, port)) }
            }
        } catch {
            fds.forEach { close($0) }
            throw error
        }
        return fds
    }

    static func bindUDP(_ addr: [UInt8], _ port: UInt16) throws -> Int32 {
        let v6 = addr.count == 16
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw ApplyError(message: "socket: \(String(cString: strerror(errno)))") }
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var rc: Int32
        if v6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: addr) }
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: addr) }
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        if rc != 0 {
            let e = String(cString: strerror(errno))
            close(fd)
            throw ApplyError(message: "cannot hold UDP \(port) at \(IPAddress.format(addr)) on the shared uplink: \(e) (is the address on the kernel interface, and the port free?)")
        }
        return fd
    }

    /// What an interface leaves on the machine that a crash would orphan.
    public static func leftovers(_ itf: InterfaceConfig, runtimeDir: String) -> (sockets: [String], links: [String]) {
        switch itf.type {
        case .memif where itf.abstract != true && (itf.role ?? .server) == .server:
            return ([memifSocket(itf, runtimeDir: runtimeDir)], [])
        case .tap:
            return ([], [tapName(itf)])
        default:
            return ([], [])
        }
    }
}
