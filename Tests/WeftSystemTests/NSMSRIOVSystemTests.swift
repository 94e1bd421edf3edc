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
    func testKernelTokenVFIntoThePodThroughItsRepresentor() async throws {
        let pf = "0000:81:00.0"
        let vfs = ["0000:81:00.2", "0000:81:00.3"]
        let n = NSMSystemTests.Node()
        // The node's own dir holds the sysfs tree and the config file.
        let dir = n.weftd.dir
        let sys = dir + "/sys"
        let devices = sys + "/bus/pci/devices"
        let t = n.tag
        let vfNet = ["wt\(t)v0", "wt\(t)v1"], reps = ["wt\(t)r0", "wt\(t)r1"]
        func mk(_ p: String) { try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true) }
        func put(_ p: String, _ s: String) { FileManager.default.createFile(atPath: p, contents: Data(s.utf8)) }
        func link(_ at: String, _ to: String) { try? FileManager.default.createSymbolicLink(atPath: at, withDestinationPath: to) }
        mk(sys + "/bus/pci/drivers/iavf"); mk(sys + "/bus/pci/drivers/ice")
        mk(devices + "/" + pf + "/net/wt\(t)pf")
        put(devices + "/" + pf + "/sriov_totalvfs", "2\n"); put(devices + "/" + pf + "/sriov_numvfs", "2\n")
        link(devices + "/" + pf + "/driver", sys + "/bus/pci/drivers/ice")
        for (n, vf) in vfs.enumerated() {
            mk(devices + "/" + vf + "/net/" + vfNet[n])
            mk(sys + "/kernel/iommu_groups/\(60 + n)/devices")
            link(devices + "/" + vf + "/iommu_group", sys + "/kernel/iommu_groups/\(60 + n)")
            link(devices + "/" + vf + "/driver", sys + "/bus/pci/drivers/iavf")
            put(devices + "/" + vf + "/driver_override", "(null)\n")
            link(devices + "/" + pf + "/virtfn\(n)", "../" + vf)
            // VF 1's representor is missing: its PF's eswitch does not show it.
            if n == 0 {
                mk(devices + "/" + pf + "/net/" + reps[n])
                put(devices + "/" + pf + "/net/" + reps[n] + "/phys_port_name", "pf0vf\(n)\n")
            }
            XCTAssertEqual(sh("ip link add \(vfNet[n]) type veth peer name \(reps[n])").status, 0)
        }
        addTeardownBlock { for r in reps { sh("ip link del \(r) 2>/dev/null") } }
        let config = dir + "/pci.config"
        put(config, """
            physicalFunctions:
              \(pf):
                pfKernelDriver: ice
                vfKernelDriver: iavf
                capabilities: [10G]
                serviceDomains: [worker.domain]
            """)
        n.nsmExtra = "\n  sriov_config_file: \(config)\n  pci_devices_path: \(devices)"
        try await n.start()
        addTeardownBlock { await n.stop() }

        // Tokens: one per VF for worker.domain/10G, in the pool's owner-only state file.
        let statePath = dir + "/sriov-pool.json"
        struct State: Decodable { var tokens: [String: String]; var held: [String: String] }
        func state() throws -> State { try JSONDecoder().decode(State.self, from: Data(contentsOf: URL(fileURLWithPath: statePath))) }
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
}
