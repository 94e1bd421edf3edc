import Foundation
import Logging
import XCTest
@testable import WeftNSM
import WeftControl
import WeftModel
import WeftNSMProto

/// The whole forwarder chain over a fake dataplane and fake peers: MEMIF towards
/// the caller (a socket file of Weft's) and MEMIF in the endpoint's "pod"
/// (weftd's own namespace), so nothing is created on the machine but a
/// directory in a temporary runtime directory.
final class ForwarderTests: XCTestCase {
    var node: FakeNode!
    var peers: FakePeers!
    var forwarder: Forwarder!

    override func setUp() {
        node = FakeNode()
        peers = FakePeers()
        peers.add(service: "svc")
        peers.add(endpoint: "nse-1", service: "svc", url: "unix:///nse-1.sock")
        forwarder = Forwarder(settings: NSMFixtures.settings, control: node.control, peers: peers, clock: ManualClock(),
                              logger: Logger(label: "test"))
    }

    override func tearDown() async throws {
        await forwarder.shutdown()
        node.remove()
    }

    func testBuildRefreshClose() async throws {
        let req = NSMFixtures.memifRequest()
        let conn = try await forwarder.request(req)
        // The caller's view: its own index and id.
        XCTAssertEqual(conn.id, req.connection.id)
        XCTAssertEqual(conn.path.index, 1)
        XCTAssertEqual(conn.path.pathSegments.map(\.name), ["nsc", "nsmgr", "weft", "nse-1"])
        XCTAssertEqual(conn.mechanism.type, Mech.memif)
        XCTAssertNotNil(conn.mechanism.parameters[Mech.socketfile])
        XCTAssertEqual(conn.networkServiceEndpointName, "nse-1")
        let weftID = conn.path.pathSegments[2].id
        XCTAssertEqual(forwarder.connectionIDs, [weftID])
        XCTAssertEqual(peers.requests.count, 1)
        XCTAssertEqual(peers.requests[0].request.connection.id, weftID, "the endpoint sees Weft's segment id")
        XCTAssertTrue(peers.requests[0].request.mechanismPreferences.allSatisfy { $0.cls == Mech.local })
        XCTAssertEqual(node.control.snapshot.interfaces.count, 2)
        XCTAssertEqual(node.control.snapshot.crossConnects.count, 1)
        XCTAssertEqual(node.memifDirs.count, 1)
        XCTAssertNotNil(conn.path.pathSegments[2].metrics["server_rx_bytes"])

        // Refresh: the next hop is asked again, nothing is rebuilt.
        let attaches = node.dataplane.log.filter { $0.hasPrefix("attach") }.count
        var again = Networkservice_NetworkServiceRequest()
        again.connection = conn
        again.mechanismPreferences = req.mechanismPreferences
        let refreshed = try await forwarder.request(again)
        XCTAssertEqual(refreshed.id, conn.id)
        XCTAssertEqual(refreshed.path.pathSegments[2].id, weftID)
        XCTAssertEqual(peers.requests.count, 2)
        XCTAssertEqual(peers.requests[1].request.mechanismPreferences.map(\.type), [Mech.memif])
        XCTAssertEqual(node.dataplane.log.filter { $0.hasPrefix("attach") }.count, attaches)

        // Close: everything goes, the endpoint is closed.
        try await forwarder.close(refreshed)
        XCTAssertEqual(peers.closes.count, 1)
        XCTAssertEqual(peers.closes[0].url, .unix("/nse-1.sock"))
        XCTAssertEqual(forwarder.connectionIDs, [])
        XCTAssertEqual(node.control.snapshot.interfaces.count, 0)
        XCTAssertEqual(node.control.snapshot.crossConnects.count, 0)
        XCTAssertEqual(node.dataplane.ports, 0)
        XCTAssertEqual(node.memifDirs, [])

        // Closing it again: not found.
        let e = await expectNSMError { try await self.forwarder.close(refreshed) }
        XCTAssertEqual(e?.code, .notFound)
    }

    /// An answer without a path keeps Weft's own (as before).
    func testNextHopAnswerWithoutAPathKeepsWeftsPath() async throws {
        peers.setAnswer { _, req in
            var c = try FakePeers.memifEndpoint()(.unix("/nse-1.sock"), req)
            c.clearPath()
            return c
        }
        let conn = try await forwarder.request(NSMFixtures.memifRequest())
        XCTAssertEqual(conn.path.index, 1)
        XCTAssertEqual(conn.path.pathSegments.map(\.name), ["nsc", "nsmgr", "weft"])
    }
}
