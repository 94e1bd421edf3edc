import Foundation
import WeftKernel
import WeftModel
@testable import WeftNSM
import XCTest

/// SR-IOV without SR-IOV hardware: NSM's config file, VF discovery and driver
/// binding against a sysfs tree the test builds (a writer that acts as the
/// kernel does on driver_override/unbind/bind), and the token pool's selection
/// order, frees and restarts.
final class SRIOVTests: XCTestCase {
    // MARK: the config file

    func testNSMsExampleParses() throws {
        let c = try SRIOVConfig.parse("""
            ---
            physicalFunctions:
              0000:01:00.0:
                pfKernelDriver: ice
                vfKernelDriver: iavf
                capabilities: [intel, 10G]
                serviceDomains: [worker.domain]
              0000:02:00.1:
                pfKernelDriver: mlx5_core
                vfKernelDriver: mlx5_core
                capabilities:
                  - 100G
                serviceDomains: [worker.domain, other]
                virtualFunctions:
                  - address: 0000:02:00.3
                    iommuGroup: 61
            """, file: "pci.config")
        XCTAssertEqual(c.physicalFunctions.map(\.address), ["0000:01:00.0", "0000:02:00.1"])
        XCTAssertEqual(c.physicalFunctions[0].resourceNames, ["worker.domain/intel", "worker.domain/10G"])
        XCTAssertEqual(c.physicalFunctions[1].resourceNames, ["worker.domain/100G", "other/100G"])
        XCTAssertEqual(c.physicalFunctions[1].virtualFunctions, [.init(address: "0000:02:00.3", iommuGroup: 61)])
    }

    func testEveryMistakeOfTheFileIsReportedWithItsLine() {
        let text = """
            physicalFunctions:
              0000:01:00.0:
                pfKernelDriver: ice
                vfKernelDriver: "iavf; rm"
                capabilities: []
                serviceDomains: [a/b]
                colour: blue
              01:00.0:
                pfKernelDriver: ice
                vfKernelDriver: iavf
                capabilities: [x]
                serviceDomains: [d]
              0000:zz:00.0:
                pfKernelDriver: ice
              0000:03:00.0:
                vfKernelDriver: iavf
                capabilities: [x]
                serviceDomains: [d]
                virtualFunctions:
                  - {address: "0000:03:00.2", iommuGroup: -1}
                  - address: 0000:03:00.2
            extra: 1
            """
        XCTAssertThrowsError(try SRIOVConfig.parse(text, file: "pci.config")) { e in
            let errors = (e as? ConfigErrors)?.errors ?? []
            let lines = errors.map { "\($0.line ?? 0) \($0.path): \($0.message)" }
            func has(_ line: Int, _ fragment: String) {
                XCTAssertTrue(lines.contains { $0.hasPrefix("\(line) ") && $0.contains(fragment) }, "no '\(fragment)' at line \(line) in \(lines)")
            }
            has(4, "expected a driver name")
            has(5, "at least one name")
            has(6, "without '/'")
            has(7, "unknown key 'colour'")
            has(8, "0000:01:00.0 is given twice")
            has(13, "'0000:zz:00.0' is not a PCI address")
            has(16, "pfKernelDriver missing")
            has(20, "expected an IOMMU group number")
            has(21, "listed twice")
            has(22, "unknown key 'extra'")
            XCTAssertEqual(errors.count, 10, "\(lines)")
        }
    }

    // MARK: sysfs

    /// A sysfs tree: PFs with VFs (virtfnN links), IOMMU groups, drivers, netdevs.
    final class FakeSysfs: SysfsWriter, @unchecked Sendable {
        let root: String
        var writes: [String] = []
        /// Drivers that refuse to bind (the link does not appear).
        var refuse: Set<String> = []
        let lock = NSLock()

        init() throws {
            root = NSTemporaryDirectory() + "weft-sysfs-\(UUID().uuidString.prefix(8))"
            for d in ["bus/pci/devices", "bus/pci/drivers/ice", "bus/pci/drivers/iavf", "bus/pci/drivers/vfio-pci", "kernel/iommu_groups"] {
                try FileManager.default.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true)
            }
        }
        deinit { try? FileManager.default.removeItem(atPath: root) }

        var devices: String { root + "/bus/pci/devices" }

        func device(_ addr: String, driver: String?, group: Int?, netdev: String? = nil, total: Int? = nil) throws {
            let d = devices + "/" + addr
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: d + "/driver_override", contents: Data("(null)\n".utf8))
            if let total {
                _ = FileManager.default.createFile(atPath: d + "/sriov_totalvfs", contents: Data("\(total)\n".utf8))
                _ = FileManager.default.createFile(atPath: d + "/sriov_numvfs", contents: Data("0\n".utf8))
            }
            if let driver { try link(d + "/driver", root + "/bus/pci/drivers/" + driver) }
            if let group {
                let g = root + "/kernel/iommu_groups/\(group)/devices"
                try FileManager.default.createDirectory(atPath: g, withIntermediateDirectories: true)
                try link(g + "/" + addr, devices + "/" + addr)
                try link(d + "/iommu_group", root + "/kernel/iommu_groups/\(group)")
            }
            if let netdev { try FileManager.default.createDirectory(atPath: d + "/net/" + netdev, withIntermediateDirectories: true) }
        }

        func vf(pf: String, n: Int, addr: String, group: Int?, driver: String? = "iavf") throws {
            try device(addr, driver: driver, group: group, netdev: driver == "iavf" ? "vf\(n)" : nil)
            try link(devices + "/" + pf + "/virtfn\(n)", "../" + addr)
        }

        func link(_ at: String, _ to: String) throws {
            try? FileManager.default.removeItem(atPath: at)
            try FileManager.default.createSymbolicLink(atPath: at, withDestinationPath: to)
        }

        /// What the kernel does with the writes PCISysfs makes.
        func write(_ path: String, _ value: String) throws {
            lock.withLock { writes.append("\(path.replacingOccurrences(of: root, with: "")) <- \(value)") }
            let parts = path.replacingOccurrences(of: root + "/", with: "").split(separator: "/").map(String.init)
            switch (parts.count, parts.last) {
            case (5, "driver_override"):
                try value.write(toFile: path, atomically: false, encoding: .utf8)
            case (6, "unbind"):
                try FileManager.default.removeItem(atPath: devices + "/" + parts[3] + "/driver")
                try? FileManager.default.removeItem(atPath: devices + "/" + parts[3] + "/net")
            case (5, "bind"):
                let driver = parts[3], dev = devices + "/" + value
                let override = (try? String(contentsOfFile: dev + "/driver_override", encoding: .utf8)) ?? ""
                let o = override.trimmingCharacters(in: .whitespacesAndNewlines)
                if refuse.contains(driver) || FileManager.default.fileExists(atPath: dev + "/driver")
                    || !(o.isEmpty || o == "(null)" || o == driver) {
                    throw PCISysfs.Failure(description: "\(path): No such device")
                }
                try link(dev + "/driver", root + "/bus/pci/drivers/" + driver)
            case (5, "sriov_numvfs"):
                try value.write(toFile: path, atomically: false, encoding: .utf8)
            default:
                throw PCISysfs.Failure(description: "\(path): not writable in this tree")
            }
        }
    }

    func testVFsAreFoundByTheirVirtfnNumberNotByListingOrder() throws {
        let fake = try FakeSysfs()
        try fake.device("0000:01:00.0", driver: "ice", group: 1, netdev: "ens1f0", total: 12)
        // virtfn10 and virtfn11 sort before virtfn2 as text: the number comes from the name.
        for n in 0..<12 { try fake.vf(pf: "0000:01:00.0", n: n, addr: String(format: "0000:01:%02x.%d", 2 + n / 8, n % 8), group: 40 + n) }
        let s = PCISysfs(root: fake.root, writer: fake)
        let vfs = try s.virtualFunctions(of: "0000:01:00.0")
        XCTAssertEqual(vfs.map(\.number), Array(0..<12))
        XCTAssertEqual(vfs[10].address, "0000:01:03.2")
        XCTAssertEqual(vfs[10].iommuGroup, 50)
        XCTAssertEqual(s.driver(vfs[3].address), "iavf")
        XCTAssertEqual(s.netdevs(vfs[3].address), ["vf3"])
        XCTAssertEqual(s.groupMembers(vfs[3].address), [vfs[3].address])
        XCTAssertEqual(s.totalVFs("0000:01:00.0"), 12)

        // No VFs yet: all of them are created (sriov_numvfs <- sriov_totalvfs); then nothing more is written.
        try s.ensureVFs("0000:01:00.0")
        XCTAssertEqual(fake.writes, ["/bus/pci/devices/0000:01:00.0/sriov_numvfs <- 12"])
        try s.ensureVFs("0000:01:00.0")
        XCTAssertEqual(fake.writes.count, 1)
        XCTAssertThrowsError(try s.ensureVFs("0000:09:00.0")) { XCTAssertTrue("\($0)".contains("does not exist")) }
        try fake.device("0000:05:00.0", driver: "ice", group: 2)
        XCTAssertThrowsError(try s.ensureVFs("0000:05:00.0")) { XCTAssertTrue("\($0)".contains("not SR-IOV capable")) }
    }

    func testBindingWritesOverrideUnbindBindInThatOrderAndChecksTheLink() throws {
        let fake = try FakeSysfs()
        try fake.device("0000:01:00.0", driver: "ice", group: 1, total: 2)
        try fake.vf(pf: "0000:01:00.0", n: 0, addr: "0000:01:02.0", group: 40)
        let s = PCISysfs(root: fake.root, writer: fake)

        try s.bind("0000:01:02.0", to: "vfio-pci")
        XCTAssertEqual(fake.writes, [
            "/bus/pci/devices/0000:01:02.0/driver_override <- vfio-pci",
            "/bus/pci/devices/0000:01:02.0/driver/unbind <- 0000:01:02.0",
            "/bus/pci/drivers/vfio-pci/bind <- 0000:01:02.0",
        ])
        XCTAssertEqual(s.driver("0000:01:02.0"), "vfio-pci")
        XCTAssertEqual(s.netdevs("0000:01:02.0"), [])

        // Bound already: nothing written.
        fake.writes = []
        try s.bind("0000:01:02.0", to: "vfio-pci")
        XCTAssertEqual(fake.writes, [])

        // Back to the kernel driver.
        try s.bind("0000:01:02.0", to: "iavf")
        XCTAssertEqual(fake.writes.last, "/bus/pci/drivers/iavf/bind <- 0000:01:02.0")
        XCTAssertEqual(s.driver("0000:01:02.0"), "iavf")

        // A driver that refuses: a clear error naming what it is bound to now.
        fake.refuse = ["vfio-pci"]
        XCTAssertThrowsError(try s.bind("0000:01:02.0", to: "vfio-pci")) { e in
            XCTAssertTrue("\(e)".contains("could not bind 0000:01:02.0 to vfio-pci (bound to no driver)"), "\(e)")
        }
        // ...and the device is given back as it was: the override cleared, its driver again.
        XCTAssertEqual(s.driver("0000:01:02.0"), "iavf")
        XCTAssertEqual(fake.writes.suffix(2), ["/bus/pci/devices/0000:01:02.0/driver_override <- \n",
                                                "/bus/pci/drivers/iavf/bind <- 0000:01:02.0"])
        // A driver that is not loaded, a device that does not exist: nothing written.
        fake.writes = []
        XCTAssertThrowsError(try s.bind("0000:01:02.0", to: "igb_uio")) { XCTAssertTrue("\($0)".contains("driver igb_uio is not loaded")) }
        XCTAssertThrowsError(try s.bind("0000:07:00.0", to: "vfio-pci")) { XCTAssertTrue("\($0)".contains("does not exist")) }
        XCTAssertEqual(fake.writes, [])

        // Release: override cleared, unbound.
        fake.refuse = []
        try s.bind("0000:01:02.0", to: "vfio-pci")
        fake.writes = []
        try s.release("0000:01:02.0")
        XCTAssertEqual(fake.writes, ["/bus/pci/devices/0000:01:02.0/driver_override <- \n",
                                     "/bus/pci/devices/0000:01:02.0/driver/unbind <- 0000:01:02.0"])
        XCTAssertNil(s.driver("0000:01:02.0"))
    }

    // MARK: the pool

    /// PF A (0000:01:00.0): VFs a0, a1 sharing IOMMU group 10 (no ACS); PF B
    /// (0000:02:00.0): VFs b0, b1, b2 in groups 20, 21, 22. Both offer d/10G; A also d/intel.
    func pool(statePath: String? = nil, listA: [SRIOVConfig.VirtualFunction] = []) throws -> SRIOVPool {
        let config = SRIOVConfig(physicalFunctions: [
            .init(address: "0000:01:00.0", pfKernelDriver: "ice", vfKernelDriver: "iavf", capabilities: ["10G", "intel"],
                  serviceDomains: ["d"], virtualFunctions: listA),
            .init(address: "0000:02:00.0", pfKernelDriver: "ice", vfKernelDriver: "iavf", capabilities: ["10G"], serviceDomains: ["d"]),
        ])
        let a = [PCISysfs.VirtualFunction(pf: "0000:01:00.0", number: 0, address: "0000:01:02.0", iommuGroup: 10),
                 PCISysfs.VirtualFunction(pf: "0000:01:00.0", number: 1, address: "0000:01:02.1", iommuGroup: 10)]
        let b = (0..<3).map { PCISysfs.VirtualFunction(pf: "0000:02:00.0", number: $0, address: "0000:02:02.\($0)", iommuGroup: 20 + $0) }
        return try SRIOVPool(config: config, discovered: ["0000:01:00.0": a, "0000:02:00.0": b], statePath: statePath)
    }

    func testSelectionFollowsNSMsOrder() throws {
        let p = try pool()
        let t = try (0..<5).map { _ in try p.newToken(name: "d/10G") }
        // 1: the PF with the most free VFs (B: 3, A: 2), its lowest address.
        XCTAssertEqual(try p.select(token: t[0], driver: .vfio).address, "0000:02:02.0")
        XCTAssertEqual(p.groupState(20), .vfio)
        // 2: A and B have 2 free each: the lowest address, a0; group 10 is vfio's now.
        XCTAssertEqual(try p.select(token: t[1], driver: .vfio).address, "0000:01:02.0")
        XCTAssertEqual(p.groupState(10), .vfio)
        // 3: kernel: a1's group is vfio's, so not a1; b1.
        XCTAssertEqual(try p.select(token: t[2], driver: .kernel).address, "0000:02:02.1")
        // 4: B's b1 back: B has 2 free, A 1. vfio: a1 all the same, its group being vfio's already.
        p.free("0000:02:02.1")
        XCTAssertEqual(p.freeCount(pf: "0000:02:00.0"), 2)
        XCTAssertEqual(try p.select(token: t[3], driver: .vfio).address, "0000:01:02.1", "a VF whose group is vfio's already comes before a PF with more free VFs")
        // 5: nothing left for vfio but B's.
        XCTAssertEqual(try p.select(token: t[4], driver: .vfio).address, "0000:02:02.1")
    }

    func testATokenKeepsItsVFAndChangingDriverReselects() throws {
        let p = try pool()
        let t = try p.newToken(name: "d/intel")
        let vf = try p.select(token: t, driver: .kernel)
        XCTAssertEqual(vf.address, "0000:01:02.0", "d/intel is offered by A only")
        XCTAssertEqual(try p.select(token: t, driver: .kernel), vf, "a refresh keeps the VF")
        XCTAssertEqual(p.freeCount(pf: "0000:01:00.0"), 1)
        // The same token for vfio: its VF is freed, and selected again under the new state.
        XCTAssertEqual(try p.select(token: t, driver: .vfio).address, "0000:01:02.0")
        XCTAssertEqual(p.groupState(10), .vfio)
        XCTAssertEqual(p.freeCount(pf: "0000:01:00.0"), 1)
        p.free(vf.address)
        XCTAssertNil(p.groupState(10), "the group goes back to no state with no VF of it held")
        XCTAssertEqual(p.freeCount(pf: "0000:01:00.0"), 2)
        p.free(vf.address) // twice: nothing more
        XCTAssertEqual(p.freeCount(pf: "0000:01:00.0"), 2)
    }

    /// Another driver for a token whose VF cannot be replaced: it keeps the VF it had.
    func testAFailedReselectKeepsTheVF() throws {
        let p = try pool()
        let t = try p.newToken(name: "d/intel"), u = try p.newToken(name: "d/intel")
        let a0 = try p.select(token: t, driver: .kernel), a1 = try p.select(token: u, driver: .kernel)
        XCTAssertEqual([a0.address, a1.address], ["0000:01:02.0", "0000:01:02.1"])
        // vfio for t: group 10 is the kernel's while u holds a1, and A has nothing else.
        XCTAssertThrowsError(try p.select(token: t, driver: .vfio)) { XCTAssertTrue("\($0)".contains("no free VF"), "\($0)") }
        XCTAssertEqual(p.holder(of: a0.address), t)
        XCTAssertEqual(p.groupState(10), .kernel)
        XCTAssertEqual(p.freeCount(pf: "0000:01:00.0"), 0)
        XCTAssertEqual(try p.select(token: t, driver: .kernel), a0)
    }

    func testRefusals() throws {
        let p = try pool()
        XCTAssertThrowsError(try p.select(token: "sriov-" + UUID().uuidString.lowercased(), driver: .kernel)) {
            XCTAssertTrue("\($0)".contains("unknown SR-IOV token"))
        }
        XCTAssertThrowsError(try p.addToken("sriov-nope", name: "d/10G")) { XCTAssertTrue("\($0)".contains("is not an SR-IOV token")) }
        XCTAssertThrowsError(try p.newToken(name: "d/40G")) { XCTAssertTrue("\($0)".contains("no physical function offers d/40G")) }
        let a = try p.newToken(name: "d/intel"), b = try p.newToken(name: "d/intel"), c = try p.newToken(name: "d/intel")
        _ = try p.select(token: a, driver: .kernel)
        _ = try p.select(token: b, driver: .kernel)
        XCTAssertThrowsError(try p.select(token: c, driver: .kernel)) { XCTAssertTrue("\($0)".contains("no free VF for d/intel (kernel)")) }
        XCTAssertThrowsError(try p.addToken(a, name: "d/10G")) { XCTAssertTrue("\($0)".contains("not d/10G's")) }
    }

    func testListedVFsRestrictThePoolAndMustExist() throws {
        let p = try pool(listA: [.init(address: "0000:01:02.1", iommuGroup: 10)])
        XCTAssertEqual(p.freeCount(pf: "0000:01:00.0"), 1)
        let t = try p.newToken(name: "d/intel")
        XCTAssertEqual(try p.select(token: t, driver: .kernel).address, "0000:01:02.1")
        XCTAssertThrowsError(try pool(listA: [.init(address: "0000:01:02.7")])) { XCTAssertTrue("\($0)".contains("has no VF 0000:01:02.7")) }
        XCTAssertThrowsError(try pool(listA: [.init(address: "0000:01:02.0", iommuGroup: 3)])) {
            XCTAssertTrue("\($0)".contains("IOMMU group 10, the file says 3"))
        }
    }

    func testARestartKeepsEachTokensVF() throws {
        let dir = NSTemporaryDirectory() + "weft-sriov-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = dir + "/sriov-pool.json"
        var p: SRIOVPool? = try pool(statePath: state)
        let t1 = try p!.newToken(name: "d/10G"), t2 = try p!.newToken(name: "d/10G")
        let v1 = try p!.select(token: t1, driver: .vfio), v2 = try p!.select(token: t2, driver: .kernel)
        p!.free(v2.address)
        let v2b = try p!.select(token: t2, driver: .kernel)
        let mode = (try FileManager.default.attributesOfItem(atPath: state)[.posixPermissions] as? NSNumber)?.intValue
        XCTAssertEqual(mode, 0o600)
        p = nil

        let again = try pool(statePath: state)
        XCTAssertEqual(again.holder(of: v1.address), t1)
        XCTAssertEqual(again.holder(of: v2b.address), t2)
        XCTAssertEqual(try again.select(token: t1, driver: .vfio), v1)
        XCTAssertEqual(try again.select(token: t2, driver: .kernel), v2b)
        XCTAssertEqual(again.freeCount(pf: "0000:02:00.0") + again.freeCount(pf: "0000:01:00.0"), 3)
        XCTAssertEqual(again.groupState(v1.iommuGroup!), .vfio)

        // Not the pool's state: a clear error, not a guess.
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: state))
        XCTAssertThrowsError(try pool(statePath: state)) { XCTAssertTrue("\($0)".contains("not the SR-IOV pool's state")) }
    }
}

/// The PF's VF settings on the wire, byte for byte (as `ip link set PF vf N ...`
/// sends them), and the kernel's own parser taking them: a veth is no PF, so
/// the answer must be EOPNOTSUPP (the attributes passed the kernel's policy
/// first: attributes shorter than the kernel's structs are refused before that).
final class VFIOCgroupTests: XCTestCase {
    /// Which devices.list lines already allow a device for read, write and mknod.
    func testWiderRulesAreRecognised() {
        for (list, covered) in [("a *:* rwm", true), ("c *:* rwm", true), ("c 10:* rwm", true), ("c 10:196 rwm", true),
                                ("c 10:196 rw", false), ("b *:* rwm", false), ("c 11:* rwm", false), ("c 10:197 rwm", false),
                                ("c 1:3 rwm\nc 5:1 rwm", false), ("c 1:3 rwm\nc *:196 mrw", true), ("", false), ("garbage", false)] {
            XCTAssertEqual(SRIOVService.covers(list, major: 10, minor: 196), covered, list)
        }
    }
}

final class VFNetlinkTests: XCTestCase {
    func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func le16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func attr(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        let len = 4 + payload.count
        return le16(UInt16(len)) + le16(type) + payload + [UInt8](repeating: 0, count: (4 - len % 4) % 4)
    }

    func testTheMessageByteForByte() throws {
        let mac: [UInt8] = [0x02, 0xfe, 0, 0, 0, 0x07]
        let got = try Netlink.vfMessage(pfIndex: 9, .init(vf: 3, mac: mac, vlan: 100, spoofCheck: true, trust: false), seq: 77)
        // IFLA_VF_MAC = 1 {u32 vf; u8 mac[32]}, IFLA_VF_VLAN = 2 {vf, vlan, qos}, IFLA_VF_SPOOFCHK = 4 {vf, setting},
        // IFLA_VF_TRUST = 9 {vf, setting}; nested in IFLA_VF_INFO = 1 in IFLA_VFINFO_LIST = 22 (NLA_F_NESTED = 0x8000).
        let inner = attr(1, le32(3) + mac + [UInt8](repeating: 0, count: 26))
            + attr(2, le32(3) + le32(100) + le32(0))
            + attr(4, le32(3) + le32(1))
            + attr(9, le32(3) + le32(0))
        let list = attr(0x8000 | 22, attr(0x8000 | 1, inner))
        // ifinfomsg: family AF_UNSPEC, pad, type 0, index 9, flags 0, change 0.
        let ifinfo: [UInt8] = [0, 0] + le16(0) + le32(9) + le32(0) + le32(0)
        let body = ifinfo + list
        // nlmsghdr: length, RTM_SETLINK = 19, NLM_F_REQUEST|NLM_F_ACK = 5, seq, pid 0.
        let want = le32(UInt32(16 + body.count)) + le16(19) + le16(5) + le32(77) + le32(0) + body
        XCTAssertEqual(got, want)
        XCTAssertEqual(got.count, 120)
    }

    func testOnlyWhatIsAskedForIsSent() throws {
        let got = try Netlink.vfMessage(pfIndex: 2, .init(vf: 0, vlan: 0), seq: 1)
        let inner = attr(2, le32(0) + le32(0) + le32(0))
        XCTAssertEqual(Array(got[32...]), attr(0x8000 | 22, attr(0x8000 | 1, inner)))
        XCTAssertThrowsError(try Netlink.vfMessage(pfIndex: 2, .init(vf: 0, vlan: 4095))) { XCTAssertTrue("\($0)".contains("out of range"), "\($0)") }
        XCTAssertThrowsError(try Netlink.vfMessage(pfIndex: 2, .init(vf: 0, mac: [1, 2, 3]))) { XCTAssertTrue("\($0)".contains("6 bytes")) }
        XCTAssertThrowsError(try Netlink.vfMessage(pfIndex: 0, .init(vf: 0, vlan: 1)))
        XCTAssertThrowsError(try Netlink.vfMessage(pfIndex: 2, .init(vf: 0))) { XCTAssertTrue("\($0)".contains("no setting asked for"), "\($0)") }
    }

    func testTheKernelParsesItAndAVethIsNoPF() throws {
        let name = "wt\(String(UInt32.random(in: 0..<0xffff), radix: 16))vf"
        _ = Process.launchedProcess(launchPath: "/usr/sbin/ip", arguments: ["link", "add", name, "type", "veth", "peer", "name", name + "p"])
        usleep(200_000)
        defer { _ = Process.launchedProcess(launchPath: "/usr/sbin/ip", arguments: ["link", "del", name]) }
        let nl = try Netlink(netns: nil)
        let index = try XCTUnwrap(try nl.index(of: name))
        XCTAssertThrowsError(try nl.setVF(pfIndex: index, .init(vf: 0, mac: [2, 0, 0, 0, 0, 1], vlan: 10, spoofCheck: true, trust: true))) { e in
            let k = e as? KernelError
            XCTAssertEqual(k?.errno, EOPNOTSUPP, "\(e)")
            XCTAssertTrue("\(e)".contains("takes no SR-IOV VF settings"), "\(e)")
        }
    }
}
