import Foundation
import WeftKernel
import WeftModel

/// SR-IOV VFs handed out for NSM tokens, in NSM's selection order (sdk-sriov
/// pkg/sriov/resource/pool.go `Select`, facts only; this is Weft's own code):
///
///  1. a token that holds a VF already gets it again when its IOMMU group is in
///     the state asked for (kernel or vfio); otherwise that VF is freed first;
///  2. among the free VFs of the PFs that offer the token's resource name, in
///     IOMMU groups with no state or the state asked for:
///     a VF whose group is already in the state asked for, then the PF with the
///     most free VFs, then the lowest VF address;
///  3. the VF's group takes the state; it goes back to none when no VF of the
///     group holds a token any more.
///
/// A token is `sriov-<uuid>` under a resource name (`serviceDomain/capability`),
/// given to pods by the device plugin. What the pool holds is written to `state`
/// (runtime_dir) on every change, owner-only, and read back at start: a restart
/// keeps each token's VF (NSM's forwarder forgets them). Not thread-safe: the
/// forwarder calls it from its serialized chain.
public final class SRIOVPool {
    public enum Driver: String, Codable, Sendable { case kernel, vfio }

    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var description: String
        public init(description: String) { self.description = description }
    }

    struct VF {
        var vf: PCISysfs.VirtualFunction
        var token: String?
    }

    struct PF {
        var config: SRIOVConfig.PhysicalFunction
        var free: Int
    }

    private(set) var vfs: [String: VF] = [:]
    private var pfs: [String: PF] = [:]
    private var groups: [Int: Driver] = [:]
    /// token id -> resource name
    private var tokens: [String: String] = [:]
    /// token id -> VF address
    private var held: [String: String] = [:]
    let statePath: String?

    /// `discovered`: each PF's VFs as sysfs shows them (PCISysfs.virtualFunctions);
    /// a PF whose configuration lists VFs offers only those.
    public init(config: SRIOVConfig, discovered: [String: [PCISysfs.VirtualFunction]], statePath: String? = nil) throws {
        self.statePath = statePath
        for pf in config.physicalFunctions {
            guard var found = discovered[pf.address] else {
                throw Failure(description: "physical function \(pf.address): not found")
            }
            if !pf.virtualFunctions.isEmpty {
                let listed = Set(pf.virtualFunctions.map(\.address))
                let missing = listed.subtracting(found.map(\.address))
                if !missing.isEmpty {
                    throw Failure(description: "physical function \(pf.address) has no VF \(missing.sorted().joined(separator: ", "))")
                }
                for l in pf.virtualFunctions {
                    if let g = l.iommuGroup, let f = found.first(where: { $0.address == l.address }), f.iommuGroup != g {
                        throw Failure(description: "VF \(l.address): IOMMU group \(f.iommuGroup.map(String.init) ?? "none"), the file says \(g)")
                    }
                }
                found = found.filter { listed.contains($0.address) }
            }
            pfs[pf.address] = PF(config: pf, free: found.count)
            for var v in found {
                v.pf = pf.address // the configuration's spelling: the key every lookup uses
                vfs[v.address] = VF(vf: v, token: nil)
            }
        }
        try restore()
    }

    /// A token the device plugin handed out (or one restored after a restart).
    public func addToken(_ id: String, name: String) throws {
        guard Self.isTokenID(id) else { throw Failure(description: "'\(id)' is not an SR-IOV token (sriov-<uuid>)") }
        guard pfs.values.contains(where: { $0.config.resourceNames.contains(name) }) else {
            throw Failure(description: "no physical function offers \(name)")
        }
        if let n = tokens[id], n != name { throw Failure(description: "token \(id) is \(n)'s, not \(name)'s") }
        if tokens[id] == nil {
            tokens[id] = name
            save()
        }
    }

    /// A new token for `name`.
    public func newToken(name: String) throws -> String {
        let id = "sriov-" + UUID().uuidString.lowercased()
        try addToken(id, name: name)
        return id
    }

    public static func isTokenID(_ s: String) -> Bool {
        s.hasPrefix("sriov-") && UUID(uuidString: String(s.dropFirst(6))) != nil
    }

    /// The VF for `token`, its IOMMU group set to `driver` in the pool's books (the
    /// caller binds it).
    public func select(token: String, driver: Driver) throws -> PCISysfs.VirtualFunction {
        if let a = held[token], let v = vfs[a] {
            if let g = v.vf.iommuGroup, groups[g] == driver { return v.vf }
            if v.vf.iommuGroup == nil, driver == .kernel { return v.vf }
            // Another driver: the VF goes back and a new one is picked, or, when none
            // can be, the token keeps the one it had.
            let saved = (vfs, pfs, groups, held)
            free(a)
            do { return try select(token: token, driver: driver) } catch {
                (vfs, pfs, groups, held) = saved
                save()
                throw error
            }
        }
        guard let name = tokens[token] else { throw Failure(description: "unknown SR-IOV token \(token)") }
        let candidates = vfs.values.filter { v in
            guard v.token == nil, let pf = pfs[v.vf.pf], pf.config.resourceNames.contains(name) else { return false }
            guard let g = v.vf.iommuGroup else { return driver == .kernel }
            return groups[g] == nil || groups[g] == driver
        }
        let best = candidates.min { l, r in
            let lg = l.vf.iommuGroup.flatMap { groups[$0] } == driver, rg = r.vf.iommuGroup.flatMap { groups[$0] } == driver
            if lg != rg { return lg }
            let lf = pfs[l.vf.pf]!.free, rf = pfs[r.vf.pf]!.free
            if lf != rf { return lf > rf }
            return l.vf.address < r.vf.address
        }
        guard let chosen = best else { throw Failure(description: "no free VF for \(name) (\(driver.rawValue))") }
        vfs[chosen.vf.address]!.token = token
        held[token] = chosen.vf.address
        pfs[chosen.vf.pf]!.free -= 1
        if let g = chosen.vf.iommuGroup { groups[g] = driver }
        save()
        return chosen.vf
    }

    /// The VF goes back to the pool (a Close).
    public func free(_ address: String) {
        guard let v = vfs[address], let t = v.token else { return }
        vfs[address]!.token = nil
        held[t] = nil
        pfs[v.vf.pf]!.free += 1
        if let g = v.vf.iommuGroup, !vfs.values.contains(where: { $0.vf.iommuGroup == g && $0.token != nil }) {
            groups[g] = nil
        }
        save()
    }

    public func freeCount(pf: String) -> Int { pfs[pf]?.free ?? 0 }
    /// The tokens of a resource name, in order.
    public func tokens(named name: String) -> [String] { tokens.filter { $0.value == name }.map(\.key).sorted() }
    /// The VF a token holds.
    public func held(by token: String) -> String? { held[token] }
    /// How many VFs offer a resource name.
    public func vfCount(offering name: String) -> Int {
        vfs.values.filter { pfs[$0.vf.pf]?.config.resourceNames.contains(name) == true }.count
    }
    public func groupState(_ g: Int) -> Driver? { groups[g] }
    public func holder(of address: String) -> String? { vfs[address]?.token }
    public func physicalFunction(_ address: String) -> SRIOVConfig.PhysicalFunction? { pfs[address]?.config }

    // MARK: state across restarts

    struct State: Codable {
        var tokens: [String: String]
        var held: [String: String]
        var groups: [String: Driver]
    }

    private func save() {
        guard let statePath else { return }
        let s = State(tokens: tokens, held: held, groups: Dictionary(uniqueKeysWithValues: groups.map { (String($0.key), $0.value) }))
        guard let d = try? JSONEncoder().encode(s) else { return }
        let tmp = statePath + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: d, attributes: [.posixPermissions: 0o600]) else { return }
        _ = rename(tmp, statePath)
    }

    /// What the last process held: tokens whose VF still exists in the pool keep it.
    private func restore() throws {
        guard let statePath, let d = FileManager.default.contents(atPath: statePath) else { return }
        guard let s = try? JSONDecoder().decode(State.self, from: d) else {
            throw Failure(description: "\(statePath): not the SR-IOV pool's state (remove it to start afresh)")
        }
        for (id, name) in s.tokens where Self.isTokenID(id) && pfs.values.contains(where: { $0.config.resourceNames.contains(name) }) {
            tokens[id] = name
        }
        for (id, addr) in s.held.sorted(by: { $0.key < $1.key }) {
            guard tokens[id] != nil, let v = vfs[addr], v.token == nil else { continue }
            vfs[addr]!.token = id
            held[id] = addr
            pfs[v.vf.pf]!.free -= 1
            if let g = v.vf.iommuGroup, let st = s.groups[String(g)] { groups[g] = st }
        }
        save()
    }
}
