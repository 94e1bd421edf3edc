import Logging
import XCTest
@testable import WeftControl
import WeftModel

/// A change through the APIs costs the same on a node with 1, 1,000 or
/// 10,000 connections: the objects checked and the steps done are counted
/// (never timed: the time is printed for the record only).
final class ChangeCostTests: XCTestCase {
    func testAChangesWorkDoesNotGrowWithTheNode() throws {
        var work: [Int: (checked: Int, steps: Int, calls: Int)] = [:]
        for n in [1, 1000, 10000] {
            let fake = FakeDataplane()
            let ctl = Controller(base: WeftConfig(), dataplane: fake, logger: Logger(label: "t"), state: nil)
            var c = ctl.running
            for i in 0..<n {
                c.interfaces += [InterfaceConfig(name: "p\(i)", type: .ring), InterfaceConfig(name: "q\(i)", type: .ring)]
                c.crossConnects.append(CrossConnectConfig(name: "x\(i)", a: "p\(i)", b: "q\(i)"))
            }
            _ = try ctl.apply(c)
            let t0 = Date()
            let before = fake.calls.count
            for k in 0..<10 {
                _ = try ctl.applyDynamic(adding: [InterfaceConfig(name: "a\(k)", type: .ring), InterfaceConfig(name: "b\(k)", type: .ring)],
                                         crossConnects: [CrossConnectConfig(name: "y\(k)", a: "a\(k)", b: "b\(k)")], removing: [])
                XCTAssertEqual(ctl.lastChangeWork.checked, 3)
                XCTAssertEqual(ctl.lastChangeWork.steps, 3)
                _ = try ctl.applyDynamic(adding: [], crossConnects: [], removing: ["y\(k)", "a\(k)", "b\(k)"])
                XCTAssertEqual(ctl.lastChangeWork.steps, 3)
            }
            work[n] = (ctl.lastChangeWork.checked, ctl.lastChangeWork.steps, (fake.calls.count - before) / 20)
            print("change-cost n=\(n): \(work[n]!) \(String(format: "%.3f", Date().timeIntervalSince(t0) / 20 * 1000)) ms per change (debug build)")
        }
        XCTAssertEqual(work[1]!.calls, work[10000]!.calls, "dataplane calls per change")
        XCTAssertEqual(work[1]!.steps, work[10000]!.steps)
    }
}
