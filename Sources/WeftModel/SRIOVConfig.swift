import Foundation
import Yams

/// NSM's SR-IOV configuration file (sdk-sriov pkg/sriov/config; `NSM_SRIOV_CONFIG_FILE`):
///
///     physicalFunctions:
///       0000:01:00.0:
///         pfKernelDriver: ice
///         vfKernelDriver: iavf
///         capabilities: [intel, 10G]
///         serviceDomains: [worker.domain]
///         virtualFunctions:            # optional: only these VFs of the PF
///           - {address: 0000:01:02.0, iommuGroup: 61}
///
/// Each physical function offers its VFs under every `serviceDomain/capability`
/// name (a device plugin resource, e.g. `worker.domain/10G`). The same keys as
/// NSM's, spelled as NSM documents them; unlike NSM's reader, an unknown key, a
/// missing field or a malformed address is an error naming file, line and key,
/// all of them at once, and a VF listed in the file restricts the pool to the
/// listed VFs instead of being added twice.
public struct SRIOVConfig: Equatable, Sendable {
    public struct VirtualFunction: Equatable, Sendable {
        public var address: String
        public var iommuGroup: Int?
        public init(address: String, iommuGroup: Int? = nil) { self.address = address; self.iommuGroup = iommuGroup }
    }

    public struct PhysicalFunction: Equatable, Sendable {
        /// The PF's PCI address, normalized (0000:01:00.0).
        public var address: String
        public var pfKernelDriver: String
        public var vfKernelDriver: String
        public var capabilities: [String]
        public var serviceDomains: [String]
        /// Empty: every VF the PF has.
        public var virtualFunctions: [VirtualFunction]

        /// The resource names this PF's VFs are offered under: `domain/capability`.
        public var resourceNames: [String] {
            serviceDomains.flatMap { d in capabilities.map { "\(d)/\($0)" } }
        }

        public init(address: String, pfKernelDriver: String, vfKernelDriver: String, capabilities: [String],
                    serviceDomains: [String], virtualFunctions: [VirtualFunction] = []) {
            self.address = address; self.pfKernelDriver = pfKernelDriver; self.vfKernelDriver = vfKernelDriver
            self.capabilities = capabilities; self.serviceDomains = serviceDomains; self.virtualFunctions = virtualFunctions
        }
    }

    /// Sorted by address.
    public var physicalFunctions: [PhysicalFunction]

    public init(physicalFunctions: [PhysicalFunction]) {
        self.physicalFunctions = physicalFunctions.sorted { $0.address < $1.address }
    }

    public static func load(path: String) throws -> SRIOVConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigErrors(errors: [ConfigError(file: path, line: nil, path: "", message: "cannot read file")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigErrors(errors: [ConfigError(file: path, line: nil, path: "", message: "file is not UTF-8")])
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws -> SRIOVConfig {
        var errors: [ConfigError] = []
        func fail(_ n: Node?, _ path: String, _ message: String) {
            errors.append(ConfigError(file: file, line: n?.mark?.line, path: path, message: message))
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text, .default, .default, .utf8)
        } catch {
            throw ConfigErrors(errors: [ConfigError(file: file, line: nil, path: "", message: "YAML: \(error)")])
        }
        guard let root, case .mapping(let top) = root else {
            throw ConfigErrors(errors: [ConfigError(file: file, line: root?.mark?.line ?? 1, path: "",
                                                    message: "expected a mapping with the key physicalFunctions")])
        }
        var pfs: [PhysicalFunction] = []
        var seen: [String: String] = [:]
        for (k, v) in top {
            guard k.string == "physicalFunctions" else {
                fail(k, k.string ?? "?", "unknown key '\(k.string ?? "?")' (expected physicalFunctions)")
                continue
            }
            guard case .mapping(let byAddress) = v else {
                fail(v, "physicalFunctions", "expected a mapping of PCI addresses to physical functions")
                continue
            }
            for (ak, pv) in byAddress {
                let raw = ak.string ?? ""
                let path = "physicalFunctions.\(raw)"
                guard let address = normalizedPCI(raw) else {
                    fail(ak, path, "'\(raw)' is not a PCI address (domain:bus:device.function, e.g. 0000:01:00.0)")
                    continue
                }
                if let other = seen[address] {
                    fail(ak, path, "\(address) is given twice (also as '\(other)')")
                    continue
                }
                seen[address] = raw
                if let pf = physicalFunction(address, pv, path, fail) { pfs.append(pf) }
            }
        }
        if top.first(where: { $0.key.string == "physicalFunctions" }) == nil, errors.isEmpty {
            fail(root, "", "no physicalFunctions")
        }
        // A VF belongs to one PF.
        var owner: [String: String] = [:]
        for pf in pfs {
            for vf in pf.virtualFunctions {
                if let o = owner[vf.address] {
                    errors.append(ConfigError(file: file, line: nil, path: "physicalFunctions.\(pf.address).virtualFunctions",
                                              message: "VF \(vf.address) is also listed under \(o)"))
                }
                owner[vf.address] = pf.address
            }
        }
        if !errors.isEmpty { throw ConfigErrors(errors: errors.sorted { ($0.line ?? 0) < ($1.line ?? 0) }) }
        return SRIOVConfig(physicalFunctions: pfs)
    }

    private static func physicalFunction(_ address: String, _ n: Node, _ path: String,
                                         _ fail: (Node?, String, String) -> Void) -> PhysicalFunction? {
        guard case .mapping(let m) = n else {
            fail(n, path, "expected a mapping (pfKernelDriver, vfKernelDriver, capabilities, serviceDomains)")
            return nil
        }
        var pf = PhysicalFunction(address: address, pfKernelDriver: "", vfKernelDriver: "", capabilities: [], serviceDomains: [])
        var ok = true
        func driver(_ v: Node, _ key: String) -> String {
            guard let s = v.scalar?.string, !s.isEmpty, s.count <= 64,
                  s.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) || "-_".unicodeScalars.contains($0) }),
                  s.unicodeScalars.allSatisfy(\.isASCII) else {
                fail(v, "\(path).\(key)", "expected a driver name (letters, digits, '-' and '_')")
                ok = false
                return ""
            }
            return s
        }
        func names(_ v: Node, _ key: String) -> [String] {
            guard case .sequence(let seq) = v, !seq.isEmpty else {
                fail(v, "\(path).\(key)", "expected a list of at least one name")
                ok = false
                return []
            }
            var out: [String] = []
            for (i, e) in seq.enumerated() {
                // A resource name is domain/capability: neither part may hold '/' or be empty.
                guard let s = e.scalar?.string, !s.isEmpty, s.count <= 63, !s.contains("/"),
                      s.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f }) else {
                    fail(e, "\(path).\(key)[\(i)]", "expected a name of printable ASCII without '/' or spaces")
                    ok = false
                    continue
                }
                if out.contains(s) {
                    fail(e, "\(path).\(key)[\(i)]", "'\(s)' is listed twice")
                    ok = false
                }
                out.append(s)
            }
            return out
        }
        for (k, v) in m {
            switch k.string ?? "" {
            case "pfKernelDriver": pf.pfKernelDriver = driver(v, "pfKernelDriver")
            case "vfKernelDriver": pf.vfKernelDriver = driver(v, "vfKernelDriver")
            case "capabilities": pf.capabilities = names(v, "capabilities")
            case "serviceDomains": pf.serviceDomains = names(v, "serviceDomains")
            case "virtualFunctions":
                guard case .sequence(let seq) = v else {
                    fail(v, "\(path).virtualFunctions", "expected a list of {address, iommuGroup}")
                    ok = false
                    continue
                }
                for (i, e) in seq.enumerated() {
                    let p = "\(path).virtualFunctions[\(i)]"
                    guard case .mapping(let vm) = e else { fail(e, p, "expected {address, iommuGroup}"); ok = false; continue }
                    var vf = VirtualFunction(address: "")
                    for (vk, vv) in vm {
                        switch vk.string ?? "" {
                        case "address":
                            if let a = vv.scalar.flatMap({ normalizedPCI($0.string) }) { vf.address = a } else {
                                fail(vv, "\(p).address", "'\(vv.scalar?.string ?? "")' is not a PCI address"); ok = false
                            }
                        case "iommuGroup":
                            if let g = vv.scalar.flatMap({ Int($0.string) }), g >= 0, g < 1 << 20 { vf.iommuGroup = g } else {
                                fail(vv, "\(p).iommuGroup", "expected an IOMMU group number"); ok = false
                            }
                        default:
                            fail(vk, "\(p).\(vk.string ?? "?")", "unknown key '\(vk.string ?? "?")' (expected address, iommuGroup)")
                            ok = false
                        }
                    }
                    if vf.address.isEmpty {
                        if vm.first(where: { $0.key.string == "address" }) == nil { fail(e, p, "address missing"); ok = false }
                    } else if pf.virtualFunctions.contains(where: { $0.address == vf.address }) {
                        fail(e, p, "VF \(vf.address) is listed twice"); ok = false
                    } else {
                        pf.virtualFunctions.append(vf)
                    }
                }
            default:
                fail(k, "\(path).\(k.string ?? "?")",
                     "unknown key '\(k.string ?? "?")' (expected pfKernelDriver, vfKernelDriver, capabilities, serviceDomains, virtualFunctions)")
                ok = false
            }
        }
        for (key, missing) in [("pfKernelDriver", m.first { $0.key.string == "pfKernelDriver" } == nil),
                               ("vfKernelDriver", m.first { $0.key.string == "vfKernelDriver" } == nil),
                               ("capabilities", m.first { $0.key.string == "capabilities" } == nil),
                               ("serviceDomains", m.first { $0.key.string == "serviceDomains" } == nil)] where missing {
            fail(n, path, "\(key) missing")
            ok = false
        }
        return ok ? pf : nil
    }
}
