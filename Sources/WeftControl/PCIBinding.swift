import Foundation
import WeftKernel
import WeftModel

/// The kernel driver a `pci` interface's device is bound to, for its DPDK
/// driver: checked before the device is probed, bound there when the interface
/// says `bind: true`, and given back to a kernel driver when it goes.
public struct PCIBinding: Sendable {
    public var sysfs: PCISysfs
    /// Loads a kernel module; nil when it loaded, else why not.
    public var loadModule: @Sendable (String) -> String?
    /// Whether DPDK can take a device on vfio-pci: EAL enables VFIO only at init,
    /// when the module is loaded then (weftd sets this to EAL's answer).
    public var vfioReady: @Sendable () -> Bool = { true }

    public init(sysfs: PCISysfs = PCISysfs(), loadModule: @escaping @Sendable (String) -> String? = PCIBinding.modprobe) {
        self.sysfs = sysfs
        self.loadModule = loadModule
    }

    public static func driver(_ itf: InterfaceConfig) -> String { itf.driver ?? "vfio-pci" }

    /// Before the device is probed: it must be bound to its driver, or be bound now
    /// (`bind: true`). True when this call bound it (so a failure after it gives it back).
    @discardableResult
    public func prepare(_ itf: InterfaceConfig) throws -> Bool {
        guard let addr = itf.pci.flatMap(normalizedPCI) else { throw ApplyError(message: "pci interface '\(itf.name)' has no PCI address") }
        let want = Self.driver(itf)
        guard sysfs.exists(addr) else { throw ApplyError(message: "no PCI device \(addr) on this machine") }
        if want == "vfio-pci", !vfioReady() {
            throw ApplyError(message: "PCI device \(addr): DPDK has no VFIO in this weftd (vfio-pci was not loaded when it started; EAL enables VFIO only then): load vfio-pci and restart weftd")
        }
        let now = sysfs.driver(addr)
        if now == want { return false }
        guard itf.bind == true else {
            throw ApplyError(message: "PCI device \(addr) is bound to \(now ?? "no driver"), not \(want): bind it to \(want) first, or set bind: true")
        }
        // Only network controllers (class 02): a wrong address must not take a disk
        // controller or a bridge away from the kernel.
        guard let cls = sysfs.classCode(addr), cls >> 16 == 0x02 else {
            throw ApplyError(message: "PCI device \(addr) is not a network controller (class \(sysfs.classCode(addr).map { String(format: "0x%06x", $0) } ?? "unknown")): weftd binds only network devices")
        }
        // A netdev that is up may be carrying the node's own traffic: taking its
        // device away could cut the node off. The operator sets it down first.
        let up = sysfs.netdevsUp(addr)
        if !up.isEmpty {
            throw ApplyError(message: "PCI device \(addr) is the kernel's \(up.joined(separator: ", ")), which is up: set it down before weftd binds the device to \(want)")
        }
        if !sysfs.driverLoaded(want) {
            if let why = loadModule(want) { throw ApplyError(message: "cannot load the \(want) driver: \(why)") }
            guard sysfs.driverLoaded(want) else { throw ApplyError(message: "driver \(want) is not registered after loading its module") }
        }
        do { try sysfs.bind(addr, to: want) } catch { throw ApplyError(message: "\(error)") }
        return true
    }

    /// After the device is gone from DPDK: one weftd bound goes back to the kernel's
    /// own driver for it (unless `restore: false`). Best effort; says what failed.
    public func restore(_ itf: InterfaceConfig) -> String? {
        guard itf.bind == true, itf.restore != false, let addr = itf.pci.flatMap(normalizedPCI) else { return nil }
        do {
            try sysfs.release(addr)
            try sysfs.reprobe(addr)
            return nil
        } catch {
            return "giving \(addr) back to its kernel driver: \(error)"
        }
    }

    /// Before EAL starts: the modules of the drivers the file's `pci` interfaces will
    /// be bound to, so that EAL finds VFIO. What fails is said again by the attach.
    public func loadDrivers(for interfaces: [InterfaceConfig]) -> [String] {
        var failed: [String] = []
        for d in Set(interfaces.filter { $0.type == .pci && $0.bind == true }.map(Self.driver)).sorted() where !sysfs.driverLoaded(d) {
            if let why = loadModule(d) { failed.append(why) }
        }
        return failed
    }

    /// `modprobe <name>`: a driver named with '-' has a module named with '_' or '-';
    /// modprobe takes either.
    public static let modprobe: @Sendable (String) -> String? = { name in
        let p = Process()
        p.executableURL = URL(fileURLWithPath: FileManager.default.fileExists(atPath: "/usr/sbin/modprobe") ? "/usr/sbin/modprobe" : "/sbin/modprobe")
        p.arguments = [name]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        do { try p.run() } catch { return "\(error)" }
        p.waitUntilExit()
        if p.terminationStatus == 0 { return nil }
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return "modprobe \(name) exited \(p.terminationStatus)\(text.isEmpty ? "" : ": " + text.trimmingCharacters(in: .whitespacesAndNewlines))"
    }
}
