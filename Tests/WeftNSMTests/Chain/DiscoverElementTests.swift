import Foundation
import SwiftProtobuf
import XCTest
@testable import WeftNSM
import WeftNSMProto

final class DiscoverElementTests: XCTestCase {
    let clock = ManualClock()
    var peers: FakePeers!

    override func setUp() {
        peers = FakePeers()
        peers.add(service: "svc")
        for n in ["a", "b", "c"] { peers.add(endpoint: "nse-\(n)", service: "svc", url: "unix:///nse-\(n).sock", labels: ["app": n]) }
    }

    func element() -> DiscoverElement {
        DiscoverElement(peers: peers, clock: clock, roundRobin: RoundRobin(), registry: .unix("/registry.sock"))
    }

    /// The probe answers with the endpoint it was sent to (as the endpoint name).
    func probe(refusing refused: Set<String> = []) -> Probe {
        Probe { r in
            let url = r.nextHopURL?.description ?? ""
            if refused.contains(url) { throw NextHopRefused(underlying: NSMError(.unavailable, "test", "\(url) refuses")) }
            return r.conn
        }
    }

    func endpoints(_ n: Int, _ chain: NSMNext, labels: [String: String] = [:]) async throws -> [String] {
        var out: [String] = []
        for _ in 0..<n {
            var r = pathedRequest()
            r.conn.labels = labels
            out.append(try await chain.request(&r).networkServiceEndpointName)
        }
        return out
    }

    func testRoundRobinOverTheServicesEndpoints() async throws {
        let chain = NSMNext([element(), probe()])
        let got = try await endpoints(4, chain)
        XCTAssertEqual(got, ["nse-a", "nse-b", "nse-c", "nse-a"])
    }

    func testLabelsSelectTheCandidates() async throws {
        var m = Registry_Match()
        m.sourceSelector = ["app": "nsc"]
        var d = Registry_Destination()
        d.destinationSelector = ["app": "b"]
        m.routes = [d]
        peers.add(service: "svc", matches: [m])
        let chain = NSMNext([element(), probe()])
        let got = try await endpoints(2, chain, labels: ["app": "nsc"])
        XCTAssertEqual(got, ["nse-b", "nse-b"])
        var other = pathedRequest()
        other.conn.labels = ["app": "other"]
        let e = await expectNSMError { try await chain.request(&other) }
        XCTAssertEqual(e?.code, .notFound)
    }

    func testExpiredEndpointsAreSkipped() async throws {
        var gone = Registry_NetworkServiceEndpoint()
        gone.name = "nse-gone"
        gone.networkServiceNames = ["svc"]
        gone.url = "unix:///gone.sock"
        gone.expirationTime = Google_Protobuf_Timestamp(date: clock.now().addingTimeInterval(-1))
        peers.state.withLock { $0.endpoints.insert(gone, at: 0) }
        let got = try await endpoints(4, NSMNext([element(), probe()]))
        XCTAssertFalse(got.contains("nse-gone"))
    }

    func testARefusalMovesOnAndAllRefusingIsUnavailable() async throws {
        let chain = NSMNext([element(), probe(refusing: ["unix:///nse-a.sock"])])
        var r = pathedRequest()
        let out = try await chain.request(&r)
        XCTAssertEqual(out.networkServiceEndpointName, "nse-b")
        XCTAssertEqual(r.nextHopURL, .unix("/nse-b.sock"), "the request carries the next hop that accepted")

        let none = NSMNext([element(), probe(refusing: ["unix:///nse-a.sock", "unix:///nse-b.sock", "unix:///nse-c.sock"])])
        var r2 = pathedRequest()
        let e = await expectNSMError { try await none.request(&r2) }
        XCTAssertEqual(e?.code, .unavailable)
        for n in ["nse-a", "nse-b", "nse-c"] { XCTAssertTrue(e?.message.contains(n) ?? false, "\(String(describing: e))") }
    }

    /// Only a refusal moves on: a next hop that accepted but whose answer is unusable ends the request.
    func testOtherFailuresDoNotTryTheNextCandidate() async throws {
        let p = Probe { _ in throw NSMError(.failedPrecondition, "endpoint", "bad answer") }
        var r = pathedRequest()
        let e = await expectNSMError { try await NSMNext([self.element(), p]).request(&r) }
        XCTAssertEqual(e?.code, .failedPrecondition)
        XCTAssertEqual(p.requests.count, 1)
    }

    func testANamedEndpointIsTheOnlyCandidate() async throws {
        let chain = NSMNext([element(), probe()])
        var r = pathedRequest()
        r.conn.networkServiceEndpointName = "nse-c"
        let out = try await chain.request(&r)
        XCTAssertEqual(out.networkServiceEndpointName, "nse-c")
        var missing = pathedRequest()
        missing.conn.networkServiceEndpointName = "nse-z"
        let e = await expectNSMError { try await chain.request(&missing) }
        XCTAssertEqual(e?.code, .notFound)
        XCTAssertTrue(e?.message.contains("nse-z") ?? false)
    }

    func testUnknownServiceAndRegistryFailures() async throws {
        var r = pathedRequest(service: "nope")
        var e = await expectNSMError { try await NSMNext([self.element(), self.probe()]).request(&r) }
        XCTAssertEqual(e?.code, .notFound)

        struct Down: NSMPeers {
            struct Gone: Error {}
            func findService(_ name: String) async throws -> Registry_NetworkService? { throw Gone() }
            func findEndpoints(service: String?, name: String?) async throws -> [Registry_NetworkServiceEndpoint] { throw Gone() }
            func request(_ url: NSMURL, _ req: Networkservice_NetworkServiceRequest) async throws -> Connection_Connection { throw Gone() }
            func close(_ url: NSMURL, _ conn: Connection_Connection) async throws { throw Gone() }
        }
        let down = DiscoverElement(peers: Down(), clock: clock, roundRobin: RoundRobin(), registry: .unix("/registry.sock"))
        var r2 = pathedRequest()
        e = await expectNSMError { try await NSMNext([down, self.probe()]).request(&r2) }
        XCTAssertEqual(e?.code, .unavailable)
        XCTAssertTrue(e?.message.contains("unix:///registry.sock") ?? false)
    }

    func testARefreshGoesToTheNextHopItHas() async throws {
        let p = probe(), e = element()
        var r = pathedRequest()
        r.isRefresh = true
        r.state.nextHopURL = .unix("/nse-c.sock")
        r.state.nextHop.networkServiceEndpointName = "nse-c"
        _ = try await NSMNext([e, p]).request(&r)
        XCTAssertEqual(p.requests.first?.nextHopURL, .unix("/nse-c.sock"))
        XCTAssertEqual(p.requests.first?.conn.networkServiceEndpointName, "nse-c")
        // No round-robin turn was used.
        let got = try await endpoints(1, NSMNext([e, probe()]))
        XCTAssertEqual(got, ["nse-a"])
    }
}
