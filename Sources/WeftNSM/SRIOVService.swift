import Foundation
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

    /// nil when the settings name no SR-IOV config file.
    public static func load(_ settings: NSMSettings, runtimeDir: String, logger: Logger) throws -> SRIOVService? {
        guard let f = settings.sriovConfigFile else { return nil }
        return try SRIOVService(configFile: f, devicesPath: settings.pciDevicesPath, runtimeDir: runtimeDir, logger: logger)
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

    /// The VF for `token`, bound to its kernel driver, with its netdev and representor;
    /// `inPod` when the token's VF is in the pod already under `podName`. A failure
    /// after the selection gives the VF back.
    func acquireKernelOrHeld(token: String, podNetns: String, podName: String) throws -> Assignment {
        try lock.withLock {
            let vf: PCISysfs.VirtualFunction
            do { vf = try pool.select(token: token, driver: .kernel) } catch let e as SRIOVPool.Failure {
                if e.description.hasPrefix("no free VF") { throw NSMError(.resourceExhausted, "sr-iov", e.description) }
                throw NSMError(.invalidArgument, "mechanism", "mechanism.parameters.tokenID: \(e.description)")
            }
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
}
