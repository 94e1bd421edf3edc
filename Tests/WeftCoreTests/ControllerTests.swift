import Logging
import XCTest
@testable import WeftAdmin
@testable import WeftControl
@testable import WeftDataplane
@testable import WeftKernel
@testable import WeftModel

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
        Dictionary(uniqueKeysWithValues: ctl.interfaceStatus().compactMap { s in s.port.map { (s.name, $0) } })
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

    func testVLANSidesFollowTheirUplinkAndViaLabels() throws {
        var c = config(["pod1", "pod2", "trunk"], [])
        c.interfaces.append(InterfaceConfig(name: "v100", type: .vlan, uplink: "trunk", vlanID: 100))
        c.interfaces.append(InterfaceConfig(name: "raw", type: .vlan, uplink: "trunk", vlanID: 0))
        c.crossConnects = [.init(name: "x100", a: "pod1", b: "v100"), .init(name: "xraw", a: "pod2", b: "raw")]
        _ = try ctl.apply(c)
        let st = Dictionary(uniqueKeysWithValues: ctl.interfaceStatus().map { ($0.name, $0) })
        XCTAssertNil(st["v100"]?.port)
        XCTAssertEqual(st["v100"]?.backend, "vlan 100 on trunk")
        XCTAssertEqual(st["v100"]?.detail, "id 100 uplink trunk")

        // Frames really take the VLAN path.
        let p = ports()
        let f = testFrame(src: 1, dst: 2, seq: 1)
        try dp.inject(PortID(p["pod1"]!), frame: f)
        dp.pollOnce()
        let out = try XCTUnwrap(try dp.collect(PortID(p["trunk"]!)))
        XCTAssertEqual(Array(out[12..<16]), [0x81, 0x00, 0x00, 100])

        // Changing the uplink's definition re-creates its VLAN sides and their cross-connects.
        var c2 = c
        c2.interfaces[2].rxQueues = 1
        let s = try ctl.apply(c2)
        XCTAssertEqual(Set(s.removedInterfaces), ["trunk", "v100", "raw"])
        XCTAssertEqual(Set(s.addedCrossConnects), ["x100", "xraw"])
        XCTAssertEqual(ctl.crossConnectStatus().map(\.name), ["x100", "xraw"])

        // An uplink cannot be a plain cross-connect side; validation says so.
        var bad = c2
        bad.crossConnects.append(.init(name: "direct", a: "trunk", b: "pod3"))
        bad.interfaces.append(InterfaceConfig(name: "pod3", type: .ring))
        XCTAssertThrowsError(try ctl.apply(bad)) { _ in }
        XCTAssertTrue(Validator.validate(bad).contains { $0.message.contains("is an uplink carrying tunnels") })

        // `via` through an NSM device-selector file: label gw0 -> NIC eth9 -> the port interface on eth9.
        let sel = FileManager.default.temporaryDirectory.appendingPathComponent("weft-sel-\(getpid()).yaml").path
        try "interfaces:\n  - name: eth9\n    matches:\n      - labelSelector:\n          - via: gw0\n".write(toFile: sel, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: sel) }
        var v = c2
        v.deviceSelectorFile = sel
        v.interfaces[2] = InterfaceConfig(name: "eth9", type: .ring)
        v.interfaces[3] = InterfaceConfig(name: "v100", type: .vlan, via: "gw0", vlanID: 100)
        v.interfaces[4] = InterfaceConfig(name: "raw", type: .vlan, uplink: "eth9", vlanID: 0)
        XCTAssertEqual(Validator.validate(v), [])
        _ = try ctl.apply(v)
        XCTAssertEqual(ctl.interfaceStatus().first { $0.name == "v100" }?.backend, "vlan 100 on eth9")
        var unknown = v
        unknown.interfaces[3].via = "gw7"
        XCTAssertThrowsError(try ctl.apply(unknown)) { XCTAssertTrue("\($0)".contains("via 'gw7' matches no interface"), "\($0)") }
        XCTAssertEqual(ctl.running, v)
    }

    func testConnectByLabelsAndInPlaceMemberChanges() throws {
        _ = try ctl.apply(config(["s", "a", "b", "c", "d"], []))
        let p = ports()
        // Replication chosen by its label; the first member is the ingress.
        var sum = try ctl.connect(name: "feed", members: ["s", "a", "b"], hints: ["p2mp": "replicate"])
        XCTAssertEqual(sum.addedGroups, ["feed"])
        try dp.inject(PortID(p["s"]!), frame: testFrame(src: 1, dst: 2, seq: 1))
        dp.pollOnce()
        XCTAssertEqual(dp.discard(PortID(p["a"]!)) + dp.discard(PortID(p["b"]!)), 2)
        // Same name, other members: changed in place; a keeps its counters.
        sum = try ctl.connect(name: "feed", members: ["s", "a", "c"], hints: ["p2mp": "replicate"])
        XCTAssertEqual(sum.changedGroups, ["feed"])
        XCTAssertEqual(sum.addedGroups, [])
        try dp.inject(PortID(p["s"]!), frame: testFrame(src: 1, dst: 2, seq: 2))
        dp.pollOnce()
        XCTAssertEqual(dp.discard(PortID(p["c"]!)), 1)
        XCTAssertEqual(dp.discard(PortID(p["b"]!)), 0)
        let g = try XCTUnwrap(ctl.p2mpStatus().first)
        XCTAssertEqual(g.members.map(\.interface), ["a", "c"])
        XCTAssertEqual(g.members.first?.toMember.packets, 2, "a's counters survive the change")
        // A mode the node lacks, a label no mode matches, a member in two connections: clear errors, nothing applied.
        XCTAssertThrowsError(try ctl.connect(name: "x", members: ["b", "d"], hints: ["p2mp": "mesh"])) { XCTAssertTrue("\($0)".contains("no mode matches")) }
        XCTAssertThrowsError(try ctl.connect(name: "x", members: ["a", "d"], hints: ["p2mp": "bridge"])) { XCTAssertTrue("\($0)".contains("already in 'feed'"), "\($0)") }
        XCTAssertThrowsError(try ctl.deleteInterface("a")) { XCTAssertTrue("\($0)".contains("member of 'feed'"), "\($0)") }
        // A bridge between b and d, and P2P when no label is given.
        _ = try ctl.connect(name: "bd", members: ["b", "d"], hints: ["p2mp": "bridge"])
        XCTAssertEqual(ctl.p2mpStatus().map(\.mode), ["replicate", "bridge"])
        _ = try ctl.disconnect(name: "bd")
        _ = try ctl.connect(name: "pp", members: ["b", "d"], hints: [:])
        XCTAssertEqual(ctl.crossConnectStatus().map(\.name), ["pp"])
        _ = try ctl.disconnect(name: "feed")
        XCTAssertEqual(ctl.p2mpStatus().count, 0)
    }
}
