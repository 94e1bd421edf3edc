import Foundation
import XCTest
import WeftAdmin
import WeftModel

/// `weftctl capture`: an interface's frames into a pcapng file that tcpdump
/// reads, both directions with their flags and nanosecond timestamps in
/// order, a BPF filter, clear errors; under full load only capture copies
/// are lost, never traffic.
final class CaptureSystemTests: SystemTestCase {
    struct Check: Decodable {
        struct Itf: Decodable { var name: String; var link: Int; var snaplen: Int; var tsresol: Int }
        var interfaces: [Itf]
        var packets: Int, `in`: Int, out: Int
        var monotonic: Bool
        var first_ns: UInt64, last_ns: UInt64
        var truncated: Int, max_orig: Int
    }
    func check(_ path: String) throws -> Check {
        let r = sh(["python3", Paths.root.appendingPathComponent("Tests/peers/pcapng_check.py").path, path])
        XCTAssertEqual(r.status, 0, r.err)
        return try JSONDecoder().decode(Check.self, from: Data(r.out.utf8))
    }

    func testCaptureAPingBothWaysWithAFilterThenUnderFullLoad() throws {
        let tag = uniqueTag()
        let p1 = PodNamespace(tag: tag, index: 1, subnet: "10.64")
        let p2 = PodNamespace(tag: tag, index: 2, subnet: "10.64")
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: a, type: af_packet, iface: \(p1.hostEnd)}
          - {name: b, type: af_packet, iface: \(p2.hostEnd)}
          - {name: up, type: null}
          - {name: v9, type: vlan, uplink: up, vlan_id: 9}
        cross_connects:
          - {name: x, a: a, b: b}
        """)
        XCTAssertTrue(w.start(), w.log)
        defer { XCTAssertEqual(w.stop(), 0) }
        XCTAssertTrue(w.waitLinksUp(), w.log)
        let dir = "/tmp/wt-cap-\(tag)"
        sh("rm -rf \(dir); mkdir -p \(dir)")
        defer { sh("rm -rf \(dir)") }
        XCTAssertEqual(p1.ping("10.64.0.2", count: 1).status, 0) // ARP resolved before the capture

        // 5 echo requests in (rx), 5 replies out (tx); the filter leaves ARP out.
        final class Box: @unchecked Sendable { var r: CommandResult? }
        let done = DispatchSemaphore(value: 0), box = Box()
        DispatchQueue.global().async {
            box.r = w.ctl(["capture", "start", "--interface", "a", "-w", "\(dir)/ping.pcapng", "--count", "10",
                           "--filter", "icmp", "--duration", "30", "--wait"])
            done.signal()
        }
        usleep(500_000)
        let ping = p1.ping("10.64.0.2", count: 5)
        XCTAssertEqual(pingCounts(ping.out)?.received, 5, ping.out)
        done.wait()
        XCTAssertEqual(box.r?.status, 0, box.r?.err ?? "")
        XCTAssertTrue(box.r?.out.contains("10 frames written") == true, box.r?.out ?? "")
        let c = try check("\(dir)/ping.pcapng")
        XCTAssertEqual(c.interfaces.first?.name, "a")
        XCTAssertEqual(c.interfaces.first?.link, 1)
        XCTAssertEqual(c.interfaces.first?.tsresol, 9)
        XCTAssertEqual(c.packets, 10)
        XCTAssertEqual(c.in, 5, "echo requests received from the pod")
        XCTAssertEqual(c.out, 5, "echo replies sent to it")
        XCTAssertTrue(c.monotonic)
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        XCTAssertTrue(c.first_ns > now - 120_000_000_000 && c.last_ns <= now, "wall-clock timestamps: \(c.first_ns)..\(c.last_ns) vs \(now)")
        XCTAssertGreaterThan(c.last_ns - c.first_ns, 700_000_000, "5 pings 0.2 s apart")
        // tcpdump reads it: requests and replies, in order, nothing else.
        let td = sh("tcpdump -n -tt -r \(dir)/ping.pcapng 2>/dev/null")
        let lines = td.out.split(separator: "\n")
        XCTAssertEqual(lines.count, 10, td.out + td.err)
        XCTAssertEqual(lines.filter { $0.contains("ICMP echo request") }.count, 5, td.out)
        XCTAssertEqual(lines.filter { $0.contains("ICMP echo reply") }.count, 5, td.out)
        let stamps = lines.compactMap { Double($0.split(separator: " ").first ?? "") }
        XCTAssertEqual(stamps, stamps.sorted(), td.out)
        XCTAssertEqual(sh("tcpdump -n -r \(dir)/ping.pcapng 'icmp[icmptype] == icmp-echo' 2>/dev/null").out.split(separator: "\n").count, 5)

        // Clear errors; nothing started by them.
        var r = w.ctl(["capture", "start", "--interface", "a", "-w", "\(dir)/ping.pcapng", "--count", "1"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("File exists"), r.err)
        r = w.ctl(["capture", "start", "--interface", "a", "-w", "\(dir)/bad.pcapng", "--filter", "icmp and and"])
        XCTAssertTrue(r.err.contains("capture filter 'icmp and and'"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/bad.pcapng"))
        r = w.ctl(["capture", "start", "--interface", "nope", "-w", "\(dir)/x.pcapng"])
        XCTAssertTrue(r.err.contains("no interface named 'nope'"), r.err)
        r = w.ctl(["capture", "start", "--interface", "v9", "-w", "\(dir)/x.pcapng"])
        XCTAssertTrue(r.err.contains("capture its uplink 'up'"), r.err)
        r = w.ctl(["capture", "start", "--interface", "a", "-w", "\(dir)/x.pcapng", "--direction", "sideways"])
        XCTAssertNotEqual(r.status, 0)

        // Full load: TCP at full speed through a capture with 16 slots. Copies are
        // dropped and counted; the transfer is intact; the file is whole.
        r = w.ctl(["capture", "start", "--interface", "a", "-w", "\(dir)/load.pcapng", "--slots", "16", "--snaplen", "65535"])
        XCTAssertEqual(r.status, 0, r.err)
        let again = w.ctl(["capture", "start", "--interface", "b", "-w", "\(dir)/second.pcapng"])
        XCTAssertTrue(again.err.contains("a capture is running"), again.err)
        let t = p1.transfer(to: p2.ns, target: "10.64.0.2", proto: "tcp", bytes: 64 << 20, port: 5601)
        XCTAssertTrue(t.intact, "\(t)")
        r = w.ctl(["capture", "stop"])
        XCTAssertEqual(r.status, 0, r.err)
        let st = try XCTUnwrap(try w.request(.init(command: .captureStatus)).captureStatus)
        XCTAssertFalse(st.running)
        XCTAssertGreaterThan(st.dropped, 0, "16 slots cannot keep up with TCP at full speed: \(st)")
        XCTAssertEqual(st.copied, st.written, "every copy made is in the file: \(st)")
        let lc = try check("\(dir)/load.pcapng")
        XCTAssertEqual(UInt64(lc.packets), st.written)
        XCTAssertGreaterThan(lc.max_orig, 1514, "GSO super-frames are captured as Weft handles them")
        XCTAssertEqual(sh("tcpdump -n -r \(dir)/load.pcapng 2>&1 >/dev/null | grep -ci error").out.trimmingCharacters(in: .whitespacesAndNewlines), "0")
        // The interfaces' own counters show no loss: drops are only the capture's.
        let ifs = try w.interfaces()
        XCTAssertEqual(ifs.first { $0.name == "a" }?.counters.totalDrops, 0)
        XCTAssertEqual(ifs.first { $0.name == "b" }?.counters.totalDrops, 0)
    }
}
