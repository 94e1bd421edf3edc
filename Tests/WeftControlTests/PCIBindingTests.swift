import Foundation
import Logging
import XCTest
@testable import WeftControl
import WeftKernel
import WeftModel

/// `pci` interfaces and their kernel driver, against a sysfs tree the test builds
/// (a writer that acts as the kernel: driver_override, unbind, bind, drivers_probe).
/// scripts/vfio-guest-test.sh does the same on real emulated NICs in a QEMU guest.
final class PCIBindingTests: XCTestCase {
    final class Tree: SysfsWriter, @unchecked Sendable {
        let root = NSTemporaryDirectory() + "weft-pci-\(UUID().uuidString.prefix(8))"
        let lock = NSLock()
        private var _writes: [String] = []
        var writes: [String] { get { lock.withLock { _writes } } set { lock.withLock { _writes = newValue } } }
        /// The driver drivers_probe picks for each device (its own kernel driver).
        var native: [String: String] = [:]

        init(drivers: [String]) throws {
            for d in ["bus/pci/devices"] + drivers.map({ "bus/pci/drivers/" + $0 }) {
                try FileManager.default.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true)
            }
        }
        deinit { try? FileManager.default.removeItem(atPath: root) }
        var devices: String { root + "/bus/pci/devices" }

        func device(_ addr: String, driver: String?, cls: String = "0x020000", netdev: String? = nil, up: Bool = false) throws {
            let d = devices + "/" + addr
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            try "(null)\n".write(toFile: d + "/driver_override", atomically: false, encoding: .utf8)
            try (cls + "\n").write(toFile: d + "/class", atomically: false, encoding: .utf8)
            if let driver { native[addr] = driver; try link(d + "/driver", root + "/bus/pci/drivers/" + driver) }
            if let netdev {
                try FileManager.default.createDirectory(atPath: d + "/net/" + netdev, withIntermediateDirectories: true)
                try (up ? "0x1003\n" : "0x1002\n").write(toFile: d + "/net/\(netdev)/flags", atomically: false, encoding: .utf8)
            }
        }
        func addDriver(_ name: String) throws {
            try FileManager.default.createDirectory(atPath: root + "/bus/pci/drivers/" + name, withIntermediateDirectories: true)
        }
        func link(_ at: String, _ to: String) throws {
            try? FileManager.default.removeItem(atPath: at)
            try FileManager.default.createSymbolicLink(atPath: at, withDestinationPath: to)
        }
        func driver(_ addr: String) -> String? {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: devices + "/" + addr + "/driver")).map { ($0 as NSString).lastPathComponent }
        }

        func write(_ path: String, _ value: String) throws {
            lock.withLock { _writes.append("\(path.replacingOccurrences(of: root, with: "")) <- \(value.replacingOccurrences(of: "\n", with: "\\n"))") }
            let parts = path.replacingOccurrences(of: root + "/", with: "").split(separator: "/").map(String.init)
            switch (parts.count, parts.last) {
            case (5, "driver_override"):
                try value.write(toFile: path, atomically: false, encoding: .utf8)
            case (6, "unbind"):
                try FileManager.default.removeItem(atPath: devices + "/" + parts[3] + "/driver")
            case (5, "bind"):
                let dev = devices + "/" + value
                guard !FileManager.default.fileExists(atPath: dev + "/driver") else { throw PCISysfs.Failure(description: "busy") }
                try link(dev + "/driver", root + "/bus/pci/drivers/" + parts[3])
            case (3, "drivers_probe"):
                // The override (cleared: "\n") decides, else the device's own driver.
                let dev = devices + "/" + value
                let o = ((try? String(contentsOfFile: dev + "/driver_override", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                let pick = o.isEmpty || o == "(null)" ? native[value] : o
                if let pick, !FileManager.default.fileExists(atPath: dev + "/driver") { try link(dev + "/driver", root + "/bus/pci/drivers/" + pick) }
            default:
                throw PCISysfs.Failure(description: "\(path): not writable in this tree")
            }
        }
    }

    let nic = "0000:05:00.0"

    func binding(_ t: Tree, modules: @escaping @Sendable (String) -> String? = { _ in "no modules here" }) -> PCIBinding {
        PCIBinding(sysfs: PCISysfs(root: t.root, writer: t), loadModule: modules)
    }

    func testBindTakesTheNICFromItsDriverAndRestoreGivesItBack() throws {
        let t = try Tree(drivers: ["e1000e", "vfio-pci"])
        try t.device(nic, driver: "e1000e", netdev: "enp5s0")
        let b = binding(t)
        let itf = InterfaceConfig(name: "n", type: .pci, pci: nic, bind: true)
        XCTAssertTrue(try b.prepare(itf))
        XCTAssertEqual(t.driver(nic), "vfio-pci")
        XCTAssertEqual(t.writes, ["/bus/pci/devices/\(nic)/driver_override <- vfio-pci",
                                  "/bus/pci/devices/\(nic)/driver/unbind <- \(nic)",
                                  "/bus/pci/drivers/vfio-pci/bind <- \(nic)"])
        // Bound already: nothing written, and not "bound now" (a failure then keeps it bound).
        t.writes = []
        XCTAssertFalse(try b.prepare(itf))
        XCTAssertEqual(t.writes, [])

        XCTAssertNil(b.restore(itf))
        XCTAssertEqual(t.writes, ["/bus/pci/devices/\(nic)/driver_override <- \\n",
                                  "/bus/pci/devices/\(nic)/driver/unbind <- \(nic)",
                                  "/bus/pci/drivers_probe <- \(nic)"])
        XCTAssertEqual(t.driver(nic), "e1000e", "drivers_probe gives it to its own driver")

        // restore: false, or a device weftd was not asked to bind: left as it is.
        t.writes = []
        XCTAssertNil(b.restore(InterfaceConfig(name: "n", type: .pci, pci: nic, bind: true, restore: false)))
        XCTAssertNil(b.restore(InterfaceConfig(name: "n", type: .pci, pci: nic)))
        XCTAssertEqual(t.writes, [])
    }

    func testWhatIsNotBoundAndNotToBeBoundIsRefusedWithTheReason() throws {
        let t = try Tree(drivers: ["e1000e", "vfio-pci", "mlx5_core"])
        try t.device(nic, driver: "e1000e")
        try t.device("0000:06:00.0", driver: "mlx5_core")
        let b = binding(t)
        XCTAssertThrowsError(try b.prepare(InterfaceConfig(name: "n", type: .pci, pci: nic))) {
            XCTAssertEqual("\($0)", "PCI device \(nic) is bound to e1000e, not vfio-pci: bind it to vfio-pci first, or set bind: true")
        }
        // A bifurcated NIC keeps its kernel driver: `driver` says so.
        XCTAssertFalse(try b.prepare(InterfaceConfig(name: "m", type: .pci, pci: "0000:06:00.0", driver: "mlx5_core")))
        XCTAssertThrowsError(try b.prepare(InterfaceConfig(name: "x", type: .pci, pci: "0000:07:00.0", bind: true))) {
            XCTAssertEqual("\($0)", "no PCI device 0000:07:00.0 on this machine")
        }
        XCTAssertEqual(t.writes, [])
        // The same check before anything is applied (the reconciler's precheck), by key.
        let issues = Realizer.precheck(InterfaceConfig(name: "n", type: .pci, pci: nic), runtimeDir: "/run/weft", pci: b.sysfs)
        XCTAssertEqual(issues.map { "\($0.path.map(\.description).joined()): \($0.message)" }.first?.contains("bound to e1000e, not vfio-pci"), true, "\(issues)")
        XCTAssertEqual(Realizer.precheck(InterfaceConfig(name: "n", type: .pci, pci: nic, bind: true), runtimeDir: "/run/weft", pci: b.sysfs).count, 0)
    }

    func testOnlyNetworkDevicesThatAreDownAreTaken() throws {
        let t = try Tree(drivers: ["ahci", "e1000e", "vfio-pci"])
        try t.device("0000:00:1f.2", driver: "ahci", cls: "0x010601")
        try t.device(nic, driver: "e1000e", netdev: "eth0", up: true)
        let b = binding(t)
        XCTAssertThrowsError(try b.prepare(InterfaceConfig(name: "d", type: .pci, pci: "0000:00:1f.2", bind: true))) {
            XCTAssertEqual("\($0)", "PCI device 0000:00:1f.2 is not a network controller (class 0x010601): weftd binds only network devices")
        }
        XCTAssertThrowsError(try b.prepare(InterfaceConfig(name: "n", type: .pci, pci: nic, bind: true))) {
            XCTAssertEqual("\($0)", "PCI device \(nic) is the kernel's eth0, which is up: set it down before weftd binds the device to vfio-pci")
        }
        XCTAssertEqual(t.writes, [])
        XCTAssertEqual(t.driver("0000:00:1f.2"), "ahci")
        XCTAssertEqual(t.driver(nic), "e1000e")
    }

    func testTheDriversModuleIsLoadedWhenMissing() throws {
        let t = try Tree(drivers: ["e1000e"])
        try t.device(nic, driver: "e1000e")
        let itf = InterfaceConfig(name: "n", type: .pci, pci: nic, bind: true)
        XCTAssertThrowsError(try binding(t, modules: { "modprobe \($0) exited 1: not found" }).prepare(itf)) {
            XCTAssertEqual("\($0)", "cannot load the vfio-pci driver: modprobe vfio-pci exited 1: not found")
        }
        XCTAssertEqual(t.writes, [])
        let asked = NSLock(), loaded = UnsafeMutableTransferBox<[String]>([])
        let b = binding(t, modules: { m in asked.withLock { loaded.value.append(m) }; try? t.addDriver(m); return nil })
        XCTAssertTrue(try b.prepare(itf))
        XCTAssertEqual(loaded.value, ["vfio-pci"])
        XCTAssertEqual(t.driver(nic), "vfio-pci")

        // Before EAL: the modules of the file's drivers (only those to be bound, once each).
        let t2 = try Tree(drivers: ["e1000e"])
        let asked2 = UnsafeMutableTransferBox<[String]>([])
        let b2 = binding(t2, modules: { m in asked2.value.append(m); return m == "mlx5_core" ? "no such module" : nil })
        XCTAssertEqual(b2.loadDrivers(for: [itf, InterfaceConfig(name: "m", type: .pci, pci: nic, bind: true),
                                            InterfaceConfig(name: "x", type: .pci, pci: nic, driver: "mlx5_core", bind: true),
                                            InterfaceConfig(name: "y", type: .pci, pci: nic, driver: "uio_pci_generic")]),
                       ["no such module"])
        XCTAssertEqual(asked2.value, ["mlx5_core", "vfio-pci"])

        // VFIO is EAL's from its start: a module loaded later is not enough, and that is said.
        var late = binding(t)
        late.vfioReady = { false }
        XCTAssertThrowsError(try late.prepare(itf)) {
            XCTAssertTrue("\($0)".contains("DPDK has no VFIO in this weftd (vfio-pci was not loaded when it started"), "\($0)")
        }
    }

    /// Through the reconciler: bound before the attach, given back when the attach
    /// fails or when the interface goes (by reload or rollback).
    func testTheReconcilerBindsBeforeAttachAndGivesBackOnFailureAndRemoval() throws {
        let t = try Tree(drivers: ["e1000e", "vfio-pci"])
        try t.device(nic, driver: "e1000e")
        try t.device("0000:05:00.1", driver: "e1000e")
        let fake = FakeDataplane()
        let ctl = Controller(base: WeftConfig(), dataplane: fake, logger: Logger(label: "test"), state: nil)
        ctl.pciBinding = binding(t)
        var c = ctl.running
        c.interfaces = [InterfaceConfig(name: "n0", type: .pci, pci: nic, bind: true)]

        fake.refuse = "attach"
        XCTAssertThrowsError(try ctl.apply(c))
        XCTAssertEqual(t.driver(nic), "e1000e", "given back after the refused attach")
        XCTAssertEqual(t.writes.last, "/bus/pci/drivers_probe <- \(nic)")

        _ = try ctl.apply(c)
        XCTAssertEqual(t.driver(nic), "vfio-pci")
        XCTAssertEqual(fake.calls.map(\.description).filter { $0.hasPrefix("attach") }, ["attach \(nic)"])

        // A second NIC whose attach fails: the change rolls back, n0 stays as it was.
        var c2 = c
        c2.interfaces.append(InterfaceConfig(name: "n1", type: .pci, pci: "0000:05:00.1", devargs: "rx_low_latency=1", bind: true))
        c2.interfaces.append(InterfaceConfig(name: "r", type: .ring))
        c2.crossConnects = [CrossConnectConfig(name: "x", a: "n1", b: "r")]
        fake.refuse = "xc"
        XCTAssertThrowsError(try ctl.apply(c2))
        XCTAssertEqual(t.driver("0000:05:00.1"), "e1000e", "rolled back: given back")
        XCTAssertEqual(t.driver(nic), "vfio-pci")
        XCTAssertTrue(fake.calls.map(\.description).contains("attach 0000:05:00.1,rx_low_latency=1"))

        // Removed by a reload: given back.
        var empty = c
        empty.interfaces = []
        _ = try ctl.apply(empty)
        XCTAssertEqual(t.driver(nic), "e1000e")
    }
}

/// A value a @Sendable closure may change (the test reads it after).
final class UnsafeMutableTransferBox<T>: @unchecked Sendable {
    var value: T
    init(_ v: T) { value = v }
}
