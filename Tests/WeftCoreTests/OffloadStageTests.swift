import Foundation
import XCTest
@_spi(Testing) import WeftAdmin
@_spi(Testing) import WeftControl
@_spi(Testing) import WeftDataplane
@_spi(Testing) import WeftKernel
@_spi(Testing) import WeftModel

/// What a kernel interface leaves unfinished, finished by the egress node for a
/// port that cannot take it: partial TCP/UDP checksums completed, super-frames
/// cut into MSS-sized frames as the kernel's GSO would. Checksums here are
/// computed independently of the C core.
final class OffloadStageTests: XCTestCase {
    var dp: Dataplane!
    var a: PortID!, b: PortID!

    override func setUpWithError() throws {
        dp = try StageEAL.dataplane()
        a = try dp.createTestPort(name: "ola\(UInt16.random(in: 0...9999))")
        b = try dp.createTestPort(name: "olb\(UInt16.random(in: 0...9999))")
        _ = try dp.addCrossConnect(a, b)
    }

    override func tearDown() { dp.destroy(); dp = nil }

    // MARK: frames built here

    static func sum(_ bytes: [UInt8], _ initial: UInt32 = 0) -> UInt32 {
        var s = initial
        var i = 0
        while i + 1 < bytes.count { s += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.count { s += UInt32(bytes[i]) << 8 }
        return s
    }
    static func fold(_ s: UInt32) -> UInt16 {
        var s = s
        while s > 0xffff { s = (s & 0xffff) + (s >> 16) }
        return UInt16(s)
    }
    static func pseudo(src: [UInt8], dst: [UInt8], proto: UInt8, length: Int) -> UInt32 {
        sum(src + dst) + UInt32(proto) + UInt32(length)
    }

    struct Built { var frame: [UInt8]; var payload: [UInt8]; var l3: Int; var l4: Int }

    /// Ethernet + IPv4/IPv6 + TCP (20-byte header, flags) or UDP, the L4 checksum
    /// field holding the pseudo-header sum (what CHECKSUM_PARTIAL leaves).
    static func build(ipv6: Bool, tcp: Bool, payload n: Int, flags: UInt8 = 0x18, seq: UInt32 = 1000,
                      ipID: UInt16 = 0x1234) -> Built {
        let payload = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let l4len = (tcp ? 20 : 8) + n
        var f: [UInt8] = [0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, ipv6 ? 0x86 : 0x08, ipv6 ? 0xdd : 0x00]
        let src: [UInt8] = ipv6 ? [0xfd, 0] + [UInt8](repeating: 0, count: 13) + [1] : [10, 0, 0, 1]
        let dst: [UInt8] = ipv6 ? [0xfd, 0] + [UInt8](repeating: 0, count: 13) + [2] : [10, 0, 0, 2]
        let proto: UInt8 = tcp ? 6 : 17
        if ipv6 {
            f += [0x60, 0, 0, 0, UInt8(l4len >> 8), UInt8(l4len & 0xff), proto, 64] + src + dst
        } else {
            var ip: [UInt8] = [0x45, 0, UInt8((20 + l4len) >> 8), UInt8((20 + l4len) & 0xff), UInt8(ipID >> 8),
                               UInt8(ipID & 0xff), 0x40, 0, 64, proto, 0, 0] + src + dst
            let c = ~fold(sum(ip))
            ip[10] = UInt8(c >> 8); ip[11] = UInt8(c & 0xff)
            f += ip
        }
        let l4 = f.count
        if tcp {
            f += [0x30, 0x39, 0x00, 0x50] + withUnsafeBytes(of: seq.bigEndian, Array.init) + [0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]
        } else {
            f += [0x30, 0x39, 0x00, 0x35, UInt8(l4len >> 8), UInt8(l4len & 0xff), 0, 0]
        }
        let partial = fold(pseudo(src: src, dst: dst, proto: proto, length: l4len))
        let at = l4 + (tcp ? 16 : 6)
        f[at] = UInt8(partial >> 8); f[at + 1] = UInt8(partial & 0xff)
        return Built(frame: f + payload, payload: payload, l3: ipv6 ? 40 : 20, l4: tcp ? 20 : 8)
    }

    /// Whether the L4 checksum of a complete frame verifies (and the IPv4 header's).
    static func verifies(_ f: [UInt8], ipv6: Bool, tcp: Bool) -> Bool {
        let l3 = 14, l4 = ipv6 ? 54 : 34
        let src = ipv6 ? Array(f[22..<38]) : Array(f[26..<30]), dst = ipv6 ? Array(f[38..<54]) : Array(f[30..<34])
        if !ipv6 && fold(sum(Array(f[l3..<l4]))) != 0xffff { return false }
        let l4bytes = Array(f[l4...])
        return fold(sum(l4bytes, pseudo(src: src, dst: dst, proto: tcp ? 6 : 17, length: l4bytes.count))) == 0xffff
    }

    func collectAll() throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let f = try dp.collect(b) { out.append(f) }
        return out
    }

    // MARK: checksums

    func testPartialChecksumsAreFinished() throws {
        for (ipv6, tcp) in [(false, true), (false, false), (true, true), (true, false)] {
            let x = Self.build(ipv6: ipv6, tcp: tcp, payload: 1000)
            XCTAssertFalse(Self.verifies(x.frame, ipv6: ipv6, tcp: tcp), "the input is partial")
            try dp.injectWithOffload(a, frame: x.frame, l2: 14, l3: x.l3, l4: x.l4, tcp: tcp, ipv6: ipv6)
            dp.pollOnce()
            let out = try collectAll()
            XCTAssertEqual(out.count, 1)
            XCTAssertTrue(Self.verifies(out[0], ipv6: ipv6, tcp: tcp), "ipv6 \(ipv6) tcp \(tcp)")
            // Nothing but the checksum changed.
            let at = 14 + x.l3 + (tcp ? 16 : 6)
            XCTAssertEqual(Array(out[0][..<at]), Array(x.frame[..<at]))
            XCTAssertEqual(Array(out[0][(at + 2)...]), Array(x.frame[(at + 2)...]))
        }
    }

    func testChecksumOffsetsOutsideTheFrameAreDroppedByReason() throws {
        let x = Self.build(ipv6: false, tcp: true, payload: 10)
        try dp.injectWithOffload(a, frame: x.frame, l2: 14, l3: 200, l4: 20, tcp: true, ipv6: false)
        dp.pollOnce()
        XCTAssertNil(try dp.collect(b))
        XCTAssertEqual(dp.counters(b).drops["bad-checksum-offload"], 1)
    }

    // MARK: segmentation

    func segments(ipv6: Bool, tcp: Bool, payload: Int, mss: Int) throws {
        let x = Self.build(ipv6: ipv6, tcp: tcp, payload: payload, flags: 0x19 /* FIN PSH ACK */)
        let before = dp.mbufsAvailable
        try dp.injectWithOffload(a, frame: x.frame, l2: 14, l3: x.l3, l4: x.l4, tcp: tcp, ipv6: ipv6, gsoSize: mss)
        var out: [[UInt8]] = []
        for _ in 0..<8 { dp.pollOnce(); out += try collectAll() }
        let n = (payload + mss - 1) / mss
        XCTAssertEqual(out.count, n, "ipv6 \(ipv6) tcp \(tcp) payload \(payload) mss \(mss)")
        var joined: [UInt8] = []
        let hdr = 14 + x.l3 + x.l4
        for (i, f) in out.enumerated() {
            let len = min(mss, payload - i * mss)
            XCTAssertEqual(f.count, hdr + len, "segment \(i)")
            XCTAssertTrue(Self.verifies(f, ipv6: ipv6, tcp: tcp), "segment \(i) checksums")
            if ipv6 {
                XCTAssertEqual(Int(f[18]) << 8 | Int(f[19]), x.l4 + len, "payload length")
            } else {
                XCTAssertEqual(Int(f[16]) << 8 | Int(f[17]), 20 + x.l4 + len, "total length")
                XCTAssertEqual(Int(f[18]) << 8 | Int(f[19]), 0x1234 + i, "IPv4 ids go up by one")
            }
            if tcp {
                let seq = UInt32(f[hdr - 20 + 4]) << 24 | UInt32(f[hdr - 16 + 1]) << 16 | UInt32(f[hdr - 16 + 2]) << 8 | UInt32(f[hdr - 16 + 3])
                XCTAssertEqual(seq, 1000 + UInt32(i * mss), "sequence of segment \(i)")
                let flags = f[hdr - 20 + 13]
                XCTAssertEqual(flags, i == n - 1 ? 0x19 : 0x10, "FIN and PSH only on the last segment")
            } else {
                XCTAssertEqual(Int(f[hdr - 4]) << 8 | Int(f[hdr - 3]), 8 + len, "UDP length")
            }
            joined += f[hdr...]
        }
        XCTAssertEqual(joined, x.payload, "the payload, in order, nothing lost or doubled")
        XCTAssertEqual(dp.mbufsAvailable, before, "every mbuf back in the pool")
    }

    func testTCPSuperFramesAreSegmented() throws {
        try segments(ipv6: false, tcp: true, payload: 20000, mss: 1448)
        try segments(ipv6: true, tcp: true, payload: 60000, mss: 1428) // a chain of 30 mbufs
        try segments(ipv6: false, tcp: true, payload: 30000, mss: 8948) // jumbo segments, chained
    }

    func testUDPSuperFramesAreSegmentedIntoDatagrams() throws {
        try segments(ipv6: false, tcp: false, payload: 10000, mss: 1472)
        try segments(ipv6: true, tcp: false, payload: 7000, mss: 1452)
    }

    func testSuperFrameWithoutItsHeadersIsDroppedByReason() throws {
        let x = Self.build(ipv6: false, tcp: true, payload: 3000)
        try dp.injectWithOffload(a, frame: x.frame, l2: 14, l3: x.l3, l4: 0, tcp: true, ipv6: false, gsoSize: 1000)
        dp.pollOnce()
        XCTAssertNil(try dp.collect(b))
        XCTAssertEqual(dp.counters(b).drops["oversize-gso"], 1)
    }
}
