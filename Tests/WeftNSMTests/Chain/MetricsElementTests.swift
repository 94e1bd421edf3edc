import Foundation
import XCTest
@testable import WeftNSM
import WeftModel
import WeftNSMProto

final class MetricsElementTests: XCTestCase {
    func status(_ name: String, _ c: InterfaceCounters) -> InterfaceStatus {
        InterfaceStatus(name: name, type: "memif", backend: "memif", detail: "", device: "", driver: "", mac: "", link: "up",
                        mtu: 1500, rxQueues: 1, rxWorkers: [], counters: c)
    }

    func side(_ s: Side, _ name: String, socket: String? = nil, pod: String? = nil) -> RealizedSide {
        RealizedSide(side: s, type: pod == nil ? Mech.memif : Mech.kernel, interface: InterfaceConfig(name: name, type: .memif),
                     podIfName: pod, socketfile: socket)
    }

    /// NSM's names (reference §10): server_* for the caller's side, client_* for the next hop's.
    func testKeyNamesAndValues() {
        let st = [status("s", InterfaceCounters(rxPackets: 1, rxBytes: 100, txPackets: 2, txBytes: 200, drops: ["a": 3, "b": 4])),
                  status("c", InterfaceCounters(rxPackets: 5, rxBytes: 500, txPackets: 6, txBytes: 600))]
        let m = MetricsElement.metrics(st, server: side(.server, "s", socket: "/run/weft/memif.socket"), client: side(.client, "c", pod: "nsm-1"))
        XCTAssertEqual(Set(m.keys), Set(["server", "client"].flatMap { p in
            ["rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "drops", "interface"].map { "\(p)_\($0)" }
        }))
        XCTAssertEqual(m["server_rx_bytes"], "100")
        XCTAssertEqual(m["server_tx_packets"], "2")
        XCTAssertEqual(m["server_drops"], "7")
        XCTAssertEqual(m["server_interface"], "MEMIF//run/weft/memif.socket")
        XCTAssertEqual(m["client_rx_packets"], "5")
        XCTAssertEqual(m["client_tx_bytes"], "600")
        XCTAssertEqual(m["client_drops"], "0")
        XCTAssertEqual(m["client_interface"], "KERNEL/nsm-1")
        // A side the dataplane does not report has no keys.
        XCTAssertEqual(Set(MetricsElement.metrics([], server: side(.server, "s"), client: nil).keys), [])
    }

    /// The metrics go into Weft's own segment only; an index outside the path is skipped, not trapped on.
    func testWritesWeftsOwnSegmentOnly() async throws {
        let node = FakeNode()
        defer { node.remove() }
        _ = try await node.control.applyDynamic(adding: [InterfaceConfig(name: "s", type: .ring), InterfaceConfig(name: "c", type: .ring)],
                                                crossConnects: [], removing: [])
        var r = pathedRequest()
        r.state.server = side(.server, "s", socket: "/x")
        r.state.client = side(.client, "c", socket: "/y")
        var out = try await NSMNext([MetricsElement(control: node.control), Probe()]).request(&r)
        XCTAssertEqual(out.path.pathSegments.map { $0.metrics.isEmpty }, [true, true, false])
        XCTAssertEqual(out.path.pathSegments[2].metrics["server_rx_bytes"], "100") // the fake's port 1
        XCTAssertEqual(out.path.pathSegments[2].metrics["client_rx_bytes"], "200")

        let outside = Probe { r in
            var c = r.conn
            c.path.index = 9
            return c
        }
        out = try await NSMNext([MetricsElement(control: node.control), outside]).request(&r)
        XCTAssertEqual(out.path.index, 9)
        XCTAssertTrue(out.path.pathSegments.allSatisfy { $0.metrics.isEmpty })
    }
}
