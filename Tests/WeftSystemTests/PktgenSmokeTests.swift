import Foundation
import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

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

    /// The VXLAN templates: encapsulated frames into weftd's uplink come out decapsulated
    /// (the payload is found), and plain frames come back encapsulated (found inside).
    func testPktgenVXLANThroughWeftBothWays() throws {
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: a, type: memif, socket: \(w.dir)/a.sock}
          - name: b
            type: memif
            socket: \(w.dir)/b.sock
            mac: "02:77:70:00:00:0b"
            underlay: {ipv4: 10.253.0.1/24, neighbours: [{ip: 10.253.0.2, mac: "02:77:70:00:00:0a"}]}
          - {name: tun, type: vxlan, uplink: b, vni: 1000, remote: 10.253.0.2}
        cross_connects:
          - {name: at, a: a, b: tun}
        """)
        XCTAssertTrue(w.start(), w.log)
        let pktgen = Paths.bin.appendingPathComponent("weft-pktgen").path
        let a = "net_memif0,role=client,socket=\(w.dir)/a.sock,socket-abstract=no"
        let b = "net_memif1,role=client,socket=\(w.dir)/b.sock,socket-abstract=no"
        // Decap: VXLAN into b, plain out of a.
        let d = sh([pktgen, "--tx", b, "--rx", a, "--size", "114", "--vxlan-vni", "1000", "--outer-src", "10.253.0.2",
                    "--outer-dst", "10.253.0.1", "--rate", "50000", "--duration", "1", "--json"], timeout: 120)
        XCTAssertEqual(d.status, 0, d.err)
        let dt = try JSONDecoder().decode(Pktgen.Trial.self, from: Data(d.out.utf8))
        XCTAssertGreaterThan(dt.rxPackets, dt.txPackets / 2, "decapsulated frames reached a: \(d.out)")
        // Encap: plain into a, VXLAN out of b (the generator finds its payload inside).
        let e = sh([pktgen, "--tx", a, "--rx", b, "--rate", "50000", "--duration", "1", "--json"], timeout: 120)
        XCTAssertEqual(e.status, 0, e.err)
        let et = try JSONDecoder().decode(Pktgen.Trial.self, from: Data(e.out.utf8))
        XCTAssertGreaterThan(et.rxPackets, et.txPackets / 2, "encapsulated frames reached b: \(e.out)")
        XCTAssertEqual(et.rxForeign, 0)
        // A wrong VNI is dropped by reason, not forwarded.
        let x = sh([pktgen, "--tx", b, "--rx", a, "--size", "114", "--vxlan-vni", "999", "--outer-src", "10.253.0.2",
                    "--outer-dst", "10.253.0.1", "--rate", "50000", "--duration", "1", "--json"], timeout: 120)
        let xt = try JSONDecoder().decode(Pktgen.Trial.self, from: Data(x.out.utf8))
        XCTAssertEqual(xt.rxPackets, 0)
        let drops = try XCTUnwrap(w.request(.init(command: .showDrops)).drops)
        XCTAssertGreaterThanOrEqual(drops.first { $0.reason == "vxlan-unknown-vni" }?.count ?? 0, xt.txPackets / 2)
        XCTAssertEqual(w.stop(), 0)
    }
    /// Many connections end to end: 300 VXLAN tunnel-to-tunnel cross-connects
    /// from one file (applied as one change), the generator cycling the VNI
    /// frame by frame; every connection carries frames and counts them.
    func testPktgenAcrossManyVXLANConnections() throws {
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        let n = 300
        var y = """
        interfaces:
          - name: a
            type: memif
            socket: \(w.dir)/a.sock
            mac: "02:77:70:00:00:0a"
            underlay: {ipv4: 10.254.0.1/24, neighbours: [{ip: 10.254.0.2, mac: "02:77:70:00:01:0a"}]}
          - name: b
            type: memif
            socket: \(w.dir)/b.sock
            mac: "02:77:70:00:00:0b"
            underlay: {ipv4: 10.253.0.1/24, neighbours: [{ip: 10.253.0.2, mac: "02:77:70:00:01:0b"}]}

        """
        for i in 0..<n {
            y += "  - {name: i\(i), type: vxlan, uplink: b, vni: \(1000 + i), remote: 10.253.0.2}\n"
            y += "  - {name: o\(i), type: vxlan, uplink: a, vni: \(5000 + i), remote: 10.254.0.2}\n"
        }
        y += "cross_connects:\n"
        for i in 0..<n { y += "  - {name: x\(i), a: i\(i), b: o\(i)}\n" }
        w.write(y)
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.log.contains("applied as one change: \(2 * n + 2) interface(s) and \(n) cross-connect(s) added"), w.log)
        let pktgen = Paths.bin.appendingPathComponent("weft-pktgen").path
        let a = "net_memif0,role=client,socket=\(w.dir)/a.sock,socket-abstract=no"
        let b = "net_memif1,role=client,socket=\(w.dir)/b.sock,socket-abstract=no"
        let r = sh([pktgen, "--tx", b, "--rx", a, "--size", "114", "--vxlan-vni", "1000", "--vxlan-vnis", "\(n)",
                    "--outer-src", "10.253.0.2", "--outer-dst", "10.253.0.1", "--rate", "200000", "--duration", "1", "--json"],
                   timeout: 120)
        XCTAssertEqual(r.status, 0, r.err)
        let t = try JSONDecoder().decode(Pktgen.Trial.self, from: Data(r.out.utf8))
        XCTAssertGreaterThan(t.rxPackets, t.txPackets / 2, "re-encapsulated frames reached a: \(r.out)")
        XCTAssertEqual(t.rxForeign, 0)
        let xcs = try XCTUnwrap(w.request(.init(command: .showCrossConnects)).crossConnects)
        XCTAssertEqual(xcs.count, n)
        let idle = xcs.filter { $0.counters.aToB.packets == 0 }.map(\.name)
        XCTAssertEqual(idle, [], "connections that carried nothing")
        let total = xcs.reduce(UInt64(0)) { $0 + $1.counters.aToB.packets }
        XCTAssertEqual(total, t.rxPackets, "per-connection counters add up to what arrived")
        XCTAssertEqual(w.stop(), 0)
    }
}
