import Foundation
import XCTest
import WeftCore

/// The benchmark harness runs: weft-pktgen through weftd over memif. A smoke
/// test only (packets flowed, the JSON parses); speed lives in perf/.
final class PktgenSmokeTests: SystemTestCase {
    func testPktgenThroughWeftOverMemifProducesJSON() throws {
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: a, type: memif, socket: \(w.dir)/a.sock}
          - {name: b, type: memif, socket: \(w.dir)/b.sock}
        cross_connects:
          - {name: ab, a: a, b: b}
        """)
        XCTAssertTrue(w.start(), w.log)
        let pktgen = Paths.bin.appendingPathComponent("weft-pktgen").path
        let r = sh([pktgen, "--tx", "net_memif0,role=client,socket=\(w.dir)/a.sock,socket-abstract=no",
                    "--rx", "net_memif1,role=client,socket=\(w.dir)/b.sock,socket-abstract=no",
                    "--rate", "100000", "--duration", "1", "--json"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.err)
        let trial = try JSONDecoder().decode(Pktgen.Trial.self, from: Data(r.out.utf8))
        XCTAssertGreaterThan(trial.txPackets, 0)
        XCTAssertGreaterThan(trial.rxPackets, 0, "nothing came back through weftd")
        XCTAssertEqual(trial.duplicates, 0)
        XCTAssertNotNil(trial.latencyP50us)
        // weftd's busy-cycle accounting saw the same traffic.
        let workers = try XCTUnwrap(w.request(.init(command: .showWorkers)).workers)
        XCTAssertGreaterThanOrEqual(workers.reduce(0) { $0 + $1.rxPackets }, trial.rxPackets)
        XCTAssertGreaterThan(workers.reduce(0) { $0 + $1.busyCycles }, 0)
        XCTAssertEqual(w.stop(), 0)
    }
}
