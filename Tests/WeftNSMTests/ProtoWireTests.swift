import SwiftProtobuf
import XCTest
@testable import WeftNSM
import WeftNSMProto

/// The generated messages against hand-built wire bytes, field numbers as in NSM's API
/// (reference nsm-api.md §2). Encoding is compared byte for byte where the order is fixed
/// (fields ascend; maps with one entry); maps with several entries are compared by decoding.
final class ProtoWireTests: XCTestCase {
    typealias W = Wire

    private func encode<M: SwiftProtobuf.Message>(_ m: M) throws -> [UInt8] {
        try m.serializedBytes()
    }

    // MARK: the helper itself, against literal bytes from the protobuf encoding spec

    func testWireHelperMatchesSpecExamples() {
        XCTAssertEqual(W.varint(0), [0x00])
        XCTAssertEqual(W.varint(1), [0x01])
        XCTAssertEqual(W.varint(150), [0x96, 0x01])
        XCTAssertEqual(W.varint(300), [0xAC, 0x02])
        XCTAssertEqual(W.tag(1, 0), [0x08])
        XCTAssertEqual(W.tag(2, 2), [0x12])
        XCTAssertEqual(W.tag(16, 2), [0x82, 0x01])
        XCTAssertEqual(W.string(2, "testing"), [0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6e, 0x67])
        XCTAssertEqual(W.int32(3, -1), [0x18] + Array(repeating: 0xff, count: 9) + [0x01])
        XCTAssertEqual(W.timestamp(4, seconds: 1, nanos: 2), [0x22, 0x04, 0x08, 0x01, 0x10, 0x02])
    }

    // MARK: connection.proto

    func testMechanismLiteralBytes() throws {
        // cls = 1, type = 2, parameters = 3 (entry key 1, value 2), spelled out.
        let bytes: [UInt8] = [
            0x0a, 0x05, 0x4c, 0x4f, 0x43, 0x41, 0x4c,               // 1: "LOCAL"
            0x12, 0x06, 0x4b, 0x45, 0x52, 0x4e, 0x45, 0x4c,         // 2: "KERNEL"
            0x1a, 0x0a, 0x0a, 0x04, 0x6e, 0x61, 0x6d, 0x65,         // 3: { 1: "name",
            0x12, 0x02, 0x6e, 0x31,                                 //      2: "n1" }
        ]
        XCTAssertEqual(W.string(1, "LOCAL") + W.string(2, "KERNEL") + W.entry(3, "name", "n1"), bytes)
        let m = try Connection_Mechanism(serializedBytes: bytes)
        XCTAssertEqual(m.cls, "LOCAL")
        XCTAssertEqual(m.type, "KERNEL")
        XCTAssertEqual(m.parameters, ["name": "n1"])
        var built = Connection_Mechanism()
        built.cls = "LOCAL"
        built.type = "KERNEL"
        built.parameters = ["name": "n1"]
        XCTAssertEqual(try encode(built), bytes)
    }

    func testMechanismParametersMapWithSeveralEntries() throws {
        let a = W.entry(3, "inodeURL", "inode://4/4026531840"), b = W.entry(3, "MTU", "1400")
        let c = W.entry(3, "name", "nsm-1")
        let want = ["inodeURL": "inode://4/4026531840", "MTU": "1400", "name": "nsm-1"]
        // Entries may come in any order.
        for order in [a + b + c, c + a + b, b + c + a] {
            let m = try Connection_Mechanism(serializedBytes: W.string(2, "MEMIF") + order)
            XCTAssertEqual(m.type, "MEMIF")
            XCTAssertEqual(m.parameters, want)
        }
        var m = Connection_Mechanism()
        m.type = "MEMIF"
        m.parameters = want
        let out = try encode(m)
        XCTAssertEqual(out.count, (W.string(2, "MEMIF") + a + b + c).count)
        XCTAssertEqual(try Connection_Mechanism(serializedBytes: out).parameters, want)
    }

    func testPathSegment() throws {
        let bytes = W.string(1, "nsc") + W.string(2, "id-1") + W.string(3, "jwt.token")
            + W.timestamp(4, seconds: 1_700_000_000, nanos: 5) + W.entry(5, "rtt", "1ms")
        let s = try Connection_PathSegment(serializedBytes: bytes)
        XCTAssertEqual(s.name, "nsc")
        XCTAssertEqual(s.id, "id-1")
        XCTAssertEqual(s.token, "jwt.token")
        XCTAssertTrue(s.hasExpires)
        XCTAssertEqual(s.expires.seconds, 1_700_000_000)
        XCTAssertEqual(s.expires.nanos, 5)
        XCTAssertEqual(s.metrics, ["rtt": "1ms"])

        var built = Connection_PathSegment()
        built.name = "nsc"
        built.id = "id-1"
        built.token = "jwt.token"
        built.expires = Google_Protobuf_Timestamp(seconds: 1_700_000_000, nanos: 5)
        built.metrics = ["rtt": "1ms"]
        XCTAssertEqual(try encode(built), bytes)
    }

    func testPath() throws {
        // index 300 needs a two-byte varint.
        let bytes = W.uint(1, 300) + W.message(2, W.string(1, "a"), W.string(2, "1")) + W.message(2, W.string(1, "b"))
        let p = try Connection_Path(serializedBytes: bytes)
        XCTAssertEqual(p.index, 300)
        XCTAssertEqual(p.pathSegments.map(\.name), ["a", "b"])
        XCTAssertEqual(p.pathSegments.map(\.id), ["1", ""])

        var built = Connection_Path()
        built.index = 300
        var a = Connection_PathSegment(); a.name = "a"; a.id = "1"
        var b = Connection_PathSegment(); b.name = "b"
        built.pathSegments = [a, b]
        XCTAssertEqual(try encode(built), bytes)
    }

    func testConnectionAllFields() throws {
        let bytes = W.string(1, "conn-1")
            + W.string(2, "my-service")
            + W.message(3, W.string(1, "LOCAL"), W.string(2, "MEMIF"))
            + W.message(4, W.uint(5, 1400))
            + W.entry(5, "podName", "nsc-1")
            + W.message(6, W.uint(1, 1), W.message(2, W.string(1, "nsc")), W.message(2, W.string(1, "weft")))
            + W.string(7, "nse-1")
            + W.string(8, "ETHERNET")
            + W.uint(9, 3)
        let c = try Connection_Connection(serializedBytes: bytes)
        XCTAssertEqual(c.id, "conn-1")
        XCTAssertEqual(c.networkService, "my-service")
        XCTAssertTrue(c.hasMechanism)
        XCTAssertEqual(c.mechanism.cls, "LOCAL")
        XCTAssertEqual(c.mechanism.type, "MEMIF")
        XCTAssertTrue(c.hasContext)
        XCTAssertEqual(c.context.mtu, 1400)
        XCTAssertEqual(c.labels, ["podName": "nsc-1"])
        XCTAssertEqual(c.path.index, 1)
        XCTAssertEqual(c.path.pathSegments.map(\.name), ["nsc", "weft"])
        XCTAssertEqual(c.networkServiceEndpointName, "nse-1")
        XCTAssertEqual(c.payload, "ETHERNET")
        XCTAssertEqual(c.state, .reselectRequested)

        var built = Connection_Connection()
        built.id = "conn-1"
        built.networkService = "my-service"
        built.mechanism.cls = "LOCAL"
        built.mechanism.type = "MEMIF"
        built.context.mtu = 1400
        built.labels = ["podName": "nsc-1"]
        built.path.index = 1
        var s1 = Connection_PathSegment(); s1.name = "nsc"
        var s2 = Connection_PathSegment(); s2.name = "weft"
        built.path.pathSegments = [s1, s2]
        built.networkServiceEndpointName = "nse-1"
        built.payload = "ETHERNET"
        built.state = .reselectRequested
        XCTAssertEqual(try encode(built), bytes)
    }

    func testConnectionStateValues() throws {
        XCTAssertEqual(try Connection_Connection(serializedBytes: W.uint(9, 1)).state, .down)
        XCTAssertEqual(try Connection_Connection(serializedBytes: W.uint(9, 2)).state, .refreshRequested)
        XCTAssertEqual(try Connection_Connection(serializedBytes: W.uint(9, 3)).state, .reselectRequested)
        // UP is the proto3 default: not on the wire.
        var up = Connection_Connection()
        up.state = .up
        XCTAssertEqual(try encode(up), [])
        // An unknown (newer) state survives a decode/encode (open enum).
        let c = try Connection_Connection(serializedBytes: W.uint(9, 7))
        XCTAssertEqual(c.state, .UNRECOGNIZED(7))
        XCTAssertEqual(try encode(c), W.uint(9, 7))
    }

    func testConnectionEvent() throws {
        let conn = W.string(1, "c1") + W.string(2, "ns")
        let bytes = W.uint(1, 2) + W.message(2, W.string(1, "c1"), W.bytes(2, conn))
        let e = try Connection_ConnectionEvent(serializedBytes: bytes)
        XCTAssertEqual(e.type, .delete)
        XCTAssertEqual(Array(e.connections.keys), ["c1"])
        XCTAssertEqual(e.connections["c1"]?.id, "c1")
        XCTAssertEqual(e.connections["c1"]?.networkService, "ns")

        var built = Connection_ConnectionEvent()
        built.type = .delete
        var c = Connection_Connection(); c.id = "c1"; c.networkService = "ns"
        built.connections = ["c1": c]
        XCTAssertEqual(try encode(built), bytes)

        XCTAssertEqual(try Connection_ConnectionEvent(serializedBytes: W.uint(1, 1)).type, .update)
        // INITIAL_STATE_TRANSFER (0) with no connections is an empty message on the wire.
        XCTAssertEqual(try encode(Connection_ConnectionEvent()), [])
    }

    func testConnectionEventWithSeveralConnections() throws {
        let bytes = W.uint(1, 1)
            + W.message(2, W.string(1, "b"), W.message(2, W.string(1, "b")))
            + W.message(2, W.string(1, "a"), W.message(2, W.string(1, "a"), W.string(2, "svc")))
        let e = try Connection_ConnectionEvent(serializedBytes: bytes)
        XCTAssertEqual(Set(e.connections.keys), ["a", "b"])
        XCTAssertEqual(e.connections["a"]?.networkService, "svc")
        let again = try Connection_ConnectionEvent(serializedBytes: try encode(e))
        XCTAssertEqual(again, e)
    }

    func testMonitorScopeSelector() throws {
        let bytes = W.message(1, W.string(1, "nsmgr"), W.string(2, "seg-1"))
            + W.string(2, "svc-a") + W.string(2, "svc-b")
        let s = try Connection_MonitorScopeSelector(serializedBytes: bytes)
        XCTAssertEqual(s.pathSegments.count, 1)
        XCTAssertEqual(s.pathSegments.first?.name, "nsmgr")
        XCTAssertEqual(s.pathSegments.first?.id, "seg-1")
        XCTAssertEqual(s.networkServices, ["svc-a", "svc-b"])

        var built = Connection_MonitorScopeSelector()
        var seg = Connection_PathSegment(); seg.name = "nsmgr"; seg.id = "seg-1"
        built.pathSegments = [seg]
        built.networkServices = ["svc-a", "svc-b"]
        XCTAssertEqual(try encode(built), bytes)
    }

    // MARK: networkservice.proto

    func testNetworkServiceRequest() throws {
        let bytes = W.message(1, W.string(1, "c"), W.string(2, "ns"))
            + W.message(2, W.string(1, "LOCAL"), W.string(2, "KERNEL"))
            + W.message(2, W.string(1, "LOCAL"), W.string(2, "MEMIF"))
        let r = try Networkservice_NetworkServiceRequest(serializedBytes: bytes)
        XCTAssertTrue(r.hasConnection)
        XCTAssertEqual(r.connection.id, "c")
        XCTAssertEqual(r.connection.networkService, "ns")
        XCTAssertEqual(r.mechanismPreferences.map(\.type), ["KERNEL", "MEMIF"])
        XCTAssertEqual(r.mechanismPreferences.map(\.cls), ["LOCAL", "LOCAL"])

        var built = Networkservice_NetworkServiceRequest()
        built.connection.id = "c"
        built.connection.networkService = "ns"
        var k = Connection_Mechanism(); k.cls = "LOCAL"; k.type = "KERNEL"
        var m = Connection_Mechanism(); m.cls = "LOCAL"; m.type = "MEMIF"
        built.mechanismPreferences = [k, m]
        XCTAssertEqual(try encode(built), bytes)
    }

    // MARK: connectioncontext.proto

    func testConnectionContext() throws {
        let bytes = W.message(1, W.string(1, "10.0.0.1/32"))
            + W.message(2, W.message(1, W.string(1, "8.8.8.8"), W.string(2, "example.org")))
            + W.message(3, W.string(1, "aa:bb:cc:dd:ee:ff"))
            + W.entry(4, "k", "v")
            + W.uint(5, 1500)
        XCTAssertEqual(Array(W.uint(5, 1500)), [0x28, 0xdc, 0x0b])
        let c = try Connectioncontext_ConnectionContext(serializedBytes: bytes)
        XCTAssertEqual(c.ipContext.srcIpAddrs, ["10.0.0.1/32"])
        XCTAssertEqual(c.dnsContext.configs.first?.dnsServerIps, ["8.8.8.8"])
        XCTAssertEqual(c.dnsContext.configs.first?.searchDomains, ["example.org"])
        XCTAssertEqual(c.ethernetContext.srcMac, "aa:bb:cc:dd:ee:ff")
        XCTAssertEqual(c.extraContext, ["k": "v"])
        XCTAssertEqual(c.mtu, 1500)

        var built = Connectioncontext_ConnectionContext()
        built.ipContext.srcIpAddrs = ["10.0.0.1/32"]
        var dns = Connectioncontext_DNSConfig()
        dns.dnsServerIps = ["8.8.8.8"]
        dns.searchDomains = ["example.org"]
        built.dnsContext.configs = [dns]
        built.ethernetContext.srcMac = "aa:bb:cc:dd:ee:ff"
        built.extraContext = ["k": "v"]
        built.mtu = 1500
        XCTAssertEqual(try encode(built), bytes)
    }

    func testIPContext() throws {
        let route = W.string(1, "0.0.0.0/0") + W.string(2, "10.0.0.2")
        let bytes = W.string(1, "10.0.0.1/32") + W.string(1, "fd00::1/128")
            + W.string(2, "10.0.0.2/32")
            + W.uint(3, 1)
            + W.uint(4, 1)
            + W.bytes(5, route)
            + W.message(6, W.string(1, "10.0.0.1/32"))
            + W.string(7, "10.96.0.0/12")
            + W.message(8, W.string(1, "10.0.0.2"), W.string(2, "02:00:00:00:00:02"))
            + W.message(9, W.message(1, W.uint(1, 1)), W.uint(2, 64), W.uint(3, 1), W.uint(4, 2))
            + W.string(10, "172.16.0.0/24")
            + W.message(11, W.string(1, "10.0.0.0/8"), W.string(2, "tcp"), W.string(3, "80-81"),
                        W.string(4, "1000"), W.bytes(5, route))
        let ip = try Connectioncontext_IPContext(serializedBytes: bytes)
        XCTAssertEqual(ip.srcIpAddrs, ["10.0.0.1/32", "fd00::1/128"])
        XCTAssertEqual(ip.dstIpAddrs, ["10.0.0.2/32"])
        XCTAssertTrue(ip.srcIpRequired)
        XCTAssertTrue(ip.dstIpRequired)
        XCTAssertEqual(ip.srcRoutes.map(\.prefix), ["0.0.0.0/0"])
        XCTAssertEqual(ip.srcRoutes.map(\.nextHop), ["10.0.0.2"])
        XCTAssertEqual(ip.dstRoutes.map(\.prefix), ["10.0.0.1/32"])
        XCTAssertEqual(ip.excludedPrefixes, ["10.96.0.0/12"])
        XCTAssertEqual(ip.ipNeighbors.map(\.ip), ["10.0.0.2"])
        XCTAssertEqual(ip.ipNeighbors.map(\.hardwareAddress), ["02:00:00:00:00:02"])
        XCTAssertEqual(ip.extraPrefixRequest.count, 1)
        XCTAssertEqual(ip.extraPrefixRequest.first?.addrFamily.family, .ipv6)
        XCTAssertEqual(ip.extraPrefixRequest.first?.prefixLen, 64)
        XCTAssertEqual(ip.extraPrefixRequest.first?.requiredNumber, 1)
        XCTAssertEqual(ip.extraPrefixRequest.first?.requestedNumber, 2)
        XCTAssertEqual(ip.extraPrefixes, ["172.16.0.0/24"])
        XCTAssertEqual(ip.policies.count, 1)
        let p = try XCTUnwrap(ip.policies.first)
        XCTAssertEqual(p.from, "10.0.0.0/8")
        XCTAssertEqual(p.proto, "tcp")
        XCTAssertEqual(p.dstPort, "80-81")
        XCTAssertEqual(p.srcPort, "1000")
        XCTAssertEqual(p.routes.map(\.nextHop), ["10.0.0.2"])

        var r = Connectioncontext_Route(); r.prefix = "0.0.0.0/0"; r.nextHop = "10.0.0.2"
        var r2 = Connectioncontext_Route(); r2.prefix = "10.0.0.1/32"
        var n = Connectioncontext_IpNeighbor(); n.ip = "10.0.0.2"; n.hardwareAddress = "02:00:00:00:00:02"
        var x = Connectioncontext_ExtraPrefixRequest()
        x.addrFamily.family = .ipv6; x.prefixLen = 64; x.requiredNumber = 1; x.requestedNumber = 2
        var pr = Connectioncontext_PolicyRoute()
        pr.from = "10.0.0.0/8"; pr.proto = "tcp"; pr.dstPort = "80-81"; pr.srcPort = "1000"; pr.routes = [r]
        var built = Connectioncontext_IPContext()
        built.srcIpAddrs = ["10.0.0.1/32", "fd00::1/128"]
        built.dstIpAddrs = ["10.0.0.2/32"]
        built.srcIpRequired = true
        built.dstIpRequired = true
        built.srcRoutes = [r]
        built.dstRoutes = [r2]
        built.excludedPrefixes = ["10.96.0.0/12"]
        built.ipNeighbors = [n]
        built.extraPrefixRequest = [x]
        built.extraPrefixes = ["172.16.0.0/24"]
        built.policies = [pr]
        XCTAssertEqual(try encode(built), bytes)
    }

    func testRoute() throws {
        let bytes = W.string(1, "10.0.0.0/8") + W.string(2, "10.0.0.1")
        let r = try Connectioncontext_Route(serializedBytes: bytes)
        XCTAssertEqual(r.prefix, "10.0.0.0/8")
        XCTAssertEqual(r.nextHop, "10.0.0.1")
        var built = Connectioncontext_Route(); built.prefix = "10.0.0.0/8"; built.nextHop = "10.0.0.1"
        XCTAssertEqual(try encode(built), bytes)
        // nextHop alone is field 2.
        XCTAssertEqual(try Connectioncontext_Route(serializedBytes: W.string(2, "fe80::1")).nextHop, "fe80::1")
    }

    func testIpNeighbor() throws {
        let bytes = W.string(1, "fd00::2") + W.string(2, "02:fe:00:00:00:01")
        let n = try Connectioncontext_IpNeighbor(serializedBytes: bytes)
        XCTAssertEqual(n.ip, "fd00::2")
        XCTAssertEqual(n.hardwareAddress, "02:fe:00:00:00:01")
        var built = Connectioncontext_IpNeighbor(); built.ip = "fd00::2"; built.hardwareAddress = "02:fe:00:00:00:01"
        XCTAssertEqual(try encode(built), bytes)
    }

    func testEthernetContext() throws {
        let bytes = W.string(1, "aa:aa:aa:aa:aa:aa") + W.string(2, "bb:bb:bb:bb:bb:bb") + W.uint(3, 100)
        let e = try Connectioncontext_EthernetContext(serializedBytes: bytes)
        XCTAssertEqual(e.srcMac, "aa:aa:aa:aa:aa:aa")
        XCTAssertEqual(e.dstMac, "bb:bb:bb:bb:bb:bb")
        XCTAssertEqual(e.vlanTag, 100)
        var built = Connectioncontext_EthernetContext()
        built.srcMac = "aa:aa:aa:aa:aa:aa"; built.dstMac = "bb:bb:bb:bb:bb:bb"; built.vlanTag = 100
        XCTAssertEqual(try encode(built), bytes)
    }

    func testEthernetContextNegativeVlanTagIsInt32() throws {
        // int32 (not sint32): -1 is a ten-byte sign-extended varint.
        let bytes = W.int32(3, -1)
        XCTAssertEqual(bytes.count, 11)
        XCTAssertEqual(try Connectioncontext_EthernetContext(serializedBytes: bytes).vlanTag, -1)
        var built = Connectioncontext_EthernetContext(); built.vlanTag = -1
        XCTAssertEqual(try encode(built), bytes)
    }

    // MARK: registry.proto

    func testNetworkServiceEndpoint() throws {
        let bytes = W.string(1, "forwarder-abc")
            + W.string(2, "forwarder") + W.string(2, "other")
            + W.message(3, W.string(1, "forwarder"), W.message(2, W.entry(1, "p2p", "true")))
            + W.string(4, "unix:///listen.on.sock")
            + W.timestamp(5, seconds: 1_700_000_060)
            + W.timestamp(6, seconds: 1_700_000_000, nanos: 7)
            + W.string(7, "spiffe://example.org/forwarder")
        let e = try Registry_NetworkServiceEndpoint(serializedBytes: bytes)
        XCTAssertEqual(e.name, "forwarder-abc")
        XCTAssertEqual(e.networkServiceNames, ["forwarder", "other"])
        XCTAssertEqual(e.networkServiceLabels.count, 1)
        XCTAssertEqual(e.networkServiceLabels["forwarder"]?.labels, ["p2p": "true"])
        XCTAssertEqual(e.url, "unix:///listen.on.sock")
        XCTAssertEqual(e.expirationTime.seconds, 1_700_000_060)
        XCTAssertEqual(e.expirationTime.nanos, 0)
        XCTAssertEqual(e.initialRegistrationTime.seconds, 1_700_000_000)
        XCTAssertEqual(e.initialRegistrationTime.nanos, 7)
        XCTAssertEqual(e.pathIds, ["spiffe://example.org/forwarder"])

        var built = Registry_NetworkServiceEndpoint()
        built.name = "forwarder-abc"
        built.networkServiceNames = ["forwarder", "other"]
        var l = Registry_NetworkServiceLabels(); l.labels = ["p2p": "true"]
        built.networkServiceLabels = ["forwarder": l]
        built.url = "unix:///listen.on.sock"
        built.expirationTime = Google_Protobuf_Timestamp(seconds: 1_700_000_060)
        built.initialRegistrationTime = Google_Protobuf_Timestamp(seconds: 1_700_000_000, nanos: 7)
        built.pathIds = ["spiffe://example.org/forwarder"]
        XCTAssertEqual(try encode(built), bytes)
    }

    func testNetworkServiceEndpointLabelsForSeveralServices() throws {
        let bytes = W.message(3, W.string(1, "b"), W.message(2, W.entry(1, "color", "blue")))
            + W.message(3, W.string(1, "a"), W.message(2, W.entry(1, "color", "red"), W.entry(1, "app", "x")))
        let e = try Registry_NetworkServiceEndpoint(serializedBytes: bytes)
        XCTAssertEqual(e.networkServiceLabels["a"]?.labels, ["color": "red", "app": "x"])
        XCTAssertEqual(e.networkServiceLabels["b"]?.labels, ["color": "blue"])
        XCTAssertEqual(try Registry_NetworkServiceEndpoint(serializedBytes: try encode(e)), e)
    }

    func testNetworkService() throws {
        let bytes = W.string(1, "my-service") + W.string(2, "IP")
            + W.message(3, W.uint(3, 1)) + W.message(3, W.entry(1, "app", "x"))
            + W.string(4, "spiffe://a") + W.string(4, "spiffe://b")
        let s = try Registry_NetworkService(serializedBytes: bytes)
        XCTAssertEqual(s.name, "my-service")
        XCTAssertEqual(s.payload, "IP")
        XCTAssertEqual(s.matches.count, 2)
        XCTAssertEqual(s.matches.map(\.fallthrough), [true, false])
        XCTAssertEqual(s.matches.map(\.sourceSelector), [[:], ["app": "x"]])
        XCTAssertEqual(s.pathIds, ["spiffe://a", "spiffe://b"])

        var built = Registry_NetworkService()
        built.name = "my-service"
        built.payload = "IP"
        var m1 = Registry_Match(); m1.fallthrough = true
        var m2 = Registry_Match(); m2.sourceSelector = ["app": "x"]
        built.matches = [m1, m2]
        built.pathIds = ["spiffe://a", "spiffe://b"]
        XCTAssertEqual(try encode(built), bytes)
    }

    func testMatch() throws {
        let bytes = W.entry(1, "app", "nsc")
            + W.message(2, W.entry(1, "color", "red"), W.uint(2, 5))
            + W.uint(3, 1)
            + W.message(4, W.entry(1, "cap", "true"))
        let m = try Registry_Match(serializedBytes: bytes)
        XCTAssertEqual(m.sourceSelector, ["app": "nsc"])
        XCTAssertEqual(m.routes.count, 1)
        XCTAssertEqual(m.routes.first?.destinationSelector, ["color": "red"])
        XCTAssertEqual(m.routes.first?.weight, 5)
        XCTAssertTrue(m.fallthrough)
        XCTAssertTrue(m.hasMetadata)
        XCTAssertEqual(m.metadata.labels, ["cap": "true"])

        var built = Registry_Match()
        built.sourceSelector = ["app": "nsc"]
        var d = Registry_Destination(); d.destinationSelector = ["color": "red"]; d.weight = 5
        built.routes = [d]
        built.fallthrough = true
        built.metadata.labels = ["cap": "true"]
        XCTAssertEqual(try encode(built), bytes)
    }

    func testMatchEmptyMetadataIsPresent() throws {
        // matchEndpoints distinguishes "metadata set but empty" from "no metadata": an empty
        // embedded message (tag, length 0) must decode as present and be written back.
        let m = try Registry_Match(serializedBytes: [0x22, 0x00])
        XCTAssertTrue(m.hasMetadata)
        XCTAssertEqual(m.metadata.labels, [:])
        XCTAssertEqual(try encode(m), [0x22, 0x00])
        XCTAssertFalse(try Registry_Match(serializedBytes: []).hasMetadata)
    }

    func testDestination() throws {
        let bytes = W.entry(1, "color", "red") + W.uint(2, 300)
        let d = try Registry_Destination(serializedBytes: bytes)
        XCTAssertEqual(d.destinationSelector, ["color": "red"])
        XCTAssertEqual(d.weight, 300)
        var built = Registry_Destination(); built.destinationSelector = ["color": "red"]; built.weight = 300
        XCTAssertEqual(try encode(built), bytes)
    }

    func testNetworkServiceEndpointQuery() throws {
        let bytes = W.message(1, W.string(1, "nse-1"), W.string(2, "my-service")) + W.uint(2, 1)
        let q = try Registry_NetworkServiceEndpointQuery(serializedBytes: bytes)
        XCTAssertTrue(q.hasNetworkServiceEndpoint)
        XCTAssertEqual(q.networkServiceEndpoint.name, "nse-1")
        XCTAssertEqual(q.networkServiceEndpoint.networkServiceNames, ["my-service"])
        XCTAssertTrue(q.watch)
        var built = Registry_NetworkServiceEndpointQuery()
        built.networkServiceEndpoint.name = "nse-1"
        built.networkServiceEndpoint.networkServiceNames = ["my-service"]
        built.watch = true
        XCTAssertEqual(try encode(built), bytes)
    }

    // MARK: grpc.health.v1

    func testHealthCheckResponse() throws {
        let bytes: [UInt8] = [0x08, 0x01]
        XCTAssertEqual(W.uint(1, 1), bytes)
        XCTAssertEqual(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: bytes).status, .serving)
        XCTAssertEqual(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: W.uint(1, 2)).status, .notServing)
        XCTAssertEqual(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: [UInt8]()).status, .unknown)
        var built = Grpc_Health_V1_HealthCheckResponse(); built.status = .serving
        XCTAssertEqual(try encode(built), bytes)

        var req = Grpc_Health_V1_HealthCheckRequest(); req.service = "networkservice.NetworkService"
        XCTAssertEqual(try encode(req), W.string(1, "networkservice.NetworkService"))
    }
}
