import Foundation
import XCTest
@testable import WeftNSM
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel
import WeftNSMProto
#if canImport(Glibc)
import Glibc
#endif

private func mech(_ cls: String, _ type: String, _ params: [String: String] = [:]) -> Connection_Mechanism {
    var m = Connection_Mechanism()
    m.cls = cls
    m.type = type
    m.parameters = params
    return m
}

/// The NSMError thrown by `body`, or a failure.
private func nsmError(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> NSMError? {
    do {
        try body()
        XCTFail("expected an NSMError", file: file, line: line)
    } catch let e as NSMError {
        return e
    } catch {
        XCTFail("expected an NSMError, got \(type(of: error)): \(error)", file: file, line: line)
    }
    return nil
}

final class MechanismTests: XCTestCase {

    // MARK: chooseServer

    func testChooseServerTakesFirstSupportedPreferenceInOrder() throws {
        let prefs = [mech("REMOTE", "WIREGUARD"), mech("LOCAL", "MEMIF"), mech("LOCAL", "KERNEL")]
        let m = try MechanismPolicy.chooseServer(current: nil, preferences: prefs)
        XCTAssertEqual(m.type, "MEMIF")
        XCTAssertEqual(m.cls, "LOCAL")
        // REMOTE VXLAN (from another forwarder) is served, in the order offered.
        let v = try MechanismPolicy.chooseServer(current: nil, preferences: [mech("REMOTE", "VXLAN"), mech("LOCAL", "KERNEL")])
        XCTAssertEqual(v.type, "VXLAN")
        // LOCAL VXLAN is not a thing.
        let lv = try MechanismPolicy.chooseServer(current: nil, preferences: [mech("LOCAL", "VXLAN"), mech("LOCAL", "KERNEL")])
        XCTAssertEqual(lv.type, "KERNEL")
        let k = try MechanismPolicy.chooseServer(current: nil, preferences: [mech("LOCAL", "KERNEL", ["name": "eth9"]), mech("LOCAL", "MEMIF")])
        XCTAssertEqual(k.type, "KERNEL")
        XCTAssertEqual(k.parameters["name"], "eth9", "the chosen preference is returned with its parameters")
        // A REMOTE class is not served even for a served type.
        let r = try MechanismPolicy.chooseServer(current: nil, preferences: [mech("REMOTE", "KERNEL"), mech("LOCAL", "KERNEL")])
        XCTAssertEqual(r.cls, "LOCAL")
    }

    func testChooseServerCurrentMechanismWinsOnRefresh() throws {
        let cur = mech("LOCAL", "KERNEL", ["name": "nsm-1"])
        let m = try MechanismPolicy.chooseServer(current: cur, preferences: [mech("LOCAL", "MEMIF")])
        XCTAssertEqual(m, cur)
        // An empty current mechanism (type unset) is no mechanism.
        let fresh = try MechanismPolicy.chooseServer(current: Connection_Mechanism(), preferences: [mech("LOCAL", "MEMIF")])
        XCTAssertEqual(fresh.type, "MEMIF")
    }

    func testChooseServerUnsupportedCurrentIsInvalidArgument() {
        let e = nsmError { _ = try MechanismPolicy.chooseServer(current: mech("REMOTE", "WIREGUARD"), preferences: [mech("LOCAL", "KERNEL")]) }
        XCTAssertEqual(e?.code, .invalidArgument)
        XCTAssertTrue(e?.message.contains("WIREGUARD") ?? false, e?.message ?? "")
        let r = nsmError { _ = try MechanismPolicy.chooseServer(current: mech("REMOTE", "KERNEL"), preferences: []) }
        XCTAssertEqual(r?.code, .invalidArgument)
    }

    func testChooseServerEmptyPreferencesIsInvalidArgument() {
        let e = nsmError { _ = try MechanismPolicy.chooseServer(current: nil, preferences: []) }
        XCTAssertEqual(e?.code, .invalidArgument)
        XCTAssertTrue(e?.message.contains("mechanism_preferences") ?? false, e?.message ?? "")
    }

    func testChooseServerNoneSupportedListsTheOffered() {
        let e = nsmError {
            _ = try MechanismPolicy.chooseServer(current: nil, preferences: [mech("REMOTE", "IPSEC"), mech("REMOTE", "WIREGUARD"), mech("LOCAL", "VLAN")])
        }
        XCTAssertEqual(e?.code, .invalidArgument)
        let msg = e?.message ?? ""
        XCTAssertTrue(msg.contains("REMOTE/IPSEC"), msg)
        XCTAssertTrue(msg.contains("REMOTE/WIREGUARD"), msg)
        XCTAssertTrue(msg.contains("LOCAL/VLAN"), msg)
        XCTAssertEqual(e?.step, "mechanism")
    }

    // MARK: checkIfName

    func testCheckIfName() throws {
        try MechanismPolicy.checkIfName("abcdefghijklmno", "name")   // 15
        try MechanismPolicy.checkIfName("nsm-1", "name")
        let long = nsmError { try MechanismPolicy.checkIfName("abcdefghijklmnop", "mechanism.parameters.name") }
        XCTAssertEqual(long?.code, .invalidArgument)
        XCTAssertTrue(long?.message.contains("longer than 15") ?? false, long?.message ?? "")
        XCTAssertTrue(long?.message.contains("mechanism.parameters.name") ?? false, long?.message ?? "")
        for bad in ["a/b", "a:b", "a b", "", ".", ".."] {
            let e = nsmError { try MechanismPolicy.checkIfName(bad, "name") }
            XCTAssertEqual(e?.code, .invalidArgument, "'\(bad)'")
        }
    }

    // MARK: clientPreferences

    private func conn(_ service: String, _ id: String) -> Connection_Connection {
        var c = Connection_Connection()
        c.networkService = service
        c.id = id
        return c
    }

    func testClientPreferencesLocal() throws {
        let c = conn("my-networkservice-with-a-long-name", "7f3a9c2e-1111-2222-3333-444455556666")
        let p = MechanismPolicy.clientPreferences(nextHopLocal: true, connection: c, priority: [])
        XCTAssertEqual(p.map(\.type), ["KERNEL", "MEMIF"])
        XCTAssertEqual(p.map(\.cls), ["LOCAL", "LOCAL"])
        let name = try XCTUnwrap(p[0].parameters["name"])
        XCTAssertLessThanOrEqual(name.utf8.count, 15)
        XCTAssertNoThrow(try MechanismPolicy.checkIfName(name, "name"))
        XCTAssertEqual(name, "my-net-" + String(Names.hash(c.id).prefix(8)))
    }

    func testClientPreferencesPriority() {
        let c = conn("svc", "abcd")
        let p = MechanismPolicy.clientPreferences(nextHopLocal: true, connection: c, priority: ["MEMIF"])
        XCTAssertEqual(p.map(\.type), ["MEMIF", "KERNEL"])
        let k = MechanismPolicy.clientPreferences(nextHopLocal: true, connection: c, priority: ["KERNEL", "MEMIF"])
        XCTAssertEqual(k.map(\.type), ["KERNEL", "MEMIF"])
        let other = MechanismPolicy.clientPreferences(nextHopLocal: true, connection: c, priority: ["VXLAN"])
        XCTAssertEqual(other.map(\.type), ["KERNEL", "MEMIF"])
    }

    func testClientPreferencesRemoteNextHopOffersVXLANThenVLAN() {
        let t = MechanismPolicy.Tunnel(ip: "192.0.2.1", port: 4789)
        let p = MechanismPolicy.clientPreferences(nextHopLocal: false, connection: conn("svc", "abcd"), priority: [], tunnel: t)
        XCTAssertEqual(p.map(\.type), ["VXLAN", "VLAN"])
        XCTAssertTrue(p.allSatisfy { $0.cls == "REMOTE" })
        XCTAssertEqual(p[0].parameters["src_ip"], "192.0.2.1")
        XCTAssertEqual(p[0].parameters["src_port"], "4789")
        XCTAssertEqual(p[1].parameters, [:], "the VLAN preference is empty; the remote-VLAN endpoint fills it")
        // NSM_MECHANISM_PRIORITY reorders by type.
        let q = MechanismPolicy.clientPreferences(nextHopLocal: false, connection: conn("svc", "abcd"), priority: ["VLAN"], tunnel: t)
        XCTAssertEqual(q.map(\.type), ["VLAN", "VXLAN"])
        // VXLAN carries Ethernet payload only; without a tunnel address there is no VXLAN either.
        var ip = conn("svc", "abcd"); ip.payload = "IP"
        XCTAssertEqual(MechanismPolicy.clientPreferences(nextHopLocal: false, connection: ip, priority: [], tunnel: t).map(\.type), ["VLAN"])
        XCTAssertEqual(MechanismPolicy.clientPreferences(nextHopLocal: false, connection: conn("svc", "abcd"), priority: [], tunnel: nil).map(\.type), ["VLAN"])
    }

    func testVNIParityAndUniqueness() {
        let a: [UInt8] = [10, 0, 0, 1], b: [UInt8] = [10, 0, 0, 2]
        for _ in 0..<200 {
            let even = MechanismPolicy.allocateVNI(src: a, dst: b, inUse: [])!
            XCTAssertEqual(even % 2, 0, "src < dst: even")
            XCTAssertTrue((1..<(1 << 24)).contains(even))
            let odd = MechanismPolicy.allocateVNI(src: b, dst: a, inUse: [])!
            XCTAssertEqual(odd % 2, 1, "src > dst: odd")
        }
        XCTAssertEqual(MechanismPolicy.allocateVNI(src: a, dst: a, inUse: [])! % 2, 0, "equal: even")
        // A used value is never handed out: a generator stuck on 42 falls back to the first free even VNI.
        XCTAssertEqual(MechanismPolicy.allocateVNI(src: a, dst: b, inUse: [42, 2], random: { 42 }), 4)
        XCTAssertEqual(MechanismPolicy.allocateVNI(src: b, dst: a, inUse: [43, 1], random: { 43 }), 3)
    }

    func testDefaultIfName() {
        // Service (6 characters, only the allowed ones) and 8 hex digits of FNV-1a(id), computed apart.
        XCTAssertEqual(MechanismPolicy.defaultIfName(service: "svc", id: "12ab-cd"), "svc-880d55dd")
        XCTAssertEqual(MechanismPolicy.defaultIfName(service: "a.b/c", id: "zz"), "abc-08f74e07")
        XCTAssertEqual(MechanismPolicy.defaultIfName(service: "...", id: "ffff9"), "nsm-4fa81afc")
        // 500 connections to one endpoint pod: 500 different names.
        let names = Set((0..<500).map { _ in MechanismPolicy.defaultIfName(service: "icmp-responder", id: UUID().uuidString) })
        XCTAssertEqual(names.count, 500)
        for s in ["x", "a-very-long-network-service-name", "ns_1"] {
            XCTAssertLessThanOrEqual(MechanismPolicy.defaultIfName(service: s, id: UUID().uuidString).utf8.count, 15)
        }
    }

    // MARK: Names

    func testNames() throws {
        let id = "7f3a9c2e-1111-2222-3333-444455556666"
        let s = Names.hostVeth(id, .server), c = Names.hostVeth(id, .client)
        XCTAssertLessThanOrEqual(s.utf8.count, 15)
        XCTAssertLessThanOrEqual(c.utf8.count, 15)
        XCTAssertNoThrow(try MechanismPolicy.checkIfName(s, "host veth"))
        XCTAssertNotEqual(s, c)
        XCTAssertEqual(Names.hostVeth(id, .server), s, "stable for the same id")
        XCTAssertNotEqual(Names.hostVeth("other-id", .server), s)

        XCTAssertEqual(Names.interface(id, .server), Names.interface(id, .server))
        XCTAssertNotEqual(Names.interface(id, .server), Names.interface(id, .client))
        XCTAssertNotEqual(Names.interface(id, .server), Names.interface(id + "x", .server))
        XCTAssertEqual(Names.crossConnect(id), Names.crossConnect(id))
        XCTAssertNotEqual(Names.crossConnect(id), Names.crossConnect("x"))
        XCTAssertTrue(Names.hostAlias("fwd-1", id, .client).hasPrefix(Names.hostAliasPrefix("fwd-1")))
        XCTAssertFalse(Names.hostAlias("fwd-1", id, .client).hasPrefix(Names.hostAliasPrefix("fwd-2")),
                       "one forwarder's leftovers are not another's")
        XCTAssertFalse(Names.hostAlias("fwd", id, .client).hasPrefix(Names.hostAliasPrefix("fwd-1")))
        // Pod MACs: locally administered unicast, stable per alias.
        let mac = Names.podMAC("server-seg0")
        XCTAssertEqual(mac.count, 6)
        XCTAssertEqual(mac[0] & 0x03, 0x02)
        XCTAssertEqual(mac, Names.podMAC("server-seg0"))
        XCTAssertNotEqual(mac, Names.podMAC("client-seg0"))
        XCTAssertEqual(Names.podAlias("seg0", .server), "server-seg0")
        XCTAssertEqual(Names.podAlias("seg0", .client), "client-seg0")
    }

    func testNamesHashIsFNV1a() {
        // FNV-1a 64 test vectors.
        XCTAssertEqual(Names.hash(""), "cbf29ce484222325")
        XCTAssertEqual(Names.hash("a"), "af63dc4c8601ec8c")
    }

    // MARK: NetnsResolver

    func testResolveMissingIsInvalidArgumentNamingInodeURL() {
        for missing in [nil, ""] as [String?] {
            let e = nsmError { _ = try NetnsResolver.resolve(missing) }
            XCTAssertEqual(e?.code, .invalidArgument)
            XCTAssertTrue(e?.message.contains("inodeURL") ?? false, e?.message ?? "")
        }
    }

    func testResolveNonexistentFileIsNotFound() {
        let e = nsmError { _ = try NetnsResolver.resolve("file:///nonexistent/ns") }
        XCTAssertEqual(e?.code, .notFound)
    }

    func testResolveUnknownSchemeIsInvalidArgument() {
        XCTAssertEqual(nsmError { _ = try NetnsResolver.resolve("ftp://x") }?.code, .invalidArgument)
        XCTAssertEqual(nsmError { _ = try NetnsResolver.resolve("inode://x/y") }?.code, .invalidArgument)
        XCTAssertEqual(nsmError { _ = try NetnsResolver.resolve("inode://1") }?.code, .invalidArgument)
        XCTAssertEqual(nsmError { _ = try NetnsResolver.resolve("file://relative") }?.code, .invalidArgument)
    }

    func testResolveUnknownInodeIsNotFound() {
        let e = nsmError { _ = try NetnsResolver.resolve("inode://1/2") }
        XCTAssertEqual(e?.code, .notFound)
    }

    func testResolveOwnNetworkNamespace() throws {
        XCTAssertEqual(try NetnsResolver.resolve("file:///proc/self/ns/net"), "/proc/self/ns/net")
        XCTAssertEqual(try NetnsResolver.resolve("/proc/self/ns/net"), "/proc/self/ns/net")
    }

    func testResolveInodeURLOfOwnNamespace() throws {
        var st = stat()
        XCTAssertEqual(stat("/proc/self/ns/net", &st), 0)
        let p = try NetnsResolver.resolve("inode://\(st.st_dev)/\(st.st_ino)")
        var found = stat()
        XCTAssertEqual(stat(p, &found), 0)
        XCTAssertEqual(found.st_dev, st.st_dev)
        XCTAssertEqual(found.st_ino, st.st_ino)
    }

    func testResolveRegularFileIsNotANamespace() throws {
        let f = FileManager.default.temporaryDirectory.appendingPathComponent("weft-notns-\(getpid())")
        try Data("x".utf8).write(to: f)
        defer { try? FileManager.default.removeItem(at: f) }
        let e = nsmError { _ = try NetnsResolver.resolve("file://" + f.path) }
        XCTAssertEqual(e?.code, .invalidArgument)
        XCTAssertTrue(e?.message.contains("not a network namespace") ?? false, e?.message ?? "")
    }

    // MARK: CIDR

    func testCIDRv4() throws {
        let c = try XCTUnwrap(CIDR("10.1.2.3/24"))
        XCTAssertEqual(c.address, [10, 1, 2, 3])
        XCTAssertEqual(c.prefix, 24)
        XCTAssertEqual(c.description, "10.1.2.3/24")
        XCTAssertEqual(c.network, CIDR("10.1.2.0/24"))
        XCTAssertEqual(c.network.description, "10.1.2.0/24")
        XCTAssertEqual(CIDR("10.1.47.255/20")?.network.description, "10.1.32.0/20")
        XCTAssertEqual(CIDR("10.1.2.3/0")?.network.description, "0.0.0.0/0")
        XCTAssertEqual(CIDR("10.1.2.3/32")?.network.description, "10.1.2.3/32")
        XCTAssertEqual(CIDR("10.1.2.3")?.prefix, 32)
    }

    func testCIDRv6() throws {
        let c = try XCTUnwrap(CIDR("fd00::1/64"))
        XCTAssertEqual(c.address.count, 16)
        XCTAssertEqual(c.prefix, 64)
        XCTAssertEqual(c.description, "fd00::1/64")
        XCTAssertEqual(c.network.description, "fd00::/64")
        XCTAssertEqual(CIDR("fd00:1:2:3:4:5:6:7/52")?.network.description, "fd00:1:2::/52")
        XCTAssertEqual(CIDR("fd00::1")?.prefix, 128)
    }

    func testCIDRRejects() {
        for bad in ["10.1.2.3/33", "10.1.2.3/-1", "10.1.2.3/x", "10.1.2.3//24", "fd00::1/129", "10.1.2/24", "host/24", "/24", ""] {
            XCTAssertNil(CIDR(bad), "'\(bad)'")
        }
    }

    /// A slash with no prefix after it is not an address/prefix (Go's net.ParseCIDR, which
    /// NSM's kernel forwarder uses, rejects it); it must not be read as a bare address (/32).
    func testCIDRRejectsEmptyPrefixAfterSlash() {
        XCTAssertNil(CIDR("10.1.2.3/"))
        XCTAssertNil(CIDR("fd00::1/"))
    }
}
