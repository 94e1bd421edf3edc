import Foundation
import XCTest
import WeftAdmin
import WeftModel

/// Prometheus's /metrics on a running weftd: Debian's Prometheus server scrapes it
/// while TCP crosses a cross-connect, the exposition parses (prometheus_client's
/// parser, promtool's lint), and its values agree with what weftctl reads.
final class MetricsSystemTests: SystemTestCase {
    static let prom = PromScrape.script
    typealias Scrape = PromScrape
    func scrape(_ url: String) throws -> Scrape { try PromScrape.get(url) }

    func testPrometheusScrapesWhileTCPRunsAndAgreesWithWeftctl() throws {
        let tag = uniqueTag()
        let pod1 = PodNamespace(tag: tag, index: 1, subnet: "10.63")
        let pod2 = PodNamespace(tag: tag, index: 2, subnet: "10.63")
        let port = Int.random(in: 20000...29999)
        let w = Weftd(tag: tag)
        w.write("""
        metrics:
          prometheus: true
          listen_on: "127.0.0.1:\(port)"
        interfaces:
          - {name: a, type: af_packet, iface: \(pod1.hostEnd)}
          - {name: b, type: af_packet, iface: \(pod2.hostEnd)}
        cross_connects:
          - {name: x, a: a, b: b}
        """)
        XCTAssertTrue(w.start(), w.log)
        defer { XCTAssertEqual(w.stop(), 0) }
        XCTAssertTrue(w.waitLinksUp(), w.log)
        XCTAssertTrue(w.log.contains("Prometheus metrics on http://127.0.0.1:\(port)/metrics"), w.log)
        let url = "http://127.0.0.1:\(port)/metrics"

        // Debian's Prometheus server, scraping every second into a store of its own.
        let promPort = port + 10000 <= 65535 ? port + 10000 : port - 10000
        let store = "/tmp/wt-prom-\(tag)"
        sh("rm -rf \(store)"); try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        let job = "weft-\(tag)"
        try """
        global: {scrape_interval: 1s, evaluation_interval: 1s}
        scrape_configs:
          - job_name: \(job)
            scrape_interval: 1s
            static_configs: [{targets: ["127.0.0.1:\(port)"]}]
        """.write(toFile: "\(store)/prometheus.yml", atomically: true, encoding: .utf8)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        server.arguments = ["--config.file=\(store)/prometheus.yml", "--storage.tsdb.path=\(store)/data",
                            "--web.listen-address=127.0.0.1:\(promPort)", "--log.level=warn"]
        let plog = FileHandle(forWritingAtPath: "/dev/null")!
        server.standardOutput = plog; server.standardError = plog; server.standardInput = FileHandle.nullDevice
        try server.run()
        try? plog.close()
        defer { server.terminate(); server.waitUntilExit(); sh("rm -rf \(store)") }
        let api = "http://127.0.0.1:\(promPort)"
        func query(_ e: String) -> [[String: Any]] {
            let r = sh(["python3", Self.prom, "query", api, e])
            guard r.status == 0, let d = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]] else { return [] }
            return d
        }
        func scalar(_ e: String) -> Double? {
            guard let v = query(e).first?["value"] as? [Any], let s = v.last as? String else { return nil }
            return Double(s)
        }
        // Up before the traffic starts.
        var up: Double? = nil
        for _ in 0..<60 where up != 1 { up = scalar("up{job=\"\(job)\"}"); if up != 1 { usleep(500_000) } }
        XCTAssertEqual(up, 1, "Prometheus never scraped weftd")

        // TCP, content-checked; then UDP paced to last a few seconds, so that several
        // scrapes land while it runs.
        let t = pod1.transfer(to: pod2.ns, target: "10.63.0.2", proto: "tcp", bytes: 96 << 20, port: 5401)
        XCTAssertTrue(t.intact, "\(t)")
        // Meanwhile `weftctl show interfaces --rate` reads the live rate (from 0.5 s in, over 2 s).
        final class Box: @unchecked Sendable { var r: CommandResult? }
        let live = Box(), liveDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            usleep(500_000)
            live.r = w.ctl(["show", "interfaces", "--rate", "--json", "--interval", "2"])
            liveDone.signal()
        }
        let u = pod1.transfer(to: pod2.ns, target: "10.63.0.2", proto: "udp", bytes: 16 << 20, port: 5402, size: 1400, rate: 4000)
        XCTAssertTrue(u.intact, "\(u)")
        liveDone.wait()
        struct Rates: Decodable { var seconds: Double; var interfaces: [InterfaceRate] }
        let during = try JSONDecoder().decode(Rates.self, from: Data(live.r!.out.utf8))
        let aRate = try XCTUnwrap(during.interfaces.first { $0.name == "a" })
        XCTAssertTrue((1000...6000).contains(aRate.rxPPS), "UDP paced at 4,000 datagrams/s; weftctl said \(aRate)")
        XCTAssertEqual(aRate.rxBPS, aRate.rxPPS * 8 * 1442, accuracy: aRate.rxBPS * 0.05, "1,400 B of payload in 1,442 B frames")
        let bRate = try XCTUnwrap(during.interfaces.first { $0.name == "b" })
        XCTAssertEqual(bRate.txPPS, aRate.rxPPS, accuracy: aRate.rxPPS * 0.05 + 5)
        sleep(3) // a last scrape after the end
        let sel = "weft_xconnect_bytes_total{job=\"\(job)\",xconnect=\"x\",direction=\"a_to_b\"}"
        let changes = scalar("changes(\(sel)[2m])") ?? 0
        XCTAssertGreaterThanOrEqual(changes, 2, "Prometheus should have seen the counter move during the transfer")
        let seen = scalar("max_over_time(\(sel)[2m])") ?? 0
        XCTAssertGreaterThanOrEqual(seen, Double(96 << 20), "the cross-connect carried at least the payload")
        XCTAssertEqual(scalar("count(weft_worker_busy_cycles_total{job=\"\(job)\"})"), 1)

        // The shipped Grafana dashboard: every query is PromQL this Prometheus accepts,
        // and the traffic panels have data.
        let dash = try JSONSerialization.jsonObject(with: Data(contentsOf: Paths.root.appendingPathComponent("deploy/grafana/weft-dashboard.json"))) as! [String: Any]
        var exprs: [String] = []
        for p in dash["panels"] as! [[String: Any]] { for t in p["targets"] as! [[String: Any]] { exprs.append(t["expr"] as! String) } }
        XCTAssertGreaterThan(exprs.count, 15)
        for e in exprs {
            let q = e.replacingOccurrences(of: "$__rate_interval", with: "1m").replacingOccurrences(of: "=~\"$job\"", with: "=\"\(job)\"")
                .replacingOccurrences(of: "$instance", with: ".*").replacingOccurrences(of: "$interface", with: ".*")
            let r = sh(["python3", Self.prom, "query", api, q])
            XCTAssertEqual(r.status, 0, "dashboard query refused: \(q): \(r.err)")
            if e.contains("weft_interface_rx_bytes_total") || e.contains("weft_xconnect_packets_total") {
                XCTAssertNotEqual(r.out.trimmingCharacters(in: .whitespacesAndNewlines), "[]", "no data for \(q)")
            }
        }

        // A direct scrape, between two weftctl readings: counters only grow, so each
        // scraped value lies between them.
        let before = try w.interfaces(), xBefore = try w.crossConnects()
        let s = try scrape(url)
        let after = try w.interfaces(), xAfter = try w.crossConnects()
        XCTAssertEqual(s.lint, "ok", "promtool check metrics")
        XCTAssertTrue(s.content_type.hasPrefix("text/plain; version=0.0.4"), s.content_type)
        XCTAssertEqual(s.families["weft_interface_rx_packets"]?.type, "counter") // prometheus_client drops _total from a counter's family name
        for (b, a) in zip(before, after) {
            for (fam, get) in [("weft_interface_rx_packets", { (c: InterfaceCounters) in c.rxPackets }),
                               ("weft_interface_rx_bytes", { $0.rxBytes }), ("weft_interface_tx_packets", { $0.txPackets }),
                               ("weft_interface_tx_bytes", { $0.txBytes })] {
                let v = s.value(fam, ["interface": b.name])
                XCTAssertNotNil(v, "\(fam) \(b.name)")
                XCTAssertTrue((Double(get(b.counters))...Double(get(a.counters))).contains(v ?? -1),
                              "\(fam){interface=\(b.name)} = \(v ?? -1), weftctl \(get(b.counters))...\(get(a.counters))")
            }
        }
        for (b, a) in zip(xBefore, xAfter) {
            for (dir, gb, ga) in [("a_to_b", b.counters.aToB, a.counters.aToB), ("b_to_a", b.counters.bToA, a.counters.bToA)] {
                let p = s.value("weft_xconnect_packets", ["xconnect": b.name, "direction": dir]) ?? -1
                let by = s.value("weft_xconnect_bytes", ["xconnect": b.name, "direction": dir]) ?? -1
                XCTAssertTrue((Double(gb.packets)...Double(ga.packets)).contains(p), "\(dir) packets \(p) vs \(gb.packets)...\(ga.packets)")
                XCTAssertTrue((Double(gb.bytes)...Double(ga.bytes)).contains(by), "\(dir) bytes \(by) vs \(gb.bytes)...\(ga.bytes)")
            }
        }
        XCTAssertGreaterThanOrEqual(s.value("weft_xconnect_bytes", ["xconnect": "x", "direction": "a_to_b"]) ?? 0, Double(96 << 20))
        // Every drop reason is there, zero or not; the histogram counted the one change.
        let drops = try w.request(.init(command: .showDrops)).drops ?? []
        XCTAssertEqual(s.families["weft_drops"]?.samples.count, drops.count)
        XCTAssertEqual(s.value("weft_control_change_duration_seconds", ["le": "+Inf"]), 1)
        XCTAssertEqual(s.value("weft_table_objects", ["kind": "cross_connect"]), 1)

        // Quiet now: the rate falls to (about) nothing, and watch prints a table per refresh.
        let idle = try JSONDecoder().decode(Rates.self, from: Data(w.ctl(["show", "interfaces", "--rate", "--json", "--interval", "1"]).out.utf8))
        XCTAssertLessThan(idle.interfaces.map(\.rxPPS).max() ?? 99, 20, "\(idle.interfaces)")
        let watch = w.ctl(["watch", "--count", "2", "--interval", "0.5"])
        XCTAssertEqual(watch.status, 0, watch.err)
        XCTAssertEqual(watch.out.components(separatedBy: "A->B PPS").count, 3, watch.out)

        // Only GET/HEAD /metrics.
        XCTAssertEqual(sh(["python3", Self.prom, "http", "http://127.0.0.1:\(port)/", "GET"]).out.trimmingCharacters(in: .whitespacesAndNewlines), "404")
        XCTAssertEqual(sh(["python3", Self.prom, "http", url, "POST"]).out.trimmingCharacters(in: .whitespacesAndNewlines), "405")
        XCTAssertEqual(sh(["python3", Self.prom, "http", url, "HEAD"]).out.trimmingCharacters(in: .whitespacesAndNewlines), "200")
        // A client that connects and says nothing, or sends garbage, costs weftd nothing.
        let junk = sh("exec 3<>/dev/tcp/127.0.0.1/\(port); printf 'GARBAGE\\r\\n\\r\\n' >&3; timeout 3 cat <&3; exec 3<&-; echo done")
        XCTAssertTrue(junk.out.contains("done"), junk.err)
        XCTAssertEqual(try scrape(url).lint, "ok")
        XCTAssertTrue(w.process?.isRunning == true)
    }

    /// Off unless asked: no listener on the NSM default port from a file without `metrics:`.
    func testMetricsOffByDefaultAndBadListenAddressRefused() throws {
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        w.write("""
        metrics:
          prometheus: true
          listen_on: "127.0.0.1:99999"
        interfaces:
          - {name: r, type: ring}
        """)
        let v = sh([Paths.weftd, "validate", "--config", w.configPath])
        XCTAssertNotEqual(v.status, 0)
        XCTAssertTrue((v.out + v.err).contains("metrics.listen_on"), v.out + v.err)
        let e = sh(["bash", "-c", "NSM_PROMETHEUS=maybe \(Paths.weftd) validate --config \(w.configPath)"])
        XCTAssertTrue((e.out + e.err).contains("NSM_PROMETHEUS='maybe' is not a boolean"), e.out + e.err)
        w.write("""
        interfaces:
          - {name: r, type: ring}
        """)
        XCTAssertTrue(w.start(), w.log)
        defer { XCTAssertEqual(w.stop(), 0) }
        XCTAssertFalse(w.log.contains("Prometheus metrics on"), w.log)
    }
}

/// One scrape of /metrics, parsed by prometheus_client (Tests/peers/prom.py).
struct PromScrape: Decodable {
    static let script = Paths.root.appendingPathComponent("Tests/peers/prom.py").path
    struct Family: Decodable { var type: String; var samples: [Row] }
    /// [sample name, labels, value]
    struct Row: Decodable {
        var name: String, labels: [String: String], value: Double
        init(from d: Decoder) throws {
            var c = try d.unkeyedContainer()
            name = try c.decode(String.self); labels = try c.decode([String: String].self); value = try c.decode(Double.self)
        }
    }
    var families: [String: Family]
    var content_type: String
    var lint: String
    /// The first sample of `family` (prometheus_client's name: a counter's without `_total`) with these labels.
    func value(_ family: String, _ labels: [String: String], sample: String? = nil) -> Double? {
        families[family]?.samples.first { r in (sample == nil || r.name == sample) && labels.allSatisfy { r.labels[$0.key] == $0.value } }?.value
    }

    static func get(_ url: String) throws -> PromScrape {
        let r = sh(["python3", script, "scrape", url])
        guard r.status == 0 else { throw NSError(domain: "scrape", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(url): \(r.err)"]) }
        return try JSONDecoder().decode(PromScrape.self, from: Data(r.out.utf8))
    }
}
