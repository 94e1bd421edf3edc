import Foundation
import Logging
import XCTest
@testable import WeftNSM
import WeftNSMProto

final class ConnectElementTests: XCTestCase {
    var peers: FakePeers!

    override func setUp() { peers = FakePeers() }

    func element() -> ConnectElement { ConnectElement(peers: peers, logger: Logger(label: "test")) }

    func request(refresh: Bool = false) -> NSMRequest {
        var r = pathedRequest()
        r.nextHopURL = .unix("/nse-1.sock")
        r.conn.networkServiceEndpointName = "nse-1"
        r.conn.labels = ["app": "nsc", "both": "caller"]
        r.isRefresh = refresh
        return r
    }

    func testSendsTheConnectionAndMakesTheAnswerWeftsView() async throws {
        peers.setAnswer { url, req in
            var c = try FakePeers.memifEndpoint()(url, req)
            c.id = "nse-id"
            c.path.index = 3
            c.path.pathSegments[2].id = "changed-by-the-next-hop"
            c.labels = ["both": "nse", "via": "x"]
            c.networkServiceEndpointName = ""
            return c
        }
        var r = request()
        var offer = Connection_Mechanism()
        offer.cls = Mech.local
        offer.type = Mech.memif
        r.clientPreferences = [offer]
        let out = try await NSMNext([element()]).request(&r)
        let sent = try XCTUnwrap(peers.requests.first)
        XCTAssertEqual(sent.url, .unix("/nse-1.sock"))
        XCTAssertEqual(sent.request.connection.id, "weft-1")
        XCTAssertEqual(sent.request.mechanismPreferences.count, 1)
        // Weft's view: its index and id, the caller's labels under the next hop's.
        XCTAssertEqual(out.path.index, 2)
        XCTAssertEqual(out.id, "weft-1")
        XCTAssertEqual(out.path.pathSegments[2].id, "weft-1")
        XCTAssertEqual(out.labels, ["app": "nsc", "both": "nse", "via": "x"])
        XCTAssertEqual(out.networkServiceEndpointName, "nse-1", "an answer without the endpoint's name gets the one asked")
        // What the connection keeps: the raw answer and where it came from.
        XCTAssertEqual(r.state.nextHopURL, .unix("/nse-1.sock"))
        XCTAssertEqual(r.state.nextHop.id, "nse-id")
    }

    func testARefusalIsTheNextHopsForDiscoverToHandle() async throws {
        struct Refused: Error {}
        peers.setAnswer { _, _ in throw Refused() }
        var r = request()
        do {
            _ = try await NSMNext([element()]).request(&r)
            XCTFail("no error")
        } catch is NextHopRefused {}
        // On refresh: unavailable, naming the next hop.
        var refresh = request(refresh: true)
        let e = await expectNSMError { try await NSMNext([self.element()]).request(&refresh) }
        XCTAssertEqual(e?.code, .unavailable)
        XCTAssertEqual(e?.step, "refresh at next hop unix:///nse-1.sock")
        XCTAssertEqual(peers.closes.count, 0)
    }

    func testAnUnusableAnswerIsRefusedAndTheNextHopClosed() async throws {
        let cases: [(String, @Sendable (inout Connection_Connection) -> Void)] = [
            ("carries no mechanism", { $0.clearMechanism() }),
            ("must use LOCAL", { $0.mechanism.cls = Mech.remote; $0.mechanism.type = Mech.vxlan }),
            ("1 path segment", { $0.path.pathSegments = [$0.path.pathSegments[0]] }),
        ]
        for (i, (text, spoil)) in cases.enumerated() {
            peers.setAnswer { url, req in
                var c = try FakePeers.memifEndpoint()(url, req)
                spoil(&c)
                return c
            }
            var r = request()
            let e = await expectNSMError { try await NSMNext([self.element()]).request(&r) }
            XCTAssertEqual(e?.code, .failedPrecondition, text)
            XCTAssertTrue(e?.description.contains(text) ?? false, "\(String(describing: e)) lacks \(text)")
            XCTAssertEqual(peers.closes.count, i + 1, "\(text): the next hop is closed")
            XCTAssertNil(r.state.nextHopURL)
        }
    }

    func testShortPathMessageNamesTheNextHopAndTheLengths() async throws {
        peers.setAnswer { url, req in
            var c = try FakePeers.memifEndpoint()(url, req)
            c.path.pathSegments = Array(c.path.pathSegments.prefix(2))
            return c
        }
        var r = request()
        let e = await expectNSMError { try await NSMNext([self.element()]).request(&r) }
        XCTAssertEqual(e?.code, .failedPrecondition)
        XCTAssertEqual(e?.description, "next hop: the next hop 'nse-1' at unix:///nse-1.sock answered with 2 path segment(s), but Weft's own segment is at index 2 of the 3 it sent")
        XCTAssertEqual(e?.rpc.code, .failedPrecondition)
    }

    /// A refresh whose answer is unusable leaves the connection standing: no Close.
    func testAnUnusableRefreshAnswerClosesNothing() async throws {
        peers.setAnswer { url, req in
            var c = try FakePeers.memifEndpoint()(url, req)
            c.path.pathSegments = [c.path.pathSegments[0]]
            return c
        }
        var r = request(refresh: true)
        let e = await expectNSMError { try await NSMNext([self.element()]).request(&r) }
        XCTAssertEqual(e?.code, .failedPrecondition)
        XCTAssertEqual(peers.closes.count, 0)
    }

    func testCloseReachesTheNextHopUnlessRebuildingOrShuttingDown() async throws {
        var st = ConnectionState(id: "weft-1")
        st.nextHopURL = .unix("/nse-1.sock")
        st.nextHop.id = "nse-view"
        for reason: NSMClose.Reason in [.close, .expired, .reselect, .rollback, .mechanismChanged, .shutdown] {
            var c = NSMClose(Connection_Connection(), reason: reason)
            c.state = st
            try await NSMNext([element()]).close(c)
        }
        XCTAssertEqual(peers.closes.count, 4)
        XCTAssertTrue(peers.closes.allSatisfy { $0.url == .unix("/nse-1.sock") && $0.connection.id == "nse-view" })
    }
}
