import Foundation
import GRPCCore
import WeftNSMProto
import XCTest

/// NSM's KERNEL mechanism with an SR-IOV `tokenID`, end to end through weftd, without
/// SR-IOV hardware: a sysfs tree the test builds (NSM_PCI_DEVICES_PATH) describes a PF
/// in switchdev mode with two VFs; each VF's netdev and its representor are the two
/// ends of a real veth pair (what a VF sends, its representor receives). Weft must move
/// the token's VF into the client pod (renamed, addressed), cross-connect its
/// representor to the endpoint, carry traffic, and give the VF and the token back on
/// Close. A physical VF and eswitch have not run this (none here).
final class NSMSRIOVSystemTests: SystemTestCase {
    /// A PF in switchdev mode with two VFs under `<node dir>/sys`: VF 0 with a representor,
    /// VF 1 without; each VF's netdev and its representor the ends of a veth pair.
    struct Tree {
        let pf = "0000:81:00.0"
        let vfs = ["0000:81:00.2", "0000:81:00.3"]
        let dir: String
        let vfNet: [String], reps: [String]
        var devices: String { dir + "/sys/bus/pci/devices" }
        var config: String { dir + "/pci.config" }

        init(_ n: NSMSystemTests.Node, vfDriver: String) {
            dir = n.weftd.dir
            let t = n.tag
            vfNet = ["wt\(t)v0", "wt\(t)v1"]; reps = ["wt\(t)r0", "wt\(t)r1"]
            let sys = dir + "/sys"
            func mk(_ p: String) { try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true) }
            func put(_ p: String, _ s: String) { FileManager.default.createFile(atPath: p, contents: Data(s.utf8)) }
            func link(_ at: String, _ to: String) { try? FileManager.default.createSymbolicLink(atPath: at, withDestinationPath: to) }
            for d in ["iavf", "ice", "vfio-pci"] { mk(sys + "/bus/pci/drivers/" + d) }
            mk(devices + "/" + pf + "/net/wt\(t)pf")
            put(devices + "/" + pf + "/sriov_totalvfs", "2\n"); put(devices + "/" + pf + "/sriov_numvfs", "2\n")
            link(devices + "/" + pf + "/driver", sys + "/bus/pci/drivers/ice")
            for (i, vf) in vfs.enumerated() {
                mk(devices + "/" + vf + "/net/" + vfNet[i])
                mk(sys + "/kernel/iommu_groups/\(60 + i)/devices")
                link(sys + "/kernel/iommu_groups/\(60 + i)/devices/" + vf, devices + "/" + vf)
                link(devices + "/" + vf + "/iommu_group", sys + "/kernel/iommu_groups/\(60 + i)")
                link(devices + "/" + vf + "/driver", sys + "/bus/pci/drivers/" + vfDriver)
                put(devices + "/" + vf + "/driver_override", "(null)\n")
                link(devices + "/" + pf + "/virtfn\(i)", "../" + vf)
                // VF 1's representor is missing: its PF's eswitch does not show it.
                if i == 0 {
                    mk(devices + "/" + pf + "/net/" + reps[i])
                    put(devices + "/" + pf + "/net/" + reps[i] + "/phys_port_name", "pf0vf\(i)\n")
                }
                _ = sh("ip link add \(vfNet[i]) type veth peer name \(reps[i])")
            }
            put(config, """
                physicalFunctions:
                  \(pf):
                    pfKernelDriver: ice
                    vfKernelDriver: iavf
                    capabilities: [10G]
                    serviceDomains: [worker.domain]
                """)
        }
        func remove() { for r in reps { sh("ip link del \(r) 2>/dev/null") } }

        struct State: Decodable { var tokens: [String: String]; var held: [String: String] }
        var statePath: String { dir + "/sriov-pool.json" }
        func state() throws -> State { try JSONDecoder().decode(State.self, from: Data(contentsOf: URL(fileURLWithPath: statePath))) }
    }

    func testKernelTokenVFIntoThePodThroughItsRepresentor() async throws {
        let n = NSMSystemTests.Node()
        let tree = Tree(n, vfDriver: "iavf")
        addTeardownBlock { tree.remove() }
        let (vfs, vfNet, reps, devices, config, dir) = (tree.vfs, tree.vfNet, tree.reps, tree.devices, tree.config, tree.dir)
        _ = dir
        n.nsmExtra = "\n  sriov_config_file: \(config)\n  pci_devices_path: \(devices)"
        try await n.start()
        addTeardownBlock { await n.stop() }

        // Tokens: one per VF for worker.domain/10G, in the pool's owner-only state file.
        let statePath = tree.statePath
        func state() throws -> Tree.State { try tree.state() }
        let tokens = try state().tokens.filter { $0.value == "worker.domain/10G" }.map(\.key).sorted()
        XCTAssertEqual(tokens.count, 2)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: statePath)[.posixPermissions] as? Int, 0o600)

        let vfIndex = sh("cat /sys/class/net/\(vfNet[0])/ifindex").out.trimmingCharacters(in: .whitespacesAndNewlines)
        func kernelRequest(_ name: String) -> Networkservice_NetworkServiceRequest {
            nsmRequest(service: "icmp-responder", params: ["inodeURL": "file:///var/run/netns/\(n.nsc)", "name": name],
                       callerExpires: Date().addingTimeInterval(600))
        }
        func ping(_ ns: String, _ target: String, count: Int = 5) -> Int? {
            pingCounts(sh("ip netns exec \(ns) ping -n -q -c \(count) -i 0.2 -W 3 \(target)", timeout: 40).out)?.received
        }
        var req = kernelRequest("nsm-1")
        req.mechanismPreferences[0].parameters["tokenID"] = tokens[0]
        let conn = try await n.request(req)
        XCTAssertEqual(conn.mechanism.parameters["pciAddress"], vfs[0], "\(conn.mechanism)")
        XCTAssertEqual(try state().held[tokens[0]], vfs[0])

        // The VF is the pod's interface: moved (same ifindex), renamed, addressed; its representor is Weft's side.
        let podLink = sh("ip -n \(n.nsc) -o link show nsm-1").out
        XCTAssertTrue(podLink.hasPrefix(vfIndex + ":"), "pod's nsm-1 is not the VF (ifindex \(vfIndex)): \(podLink)")
        XCTAssertNotEqual(sh("ip link show \(vfNet[0])").status, 0, "the VF's netdev is still in the host")
        XCTAssertTrue(sh("ip -n \(n.nsc) -o addr show dev nsm-1").out.contains("172.16.1.101/32"))
        let itfs = try n.weftd.interfaces()
        XCTAssertTrue(itfs.contains { $0.detail == reps[0] }, "\(itfs.map(\.detail))")
        XCTAssertFalse(n.weftLinks.contains { $0.contains(reps[0]) }, "the representor must not carry Weft's veth alias (a restart would delete it)")

        // Traffic between the client pod (on the VF) and the endpoint, through the representor.
        XCTAssertEqual(ping(n.nsc, "172.16.1.100"), 5, n.weftd.log)
        let tcp = Transfer.run(fromNS: n.nsc, toNS: n.nse, target: "172.16.1.100", proto: "tcp", bytes: 4 << 20, port: 5461, size: 1200, rate: 0)
        XCTAssertTrue(tcp.intact, "TCP: \(tcp)")
        let udp = Transfer.run(fromNS: n.nse, toNS: n.nsc, target: "172.16.1.101", proto: "udp", bytes: 256 << 10, port: 5462, size: 1400, rate: 3000)
        XCTAssertTrue(udp.intact, "UDP: \(udp)")

        // A second token gets VF 1, which has no representor: refused, and the VF goes back.
        var req2 = kernelRequest("nsm-2")
        req2.mechanismPreferences[0].parameters["tokenID"] = tokens[1]
        do { _ = try await n.request(req2); XCTFail("a VF without a representor was served") } catch let e as RPCError {
            XCTAssertEqual(e.code, .failedPrecondition, e.message)
            XCTAssertTrue(e.message.contains("has no representor"), e.message)
        }
        XCTAssertNil(try state().held[tokens[1]], "the refused request's VF stayed held")
        XCTAssertEqual(sh("ip link show \(vfNet[1])").status, 0, "VF 1 left the host")
        // Tokens that are not the pool's.
        var req3 = kernelRequest("nsm-3")
        for bad in ["sriov-" + UUID().uuidString.lowercased(), "not-a-token"] {
            req3.mechanismPreferences[0].parameters["tokenID"] = bad
            do { _ = try await n.request(req3); XCTFail("token \(bad) served") } catch let e as RPCError {
                XCTAssertEqual(e.code, .invalidArgument, e.message)
                XCTAssertTrue(e.message.contains("tokenID"), e.message)
            }
        }

        // Close: the VF back in the host under its own name, the token free, nothing of Weft's left.
        try await n.close(conn)
        XCTAssertEqual(sh("ip link show \(vfNet[0])").status, 0, "the VF did not come back")
        XCTAssertTrue(sh("ip -o link show \(vfNet[0])").out.hasPrefix(vfIndex + ":"))
        XCTAssertFalse(n.links(n.nsc).contains("nsm-1"))
        XCTAssertNil(try state().held[tokens[0]])
        XCTAssertEqual(try n.weftd.interfaces().count, 0)
        XCTAssertEqual(try n.weftd.crossConnects().count, 0)

        // The token serves again (the same VF: the pool's order), and Close again.
        let again = try await n.request(req)
        XCTAssertEqual(again.mechanism.parameters["pciAddress"], vfs[0])
        XCTAssertEqual(ping(n.nsc, "172.16.1.100", count: 3), 3)

        // kill -9 and a restart: the VF stays in the pod (it is the pod's, not a veth of
        // Weft's), the pool keeps the token's VF, and the NSMgr's heal takes it up again.
        n.weftd.kill9()
        XCTAssertTrue(n.weftd.start(), n.weftd.log)
        XCTAssertTrue(sh("ip -n \(n.nsc) -o link show nsm-1").out.hasPrefix(vfIndex + ":"), "the restart took the VF from the pod")
        var heal = Networkservice_NetworkServiceRequest()
        heal.connection = again
        heal.mechanismPreferences = req.mechanismPreferences
        let healed = try await n.request(heal)
        XCTAssertEqual(healed.mechanism.parameters["pciAddress"], vfs[0])
        XCTAssertEqual(ping(n.nsc, "172.16.1.100", count: 3), 3, n.weftd.log)
        XCTAssertTrue(try n.weftd.interfaces().contains { $0.detail == reps[0] })

        // SIGTERM closes locally: the VF comes back to the host and the token is free.
        XCTAssertEqual(n.weftd.stop(), 0, n.weftd.log)
        XCTAssertTrue(sh("ip -o link show \(vfNet[0])").out.hasPrefix(vfIndex + ":"), "the VF did not come back at shutdown")
        XCTAssertNil(try state().held[tokens[0]])
    }

    /// NSM's VFIO mechanism: the token's VF on vfio-pci (the tree says so), the pod's
    /// device cgroups (a cgroup v1 tree the test builds: `devices.list`, `.allow`,
    /// `.deny` as files) allowed the container and group devices (real character devices
    /// the test makes with mknod), their numbers answered; the representor is Weft's side.
    /// What the pod's DPDK application would send on the VF, the test sends from the VF's
    /// veth end in a namespace of its own.
    func testVFIOTokenAllowsThePodsCgroupAndCarriesTrafficThroughTheRepresentor() async throws {
        let n = NSMSystemTests.Node()
        let tree = Tree(n, vfDriver: "vfio-pci")
        addTeardownBlock { tree.remove() }
        let vfio = tree.dir + "/dev-vfio", cg = tree.dir + "/cgroup/devices"
        XCTAssertEqual(sh("mkdir -p \(vfio) && mknod \(vfio)/vfio c 10 196 && mknod \(vfio)/60 c 241 7").status, 0)
        let ctrs = ["kubepods/pod-\(n.tag)/c1", "kubepods/pod-\(n.tag)/c2", "kubepods/pod-other/c1"]
        for c in ctrs {
            sh("mkdir -p \(cg)/\(c) && printf 'c 1:3 rwm\\n' > \(cg)/\(c)/devices.list && : > \(cg)/\(c)/devices.allow && : > \(cg)/\(c)/devices.deny")
        }
        // A container allowed every char device already is left alone.
        sh("printf 'c *:* rwm\\n' > \(cg)/\(ctrs[1])/devices.list")
        n.nsmExtra = "\n  sriov_config_file: \(tree.config)\n  pci_devices_path: \(tree.devices)\n  vfio_path: \(vfio)\n  cgroup_path: \(cg)"
        try await n.start()
        addTeardownBlock { await n.stop() }
        let tokens = try tree.state().tokens.map(\.key).sorted()
        XCTAssertEqual(tokens.count, 2)

        func vfioRequest(_ token: String, cgroupDir: String?) -> Networkservice_NetworkServiceRequest {
            var r = nsmRequest(service: "icmp-responder", mechanism: "VFIO", params: [:])
            r.mechanismPreferences[0].parameters["tokenID"] = token
            if let cgroupDir { r.mechanismPreferences[0].parameters["cgroupDir"] = cgroupDir }
            return r
        }
        // Bad requests first: each refused naming the field, the VF given back.
        for (r, code, text) in [(vfioRequest(tokens[0], cgroupDir: nil), RPCError.Code.invalidArgument, "cgroupDir is missing"),
                                (vfioRequest("", cgroupDir: "kubepods/pod-\(n.tag)/*"), .invalidArgument, "tokenID is missing"),
                                (vfioRequest(tokens[0], cgroupDir: "kubepods/../../etc"), .invalidArgument, "not a cgroup path"),
                                (vfioRequest(tokens[0], cgroupDir: "kubepods/nosuchpod/*"), .invalidArgument, "matches no device cgroup")] {
            do { _ = try await n.request(r); XCTFail("served: \(r.mechanismPreferences[0].parameters)") } catch let e as RPCError {
                XCTAssertEqual(e.code, code, e.message)
                XCTAssertTrue(e.message.contains(text), e.message)
            }
            XCTAssertEqual(try tree.state().held, [:], "a refused request kept its VF")
        }

        let conn = try await n.request(vfioRequest(tokens[0], cgroupDir: "kubepods/pod-\(n.tag)/*"))
        let p = conn.mechanism.parameters
        XCTAssertEqual(conn.mechanism.type, "VFIO")
        XCTAssertEqual([p["pciAddress"], p["iommuGroup"], p["vfioMajor"], p["vfioMinor"], p["deviceMajor"], p["deviceMinor"]],
                       [tree.vfs[0], "60", "10", "196", "241", "7"], "\(p)")
        func file(_ c: String, _ f: String) -> String { (try? String(contentsOfFile: "\(cg)/\(c)/\(f)", encoding: .utf8)) ?? "?" }
        XCTAssertEqual(file(ctrs[0], "devices.allow"), "c 10:196 rwm\nc 241:7 rwm\n")
        XCTAssertEqual(file(ctrs[1], "devices.allow"), "", "a container allowed c *:* was written to")
        XCTAssertEqual(file(ctrs[2], "devices.allow"), "", "another pod's container was allowed")
        XCTAssertTrue(try n.weftd.interfaces().contains { $0.detail == tree.reps[0] })

        // The pod's application on the VF: here the VF's veth end in a namespace of the test's.
        let app = "wt\(n.tag)app"
        sh("ip netns add \(app) && ip link set \(tree.vfNet[0]) netns \(app) && ip -n \(app) addr add 172.16.1.101/32 dev \(tree.vfNet[0]) && ip -n \(app) link set \(tree.vfNet[0]) up && ip -n \(app) route add 172.16.1.100/32 dev \(tree.vfNet[0])")
        addTeardownBlock { sh("ip netns del \(app) 2>/dev/null") }
        let ping = pingCounts(sh("ip netns exec \(app) ping -n -q -c 5 -i 0.2 -W 3 172.16.1.100", timeout: 40).out)
        XCTAssertEqual(ping?.received, 5, n.weftd.log)
        let tcp = Transfer.run(fromNS: app, toNS: n.nse, target: "172.16.1.100", proto: "tcp", bytes: 2 << 20, port: 5471, size: 1200, rate: 0)
        XCTAssertTrue(tcp.intact, "TCP: \(tcp)")

        // Close: the devices denied again where Weft allowed them, the token free.
        try await n.close(conn)
        XCTAssertEqual(file(ctrs[0], "devices.deny"), "c 241:7 rwm\nc 10:196 rwm\n")
        XCTAssertEqual(file(ctrs[1], "devices.deny"), "")
        XCTAssertEqual(try tree.state().held, [:])
        XCTAssertEqual(try n.weftd.interfaces().count, 0)
    }
}
