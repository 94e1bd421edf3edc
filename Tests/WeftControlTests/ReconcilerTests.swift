import Logging
import XCTest
@testable import WeftControl
import WeftDataplane
import WeftModel

/// The reconciler and the control actor against a recording fake of the
/// dataplane: no EAL, no C core, no machine state (ring interfaces).
final class ReconcilerTests: XCTestCase {
    var fake: FakeDataplane!
    var ctl: Controller!

    override func setUp() {
        fake = FakeDataplane()
        ctl = Controller(base: WeftConfig(), dataplane: fake, logger: Logger(label: "test"), state: nil)
    }

    func config(_ itfs: [String], _ xcs: [(String, String, String)]) -> WeftConfig {
        var c = ctl.running
        c.interfaces = itfs.map { InterfaceConfig(name: $0, type: .ring) }
        c.crossConnects = xcs.map { CrossConnectConfig(name: $0.0, a: $0.1, b: $0.2) }
        return c
    }

    /// dataplane.offload: each new cross-connect is offered to the NIC in the mode
    /// the file says; `required` refused rolls the whole change back; the status
    /// says where a connection is switched and adds the rules' counts.
    func testOffloadModesAndStatus() throws {
        _ = try ctl.apply(config(["a", "b"], [("ab", "a", "b")]))
        XCTAssertEqual(fake.offloadModes, [0: .auto], "auto is the default")
        XCTAssertEqual(ctl.crossConnectStatus().first?.offload, "software: no eswitch here")

        var c = config(["a", "b", "c", "d"], [("ab", "a", "b"), ("cd", "c", "d")])
        c.dataplane.offload = .required
        let ctl2 = Controller(base: c, dataplane: fake, logger: Logger(label: "test"), state: nil)
        fake.calls = []
        XCTAssertThrowsError(try ctl2.apply(c)) { XCTAssertTrue("\($0)".contains("offload required but not possible"), "\($0)") }
        XCTAssertTrue(ctl2.crossConnectStatus().isEmpty)
        XCTAssertFalse(fake.calls.contains(.release) && fake.publishedXCs.contains(where: { $0 > 0 }), "\(fake.calls)")

        fake.nicCanOffload = true
        let ctl3 = Controller(base: c, dataplane: fake, logger: Logger(label: "test"), state: nil)
        _ = try ctl3.apply(c)
        let st = ctl3.crossConnectStatus()
        XCTAssertEqual(st.map(\.offload), ["nic", "nic"])
        XCTAssertEqual(st.first?.counters.aToB.packets, 5, "the rules' counts are added")
        XCTAssertEqual(st.first?.counters.bToA.bytes, 700)

        // A rule that fails later (the link poll checks them): that connection is switched in
        // software again, says why, and keeps what the NIC counted in its totals.
        let slot = try XCTUnwrap(fake.offloaded.filter { $0.value }.keys.min())
        fake.rulesToFail = [slot]
        ctl3.pollLinks()
        let after = ctl3.crossConnectStatus()
        XCTAssertEqual(after.compactMap(\.offload).sorted(), ["nic", "software: the NIC's A->B rule failed later (port reset): back in software"])
        XCTAssertEqual(after.first { $0.offload != "nic" }?.counters.aToB.packets, 5, "the NIC's counts left the totals")
    }

    /// One change is one held transaction: everything added, then one publish.
    func testAChangeIsOneHeldTransaction() throws {
        _ = try ctl.apply(config(["a", "b"], [("ab", "a", "b")]))
        XCTAssertEqual(fake.calls.map(\.description), ["hold", "attach w1", "attach w2", "xc 0-1", "release"])
        XCTAssertEqual(fake.publishedXCs, [0])
    }

    /// A failure midway is rolled back inside the same held change: no worker
    /// ever sees the cross-connect that was added before the failure (before the
    /// fix, the partial change was published, then rolled back).
    func testAFailedChangeIsNeverPublishedHalf() throws {
        fake.refuse = "xc 2-3"
        XCTAssertThrowsError(try ctl.apply(config(["a", "b", "c", "d"], [("ab", "a", "b"), ("cd", "c", "d")]))) { e in
            XCTAssertTrue("\(e)".contains("adding cross-connect 'cd' failed"), "\(e)")
            XCTAssertTrue("\(e)".contains("Nothing was applied"), "\(e)")
        }
        XCTAssertEqual(fake.everPublished, [], "the cross-connect ab reached the workers: \(fake.calls)")
        XCTAssertTrue(fake.liveXCs.isEmpty)
        XCTAssertTrue(fake.ports.isEmpty, "ports left attached: \(fake.ports)")
        let released = fake.calls.enumerated().filter { $0.element == .release }.map(\.offset)
        XCTAssertEqual(released.count, 1, "\(fake.calls)")
        XCTAssertEqual(released.first, fake.calls.count - 1, "the only publish comes after the rollback: \(fake.calls)")
        XCTAssertTrue(ctl.running.interfaces.isEmpty)
        XCTAssertTrue(ctl.interfaceStatus().isEmpty)
    }

    /// A publish that fails (the table cannot be built) rolls back too, and the
    /// rollback is published once.
    func testAFailedPublishRollsBack() throws {
        fake.refuse = "release"
        XCTAssertThrowsError(try ctl.apply(config(["a", "b"], [("ab", "a", "b")])))
        XCTAssertEqual(fake.everPublished, [])
        XCTAssertTrue(fake.ports.isEmpty)
        XCTAssertEqual(fake.holds, 0, "every hold released: \(fake.calls)")
        // And the next change works.
        _ = try ctl.apply(config(["a", "b"], [("ab", "a", "b")]))
        XCTAssertEqual(fake.publishedXCs.count, 1)
    }

    /// Reload touches only the difference.
    func testOnlyTheDifferenceIsApplied() throws {
        _ = try ctl.apply(config(["a", "b", "c", "d"], [("ab", "a", "b")]))
        fake.calls = []
        let s = try ctl.apply(config(["a", "b", "c", "d"], [("ab", "a", "b"), ("cd", "c", "d")]))
        XCTAssertEqual(s.addedCrossConnects, ["cd"])
        XCTAssertEqual(fake.calls.map(\.description), ["hold", "xc 2-3", "release"])
    }

    /// The actor: changes and status through it; after shutdown, changes are refused
    /// and status is empty (the dataplane is gone), never a call into it.
    func testControlPlaneRefusesChangesAfterShutdown() async throws {
        let control = ControlPlane(controller: ctl)
        _ = try await control.apply(config(["a", "b"], [("ab", "a", "b")]))
        XCTAssertEqual(control.snapshot.crossConnects.map(\.name), ["ab"])
        let up = await control.interfaceStatus()
        XCTAssertEqual(up.count, 2)
        await control.shutdown()
        XCTAssertEqual(fake.calls.last, .destroy)
        XCTAssertTrue(control.snapshot.interfaces.isEmpty)
        let n = fake.calls.count
        do {
            _ = try await control.addInterface(InterfaceConfig(name: "e", type: .ring))
            XCTFail("a change after shutdown was accepted")
        } catch {
            XCTAssertTrue("\(error)".contains("shutting down"))
        }
        let after = await control.interfaceStatus()
        XCTAssertTrue(after.isEmpty)
        await control.shutdown()
        XCTAssertEqual(fake.calls.count, n, "nothing asked of a destroyed dataplane")
    }

    /// Many callers at once: every change applied exactly once, in some order.
    func testConcurrentCallersAreSerialised() async throws {
        let control = ControlPlane(controller: ctl)
        try await withThrowingTaskGroup(of: Void.self) { g in
            for i in 0..<20 {
                g.addTask {
                    _ = try await control.applyDynamic(
                        adding: [InterfaceConfig(name: "p\(i)", type: .ring), InterfaceConfig(name: "q\(i)", type: .ring)],
                        crossConnects: [CrossConnectConfig(name: "x\(i)", a: "p\(i)", b: "q\(i)")], removing: [])
                }
            }
            try await g.waitForAll()
        }
        XCTAssertEqual(fake.liveXCs.count, 20)
        XCTAssertEqual(control.snapshot.crossConnects.count, 20)
        XCTAssertEqual(fake.holds, 0)
    }
}
