import Logging
import XCTest
@testable import WeftCore

/// The intent/reconcile layer over a real in-process dataplane (ring ports):
/// diffs touch only what changed, failures roll back, bad requests change nothing.
final class ControllerTests: XCTestCase {
    var dp: Dataplane!
    var ctl: Controller!

    override func setUpWithError() throws {
        dp = try StageEAL.dataplane()
        ctl = Controller(base: WeftConfig(dataplane: { var d = DataplaneConfig(); d.workers = [1]; return d }()),
                         dataplane: dp, logger: Logger(label: "test"), state: nil)
    }

    override func tearDown() {
        ctl.removeAll()
        dp.destroy()
    }

    func config(_ itfs: [String], _ xcs: [(String, String, String)]) -> WeftConfig {
        var c = ctl.running
        c.interfaces = itfs.map { InterfaceConfig(name: $0, type: .ring) }
        c.crossConnects = xcs.map { CrossConnectConfig(name: $0.0, a: $0.1, b: $0.2) }
        return c
    }

    func ports() -> [String: UInt16] {
        Dictionary(uniqueKeysWithValues: ctl.interfaceStatus().map { ($0.name, $0.port) })
    }

    func testReloadTouchesOnlyTheDifference() throws {
        let s1 = try ctl.apply(config(["a", "b", "c", "d"], [("ab", "a", "b"), ("cd", "c", "d")]))
        XCTAssertEqual(s1.addedInterfaces, ["a", "b", "c", "d"])
        XCTAssertEqual(s1.addedCrossConnects, ["ab", "cd"])
        let before = ports()

        // Same file again: nothing happens.
        let same = try ctl.apply(config(["a", "b", "c", "d"], [("ab", "a", "b"), ("cd", "c", "d")]))
        XCTAssertEqual(same.description, "no changes (6 objects unchanged)")

        // Rewire c/d to c/e: only cd goes, e and ce come; a, b, ab untouched (same ports).
        let s2 = try ctl.apply(config(["a", "b", "c", "d", "e"], [("ab", "a", "b"), ("ce", "c", "e")]))
        XCTAssertEqual(s2.removedCrossConnects, ["cd"])
        XCTAssertEqual(s2.addedInterfaces, ["e"])
        XCTAssertEqual(s2.addedCrossConnects, ["ce"])
        XCTAssertEqual(s2.removedInterfaces, [])
        let after = ports()
        for n in ["a", "b", "c", "d"] { XCTAssertEqual(after[n], before[n], "\(n) was re-created") }
        XCTAssertEqual(ctl.crossConnectStatus().map(\.name), ["ab", "ce"])
    }

    func testChangedInterfaceIsRecreatedWithItsCrossConnect() throws {
        _ = try ctl.apply(config(["a", "b"], [("ab", "a", "b")]))
        var c = config(["a", "b"], [("ab", "a", "b")])
        c.interfaces[1].rxQueues = 1 // same as default but now explicit: a different definition
        let s = try ctl.apply(c)
        XCTAssertEqual(s.removedInterfaces, ["b"])
        XCTAssertEqual(s.addedInterfaces, ["b"])
        XCTAssertEqual(s.removedCrossConnects, ["ab"])
        XCTAssertEqual(s.addedCrossConnects, ["ab"])
        XCTAssertEqual(ctl.running, c)
    }

    func testFailureMidwayRollsBackEverything() throws {
        _ = try ctl.apply(config(["a", "b"], [("ab", "a", "b")]))
        let before = ctl.running
        // New ring interface c attaches, then a vdev with a driver that does not exist fails:
        // c must be gone again, and the removal of ab must be undone.
        var c = config(["a", "b", "c"], [("ac", "a", "c")])
        c.interfaces.append(InterfaceConfig(name: "bogus", type: .vdev, devargs: "net_nosuchdriver0"))
        XCTAssertThrowsError(try ctl.apply(c)) { e in
            XCTAssertTrue("\(e)".contains("adding interface 'bogus' failed"), "\(e)")
            XCTAssertTrue("\(e)".contains("Nothing was applied"), "\(e)")
        }
        XCTAssertEqual(ctl.running, before)
        XCTAssertEqual(ctl.interfaceStatus().map(\.name), ["a", "b"])
        XCTAssertEqual(ctl.crossConnectStatus().map(\.name), ["ab"])
        // And the restored cross-connect forwards.
        let p = ports()
        let f = testFrame(src: 1, dst: 2, seq: 9)
        try dp.inject(PortID(p["a"]!), frame: f)
        dp.pollOnce()
        XCTAssertEqual(try dp.collect(PortID(p["b"]!)), f)
    }

    func testPrecheckRejectsBeforeTouchingAnything() throws {
        _ = try ctl.apply(config(["a", "b"], [("ab", "a", "b")]))
        let before = ports()
        var c = config(["a", "b", "c"], [("ab", "a", "b")])
        c.interfaces.append(InterfaceConfig(name: "k", type: .afPacket, iface: "wf-missing9"))
        c.interfaces.append(InterfaceConfig(name: "m", type: .memif, socket: "/nonexistent-weft-dir/m.sock"))
        XCTAssertThrowsError(try ctl.apply(c)) { e in
            XCTAssertTrue("\(e)".contains("interface 'k': iface: kernel interface 'wf-missing9' does not exist"), "\(e)")
            XCTAssertTrue("\(e)".contains("interface 'm': socket: memif socket directory '/nonexistent-weft-dir' does not exist"), "\(e)")
        }
        XCTAssertEqual(ports(), before)
    }

    func testRestartOnlySectionsAreRefused() throws {
        _ = try ctl.apply(config(["a"], []))
        var c = config(["a", "b"], [])
        c.dataplane.burstSize = 64
        XCTAssertThrowsError(try ctl.apply(c)) { e in XCTAssertTrue("\(e)".contains("dataplane changed"), "\(e)") }
        XCTAssertEqual(ctl.interfaceStatus().map(\.name), ["a"])
    }

    func testRuntimeOperationsUseTheSameRules() throws {
        _ = try ctl.apply(config(["a", "b", "c"], [("ab", "a", "b")]))
        XCTAssertThrowsError(try ctl.addInterface(InterfaceConfig(name: "a", type: .ring))) { XCTAssertTrue("\($0)".contains("already exists")) }
        XCTAssertThrowsError(try ctl.addInterface(InterfaceConfig(name: "k", type: .afPacket))) { XCTAssertTrue("\($0)".contains("required for af_packet"), "\($0)") }
        XCTAssertThrowsError(try ctl.addCrossConnect(.init(name: "x", a: "a", b: "c"))) { XCTAssertTrue("\($0)".contains("already in cross-connect 'ab'"), "\($0)") }
        XCTAssertThrowsError(try ctl.addCrossConnect(.init(name: "x", a: "c", b: "zz"))) { XCTAssertTrue("\($0)".contains("no interface named 'zz'"), "\($0)") }
        XCTAssertThrowsError(try ctl.deleteInterface("a")) { XCTAssertTrue("\($0)".contains("used by cross-connect 'ab'"), "\($0)") }
        XCTAssertThrowsError(try ctl.deleteCrossConnect("nope")) { XCTAssertTrue("\($0)".contains("no cross-connect named 'nope'")) }
        XCTAssertEqual(ctl.crossConnectStatus().map(\.name), ["ab"])

        _ = try ctl.addInterface(InterfaceConfig(name: "d", type: .ring))
        _ = try ctl.addCrossConnect(.init(name: "cd", a: "c", b: "d"))
        XCTAssertEqual(ctl.crossConnectStatus().map(\.name), ["ab", "cd"])
        _ = try ctl.deleteCrossConnect("cd")
        _ = try ctl.deleteInterface("d")
        XCTAssertEqual(ctl.interfaceStatus().map(\.name), ["a", "b", "c"])
    }

    func testLinkDownDropsAreCountedOnTheEgressInterface() throws {
        _ = try ctl.apply(config(["a", "b"], [("ab", "a", "b")]))
        // A memif server with no peer: link down until a client connects.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("weft-ctl-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = ctl.running
        c.interfaces.append(InterfaceConfig(name: "m", type: .memif, socket: "\(dir)/m.sock"))
        c.interfaces.append(InterfaceConfig(name: "c", type: .ring))
        c.crossConnects.append(.init(name: "cm", a: "c", b: "m"))
        _ = try ctl.apply(c)
        ctl.pollLinks()
        let p = ports()
        for i in 0..<4 { try dp.inject(PortID(p["c"]!), frame: testFrame(src: 3, dst: 4, seq: UInt16(i))) }
        dp.pollOnce()
        let m = ctl.interfaceStatus().first { $0.name == "m" }!
        XCTAssertEqual(m.link, "down")
        XCTAssertEqual(m.counters.drops, ["link-down": 4])
        XCTAssertEqual(ctl.crossConnectStatus().first { $0.name == "cm" }?.counters.aToB.drops, 4)
        XCTAssertEqual(ctl.dropStatus().first { $0.reason == "link-down" }?.byInterface, ["m": 4])
    }
}
