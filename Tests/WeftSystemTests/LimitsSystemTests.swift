import Foundation
import XCTest
import WeftAdmin
import WeftModel

/// Limits that hold under load: what an outsider can make Weft spend is bounded and
/// counted.
final class LimitsSystemTests: SystemTestCase {
    /// A flood of ARP requests and ICMP echoes at an uplink's address: the worker hands
    /// the control plane at most `punt_rate` frames a second and drops the rest as
    /// `punt-rate`; a cross-connect on the same worker forwards TCP and pings without loss
    /// meanwhile, and Weft still answers ARP afterwards.
    func testAPuntFloodIsRateLimitedAndForwardingGoesOn() throws {
        let tag = uniqueTag()
        let pod1 = PodNamespace(tag: tag, index: 1, address: "10.94.0.1")
        let pod2 = PodNamespace(tag: tag, index: 2, address: "10.94.0.2")
        let k = "wt\(tag)f", upHost = "wt\(tag)u"
        defer { sh("ip netns del \(k) 2>/dev/null; ip link del \(upHost) 2>/dev/null") }
        let setup = sh("""
        set -e
        ip netns add \(k)
        ip link add \(upHost) type veth peer name eth0 netns \(k)
        sysctl -qw net.ipv6.conf.\(upHost).disable_ipv6=1
        ip link set \(upHost) up
        ip -n \(k) link set eth0 up
        ip -n \(k) link set lo up
        ip -n \(k) addr add 10.95.0.2/24 dev eth0
        """)
        XCTAssertEqual(setup.status, 0, setup.err)
        let w = Weftd(tag: tag)
        let body = """
        interfaces:
          - name: up
            type: af_packet
            iface: \(upHost)
            underlay: {ipv4: 10.95.0.1/24, mtu: 1500}
          - {name: pod1, type: af_packet, iface: \(pod1.hostEnd)}
          - {name: pod2, type: af_packet, iface: \(pod2.hostEnd)}
        cross_connects:
          - {name: x, a: pod1, b: pod2}
        """
        // punt_rate goes into the header's dataplane section.
        let header = w.header().replacingOccurrences(of: "  idle_sleep_us: 20\n", with: "  idle_sleep_us: 20\n  punt_rate: 2000\n")
        XCTAssertTrue(header.contains("punt_rate: 2000"))
        FileManager.default.createFile(atPath: w.configPath, contents: Data((header + body).utf8))
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.waitLinksUp(), w.log)
        XCTAssertEqual(pingCounts(sh("ip netns exec \(k) ping -n -q -c 2 -i 0.3 -W 2 10.95.0.1").out)?.received, 2, w.log)

        // The flood: raw ARP requests for Weft's address as fast as one Python loop goes.
        let flood = """
        import socket, struct, time, sys
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind(("eth0", 0))
        mac = open("/sys/class/net/eth0/address").read().strip()
        src = bytes(int(x, 16) for x in mac.split(":"))
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src, socket.inet_aton("10.95.0.2"), b"\\0" * 6, socket.inet_aton("10.95.0.1"))
        frame = b"\\xff" * 6 + src + b"\\x08\\x06" + arp + b"\\0" * 18
        n, end = 0, time.time() + float(sys.argv[1])
        while time.time() < end:
            for _ in range(200):
                s.send(frame)
            n += 200
        print(n)
        """
        let before = try XCTUnwrap(w.interfaces().first { $0.name == "up" }).counters
        let flooder = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var sent = ""
        DispatchQueue(label: "flood").async {
            sent = sh(["ip", "netns", "exec", k, "python3", "-c", flood, "4"], timeout: 30).out
            flooder.signal()
        }
        usleep(300_000)
        let t = pod1.transfer(to: pod2.ns, target: pod2.address, proto: "tcp", bytes: 4 << 20, port: 5461)
        let p = pod1.ping(pod2.address, count: 20, interval: "0.1")
        flooder.wait()
        XCTAssertTrue(t.intact, "TCP under the flood: \(t)")
        XCTAssertEqual(pingCounts(p.out)?.received, 20, "pings lost under the flood: \(p.out)")
        let floodFrames = Int(sent.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let after = try XCTUnwrap(w.interfaces().first { $0.name == "up" }).counters
        let limited = (after.drops["punt-rate"] ?? 0) - (before.drops["punt-rate"] ?? 0)
        let received = after.rxPackets - before.rxPackets
        // At most 2,000/s (plus the bucket's burst) went to the control plane.
        XCTAssertGreaterThan(floodFrames, 20_000, "the flood was too slow to test anything: \(sent)")
        XCTAssertGreaterThan(limited, 0, "nothing dropped as punt-rate: \(after)")
        XCTAssertLessThanOrEqual(Int(received) - Int(limited), 2_000 * 6 + 300, "more than the rate reached the control plane: \(after)")
        // Afterwards Weft still answers.
        XCTAssertEqual(pingCounts(sh("ip netns exec \(k) ping -n -q -c 2 -i 0.3 -W 2 10.95.0.1").out)?.received, 2, w.log)
        XCTAssertTrue(w.ctl(["show", "drops"]).out.contains("punt-rate"))
        XCTAssertEqual(w.stop(), 0)
    }
}
