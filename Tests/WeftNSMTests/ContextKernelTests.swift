import Foundation
import Logging
import XCTest
@testable import WeftNSM
import WeftModel
import WeftNSMProto

/// The IP context in a real network namespace (root; the test's own namespace and
/// veth, named after its process): addresses, routes to the peer with the peer's
/// prefix, on-link next hops, policy routes as rules and tables, ping_group_range, and
/// a refresh that removes what the new context no longer has.
final class ContextKernelTests: XCTestCase {
    let ns = "wfctx\(getpid() % 100000)"
    var nsPath: String { "/run/netns/" + ns }

    @discardableResult
    func sh(_ cmd: String) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", cmd]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try? p.run()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    override func setUpWithError() throws {
        sh("ip netns del \(ns) 2>/dev/null")
        let (rc, out) = sh("ip netns add \(ns) && ip -n \(ns) link add wfc0 type veth peer name wfc1 && ip -n \(ns) link set wfc0 up && ip -n \(ns) link set wfc1 up")
        // The test command runs as root; a machine where this fails cannot test this.
        if rc != 0 { XCTFail("cannot make the test's namespace (root needed): \(out)") }
    }

    override func tearDown() { sh("ip netns del \(ns)") }

    func context(addrs: [String], peers: [String], routes: [(String, String)], policies: [(String, String, String, [(String, String)])])
        -> Connectioncontext_ConnectionContext {
        var c = Connectioncontext_ConnectionContext()
        c.ipContext.srcIpAddrs = addrs
        c.ipContext.dstIpAddrs = peers
        c.ipContext.srcRoutes = routes.map { var r = Connectioncontext_Route(); r.prefix = $0.0; r.nextHop = $0.1; return r }
        c.ipContext.policies = policies.map { p in
            var pr = Connectioncontext_PolicyRoute()
            pr.from = p.0; pr.proto = p.1; pr.dstPort = p.2
            pr.routes = p.3.map { var r = Connectioncontext_Route(); r.prefix = $0.0; r.nextHop = $0.1; return r }
            return pr
        }
        return c
    }

    func testContextPoliciesAndRefreshInARealNamespace() throws {
        let plumbing = Plumbing(logger: Logger(label: "t"), runtimeDir: NSTemporaryDirectory(), forwarderName: "t", node: { WeftConfig() })
        let side = RealizedSide(side: .server, type: Mech.kernel, interface: InterfaceConfig(name: "nsm-s-test", type: .kernel),
                                netns: nsPath, podIfName: "wfc0")
        let first = context(addrs: ["172.16.5.1/31"], peers: ["172.16.5.0/31"],
                            routes: [("10.60.0.0/16", ""), ("10.61.0.0/16", "172.16.9.9")],
                            policies: [("172.16.5.1/32", "6", "8080", [("10.70.0.0/16", "172.16.5.0")]), ("", "", "", [])])
        try plumbing.applyContext(first, on: side, peer: nil)
        let addr = sh("ip -n \(ns) -o addr show dev wfc0").1
        XCTAssertTrue(addr.contains("172.16.5.1/31"), addr)
        let routes = sh("ip -n \(ns) route show dev wfc0").1
        XCTAssertTrue(routes.contains("172.16.5.0/31"), "the peer's prefix: \(routes)")
        XCTAssertTrue(routes.contains("10.60.0.0/16 via 172.16.5.0"), "the peer as next hop: \(routes)")
        XCTAssertTrue(routes.contains("10.61.0.0/16 via 172.16.9.9") && routes.contains("onlink"), "an on-link next hop: \(routes)")
        let rules = sh("ip -n \(ns) rule show").1
        XCTAssertTrue(rules.contains("from 172.16.5.1 ipproto tcp dport 8080 lookup"), rules)
        let tables = rules.split(separator: "\n").filter { $0.contains("lookup") && !$0.contains("lookup local") && !$0.contains("lookup main") && !$0.contains("lookup default") }
        XCTAssertEqual(tables.count, 2, "one rule per policy: \(rules)")
        let t1 = KernelContext.table(key: "nsm-s-test", policy: "172.16.5.1/32;6;;8080")
        XCTAssertTrue(sh("ip -n \(ns) route show table \(t1)").1.contains("10.70.0.0/16 via 172.16.5.0"), sh("ip -n \(ns) route show table all").1)
        let t2 = KernelContext.table(key: "nsm-s-test", policy: ";;;")
        XCTAssertTrue(sh("ip -n \(ns) route show table \(t2)").1.contains("default dev wfc0"), "a policy without routes gets a default route")
        XCTAssertEqual(sh("ip netns exec \(ns) cat /proc/sys/net/ipv4/ping_group_range").1.split(whereSeparator: \.isWhitespace), ["0", "2147483647"])

        // Refresh: a new address, one route and one policy gone.
        let second = context(addrs: ["172.16.6.1/31"], peers: ["172.16.6.0/31"], routes: [("10.60.0.0/16", "")],
                             policies: [("", "", "", [])])
        try plumbing.applyContext(second, on: side, peer: nil, previous: first)
        let addr2 = sh("ip -n \(ns) -o addr show dev wfc0").1
        XCTAssertTrue(addr2.contains("172.16.6.1/31") && !addr2.contains("172.16.5.1"), addr2)
        let routes2 = sh("ip -n \(ns) route show dev wfc0").1
        XCTAssertFalse(routes2.contains("10.61.0.0"), "a route no longer in the context stays: \(routes2)")
        XCTAssertTrue(routes2.contains("10.60.0.0/16 via 172.16.6.0"), routes2)
        let rules2 = sh("ip -n \(ns) rule show").1
        XCTAssertFalse(rules2.contains("dport 8080"), "a removed policy's rule stays: \(rules2)")
        XCTAssertTrue(rules2.contains("lookup \(t2)"), rules2)

        // Close: the rules go (the interface takes its routes with it).
        plumbing.removeContext(second, on: side)
        XCTAssertFalse(sh("ip -n \(ns) rule show").1.contains("lookup \(t2)"))

        // Bad input names the field.
        var bad = second
        bad.ipContext.policies[0].dstPort = "90-80"
        XCTAssertThrowsError(try plumbing.applyContext(bad, on: side, peer: nil)) { e in
            XCTAssertTrue("\(e)".contains("policies[0].dst_port '90-80'"), "\(e)")
        }
    }
}
