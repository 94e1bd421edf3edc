import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SwiftProtobuf
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel
import WeftNSMProto
import XCTest

/// NSM across nodes: two weftd forwarders, each with its own test NSMgr/registry, joined by
/// an uplink (a veth pair); the client pod on node A, the endpoint pod on node B. Node A's
/// weftd runs in the root namespace so it can reach node B's NSMgr over TCP on loopback;
/// node B's weftd runs in its own namespace.
final class NSMRemoteSystemTests: SystemTestCase {
    final class TwoNodes {
        let tag = uniqueTag()
        let a: Weftd, b: Weftd
        let nodeB: String
        let nsc: String, nse: String
        let upA: String
        let registryA = TestRegistry(), registryB = TestRegistry()
        let endpoint: TestEndpoint
        let relay: TestNSMgrRelay
        var servers: [TestGRPCServer] = []
        var tcp: TestTCPServer?
        let ipA: String, ipB: String
        var nameA: String { "fwd-a-\(tag)" }
        var nameB: String { "fwd-b-\(tag)" }
        var sockA: String { "\(a.dir)/nsm.sock" }
        var sockB: String { "\(b.dir)/nsm.sock" }

        init(v6: Bool) {
            ipA = v6 ? "fd97:\(tag)::1" : "10.97.0.1"
            ipB = v6 ? "fd97:\(tag)::2" : "10.97.0.2"
            a = Weftd(tag: tag + "a")
            nodeB = "wt\(tag)B"
            b = Weftd(tag: tag + "b", netns: nodeB)
            nsc = "wt\(tag)nsc"
            nse = "wt\(tag)nse"
            upA = "wt\(tag)ua"
            endpoint = TestEndpoint(name: "nse-\(tag)", netns: nse)
            relay = TestNSMgrRelay(name: "nsmgr-b-\(tag)", forwarderSocket: "\(b.dir)/nsm.sock")
            let r = sh("""
            set -e
            for n in \(nsc) \(nse) \(nodeB); do ip netns del $n 2>/dev/null || true; ip netns add $n; ip -n $n link set lo up; done
            ip link del \(upA) 2>/dev/null || true
            ip link add \(upA) type veth peer name ul netns \(nodeB)
            sysctl -qw net.ipv6.conf.\(upA).disable_ipv6=1
            ip netns exec \(nodeB) sysctl -qw net.ipv6.conf.all.disable_ipv6=1
            ip link set \(upA) up
            ip -n \(nodeB) link set ul up
            """)
            precondition(r.status == 0, r.err)
        }

        func underlay(_ ip: String) -> String { ip.contains(":") ? "{ipv6: \(ip)/64}" : "{ipv4: \(ip)/24}" }

        func start(extraA: String = "") async throws {
            servers.append(try await TestGRPCServer(path: "\(a.dir)/registry.sock", services: [registryA, registryA.nse]))
            servers.append(try await TestGRPCServer(path: "\(b.dir)/registry.sock", services: [registryB, registryB.nse]))
            servers.append(try await TestGRPCServer(path: "\(b.dir)/nse.sock", services: [endpoint]))
            tcp = try await TestTCPServer(services: [relay])
            var ns = Registry_NetworkService(); ns.name = "icmp-responder"; ns.payload = "ETHERNET"
            registryA.add(service: ns)
            registryB.add(service: ns)
            // Node A's registry knows the endpoint by node B's NSMgr (tcp), as NSM's
            // central registry publishes it; node B's knows its local unix URL.
            var remote = Registry_NetworkServiceEndpoint(); remote.name = endpoint.name
            remote.networkServiceNames = ["icmp-responder"]; remote.url = "tcp://127.0.0.1:\(tcp!.port)"
            registryA.add(endpoint: remote)
            var local = remote; local.url = "unix://\(b.dir)/nse.sock"
            registryB.add(endpoint: local)
            a.write("""
            interfaces:
              - {name: uplink, type: af_packet, iface: \(upA), underlay: \(underlay(ipA))}
            \(extraA)
            nsm:
              name: \(nameA)
              listen_on: [unix://\(sockA)]
              insecure: true
              connect_to: unix://\(a.dir)/registry.sock
            """)
            b.write("""
            interfaces:
              - {name: uplink, type: af_packet, iface: ul, underlay: \(underlay(ipB))}
            nsm:
              name: \(nameB)
              listen_on: [unix://\(sockB)]
              insecure: true
              connect_to: unix://\(b.dir)/registry.sock
            """)
            XCTAssertTrue(a.start(), a.log)
            XCTAssertTrue(b.start(), b.log)
            try await NSMSystemTests.waitFor("both forwarders to register") {
                !self.registryA.rec.registrations.isEmpty && !self.registryB.rec.registrations.isEmpty
            }
        }

        func stop() async {
            a.stop(); b.stop()
            for s in servers { await s.stop() }
            await tcp?.stop()
            sh("for n in \(nsc) \(nse) \(nodeB); do ip netns del $n 2>/dev/null; done; ip link del \(upA) 2>/dev/null")
        }

        func request(_ r: Networkservice_NetworkServiceRequest, socket: String? = nil) async throws -> Connection_Connection {
            try await withNSM(socket ?? sockA) { try await Networkservice_NetworkService.Client(wrapping: $0).request(r) }
        }
        func close(_ c: Connection_Connection) async throws {
            _ = try await withNSM(sockA) { try await Networkservice_NetworkService.Client(wrapping: $0).close(c) }
        }
        var kernelRequest: Networkservice_NetworkServiceRequest {
            nsmRequest(service: "icmp-responder", params: ["inodeURL": "file:///var/run/netns/\(nsc)", "name": "nsm-1"])
        }
        func weftLinks(_ ns: String?) -> Int {
            // This test's forwarders' links only (other tests may run weftd meanwhile).
            sh("\(ns.map { "ip -n \($0) " } ?? "ip ")-o link show").out.split(separator: "\n")
                .filter { $0.contains("weft-nsm:\(nameA):") || $0.contains("weft-nsm:\(nameB):") }.count
        }
        func ping(_ target: String, count: Int = 5) -> (sent: Int, received: Int)? {
            pingCounts(sh("ip netns exec \(nsc) ping -n -q -c \(count) -i 0.2 -W 3 \(target)", timeout: 40).out)
        }
    }

    func vxlanAcrossNodes(v6: Bool) async throws {
        let n = TwoNodes(v6: v6)
        addTeardownBlock { await n.stop() }
        try await n.start()

        let conn = try await n.request(n.kernelRequest)
        XCTAssertEqual(conn.path.pathSegments.map(\.name), ["nsc", "nsmgr", n.nameA, n.relay.name, n.nameB, n.endpoint.name])
        XCTAssertEqual(conn.mechanism.type, "KERNEL")

        // On the wire between the forwarders: A offers REMOTE only, VXLAN first with its
        // tunnel address and port; B answers with its own, the VNI (even: A's address is
        // lower) and the tunnel MTU.
        let offered = try XCTUnwrap(n.relay.rec.requests.first)
        XCTAssertTrue(offered.mechanismPreferences.allSatisfy { $0.cls == "REMOTE" })
        XCTAssertEqual(offered.mechanismPreferences.map(\.type), ["VXLAN", "VLAN"])
        XCTAssertEqual(offered.mechanismPreferences[0].parameters["src_ip"].flatMap(IPAddress.parse), IPAddress.parse(n.ipA))
        XCTAssertEqual(offered.mechanismPreferences[0].parameters["src_port"], "4789")
        let answered = try XCTUnwrap(n.relay.answers.first?.mechanism)
        XCTAssertEqual(answered.type, "VXLAN")
        XCTAssertEqual(answered.parameters["dst_ip"].flatMap(IPAddress.parse), IPAddress.parse(n.ipB))
        XCTAssertEqual(answered.parameters["dst_port"], "4789")
        let vni = try XCTUnwrap(Int(answered.parameters["vni"] ?? ""))
        XCTAssertEqual(vni % 2, 0, "src (A) < dst (B): an even VNI")
        let tunnelMTU = v6 ? 1500 - 74 : 1500 - 54
        XCTAssertEqual(answered.parameters["MTU"], String(tunnelMTU))
        XCTAssertEqual(conn.context.mtu, UInt32(tunnelMTU), "the connection MTU is clamped to the tunnel's")
        XCTAssertTrue(sh("ip -n \(n.nsc) link show nsm-1").out.contains("mtu \(tunnelMTU)"))

        // Ping across the nodes, and real traffic: TCP and UDP with content checks, fragments.
        XCTAssertEqual(n.ping("172.16.1.100")?.received, 5, n.a.log + n.b.log)
        let t = Transfer.run(fromNS: n.nsc, toNS: n.nse, target: "172.16.1.100", proto: "tcp", bytes: 8 << 20,
                             port: 5401, size: 1200, rate: 0)
        XCTAssertTrue(t.intact, "TCP across nodes: \(t)")
        let back = Transfer.run(fromNS: n.nse, toNS: n.nsc, target: "172.16.1.101", proto: "tcp", bytes: 4 << 20,
                                port: 5402, size: 1200, rate: 0)
        XCTAssertTrue(back.intact, "TCP back across nodes: \(back)")
        let u = Transfer.run(fromNS: n.nsc, toNS: n.nse, target: "172.16.1.100", proto: "udp", bytes: 512 << 10,
                             port: 5403, size: 1300, rate: 3000)
        XCTAssertTrue(u.intact, "UDP across nodes: \(u)")
        let frag = sh("ip netns exec \(n.nsc) ping -n -q -c 3 -i 0.2 -W 3 -s 3000 172.16.1.100")
        XCTAssertEqual(pingCounts(frag.out)?.received, 3, "fragments across VXLAN: " + frag.out)

        // A VNI already in use towards A, and a peer address of a family B has no tunnel for:
        // refused by B with the field named, nothing built.
        let bBefore = try n.b.interfaces().count
        var dup = n.kernelRequest
        var m = Connection_Mechanism(); m.cls = "REMOTE"; m.type = "VXLAN"
        m.parameters = ["src_ip": n.ipA, "src_port": "4789", "vni": String(vni)]
        dup.mechanismPreferences = [m]
        await expectRPCError(.alreadyExists, "vni") { _ = try await n.request(dup, socket: n.sockB) }
        var wrong = n.kernelRequest
        m.parameters = ["src_ip": v6 ? "10.97.0.9" : "fd97::9", "src_port": "4789"]
        wrong.mechanismPreferences = [m]
        await expectRPCError(.invalidArgument, "src_ip") { _ = try await n.request(wrong, socket: n.sockB) }
        XCTAssertEqual(try n.b.interfaces().count, bBefore)

        // Kill node B's forwarder mid-traffic, restart it, re-request with the old path:
        // traffic resumes and nothing stale is left on either node.
        let pinger = Task.detached { n.ping("172.16.1.100", count: 60) }
        try await Task.sleep(nanoseconds: 1_000_000_000)
        n.b.kill9()
        let registered = n.registryB.rec.registrations.count
        XCTAssertTrue(n.b.start(), n.b.log)
        try await NSMSystemTests.waitFor("node B's forwarder back") { n.registryB.rec.registrations.count > registered }
        var heal = Networkservice_NetworkServiceRequest()
        heal.connection = conn
        heal.mechanismPreferences = n.kernelRequest.mechanismPreferences
        let healed = try await n.request(heal)
        XCTAssertEqual(healed.path.pathSegments[2].id, conn.path.pathSegments[2].id)
        let healedMech = try XCTUnwrap(n.relay.answers.last?.mechanism)
        XCTAssertEqual(healedMech.parameters["vni"], String(vni), "the heal keeps the VNI")
        let during = await pinger.value
        XCTAssertGreaterThan(during?.received ?? 0, 0)
        XCTAssertEqual(n.ping("172.16.1.100", count: 3)?.received, 3,
                       (try? n.b.request(.init(command: .showNeighbours)).neighbours.map { "\($0)" }) ?? "" + n.b.ctl(["show", "interfaces"]).out + n.b.ctl(["show", "drops"]).out + n.a.ctl(["show", "drops"]).out)
        XCTAssertEqual(n.weftLinks(nil), 1, "node A: the client's veth only")
        XCTAssertEqual(n.weftLinks(n.nodeB), 1, "node B: the endpoint's new veth only (the dead run's was removed)")
        XCTAssertEqual(try n.a.interfaces().filter { $0.type == "vxlan" }.count, 1)
        XCTAssertEqual(try n.b.interfaces().filter { $0.type == "vxlan" }.count, 1)

        // Close runs through both nodes.
        try await n.close(healed)
        XCTAssertEqual(n.weftLinks(nil), 0)
        XCTAssertEqual(n.weftLinks(n.nodeB), 0)
        XCTAssertEqual(try n.a.crossConnects().count, 0)
        XCTAssertEqual(try n.b.crossConnects().count, 0)
        XCTAssertGreaterThanOrEqual(n.endpoint.rec.closes.count, 1)
    }

    func testVXLANBetweenForwardersOverIPv4() async throws { try await vxlanAcrossNodes(v6: false) }
    func testVXLANBetweenForwardersOverIPv6() async throws { try await vxlanAcrossNodes(v6: true) }

    /// Expiry on node B (its caller, node B's NSMgr, stopped refreshing) tears down node B's
    /// half and closes the endpoint; node A's half stays until A's own caller lets it expire.
    func testExpiryOnOneNodeTearsDownOnlyThatNodesHalf() async throws {
        let n = TwoNodes(v6: false)
        addTeardownBlock { await n.stop() }
        try await n.start()
        n.relay.segmentLifetime = 3
        _ = try await n.request(n.kernelRequest)
        XCTAssertEqual(n.ping("172.16.1.100", count: 3)?.received, 3)
        try await NSMSystemTests.waitFor("node B's half to expire", timeout: 20) {
            (try? n.b.interfaces().filter { $0.type == "vxlan" }.count) == 0 && n.weftLinks(n.nodeB) == 0
        }
        // The endpoint's Close goes out with the teardown; it may land a moment after.
        try await NSMSystemTests.waitFor("node B to close the endpoint", timeout: 5) { n.endpoint.rec.closes.count >= 1 }
        XCTAssertEqual(n.endpoint.rec.closes.count, 1, "node B closed the endpoint")
        XCTAssertTrue(n.b.log.contains("expired"))
        XCTAssertEqual(try n.a.interfaces().filter { $0.type == "vxlan" }.count, 1, "node A's half is untouched")
        XCTAssertEqual(n.weftLinks(nil), 1)
        XCTAssertEqual(try n.a.crossConnects().count, 1)
    }

    /// VLAN: a remote-VLAN endpoint answers with vlan-id and the label `via`; node A maps
    /// `via` to its uplink through the device selector. Node B is a plain weftd with VLAN
    /// 100 on its uplink cross-connected to a pod.
    func testVLANToARemoteVLANEndpoint() async throws {
        let n = TwoNodes(v6: false)
        addTeardownBlock { await n.stop() }
        let selector = "\(n.a.dir)/device-selector.yaml"
        try? FileManager.default.createDirectory(atPath: n.a.dir, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: selector, contents: Data("""
        interfaces:
          - name: \(n.upA)
            matches:
              - labelSelector:
                  - via: gw0
        """.utf8))
        // The remote-VLAN endpoint on tcp: it answers the VLAN preference.
        let vlanNSE = TestEndpoint(name: "vlan-nse-\(n.tag)", netns: n.nse, srcIP: "10.98.0.1/24", dstIP: "10.98.0.2/24")
        vlanNSE.shape = { c in
            var m = Connection_Mechanism(); m.cls = "REMOTE"; m.type = "VLAN"; m.parameters = ["vlan-id": "100"]
            c.mechanism = m
            c.labels["via"] = c.labels["wantVia"] ?? "gw0"
        }
        let vlanServer = try await TestTCPServer(services: [vlanNSE])
        try await n.start(extraA: "device_selector_file: \(selector)")
        var e = Registry_NetworkServiceEndpoint(); e.name = vlanNSE.name; e.networkServiceNames = ["vlan-svc"]
        e.url = "tcp://127.0.0.1:\(vlanServer.port)"
        n.registryA.add(endpoint: e)
        var ns = Registry_NetworkService(); ns.name = "vlan-svc"; ns.payload = "ETHERNET"
        n.registryA.add(service: ns)
        // Node B: VLAN 100 on its uplink to a pod with the endpoint's address.
        n.b.stop()
        let pod = PodNamespace(tag: n.tag, index: 3, address: "10.98.0.2", node: n.nodeB)
        n.b.write("""
        interfaces:
          - {name: uplink, type: af_packet, iface: ul}
          - {name: v100, type: vlan, uplink: uplink, vlan_id: 100}
          - {name: pod, type: af_packet, iface: \(pod.hostEnd)}
        cross_connects:
          - {name: pod-v100, a: pod, b: v100}
        """)
        XCTAssertTrue(n.b.start(), n.b.log)

        var req = nsmRequest(service: "vlan-svc", params: ["inodeURL": "file:///var/run/netns/\(n.nsc)", "name": "nsm-1"])
        let conn = try await n.request(req)
        let offered = try XCTUnwrap(vlanNSE.rec.requests.first)
        XCTAssertEqual(offered.mechanismPreferences.map(\.type), ["VXLAN", "VLAN"])
        XCTAssertTrue(try n.a.interfaces().contains { $0.type == "vlan" })
        XCTAssertEqual(n.ping("10.98.0.2")?.received, 5, n.a.log)
        // The far pod keeps the kernel's default offloads: its partial checksums cross VLAN and both nodes.
        for (from, to, target, port) in [(n.nsc, pod.ns, "10.98.0.2", 5411), (pod.ns, n.nsc, "10.98.0.1", 5412)] {
            let t = Transfer.run(fromNS: from, toNS: to, target: target, proto: "tcp", bytes: 4 << 20, port: port,
                                 size: 1200, rate: 0)
            XCTAssertTrue(t.intact, "TCP over VLAN to \(target): \(t)")
        }
        let u = Transfer.run(fromNS: n.nsc, toNS: pod.ns, target: "10.98.0.2", proto: "udp", bytes: 512 << 10,
                             port: 5413, size: 1400, rate: 3000)
        XCTAssertTrue(u.intact, "UDP over VLAN: \(u)")
        try await n.close(conn)
        XCTAssertEqual(try n.a.interfaces().filter { $0.type == "vlan" }.count, 0)

        // A `via` no uplink matches: refused naming it, nothing built.
        req = nsmRequest(service: "vlan-svc", params: ["inodeURL": "file:///var/run/netns/\(n.nsc)", "name": "nsm-1"])
        req.connection.labels["wantVia"] = "nowhere"
        await expectRPCError(.invalidArgument, "via 'nowhere'") { _ = try await n.request(req) }
        XCTAssertEqual(try n.a.interfaces().count, 1, "the uplink only")
        XCTAssertEqual(n.weftLinks(nil), 0)
        await vlanServer.stop()
        _ = pod
    }

    /// A unix (local) next hop that answers with a REMOTE mechanism is refused.
    func testRemoteMechanismFromALocalEndpointIsRefused() async throws {
        let n = NSMSystemTests.Node()
        try await n.start()
        addTeardownBlock { await n.stop() }
        n.endpoint.shape = { c in
            var m = Connection_Mechanism(); m.cls = "REMOTE"; m.type = "VXLAN"
            m.parameters = ["dst_ip": "10.99.0.2", "dst_port": "4789", "vni": "42"]
            c.mechanism = m
        }
        await expectRPCError(.failedPrecondition, "REMOTE VXLAN") {
            _ = try await n.request(nsmRequest(service: "icmp-responder", params: ["inodeURL": "file:///var/run/netns/\(n.nsc)", "name": "nsm-1"]))
        }
        XCTAssertEqual(try n.weftd.interfaces().count, 0)
        XCTAssertEqual(n.weftLinks, [])
        XCTAssertEqual(n.endpoint.rec.closes.count, 1, "the endpoint's half is closed again")
    }
}
