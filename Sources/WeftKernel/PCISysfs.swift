import Foundation

/// PCI functions as sysfs shows them, for SR-IOV and vfio: a PF's VFs, IOMMU
/// groups, bound drivers and network devices, and binding a function to a
/// driver. `root` is normally "/sys"; tests build a tree of their own (and a
/// writer that acts as the kernel would).
public struct PCISysfs: Sendable {
    public let root: String
    public let writer: any SysfsWriter

    public var devices: String { root + "/bus/pci/devices" }
    public var drivers: String { root + "/bus/pci/drivers" }

    public init(root: String = "/sys", writer: any SysfsWriter = FileSysfsWriter()) {
        self.root = root
        self.writer = writer
    }

    /// One virtual function of a PF: `number` is N of the PF's `virtfnN` link (the
    /// VF number the PF's netlink VF settings take), never its place in a listing.
    public struct VirtualFunction: Equatable, Sendable, Codable {
        public var pf: String
        public var number: Int
        public var address: String
        public var iommuGroup: Int?
        public init(pf: String, number: Int, address: String, iommuGroup: Int?) {
            self.pf = pf; self.number = number; self.address = address; self.iommuGroup = iommuGroup
        }
    }

    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var description: String
        public init(description: String) { self.description = description }
    }

    private func device(_ addr: String) -> String { devices + "/" + addr }

    private func read(_ path: String) -> String? {
        guard let d = FileManager.default.contents(atPath: path), let s = String(data: d, encoding: .utf8) else { return nil }
        return s.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The last component of a symlink's target.
    private func linkName(_ path: String) -> String? {
        guard let t = try? FileManager.default.destinationOfSymbolicLink(atPath: path) else { return nil }
        return (t as NSString).lastPathComponent
    }

    public func exists(_ addr: String) -> Bool { FileManager.default.fileExists(atPath: device(addr)) }

    /// The most VFs the PF can have; nil: not SR-IOV capable.
    public func totalVFs(_ pf: String) -> Int? { read(device(pf) + "/sriov_totalvfs").flatMap { Int($0) } }
    public func numVFs(_ pf: String) -> Int? { read(device(pf) + "/sriov_numvfs").flatMap { Int($0) } }

    /// Creates the PF's VFs (all it can have) when it has none yet, as NSM's forwarder does.
    public func ensureVFs(_ pf: String) throws {
        guard exists(pf) else { throw Failure(description: "PCI device \(pf) does not exist") }
        guard let total = totalVFs(pf) else { throw Failure(description: "PCI device \(pf) is not SR-IOV capable (no sriov_totalvfs)") }
        if (numVFs(pf) ?? 0) == 0, total > 0 {
            try writer.write(device(pf) + "/sriov_numvfs", String(total))
        }
    }

    /// The PF's VFs by their virtfnN links, in VF number order.
    public func virtualFunctions(of pf: String) throws -> [VirtualFunction] {
        let dir = device(pf)
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
            throw Failure(description: "PCI device \(pf) does not exist")
        }
        var out: [VirtualFunction] = []
        for e in entries where e.hasPrefix("virtfn") {
            guard let n = Int(e.dropFirst(6)), n >= 0, let addr = linkName(dir + "/" + e) else { continue }
            out.append(VirtualFunction(pf: pf, number: n, address: addr, iommuGroup: iommuGroup(addr)))
        }
        return out.sorted { $0.number < $1.number }
    }

    public func iommuGroup(_ addr: String) -> Int? { linkName(device(addr) + "/iommu_group").flatMap { Int($0) } }

    /// Every function in the IOMMU group of `addr` (vfio hands out whole groups).
    public func groupMembers(_ addr: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: device(addr) + "/iommu_group/devices")) ?? []).sorted()
    }

    /// The bound driver; nil: none.
    public func driver(_ addr: String) -> String? { linkName(device(addr) + "/driver") }

    /// The function's network devices (a VF bound to its kernel driver has one).
    public func netdevs(_ addr: String) -> [String] {
        netdevPaths(addr).map { ($0 as NSString).lastPathComponent }
    }

    /// The netdevs' sysfs directories: `<device>/net/<name>`, or for virtio-net
    /// `<device>/virtioN/net/<name>` (the netdev hangs off the virtio device).
    func netdevPaths(_ addr: String) -> [String] {
        let fm = FileManager.default
        var dirs = [device(addr) + "/net"]
        dirs += ((try? fm.contentsOfDirectory(atPath: device(addr))) ?? []).filter { $0.hasPrefix("virtio") }.map { device(addr) + "/" + $0 + "/net" }
        return dirs.flatMap { d in ((try? fm.contentsOfDirectory(atPath: d)) ?? []).map { d + "/" + $0 } }
            .sorted { ($0 as NSString).lastPathComponent < ($1 as NSString).lastPathComponent }
    }

    /// Binds `addr` to `driver`: driver_override first (so that only that driver
    /// takes it, whatever IDs it knows: vfio-pci needs no new_id), then unbind from
    /// the driver it has, then bind; checked by the driver link afterwards. Nothing
    /// is written when it is bound to that driver already.
    public func bind(_ addr: String, to driver: String) throws {
        guard exists(addr) else { throw Failure(description: "PCI device \(addr) does not exist") }
        let now = self.driver(addr)
        if now == driver { return }
        guard FileManager.default.fileExists(atPath: drivers + "/" + driver) else {
            throw Failure(description: "driver \(driver) is not loaded (no \(drivers)/\(driver))")
        }
        try writer.write(device(addr) + "/driver_override", driver)
        if now != nil { try writer.write(device(addr) + "/driver/unbind", addr) }
        // Some drivers say no and bind all the same (NSM's forwarder found this too): the link decides.
        let bindError: Error?
        do { try writer.write(drivers + "/" + driver + "/bind", addr); bindError = nil } catch { bindError = error }
        guard self.driver(addr) == driver else {
            let failure = Failure(description: "could not bind \(addr) to \(driver) (bound to \(self.driver(addr) ?? "no driver"))"
                + (bindError.map { ": \($0)" } ?? ""))
            // Back as it was: no override, the driver it had (best effort).
            try? writer.write(device(addr) + "/driver_override", "\n")
            if let now, self.driver(addr) == nil { try? writer.write(drivers + "/" + now + "/bind", addr) }
            throw failure
        }
    }

    /// The device's class code (`class`, e.g. 0x020000 for an Ethernet controller).
    public func classCode(_ addr: String) -> UInt32? {
        read(device(addr) + "/class").flatMap { UInt32($0.hasPrefix("0x") ? String($0.dropFirst(2)) : $0, radix: 16) }
    }

    /// Whether a PCI driver is registered (its module loaded).
    public func driverLoaded(_ driver: String) -> Bool { FileManager.default.fileExists(atPath: drivers + "/" + driver) }

    /// The device's network interfaces that are administratively up (IFF_UP in `flags`).
    public func netdevsUp(_ addr: String) -> [String] {
        netdevPaths(addr).filter { p in
            guard let f = read(p + "/flags"), let v = UInt32(f.dropFirst(2), radix: 16) else { return false }
            return v & 1 != 0
        }.map { ($0 as NSString).lastPathComponent }
    }

    /// Asks the kernel to bind `addr` to whichever driver matches it (`drivers_probe`),
    /// after `release`: how a device goes back to its own kernel driver.
    public func reprobe(_ addr: String) throws {
        guard exists(addr) else { return }
        try writer.write(root + "/bus/pci/drivers_probe", addr)
    }

    /// Gives `addr` back to no driver in particular: the override cleared, unbound.
    public func release(_ addr: String) throws {
        guard exists(addr) else { return }
        try writer.write(device(addr) + "/driver_override", "\n")
        if driver(addr) != nil { try writer.write(device(addr) + "/driver/unbind", addr) }
    }
}

/// How sysfs attributes are written: one write(2) of the whole value.
public protocol SysfsWriter: Sendable {
    func write(_ path: String, _ value: String) throws
}

public struct FileSysfsWriter: SysfsWriter {
    public init() {}
    public func write(_ path: String, _ value: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PCISysfs.Failure(description: "\(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        if n != bytes.count {
            throw PCISysfs.Failure(description: "writing '\(value.trimmingCharacters(in: .newlines))' to \(path): \(n < 0 ? String(cString: strerror(errno)) : "short write")")
        }
    }
}
