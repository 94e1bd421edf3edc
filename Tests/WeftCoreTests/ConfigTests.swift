import XCTest
@testable import WeftAdmin
@testable import WeftControl
@testable import WeftDataplane
@testable import WeftKernel
@testable import WeftModel

final class ConfigTests: XCTestCase {
    /// The errors for `yaml`, or a failure if it parsed.
    func errors(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> [ConfigError] {
        do {
            _ = try ConfigLoader.parse(yaml, file: "t.yaml")
            XCTFail("expected a configuration error", file: file, line: line)
            return []
        } catch let e as ConfigErrors {
            return e.errors
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
            return []
        }
    }

    func assertError(_ yaml: String, line expectedLine: Int?, path: String, contains: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        let errs = errors(yaml, file: file, line: line)
        XCTAssertTrue(errs.contains { $0.line == expectedLine && $0.path == path && $0.message.contains(contains) },
                      "no error at line \(expectedLine.map(String.init) ?? "-") path \(path) containing '\(contains)'; got:\n\(errs.map(\.description).joined(separator: "\n"))",
                      file: file, line: line)
        for e in errs { XCTAssertEqual(e.file, "t.yaml", file: file, line: line) }
    }

    static let twoKernel = """
    interfaces:
      - name: a
        type: af_packet
        iface: veth-a
      - name: b
        type: af_packet
        iface: veth-b
    cross_connects:
      - name: ab
        a: a
        b: b

    """

    func testEveryFileInConfigsDecodes() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("configs")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertGreaterThanOrEqual(files.count, 2, "configs/ holds at least the demo and the reference config")
        for f in files {
            XCTAssertNoThrow(try ConfigLoader.load(path: dir.appendingPathComponent(f).path), f)
        }
    }

    func testDefaultsAndValidFile() throws {
        let c = try ConfigLoader.parse(Self.twoKernel, file: "t.yaml")
        XCTAssertEqual(c.dataplane.workers, [1])
        XCTAssertEqual(c.eal.mainLcore, 0)
        XCTAssertEqual(c.interfaces.map(\.name), ["a", "b"])
        XCTAssertEqual(c.crossConnects, [CrossConnectConfig(name: "ab", a: "a", b: "b")])
        XCTAssertEqual(c.admin.socket, "/run/weft/weftd.sock")
    }

    func testMalformedYAMLNamesTheLine() {
        let errs = errors("interfaces:\n  - name: a\n    type: [memif\n")
        XCTAssertEqual(errs.count, 1)
        XCTAssertNotNil(errs.first?.line)
        XCTAssertTrue(errs.first?.message.contains("YAML") ?? false, "\(errs)")
        assertError("- just\n- a list\n", line: 1, path: "", contains: "expected a mapping")
    }

    func testUnknownKeysAtEveryLevel() {
        assertError("eal:\n  hugepage: true\n", line: 2, path: "eal.hugepage", contains: "unknown key 'hugepage'")
        assertError("dataplane:\n  worker: [1]\n", line: 2, path: "dataplane.worker", contains: "expected one of: workers")
        assertError("admin:\n  sock: /x\n", line: 2, path: "admin.sock", contains: "unknown key")
        assertError("interface: []\n", line: 1, path: "interface", contains: "unknown key 'interface'")
        assertError(Self.twoKernel.replacingOccurrences(of: "    iface: veth-b", with: "    iface: veth-b\n    sockt: /x"),
                    line: 8, path: "interfaces[1].sockt", contains: "unknown key 'sockt'")
        assertError(Self.twoKernel + "    c: x\n", line: 12, path: "cross_connects[0].c", contains: "unknown key 'c'")
    }

    func testBadValuesNameTheKey() {
        assertError("eal:\n  memory_mb: lots\n", line: 2, path: "eal.memory_mb", contains: "expected an integer")
        assertError("eal:\n  hugepages: maybe\n", line: 2, path: "eal.hugepages", contains: "true or false")
        assertError("interfaces:\n  - name: a\n    type: memiff\n", line: 3, path: "interfaces[0].type", contains: "unknown interface type")
        assertError("interfaces:\n  - name: a\n    type: memif\n    role: master\n", line: 4, path: "interfaces[0].role", contains: "server or client")
        assertError("interfaces:\n  - type: memif\n", line: 2, path: "interfaces[0].name", contains: "missing required key 'name'")
        assertError("dataplane:\n  burst_size: 0\n", line: 2, path: "dataplane.burst_size", contains: "1..256")
        assertError("dataplane:\n  rx_descriptors: 1000\n", line: 2, path: "dataplane.rx_descriptors", contains: "power of two")
        assertError("dataplane:\n  workers: [0]\n", line: 2, path: "dataplane.workers[0]", contains: "main_lcore")
        assertError("dataplane:\n  workers: []\n", line: 2, path: "dataplane.workers", contains: "at least one")
        assertError("dataplane:\n  workers: [1, 1]\n", line: 2, path: "dataplane.workers[1]", contains: "twice")
        assertError("eal:\n  file_prefix: 'a b'\n", line: 2, path: "eal.file_prefix", contains: "characters")
        assertError("admin:\n  socket: relative.sock\n", line: 2, path: "admin.socket", contains: "absolute")
    }

    /// Yams reads "1:30" as the base-60 integer 90 and traps (integer overflow) on
    /// one beyond Int: the loader reports it instead of crashing weftd
    /// (found reading Yams for fuzz/swift; fuzz/swift/regressions/config/base60-int-overflow-*).
    func testBase60IntegerBeyondIntIsAnErrorNotACrash() throws {
        assertError("vxlan_port: 1:0:0:0:0:0:0:0:0:0:0\n", line: 1, path: "vxlan_port", contains: "base-60 number beyond the integer range")
        assertError("dataplane:\n  workers: [1, 9223372036854775807:0]\n", line: 2, path: "dataplane.workers[1]", contains: "base-60")
        assertError("eal:\n  memory_mb: &n -1:0:0:0:0:0:0:0:0:0:0\ndataplane:\n  mbufs: *n\n", line: 2, path: "eal.memory_mb", contains: "base-60")
        // In range it is still an integer, and quoted or other text is not one.
        let c = try ConfigLoader.parse("dataplane:\n  workers: [1:30]\ninterfaces:\n  - {name: t, type: tap, mac: 02:00:00:00:00:01}\n", file: "t.yaml")
        XCTAssertEqual(c.dataplane.workers, [90])
        XCTAssertEqual(c.interfaces.first?.mac, "02:00:00:00:00:01")
        XCTAssertEqual(try ConfigLoader.parse("eal:\n  log_level: '1:0:0:0:0:0:0:0:0:0:0'\n", file: "t.yaml").eal.logLevel, "1:0:0:0:0:0:0:0:0:0:0")
    }

    func testInterfaceRules() {
        func one(_ body: String) -> String { "interfaces:\n  - name: x\n" + body }
        assertError(one("    type: af_packet\n"), line: 2, path: "interfaces[0].iface", contains: "required for af_packet")
        assertError(one("    type: af_packet\n    iface: this-name-is-too-long\n"), line: 4, path: "interfaces[0].iface", contains: "not a valid kernel interface name")
        assertError(one("    type: memif\n    iface: eth0\n"), line: 4, path: "interfaces[0].iface", contains: "does not apply to memif")
        assertError(one("    type: af_packet\n    iface: v0\n    socket: /x.sock\n"), line: 5, path: "interfaces[0].socket", contains: "does not apply to af_packet")
        assertError(one("    type: memif\n    socket: rel.sock\n"), line: 4, path: "interfaces[0].socket", contains: "absolute path")
        assertError(one("    type: memif\n    socket: /a,b.sock\n"), line: 4, path: "interfaces[0].socket", contains: "','")
        assertError(one("    type: pci\n    pci: 0000:zz:00.0\n"), line: 4, path: "interfaces[0].pci", contains: "not a PCI address")
        assertError(one("    type: pci\n"), line: 2, path: "interfaces[0].pci", contains: "required for pci")
        assertError(one("    type: pci\n    pci: 05:00.0\n    driver: \"vfio-pci; reboot\"\n"), line: 5, path: "interfaces[0].driver",
                    contains: "not a kernel driver name")
        assertError(one("    type: pci\n    pci: 05:00.0\n    restore: false\n"), line: 5, path: "interfaces[0].restore",
                    contains: "only with bind: true")
        assertError(one("    type: tap\n    bind: true\n"), line: 4, path: "interfaces[0].bind", contains: "does not apply to tap")
        assertError(one("    type: pci\n    pci: 05:00.0\n    bind: yes please\n"), line: 5, path: "interfaces[0].bind", contains: "expected true or false")
        let ok = try? ConfigLoader.parse(one("    type: pci\n    pci: 05:00.0\n    driver: mlx5_core\n    bind: true\n    restore: false\n"), file: "t.yaml")
        XCTAssertEqual(ok?.interfaces.first.map { [$0.driver ?? "", "\($0.bind ?? false)", "\($0.restore ?? true)"] }, ["mlx5_core", "true", "false"])
        assertError(one("    type: tap\n    mac: 02:00:00:00:00\n"), line: 4, path: "interfaces[0].mac", contains: "not a MAC address")
        assertError(one("    type: null\n    rx_queues: 9\n"), line: 4, path: "interfaces[0].rx_queues", contains: "1..8")
        assertError(one("    type: null\n    mtu: 20\n"), line: 4, path: "interfaces[0].mtu", contains: "68..9702")
        assertError(one("    type: vdev\n    devargs: foo\n"), line: 4, path: "interfaces[0].devargs", contains: "net vdev")
        assertError("interfaces:\n  - name: 'bad name'\n    type: null\n", line: 2, path: "interfaces[0].name", contains: "characters")
    }

    func testDuplicatesAndReferences() {
        assertError(Self.twoKernel.replacingOccurrences(of: "name: b\n", with: "name: a\n"), line: 5,
                    path: "interfaces[1].name", contains: "duplicate interface name 'a'")
        assertError(Self.twoKernel.replacingOccurrences(of: "iface: veth-b", with: "iface: veth-a"), line: 5,
                    path: "interfaces[1]", contains: "same kernel interface 'veth-a'")
        assertError(Self.twoKernel + "  - name: ab2\n    a: a\n    b: b\n", line: 13, path: "cross_connects[1].a",
                    contains: "interface 'a' is already in cross-connect 'ab'")
        assertError(Self.twoKernel + "  - name: ab\n    a: c\n    b: d\n", line: 12, path: "cross_connects[1].name",
                    contains: "duplicate cross-connect name")
        assertError(Self.twoKernel.replacingOccurrences(of: "    b: b\n", with: "    b: nope\n"), line: 11,
                    path: "cross_connects[0].b", contains: "no interface named 'nope'")
        assertError(Self.twoKernel.replacingOccurrences(of: "    b: b\n", with: "    b: a\n"), line: 11,
                    path: "cross_connects[0].b", contains: "two different interfaces")
    }

    func testVLANRules() {
        let base = "interfaces:\n  - {name: trunk, type: af_packet, iface: eth1}\n  - {name: p, type: null}\n"
        assertError(base + "  - {name: v, type: vlan, vlan_id: 5}\n", line: 4, path: "interfaces[2].uplink", contains: "required for vlan")
        assertError(base + "  - {name: v, type: vlan, uplink: trunk}\n", line: 4, path: "interfaces[2].vlan_id", contains: "required for vlan")
        assertError(base + "  - {name: v, type: vlan, uplink: trunk, vlan_id: 4095}\n", line: 4, path: "interfaces[2].vlan_id", contains: "0..4094")
        assertError(base + "  - {name: v, type: vlan, uplink: nope, vlan_id: 1}\n", line: 4, path: "interfaces[2].uplink", contains: "no interface named 'nope'")
        assertError(base + "  - {name: v, type: vlan, uplink: trunk, vlan_id: 1, iface: x}\n", line: 4, path: "interfaces[2].iface", contains: "does not apply to vlan")
        assertError(base + "  - {name: v, type: vlan, uplink: trunk, vlan_id: 1, mtu: 1500}\n", line: 4, path: "interfaces[2].mtu", contains: "does not apply to vlan")
        assertError(base + "  - {name: v, type: vlan, uplink: trunk, vlan_id: 1}\n  - {name: w, type: vlan, uplink: trunk, vlan_id: 1}\n",
                    line: 5, path: "interfaces[3].vlan_id", contains: "VLAN 1 on 'trunk' is already interfaces[2]")
        assertError(base + "  - {name: v, type: vlan, uplink: trunk, vlan_id: 1}\n  - {name: w, type: vlan, uplink: v, vlan_id: 2}\n",
                    line: 5, path: "interfaces[3].uplink", contains: "an uplink must be a port")
        assertError(base + "  - {name: v, type: vlan, via: gw0, vlan_id: 1}\n", line: 4, path: "interfaces[2].via", contains: "needs device_selector_file")
        assertError(base + "  - {name: v, type: vlan, uplink: trunk, via: gw0, vlan_id: 1}\ndevice_selector_file: /x\n", line: 4, path: "interfaces[2].via", contains: "either 'uplink' or 'via'")
        assertError(base + "  - {name: v, type: vlan, uplink: trunk, vlan_id: 1}\ncross_connects:\n  - {name: x, a: trunk, b: p}\n",
                    line: 6, path: "cross_connects[0].a", contains: "is an uplink carrying tunnels")
        XCTAssertNoThrow(try ConfigLoader.parse(base + "  - {name: v, type: vlan, uplink: trunk, vlan_id: 0}\ncross_connects:\n  - {name: x, a: v, b: p}\n", file: "t.yaml"))
    }

    func testVXLANAndUnderlayRules() {
        let up = "interfaces:\n  - {name: up, type: af_packet, iface: eth1, underlay: {ipv4: 10.0.0.1/24}}\n  - {name: p, type: null}\n"
        assertError(up + "  - {name: t, type: vxlan, uplink: up, remote: 10.0.0.2}\n", line: 4, path: "interfaces[2].vni", contains: "required for vxlan")
        assertError(up + "  - {name: t, type: vxlan, uplink: up, vni: 16777216, remote: 10.0.0.2}\n", line: 4, path: "interfaces[2].vni", contains: "0..16777215")
        assertError(up + "  - {name: t, type: vxlan, uplink: up, vni: 5, remote: 10.0.0}\n", line: 4, path: "interfaces[2].remote", contains: "not an IPv4 or IPv6 address")
        assertError(up + "  - {name: t, type: vxlan, uplink: up, vni: 5, remote: \"fd00::2\"}\n", line: 4, path: "interfaces[2].remote", contains: "IPv6 remote but 'up' has no ipv6")
        assertError(up + "  - {name: t, type: vxlan, uplink: p, vni: 5, remote: 10.0.0.2}\n", line: 4, path: "interfaces[2].uplink", contains: "has no underlay")
        assertError(up + "  - {name: t, type: vxlan, uplink: up, vni: 5, remote: 10.0.0.2, local_port: 8472}\n", line: 4, path: "interfaces[2].local_port", contains: "does not receive VXLAN on UDP 8472")
        assertError(up + "  - {name: t, type: vxlan, uplink: up, vni: 5, remote: 10.0.0.2}\n  - {name: u, type: vxlan, uplink: up, vni: 5, remote: 10.0.0.2}\n",
                    line: 5, path: "interfaces[3].vni", contains: "VNI 5 from 10.0.0.2 on 'up' port 4789 is already interfaces[2]")
        assertError(up + "cross_connects:\n  - {name: x, a: up, b: p}\n", line: 5, path: "cross_connects[0].a", contains: "is an uplink carrying tunnels")
        let bad = "interfaces:\n  - name: up\n    type: af_packet\n    iface: eth1\n    underlay:\n"
        assertError(bad + "      ipv4: 10.0.0.1\n", line: 6, path: "interfaces[0].underlay.ipv4", contains: "with prefix")
        assertError(bad + "      ipv6: \"fd00::1/129\"\n", line: 6, path: "interfaces[0].underlay.ipv6", contains: "with prefix")
        assertError(bad + "      ipv4: 10.0.0.1/24\n      gateway4: \"fd00::1\"\n", line: 7, path: "interfaces[0].underlay.gateway4", contains: "not an IPv4")
        assertError(bad + "      ipv6: \"fd00::1/64\"\n      mtu: 1000\n", line: 7, path: "interfaces[0].underlay.mtu", contains: "1280..9702")
        assertError(bad + "      ipv4: 10.0.0.1/24\n      neighbours: [{ip: 10.0.0.2, mac: nope}]\n", line: 7, path: "interfaces[0].underlay.neighbours[0].mac", contains: "not a MAC")
        assertError(bad + "      ipv4: 10.0.0.1/24\n      colour: red\n", line: 7, path: "interfaces[0].underlay.colour", contains: "unknown key")
        assertError(up + "  - {name: v, type: vlan, uplink: up, vlan_id: 3, underlay: {ipv4: 10.0.1.1/24}}\n", line: 4, path: "interfaces[2].underlay", contains: "does not apply to vlan")
    }

    func testKernelSharedNeedsAKernelNetdev() {
        assertError("interfaces:\n  - {name: m, type: memif, underlay: {ipv4: 10.0.0.1/24, kernel_shared: true}}\n", line: 2,
                    path: "interfaces[0].underlay.kernel_shared", contains: "only a kernel netdev uplink")
        XCTAssertNoThrow(try ConfigLoader.parse("interfaces:\n  - {name: k, type: af_packet, iface: eth0, underlay: {ipv4: 10.0.0.1/24, kernel_shared: true}}\n", file: "t.yaml"))
    }

    func testP2MPRules() {
        let its = "interfaces:\n" + (1...5).map { "  - {name: i\($0), type: null}\n" }.joined()
        assertError(its + "replication_groups:\n  - {name: g, ingress: i1, members: [i2, i1]}\n", line: 8,
                    path: "replication_groups[0].members", contains: "cannot include its own ingress 'i1'")
        assertError(its + "bridge_domains:\n  - {name: d, members: [{interface: i1}]}\n", line: 8,
                    path: "bridge_domains[0].members", contains: "needs 2..128 members")
        assertError(its + "replication_groups:\n  - {name: g, ingress: i1, members: [i2, i3]}\n  - {name: h, ingress: i4, members: [i3]}\n", line: 9,
                    path: "replication_groups[1].members[0]", contains: "interface 'i3' is already in 'g'")
        assertError(its + "cross_connects:\n  - {name: x, a: i1, b: i2}\nbridge_domains:\n  - {name: d, members: [{interface: i2}, {interface: i3}]}\n", line: 10,
                    path: "bridge_domains[0].members[0].interface", contains: "interface 'i2' is already in 'x'")
        assertError(its + "bridge_domains:\n  - {name: d, members: [{interface: i1}, {interface: i9}]}\n", line: 8,
                    path: "bridge_domains[0].members[1].interface", contains: "no interface named 'i9'")
        assertError(its + "bridge_domains:\n  - {name: d, members: [{interface: i1}, {interface: i2}], static_macs: [{mac: '02:00:00:00:00:01', interface: i3}]}\n", line: 8,
                    path: "bridge_domains[0].static_macs[0].interface", contains: "not a member of 'd'")
        assertError(its + "labels: {p2p: 'true', p2mp-bridge: 'false'}\nbridge_domains:\n  - {name: d, members: [{interface: i1}, {interface: i2}]}\n", line: 8,
                    path: "bridge_domains", contains: "do not offer p2mp-bridge")
        assertError(its + "cross_connects:\n  - {name: d, a: i1, b: i2}\nbridge_domains:\n  - {name: d, members: [{interface: i3}, {interface: i4}]}\n", line: 10,
                    path: "bridge_domains[0].name", contains: "duplicate connection name 'd'")
    }

    func testLabelsPickTheMode() throws {
        let offered = Capabilities.defaultLabels
        XCTAssertEqual(try Capabilities.mode(hints: [:], offered: offered), .p2p)
        XCTAssertEqual(try Capabilities.mode(hints: ["p2mp": "replicate"], offered: offered), .replicate)
        XCTAssertEqual(try Capabilities.mode(hints: ["p2mp": "bridge"], offered: offered), .bridge)
        XCTAssertThrowsError(try Capabilities.mode(hints: ["p2mp": "mesh"], offered: offered)) {
            XCTAssertTrue("\($0)".contains("no mode matches label p2mp=mesh; this node offers: p2mp-bridge=true, p2mp-replicate=true, p2p=true"), "\($0)")
        }
        XCTAssertThrowsError(try Capabilities.mode(hints: ["p2mp": "bridge"], offered: ["p2p": "true"])) {
            XCTAssertTrue("\($0)".contains("this node does not offer p2mp-bridge"), "\($0)")
        }
        var c = WeftConfig()
        ConfigLoader.applyEnvironment(&c, ["NSM_LABELS": "zone=a, p2mp-bridge=false"])
        XCTAssertEqual(c.labels, ["p2p": "true", "p2mp-replicate": "true", "p2mp-bridge": "false", "zone": "a"])
    }

    func testNSMEnvironmentOverridesTheFile() throws {
        var c = try ConfigLoader.parse("interfaces:\n  - {name: up, type: af_packet, iface: eth1, underlay: {ipv4: 10.0.0.1/24, ipv6: \"fd00::1/64\"}}\n", file: "t.yaml")
        ConfigLoader.applyEnvironment(&c, ["NSM_VXLAN_PORT": "8472", "NSM_TUNNEL_IP": "10.9.9.9", "NSM_DEVICE_SELECTOR_FILE": "/etc/sel.yaml"])
        XCTAssertEqual(c.vxlanPort, 8472)
        XCTAssertEqual(c.interfaces[0].underlay?.ipv4, "10.9.9.9/24")
        XCTAssertEqual(c.interfaces[0].underlay?.ipv6, "fd00::1/64")
        XCTAssertEqual(c.deviceSelectorFile, "/etc/sel.yaml")
        ConfigLoader.applyEnvironment(&c, ["NSM_TUNNEL_IP": "fd00::77"])
        XCTAssertEqual(c.interfaces[0].underlay?.ipv6, "fd00::77/64")
    }

    func testSeveralErrorsReportedTogether() {
        let errs = errors("dataplane:\n  burst_size: 999\n  mbufs: 1\n")
        XCTAssertEqual(errs.map(\.path), ["dataplane.burst_size", "dataplane.mbufs"])
        XCTAssertEqual(errs.map(\.line), [2, 3])
    }

    func testEALArguments() throws {
        var c = try ConfigLoader.parse(Self.twoKernel, file: "t.yaml")
        c.dataplane.workers = [1, 3]
        XCTAssertEqual(EALArguments.build(c), ["weftd", "-l", "0,1,3", "--main-lcore", "0", "--file-prefix", "weft",
                                               "--log-level", "notice", "--no-huge", "-m", "512", "-a", "ffff:ff:1f.7"])
        c.eal.hugepages = true
        // PCI devices are probed by their attach, never by EAL at init: the allow list stays the same.
        c.interfaces.append(InterfaceConfig(name: "nic", type: .pci, pci: "05:00.1"))
        XCTAssertEqual(Array(EALArguments.build(c).suffix(4)), ["-m", "512", "-a", "ffff:ff:1f.7"])
    }

    func testDevargs() {
        let rd = "/run/weft"
        // memif is Weft's own driver: no devargs (and so no secret in them).
        XCTAssertEqual(Realizer.devargs(InterfaceConfig(name: "m", type: .memif, secret: "s3"), device: "w1", runtimeDir: rd, workers: 1), "")
        XCTAssertEqual(Realizer.devargs(InterfaceConfig(name: "tapper-long-name", type: .tap), device: "w5", runtimeDir: rd, workers: 1),
                       "net_tap_w5,iface=wf-tapper-long-")
        XCTAssertEqual(Realizer.devargs(InterfaceConfig(name: "n", type: .pci, pci: "0000:05:00.0", devargs: "rxq_cqe_comp_en=0"),
                                        device: "w6", runtimeDir: rd, workers: 1),
                       "0000:05:00.0,rxq_cqe_comp_en=0")
        XCTAssertEqual(normalizedPCI("05:00.1"), "0000:05:00.1")
        XCTAssertNil(normalizedPCI("0000:05:00.8"))
    }

    func testPrecheckFindsMissingThingsOnTheMachine() {
        let missing = Realizer.precheck(InterfaceConfig(name: "k", type: .afPacket, iface: "wf-nonexist0"), runtimeDir: "/run/weft")
        XCTAssertEqual(missing.map(\.description), ["iface: kernel interface 'wf-nonexist0' does not exist in weftd's network namespace"])
        let dir = Realizer.precheck(InterfaceConfig(name: "m", type: .memif, socket: "/nonexistent-dir/m.sock"), runtimeDir: "/run/weft")
        XCTAssertEqual(dir.map(\.description), ["socket: memif socket directory '/nonexistent-dir' does not exist"])
        let pci = Realizer.precheck(InterfaceConfig(name: "p", type: .pci, pci: "0000:ff:1f.7"), runtimeDir: "/run/weft")
        XCTAssertEqual(pci.map(\.description), ["pci: no PCI device 0000:ff:1f.7 on this machine"])
        XCTAssertEqual(Realizer.precheck(InterfaceConfig(name: "k", type: .afPacket, iface: "lo"), runtimeDir: "/run/weft"), [])
    }

    func testTextTableAlignsColumns() {
        var t = TextTable(["NAME", "PKTS"])
        t.add(["a", "5"])
        t.add(["long-name", "12345"])
        XCTAssertEqual(t.render(), "NAME       PKTS\na" + String(repeating: " ", count: 14) + "5\nlong-name  12345")
    }

    // MARK: files that used to validate and then fail on the wire

    func testVXLANPortWithoutALocalPortIsRefused() {
        let yaml = """
        interfaces:
          - {name: up, type: af_packet, iface: veth-u, underlay: {ipv4: 10.0.0.1/24, vxlan_ports: [8472]}}
          - {name: t, type: vxlan, uplink: up, vni: 5, remote: 10.0.0.2, port: 8472}
        """
        assertError(yaml, line: 3, path: "interfaces[1].port", contains: "set local_port: 8472")
        // With local_port it is right.
        XCTAssertNoThrow(try ConfigLoader.parse(yaml.replacingOccurrences(of: "port: 8472}", with: "port: 8472, local_port: 8472}"),
                                                file: "t.yaml"))
    }

    func testOffLinkRemoteNeedsAGatewayOfItsFamily() {
        let yaml = """
        interfaces:
          - {name: up, type: af_packet, iface: veth-u, underlay: {ipv4: 10.0.0.1/24, ipv6: "fd00::1/64"}}
          - {name: t4, type: vxlan, uplink: up, vni: 5, remote: 192.0.2.9}
          - {name: t6, type: vxlan, uplink: up, vni: 6, remote: "fd99::9"}
        """
        let errs = errors(yaml)
        XCTAssertTrue(errs.contains { $0.path == "interfaces[1].remote" && $0.message.contains("no gateway4") }, "\(errs)")
        XCTAssertTrue(errs.contains { $0.path == "interfaces[2].remote" && $0.message.contains("no gateway6") }, "\(errs)")
        XCTAssertNoThrow(try ConfigLoader.parse(yaml.replacingOccurrences(
            of: "ipv6: \"fd00::1/64\"}", with: "ipv6: \"fd00::1/64\", gateway4: 10.0.0.254, gateway6: \"fd00::fe\"}"), file: "t.yaml"))
    }

    func testEveryDecodingErrorOfAFileIsReportedAtOnce() {
        let errs = errors("""
        eal: {main_lcore: zero}
        interfaces:
          - {name: a, type: af_packet, iface: veth-a, sockt: x}
          - {name: b, type: nosuchtype}
          - {name: c, type: memif, id: many}
        cross_connects:
          - {name: x, a: a}
        bogus: 1
        """)
        XCTAssertEqual(errs.map(\.line), [1, 3, 4, 5, 7, 8], errs.map(\.description).joined(separator: "\n"))
        XCTAssertTrue(errs.contains { $0.path == "eal.main_lcore" && $0.message.contains("integer") })
        XCTAssertTrue(errs.contains { $0.path == "interfaces[0].sockt" && $0.message.contains("unknown key") })
        XCTAssertTrue(errs.contains { $0.path == "interfaces[1].type" && $0.message.contains("unknown interface type") })
        XCTAssertTrue(errs.contains { $0.path == "interfaces[2].id" })
        XCTAssertTrue(errs.contains { $0.path == "cross_connects[0].b" && $0.message.contains("missing") })
        XCTAssertTrue(errs.contains { $0.path == "bogus" && $0.message.contains("unknown key") })
    }
}
