import XCTest
@testable import WeftDataplane
@testable import WeftModel

/// rte_flow offload of cross-connects (CShims/weft/src/control/flow.c) without an
/// eswitch: the rules for every kind of connection, field by field, as the NIC
/// would get them; and the fallback on the ports that exist here (ring ethdevs
/// have no transfer proxy): `auto` keeps forwarding in software with the reason,
/// `required` fails with it, a side of Weft's own driver is named as such; rules
/// that fail later or whose VXLAN next hop changes its MAC (rules pretended in place).
final class OffloadRuleStageTests: XCTestCase {
    var dp: Dataplane!
    let peerMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x02]

    override func setUpWithError() throws { dp = try StageEAL.dataplane() }
    override func tearDown() { dp = nil }


    func testPortToPortRulesAndTheSoftwareFallback() throws {
        let a = try dp.createTestPort(name: "ofa"), b = try dp.createTestPort(name: "ofb")
        let ea = try XCTUnwrap(dp.ethdev(a)), eb = try XCTUnwrap(dp.ethdev(b))
        let x = try dp.addCrossConnect(a, b)
        XCTAssertEqual(try dp.describeOffload(x), """
            A->B: transfer=1 pattern: represented_port(\(ea)) eth actions: represented_port(\(eb)) count
            B->A: transfer=1 pattern: represented_port(\(eb)) eth actions: represented_port(\(ea)) count
            """)
        // Ring ports are on no eswitch: software, and why.
        try dp.offload(x, .auto)
        let st = try dp.offloadStatus(x)
        XCTAssertFalse(st.offloaded)
        XCTAssertTrue(st.why.contains("no transfer proxy"), st.why)
        XCTAssertThrowsError(try dp.offload(x, .required)) { e in
            XCTAssertTrue("\(e)".contains("offload required but not possible: no transfer proxy"), "\(e)")
        }
        // Still forwarding in software.
        try dp.inject(a, frame: testFrame(src: 1, dst: 2, seq: 7))
        _ = dp.pollOnce()
        XCTAssertEqual(try dp.collect(b), testFrame(src: 1, dst: 2, seq: 7))
        try dp.offload(x, .off)
        XCTAssertEqual(try dp.offloadStatus(x).why, "offload off")
        try dp.deleteCrossConnect(x)
        XCTAssertThrowsError(try dp.offloadStatus(x))
    }

    /// A rule that fails later (here: rules that are not there, as after a port reset,
    /// on ports whose PMD answers no flow call): the link poll's check puts the connection
    /// back in software, with the reason, its counts kept; traffic crosses throughout.
    func testARuleThatFailsLaterPutsTheConnectionBackInSoftware() throws {
        let a = try dp.createTestPort(name: "ofla"), b = try dp.createTestPort(name: "oflb")
        let x = try dp.addCrossConnect(a, b)
        try dp.testPretendOffloaded(x, packets: [100, 50], bytes: [6400, 3200])
        var st = try dp.offloadStatus(x)
        XCTAssertTrue(st.offloaded)
        XCTAssertEqual(st.packets, [100, 50], "a failed query keeps the last counts")
        XCTAssertEqual(dp.offloadCheck(), 1)
        st = try dp.offloadStatus(x)
        XCTAssertFalse(st.offloaded)
        XCTAssertTrue(st.why.hasPrefix("the NIC's A->B rule failed later ("), st.why)
        XCTAssertTrue(st.why.hasSuffix("): back in software"), st.why)
        XCTAssertEqual(st.packets, [100, 50])
        XCTAssertEqual(st.bytes, [6400, 3200])
        XCTAssertEqual(dp.offloadCheck(), 0, "checked once: nothing offloaded any more")
        try dp.inject(a, frame: testFrame(src: 1, dst: 2, seq: 9))
        _ = dp.pollOnce()
        XCTAssertEqual(try dp.collect(b), testFrame(src: 1, dst: 2, seq: 9))
        try dp.deleteCrossConnect(x)
    }

    func testVLANRules() throws {
        let pod = try dp.createTestPort(name: "ofv"), up = try dp.createTestPort(name: "ofvu")
        let ep = try XCTUnwrap(dp.ethdev(pod)), eu = try XCTUnwrap(dp.ethdev(up))
        let v = try dp.addVLAN(uplink: up, id: 100)
        let x = try dp.addCrossConnect(SideID(pod), v)
        XCTAssertEqual(try dp.describeOffload(x), """
            A->B: transfer=1 pattern: represented_port(\(ep)) eth actions: of_push_vlan(0x8100) of_set_vlan_vid(100) represented_port(\(eu)) count
            B->A: transfer=1 pattern: represented_port(\(eu)) eth vlan(vid=100/0xfff) actions: of_pop_vlan represented_port(\(ep)) count
            """)
    }

    func testVXLANRulesIPv4AndIPv6() throws {
        let pod = try dp.createTestPort(name: "ofx"), pod6 = try dp.createTestPort(name: "ofx6"), up = try dp.createTestPort(name: "ofxu")
        let ep = try XCTUnwrap(dp.ethdev(pod)), ep6 = try XCTUnwrap(dp.ethdev(pod6)), eu = try XCTUnwrap(dp.ethdev(up))
        let upMAC = try dp.info(up).mac
        var u = Dataplane.Underlay()
        u.ipv4 = (IPAddress.parse("10.0.0.1")!, 24)
        u.ipv6 = (IPAddress.parse("fd00::1")!, 64)
        u.mtu = 1500
        u.vxlanPorts = [4789, 8472]
        try dp.setUnderlay(up, u)
        let vx4 = try dp.addVXLAN(uplink: up, vni: 100, remote: IPAddress.parse("10.0.0.2")!, dstPort: 4789, localPort: 4789)
        let vx6 = try dp.addVXLAN(uplink: up, vni: 0xABCDE, remote: IPAddress.parse("fd00::2")!, dstPort: 8472, localPort: 8472)
        let x4 = try dp.addCrossConnect(SideID(pod), vx4), x6 = try dp.addCrossConnect(SideID(pod6), vx6)
        // Encap needs the next hop's MAC: until then no rule, and why.
        XCTAssertThrowsError(try dp.describeOffload(x4)) { XCTAssertTrue("\($0)".contains("next hop is not resolved"), "\($0)") }
        try dp.offload(x4, .auto)
        XCTAssertTrue(try dp.offloadStatus(x4).why.contains("next hop is not resolved"))
        try dp.addStaticNeighbour(up, ip: IPAddress.parse("10.0.0.2")!, mac: peerMAC)
        try dp.addStaticNeighbour(up, ip: IPAddress.parse("fd00::2")!, mac: peerMAC)
        XCTAssertEqual(try dp.describeOffload(x4), """
            A->B: transfer=1 pattern: represented_port(\(ep)) eth actions: vxlan_encap(eth(\(upMAC)>02:00:00:00:00:02,type=0x0800) ipv4(10.0.0.1>10.0.0.2,ver=4,ttl=64,proto=17) udp(dst=4789) vxlan(flags=0x08,vni=100)) represented_port(\(eu)) count
            B->A: transfer=1 pattern: represented_port(\(eu)) eth ipv4(src=10.0.0.2,dst=10.0.0.1) udp(dst=4789) vxlan(vni=100) actions: vxlan_decap represented_port(\(ep)) count
            """)
        // Offered (the encap rule follows its next hop's MAC, below); ring ports are on no eswitch.
        try dp.offload(x4, .auto)
        let why4 = try dp.offloadStatus(x4).why
        XCTAssertTrue(why4.contains("no transfer proxy"), why4)
        XCTAssertThrowsError(try dp.offload(x4, .required))
        XCTAssertEqual(try dp.describeOffload(x6), """
            A->B: transfer=1 pattern: represented_port(\(ep6)) eth actions: vxlan_encap(eth(\(upMAC)>02:00:00:00:00:02,type=0x86dd) ipv6(fd00:0:0:0:0:0:0:1>fd00:0:0:0:0:0:0:2,ver=6,hlim=64,proto=17) udp(dst=8472) vxlan(flags=0x08,vni=703710)) represented_port(\(eu)) count
            B->A: transfer=1 pattern: represented_port(\(eu)) eth ipv6(src=fd00:0:0:0:0:0:0:2,dst=fd00:0:0:0:0:0:0:1) udp(dst=8472) vxlan(vni=703710) actions: vxlan_decap represented_port(\(ep6)) count
            """)

        // An offloaded encap rule follows its next hop: when the MAC changes, a new rule is
        // made before the old one goes; here the new one is refused (no eswitch), so the
        // connection goes back to software with the reason, its counts kept.
        try dp.testPretendOffloaded(x4, packets: [10, 20], bytes: [1000, 2000])
        XCTAssertTrue(try dp.offloadStatus(x4).offloaded)
        try dp.addStaticNeighbour(up, ip: IPAddress.parse("10.0.0.2")!, mac: [0x02, 0, 0, 0, 0, 0x09])
        XCTAssertEqual(dp.offloadCheck(), 1)
        let st = try dp.offloadStatus(x4)
        XCTAssertFalse(st.offloaded)
        XCTAssertTrue(st.why.hasPrefix("the VXLAN next hop's MAC changed and the A->B rule could not follow (no transfer proxy"), st.why)
        XCTAssertEqual(st.packets, [10, 20])
        XCTAssertEqual(st.bytes, [1000, 2000])
        // The rule that would be made carries the new MAC.
        XCTAssertTrue(try dp.describeOffload(x4).contains("\(upMAC)>02:00:00:00:00:09"))
    }
}
