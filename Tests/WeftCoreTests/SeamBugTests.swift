import CWeft
import CWeftKernel
import Foundation
import XCTest
@testable import WeftDataplane
import WeftModel

/// Defects the old shape of the code produced, each pinned by a test that
/// failed before its fix (architecture issue).
final class SeamBugTests: XCTestCase {
    /// The reason of a failed call is per thread: a netlink call on another
    /// thread (the NSM path) does not overwrite it before it is read. Before the
    /// fix the buffer was process-wide and thread A read thread B's reason.
    func testTheLastErrorIsPerThread() {
        let aFailed = DispatchSemaphore(value: 0), bFailed = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var text = "" }
        let reasonA = Box()
        let a = Thread {
            var h: OpaquePointer?
            XCTAssertLessThan(wf_nl_open("/nonexistent/weft-ns", &h), 0)
            aFailed.signal()
            bFailed.wait()
            var buf = [CChar](repeating: 0, count: 512)
            wf_last_error(&buf, buf.count)
            reasonA.text = String(cString: buf)
            done.signal()
        }
        let b = Thread {
            aFailed.wait()
            var h: OpaquePointer?
            XCTAssertEqual(wf_nl_open(nil, &h), 0)
            let mac: [UInt8] = [2, 0, 0, 0, 0] // five bytes: refused
            XCTAssertEqual(wf_nl_veth_add(h, "wsb-a", "wsb-b", nil, 0, mac, mac.count), -EINVAL)
            wf_nl_close(h)
            bFailed.signal()
        }
        a.start(); b.start()
        done.wait()
        XCTAssertTrue(reasonA.text.contains("/nonexistent/weft-ns"), "thread A's reason was overwritten: '\(reasonA.text)'")
    }

    /// A table that cannot be built is not published, and nothing of the change
    /// stays. Before the fix a failed copy of an uplink's underlay was skipped:
    /// the publish reported success and the uplink did not answer ARP.
    func testATableThatCannotBeBuiltIsNotPublishedHalf() throws {
        let dp = try StageEAL.dataplane()
        defer { wf_test_fail_table_alloc(-1); dp.destroy() }
        let up = try dp.createTestPort(name: "sbup"), up2 = try dp.createTestPort(name: "sbup2")
        let a = try dp.createTestPort(name: "sba"), b = try dp.createTestPort(name: "sbb")
        func mac(_ p: PortID) throws -> [UInt8] { try dp.info(p).mac.split(separator: ":").map { UInt8($0, radix: 16)! } }
        var u = Dataplane.Underlay()
        u.ipv4 = (IPAddress.parse("10.61.0.1")!, 24)
        try dp.setUnderlay(up, u)
        func answersARP(_ port: PortID, _ ip: [UInt8]) throws -> Bool {
            let host: [UInt8] = [ip[0], ip[1], ip[2], 9], hostMAC: [UInt8] = [2, 0, 0, 0, 0x61, 9]
            let arp = [UInt8](repeating: 0xff, count: 6) + hostMAC + [0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1] + hostMAC + host
                + [0, 0, 0, 0, 0, 0] + ip + [UInt8](repeating: 0, count: 18)
            try dp.inject(port, frame: arp)
            dp.pollOnce()
            try dp.underlayService()
            var got = false
            let m = try mac(port)
            while let f = try dp.collect(port) { if f.count >= 42, f[12] == 0x08, f[13] == 0x06, Array(f[6..<12]) == m { got = true } }
            return got
        }
        XCTAssertTrue(try answersARP(up, [10, 61, 0, 1]))
        // A second uplink's addresses: the root and its underlay part each fail in turn.
        var u2 = Dataplane.Underlay()
        u2.ipv4 = (IPAddress.parse("10.62.0.1")!, 24)
        var failures = 0
        for k in 0..<16 {
            wf_test_fail_table_alloc(Int32(k))
            let ok = (try? dp.setUnderlay(up2, u2)) != nil
            wf_test_fail_table_alloc(-1)
            XCTAssertTrue(try answersARP(up, [10, 61, 0, 1]), "attempt \(k): the first uplink lost its underlay")
            XCTAssertEqual(try answersARP(up2, [10, 62, 0, 1]), ok, "attempt \(k) \(ok ? "published" : "failed")")
            if ok { break }
            failures += 1
        }
        XCTAssertGreaterThanOrEqual(failures, 2, "the injection did not reach both allocations")
        // A cross-connect whose publish fails carries nothing; then it does.
        wf_test_fail_table_alloc(0)
        XCTAssertThrowsError(try dp.addCrossConnect(a, b))
        wf_test_fail_table_alloc(-1)
        try dp.inject(a, frame: testFrame(src: 1, dst: 2, seq: 1))
        dp.pollOnce()
        XCTAssertNil(try dp.collect(b), "a frame crossed a cross-connect whose publish failed")
        _ = try dp.addCrossConnect(a, b)
        try dp.inject(a, frame: testFrame(src: 1, dst: 2, seq: 999))
        dp.pollOnce()
        XCTAssertEqual(try dp.collect(b), testFrame(src: 1, dst: 2, seq: 999))
    }

    /// Only the underlay thread services the underlay while it runs; a second
    /// caller is refused (before the fix both ran at once, and the inject ring
    /// they shared was single-producer).
    func testUnderlayServiceIsRefusedWhileItsThreadRuns() throws {
        _ = StageEAL.ready
        var s = DataplaneSettings(workerLcores: [1])
        s.mbufs = 2047
        s.mbufCache = 0
        let dp = try Dataplane(s)
        defer { dp.destroy() }
        XCTAssertNoThrow(try dp.underlayService())
        try dp.start()
        XCTAssertThrowsError(try dp.underlayService()) { e in
            XCTAssertEqual((e as? DataplaneError)?.errno, EBUSY)
        }
        dp.stop()
    }

    /// Wrong-length addresses are refused with a reason, not a trap, and the C
    /// core never reads past a short MAC.
    func testWrongLengthAddressesAreRefused() throws {
        let dp = try StageEAL.dataplane()
        defer { dp.destroy() }
        let up = try dp.createTestPort(name: "sblen")
        var u = Dataplane.Underlay()
        u.ipv4 = (IPAddress.parse("10.62.0.1")!, 24)
        try dp.setUnderlay(up, u)
        XCTAssertThrowsError(try dp.addStaticNeighbour(up, ip: [UInt8](repeating: 1, count: 17), mac: [2, 0, 0, 0, 0, 1]))
        XCTAssertThrowsError(try dp.addStaticNeighbour(up, ip: [10, 62, 0, 2], mac: [2, 0, 0]))
        XCTAssertThrowsError(try dp.addVXLAN(uplink: up, vni: 5, remote: [UInt8](repeating: 1, count: 20), dstPort: 4789, localPort: 4789))
        var bad = Dataplane.Underlay()
        bad.ipv4 = ([UInt8](repeating: 1, count: 16), 24)
        XCTAssertThrowsError(try dp.setUnderlay(up, bad))
        bad = Dataplane.Underlay()
        bad.ipv6 = (IPAddress.parse("fd00::1")!, 300)
        XCTAssertThrowsError(try dp.setUnderlay(up, bad))
        // The kernel side: lengths are given and checked.
        var h: OpaquePointer?
        XCTAssertEqual(wf_nl_open(nil, &h), 0)
        defer { wf_nl_close(h) }
        let ip: [UInt8] = [10, 0, 0, 1], short: [UInt8] = [2, 0, 0, 0, 0]
        XCTAssertEqual(wf_nl_neigh_add(h, 1, AF_INET, ip, ip.count, short, short.count), -EINVAL)
        XCTAssertEqual(wf_nl_neigh_add(h, 1, AF_INET, ip, 3, short, 6), -EINVAL)
        XCTAssertEqual(wf_nl_addr_add(h, 1, AF_INET6, ip, ip.count, 64), -EINVAL)
    }

    /// A memif secret never reaches an error message or the status a user reads.
    func testTheMemifSecretIsNeverPrinted() throws {
        XCTAssertEqual(Redact.devargs("net_memif0,role=server,secret=hunter2,socket=/x"), "net_memif0,role=server,secret=***,socket=/x")
        XCTAssertEqual(Redact.devargs("net_memif0,secret=hunter2"), "net_memif0,secret=***")
        let dp = try StageEAL.dataplane()
        defer { dp.destroy() }
        XCTAssertThrowsError(try dp.attach(devargs: "net_nosuchdriver7,secret=hunter2", rxQueues: 1, mtu: 0, promiscuous: true, netns: nil)) { e in
            XCTAssertFalse("\(e)".contains("hunter2"), "\(e)")
        }
        var m = Dataplane.MemifSettings(socket: "/nonexistent/dir/m.sock")
        m.secret = "hunter2"
        XCTAssertThrowsError(try dp.attachMemif(m)) { e in XCTAssertFalse("\(e)".contains("hunter2"), "\(e)") }
    }
    /// A kernel interface whose link comes up between the attach's reading of it and
    /// its registration for link events (the event is handled then and finds no
    /// interface) is up once attached. Before the fix it stayed down for good, and
    /// everything towards it was dropped as link-down: an NSM connection's pod side
    /// (NSMChaosSystemTests, seed 1 step 3: 6 echoes in, 6 replies dropped).
    func testALinkThatComesUpDuringAttachIsSeenUp() throws {
        let dp = try StageEAL.dataplane()
        defer { wf_test_kif_before_watch = nil; dp.destroy() }
        let tag = String(UInt32.random(in: 0..<0xffffff), radix: 16)
        let a = "wt\(tag)a", b = "wt\(tag)b", c = "wt\(tag)c", d = "wt\(tag)d"
        func ip(_ args: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            p.arguments = args.split(separator: " ").map(String.init)
            try? p.run()
            p.waitUntilExit()
        }
        // a's peer b stays down (no carrier on a); c/d: an interface already watched in
        // this namespace, so that the link monitor exists, as in a running weftd.
        ip("link add \(a) type veth peer name \(b)")
        ip("link add \(c) type veth peer name \(d)")
        defer { ip("link del \(a)"); ip("link del \(c)") }
        ip("link set \(a) up")
        ip("link set \(c) up")
        ip("link set \(d) up")
        _ = try dp.attachKernel(ifname: c, backend: .afPacket)

        LinkRace.dp = dp
        LinkRace.peer = b
        LinkRace.watched = a
        wf_test_kif_before_watch = { _ in
            // The peer comes up; the events thread (this call, in a stage test) handles
            // the event before `a` is registered.
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            p.arguments = ["link", "set", LinkRace.peer, "up"]
            try? p.run()
            p.waitUntilExit()
            for _ in 0..<200 {
                let s = (try? String(contentsOfFile: "/sys/class/net/\(LinkRace.watched)/operstate", encoding: .utf8)) ?? ""
                if s.hasPrefix("up") { break }
                usleep(10_000)
            }
            for _ in 0..<5 { _ = LinkRace.dp?.serviceEvents(timeoutMs: 20) }
        }
        let port = try dp.attachKernel(ifname: a, backend: .afPacket)
        wf_test_kif_before_watch = nil
        LinkRace.dp = nil
        for _ in 0..<10 { _ = dp.serviceEvents(timeoutMs: 10); dp.pollLinks() }
        XCTAssertTrue(try dp.info(port).linkUp, "\(a): its link came up during the attach and is still seen down")
    }
}

/// The hook's context (a C function pointer captures nothing).
enum LinkRace {
    static var dp: Dataplane?
    static var peer = ""
    static var watched = ""
}
