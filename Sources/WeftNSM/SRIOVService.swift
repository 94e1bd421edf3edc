import Foundation
import Glibc
import Logging
import WeftKernel
import WeftModel

/// SR-IOV VFs for NSM's KERNEL mechanism with a `tokenID`: NSM's config file
/// (NSM_SRIOV_CONFIG_FILE), the PFs' VFs found in sysfs (NSM_PCI_DEVICES_PATH), the
/// token pool, and what a connection needs of its VF: bound to the PF's
/// `vfKernelDriver`, its netdev, and its representor when the PF is in switchdev
/// mode (a netdev of the PF whose `phys_port_name` is `pf<M>vf<N>`).
///
/// Tokens: one per VF for each resource name (`serviceDomain/capability`), as NSM's
/// token pool makes them, kept across restarts in the pool's state file
/// (`<runtime_dir>/sriov-pool.json`, owner-only). Weft has no kubelet device plugin
/// yet: the tokens are read from that file.
public final class SRIOVService: @unchecked Sendable {
    let config: SRIOVConfig
    let sysfs: PCISysfs
    let pool: SRIOVPool
    let statePath: String
    private let lock = NSLock()

    struct Assignment: Equatable {
        var vf: PCISysfs.VirtualFunction
        /// The VF's netdev's name in weftd's namespace (it goes back under it).
        var netdev: String
        var representor: String?
        /// In the pod already (a refresh, or a heal after a restart).
        var inPod = false
    }
    /// VF address -> its netdev's name in weftd's namespace, kept across restarts
    /// (sysfs shows a netdev only in the namespace it is in).
    private var netdevNames: [String: String] = [:]
    private var namesPath: String { statePath.replacingOccurrences(of: "sriov-pool.json", with: "sriov-netdevs.json") }

    /// VFIO: the group devices' directory and the cgroup v1 devices hierarchy.
    var vfioPath = "/dev/vfio"
    var cgroupPath = "/sys/fs/cgroup/devices"
    /// "<cgroup dir> <rule>" -> how many connections it was allowed for.
    private var granted: [String: Int] = [:]

    /// nil when the settings name no SR-IOV config file.
    public static func load(_ settings: NSMSettings, runtimeDir: String, logger: Logger) throws -> SRIOVService? {
        guard let f = settings.sriovConfigFile else { return nil }
        let s = try SRIOVService(configFile: f, devicesPath: settings.pciDevicesPath, runtimeDir: runtimeDir, logger: logger)
        s.vfioPath = settings.vfioPath
        s.cgroupPath = settings.cgroupPath
        return s
    }

    init(configFile: String, devicesPath: String, runtimeDir: String, logger: Logger) throws {
        guard let text = try? String(contentsOfFile: configFile, encoding: .utf8) else {
            throw NSMSettings.Error(description: "SR-IOV config file \(configFile) cannot be read")
        }
        config = try SRIOVConfig.parse(text, file: configFile)
        var root = devicesPath
        while root.hasSuffix("/") { root.removeLast() }
        root = String(root.dropLast("/bus/pci/devices".count))
        sysfs = PCISysfs(root: root.isEmpty ? "/" : root)
        var discovered: [String: [PCISysfs.VirtualFunction]] = [:]
        for pf in config.physicalFunctions {
            do {
                try sysfs.ensureVFs(pf.address)
                discovered[pf.address] = try sysfs.virtualFunctions(of: pf.address)
            } catch {
                throw NSMSettings.Error(description: "SR-IOV config file \(configFile): physical function \(pf.address): \(error)")
            }
        }
        statePath = runtimeDir + "/sriov-pool.json"
        pool = try SRIOVPool(config: config, discovered: discovered, statePath: statePath)
        if let d = FileManager.default.contents(atPath: namesPath), let m = try? JSONDecoder().decode([String: String].self, from: d) {
            netdevNames = m
        }
        for name in Set(config.physicalFunctions.flatMap(\.resourceNames)).sorted() {
            let want = pool.vfCount(offering: name)
            for _ in pool.tokens(named: name).count..<max(want, pool.tokens(named: name).count) { _ = try pool.newToken(name: name) }
            logger.notice("SR-IOV: \(name): \(want) VFs, tokens in \(statePath)")
        }
    }

    /// The pool's choice for `token`, its refusals as NSM errors (lock held).
    private func select(_ token: String, _ driver: SRIOVPool.Driver) throws -> PCISysfs.VirtualFunction {
        do { return try pool.select(token: token, driver: driver) } catch let e as SRIOVPool.Failure {
            if e.description.hasPrefix("no free VF") { throw NSMError(.resourceExhausted, "sr-iov", e.description) }
            throw NSMError(.invalidArgument, "mechanism", "mechanism.parameters.tokenID: \(e.description)")
        }
    }

    /// The VF for `token`, bound to its kernel driver, with its netdev and representor;
    /// `inPod` when the token's VF is in the pod already under `podName`. A failure
    /// after the selection gives the VF back.
    func acquireKernelOrHeld(token: String, podNetns: String, podName: String) throws -> Assignment {
        try lock.withLock {
            let vf = try select(token, .kernel)
            do {
                guard let pf = pool.physicalFunction(vf.pf) else { throw NSMError(.internalError, "sr-iov", "VF \(vf.address) has no PF") }
                do { try sysfs.bind(vf.address, to: pf.vfKernelDriver) } catch {
                    throw NSMError(.internalError, "sr-iov", "binding VF \(vf.address) to \(pf.vfKernelDriver): \(error)")
                }
                let root = try? Netlink(netns: nil)
                if let known = netdevNames[vf.address], (try? root?.index(of: known)) ?? nil == nil,
                   let pod = try? Netlink(netns: podNetns), (try? pod.index(of: podName)) ?? nil != nil {
                    return Assignment(vf: vf, netdev: known, representor: representor(of: vf), inPod: true)
                }
                // A freshly bound VF's netdev shows up a moment later (NSM waits up to 1 s too).
                var names = sysfs.netdevs(vf.address)
                for _ in 0..<10 where names.isEmpty {
                    usleep(100_000)
                    names = sysfs.netdevs(vf.address)
                }
                guard names.count == 1 else {
                    throw NSMError(.failedPrecondition, "sr-iov", "VF \(vf.address) has \(names.isEmpty ? "no network interface" : "interfaces \(names.joined(separator: ", "))") in weftd's namespace; one is needed")
                }
                if netdevNames[vf.address] != names[0] {
                    netdevNames[vf.address] = names[0]
                    if let d = try? JSONEncoder().encode(netdevNames) {
                        _ = FileManager.default.createFile(atPath: namesPath, contents: d, attributes: [.posixPermissions: 0o600])
                    }
                }
                return Assignment(vf: vf, netdev: names[0], representor: representor(of: vf))
            } catch {
                pool.free(vf.address)
                throw error
            }
        }
    }

    /// The VF's representor: a netdev of its PF named by the eswitch `pf<M>vf<N>`.
    func representor(of vf: PCISysfs.VirtualFunction) -> String? {
        let dir = sysfs.devices + "/" + vf.pf + "/net"
        for n in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
            guard let d = FileManager.default.contents(atPath: dir + "/" + n + "/phys_port_name"),
                  let name = String(data: d, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines) else { continue }
            if let r = name.range(of: "vf"), name.hasPrefix("pf"), Int(name[r.upperBound...]) == vf.number,
               Int(name[name.index(name.startIndex, offsetBy: 2)..<r.lowerBound]) != nil {
                return n
            }
        }
        return nil
    }

    func release(_ address: String) { lock.withLock { pool.free(address) } }

    // MARK: VFIO

    struct VFIOAssignment: Equatable {
        var vf: PCISysfs.VirtualFunction
        var representor: String?
        var group: Int
        /// (major, minor) of `<vfio>/vfio` and of `<vfio>/<group>`.
        var container: [UInt32]
        var device: [UInt32]
    }

    /// The VF for `token` with its whole IOMMU group on vfio-pci (VFIO takes a group),
    /// and the numbers of the container and group devices the pod will open.
    func acquireVFIO(token: String) throws -> VFIOAssignment {
        try lock.withLock {
            let vf = try select(token, .vfio)
            do {
                guard let g = vf.iommuGroup else {
                    throw NSMError(.failedPrecondition, "vfio", "VF \(vf.address) is in no IOMMU group (is the IOMMU on?): VFIO needs one")
                }
                for a in Set(sysfs.groupMembers(vf.address) + [vf.address]).sorted() {
                    do { try sysfs.bind(a, to: "vfio-pci") } catch {
                        throw NSMError(.internalError, "vfio", "binding \(a) (IOMMU group \(g)) to vfio-pci: \(error)")
                    }
                }
                let group = vfioPath + "/\(g)"
                var st = stat()
                for _ in 0..<10 where stat(group, &st) != 0 { usleep(100_000) }
                guard let dev = Self.charDevice(group), let container = Self.charDevice(vfioPath + "/vfio") else {
                    throw NSMError(.failedPrecondition, "vfio", "\(group) or \(vfioPath)/vfio is not a character device (NSM_VFIO_PATH)")
                }
                return VFIOAssignment(vf: vf, representor: representor(of: vf), group: g, container: container, device: dev)
            } catch {
                pool.free(vf.address)
                throw error
            }
        }
    }

    static func charDevice(_ path: String) -> [UInt32]? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFCHR else { return nil }
        // glibc's dev_t encoding (major/minor are macros Swift cannot see).
        let d = UInt64(st.st_rdev)
        let major = ((d >> 8) & 0xfff) | ((d >> 32) & ~UInt64(0xfff))
        let minor = (d & 0xff) | ((d >> 12) & ~UInt64(0xff))
        return [UInt32(truncatingIfNeeded: major), UInt32(truncatingIfNeeded: minor)]
    }

    /// What a connection was allowed in which device cgroups (rules as written).
    struct CgroupGrant: Equatable, Sendable {
        var entries: [[String]] = [] // [cgroup dir, rule]
    }

    /// Lets the pod's containers open `devices` (`c MAJ:MIN rwm` into devices.allow of every
    /// cgroup `cgroupDir` matches under the devices hierarchy; `*` as NSM's client sends for
    /// all containers of a pod). A cgroup whose devices.list already allows it is left alone.
    /// cgroup v1 only, as NSM's: a v2 host has no devices.list and is refused.
    func allow(cgroupDir: String, devices: [[UInt32]]) throws -> CgroupGrant {
        let rel = cgroupDir.drop { $0 == "/" }
        guard !rel.isEmpty, !rel.split(separator: "/").contains(".."), !rel.contains("\n") else {
            throw NSMError(.invalidArgument, "mechanism", "mechanism.parameters.cgroupDir '\(cgroupDir)' is not a cgroup path under the devices hierarchy")
        }
        let dirs = Self.glob(cgroupPath + "/" + rel).filter { FileManager.default.fileExists(atPath: $0 + "/devices.list") }
        guard !dirs.isEmpty else {
            throw NSMError(.invalidArgument, "mechanism", "mechanism.parameters.cgroupDir '\(cgroupDir)' matches no device cgroup under \(cgroupPath) (cgroup v1 devices; NSM_CGROUP_PATH)")
        }
        var grant = CgroupGrant()
        try lock.withLock {
            for d in dirs {
                let list = (try? String(contentsOfFile: d + "/devices.list", encoding: .utf8)) ?? ""
                for dev in devices {
                    let rule = "c \(dev[0]):\(dev[1]) rwm"
                    if Self.covers(list, major: dev[0], minor: dev[1]) && granted[d + " " + rule] == nil { continue }
                    do { try Self.append(d + "/devices.allow", rule) } catch {
                        for e in grant.entries.reversed() { revokeLocked(e) }
                        throw NSMError(.internalError, "vfio", "allowing \(rule) in \(d): \(error)")
                    }
                    granted[d + " " + rule, default: 0] += 1
                    grant.entries.append([d, rule])
                }
            }
        }
        return grant
    }

    /// The connection's part of what was allowed goes; a rule no connection needs any more
    /// is denied (devices.deny).
    func revoke(_ grant: CgroupGrant) { lock.withLock { for e in grant.entries.reversed() { revokeLocked(e) } } }

    private func revokeLocked(_ e: [String]) {
        let key = e[0] + " " + e[1]
        guard let n = granted[key] else { return }
        if n > 1 { granted[key] = n - 1; return }
        granted[key] = nil
        try? Self.append(e[0] + "/devices.deny", e[1])
    }

    /// Whether a devices.list allows (major, minor) for rwm already: `a`, `c *:*`,
    /// `c M:*` or `c M:m` with all of r, w, m.
    static func covers(_ list: String, major: UInt32, minor: UInt32) -> Bool {
        list.split(separator: "\n").contains { line in
            let f = line.split(separator: " ")
            guard f.count == 3, Set(f[2]).isSuperset(of: ["r", "w", "m"]) else { return false }
            if f[0] == "a" { return true }
            guard f[0] == "c" else { return false }
            let mm = f[1].split(separator: ":", omittingEmptySubsequences: false)
            guard mm.count == 2 else { return false }
            return (mm[0] == "*" || mm[0] == Substring(String(major))) && (mm[1] == "*" || mm[1] == Substring(String(minor)))
        }
    }

    static func append(_ path: String, _ line: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { throw PCISysfs.Failure(description: "\(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let b = Array((line + "\n").utf8)
        let n = b.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n != b.count { throw PCISysfs.Failure(description: "\(path): \(String(cString: strerror(errno)))") }
    }

    static func glob(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(pattern, 0, nil, &g) == 0 else { return [] }
        return (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }
    }
}
