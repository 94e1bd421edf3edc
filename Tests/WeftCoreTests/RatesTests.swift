import XCTest
import WeftAdmin
import WeftModel

/// weftctl's live rates from two readings.
final class RatesTests: XCTestCase {
    func itf(_ name: String, _ rx: UInt64, _ rxB: UInt64, _ tx: UInt64, _ txB: UInt64, drops: UInt64 = 0) -> InterfaceStatus {
        InterfaceStatus(name: name, type: "ring", backend: "ring", detail: "", device: "", driver: "", mac: "", link: "up", mtu: 1500,
                        rxQueues: 1, rxWorkers: [0], counters: InterfaceCounters(rxPackets: rx, rxBytes: rxB, txPackets: tx, txBytes: txB,
                                                                                 drops: drops > 0 ? ["tx-full": drops] : [:]))
    }

    func testInterfaceRatesPerSecondInBits() {
        let r = Rates.interfaces([itf("a", 100, 10_000, 50, 5_000, drops: 1), itf("gone", 5, 5, 5, 5)],
                                 [itf("a", 300, 30_000, 150, 15_000, drops: 5), itf("new", 10, 1_000, 0, 0)], seconds: 2)
        XCTAssertEqual(r.map(\.name), ["a", "new"])
        XCTAssertEqual(r[0], InterfaceRate(name: "a", rxPPS: 100, rxBPS: 80_000, txPPS: 50, txBPS: 40_000, dropsPS: 2))
        // An interface that was not there before counts from zero.
        XCTAssertEqual(r[1].rxPPS, 5)
        XCTAssertEqual(r[1].rxBPS, 4_000)
    }

    func testACounterThatWentDownCountsFromZero() {
        let r = Rates.interfaces([itf("a", 1_000, 1_000, 0, 0)], [itf("a", 10, 640, 0, 0)], seconds: 1)
        XCTAssertEqual(r[0].rxPPS, 10)
        XCTAssertEqual(r[0].rxBPS, 5_120)
    }

    func testCrossConnectAndWorkerRates() {
        let x0 = CrossConnectStatus(name: "x", a: "a", b: "b", counters: .init(aToB: .init(packets: 10, bytes: 1_000, drops: 1), bToA: .init()))
        let x1 = CrossConnectStatus(name: "x", a: "a", b: "b", counters: .init(aToB: .init(packets: 30, bytes: 3_000, drops: 2), bToA: .init(packets: 4, bytes: 400, drops: 1)))
        let x = Rates.crossConnects([x0], [x1], seconds: 0.5)[0]
        XCTAssertEqual([x.aToBPPS, x.aToBBPS, x.bToAPPS, x.bToABPS, x.dropsPS], [40, 32_000, 8, 6_400, 4])

        func w(_ busy: UInt64, _ idle: UInt64, _ rx: UInt64) -> WorkerStats {
            WorkerStats(worker: 0, lcore: 1, queues: 2, busyCycles: busy, idleCycles: idle, busyIterations: 0, idleIterations: 0, rxPackets: rx, drops: [:])
        }
        let wr = Rates.workers([w(1_000, 9_000, 10)], [w(4_000, 15_000, 40)], seconds: 1)[0]
        XCTAssertEqual(wr.rxPPS, 30)
        XCTAssertEqual(wr.busy, 3_000.0 / 9_000.0, accuracy: 1e-12)
        XCTAssertEqual(wr.cyclesPerPacket, 100)
        XCTAssertNil(Rates.workers([w(1, 1, 5)], [w(1, 2, 5)], seconds: 1)[0].cyclesPerPacket)
    }

    func testSI() {
        XCTAssertEqual(Rates.si(0), "0")
        XCTAssertEqual(Rates.si(999), "999")
        XCTAssertEqual(Rates.si(1_500), "1.50k")
        XCTAssertEqual(Rates.si(14_820_000_000), "14.82G")
    }
}
