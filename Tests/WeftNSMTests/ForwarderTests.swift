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
    var clock: ManualClock!

    override func setUp() {
        node = FakeNode()
        peers = FakePeers()
        peers.add(service: "svc")
        peers.add(endpoint: "nse-1", service: "svc", url: "unix:///nse-1.sock")
        clock = ManualClock()
        forwarder = Forwarder(settings: NSMFixtures.settings, control: node.control, peers: peers, clock: clock,
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
        // Metrics from the dataplane's counters (the fake counts 100 bytes per port number).
        XCTAssertEqual(conn.path.pathSegments[2].metrics["server_rx_bytes"], "100")
        XCTAssertEqual(conn.path.pathSegments[2].metrics["client_rx_bytes"], "200")

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

    /// Path segment ids end up in kernel aliases: control characters (a NUL cut the alias
    /// short, found by fuzz_requests.py) and ids past an alias's length are refused
    /// before anything is built.
    func testControlCharactersAndOverlongIdsInThePathAreRefused() async throws {
        for bad in ["a\u{0}b", "line\nbreak", String(repeating: "x", count: 241)] {
            var req = NSMFixtures.memifRequest()
            req.connection.path.pathSegments[0].id = bad
            let e = await expectNSMError { _ = try await self.forwarder.request(req) }
            XCTAssertEqual(e?.code, .invalidArgument, bad)
        }
        var req = NSMFixtures.memifRequest()
        req.connection.path.pathSegments[1].name = "nsm\u{7f}gr"
        let e = await expectNSMError { _ = try await self.forwarder.request(req) }
        XCTAssertEqual(e?.code, .invalidArgument)
        XCTAssertEqual(peers.requests.count, 0)
        XCTAssertEqual(node.control.snapshot.interfaces.count, 0)
        // 240 bytes is fine.
        req = NSMFixtures.memifRequest()
        req.connection.path.pathSegments[0].id = String(repeating: "y", count: 240)
        let ok = try await forwarder.request(req)
        try await forwarder.close(ok)
    }

    /// A next hop that answers with a path shorter than Weft's own index used to trap
    /// weftd (index out of range in compose/metrics/callerView). Now: a clear error,
    /// everything rolled back, the next hop Closed, and the forwarder still serves.
    func testNextHopAnswerWithAShortPathIsRefusedAndRolledBack() async throws {
        for keep in [1, 2] {
            peers.setAnswer { _, req in
                var c = try FakePeers.memifEndpoint()(.unix("/nse-1.sock"), req)
                c.path.pathSegments = Array(c.path.pathSegments.prefix(keep))
                return c
            }
            let closesBefore = peers.closes.count
            let e = await expectNSMError { try await self.forwarder.request(NSMFixtures.memifRequest()) }
            XCTAssertEqual(e?.code, .failedPrecondition, "\(String(describing: e))")
            let text = e?.description ?? ""
            XCTAssertTrue(text.contains("nse-1") && text.contains("unix:///nse-1.sock"), text)
            XCTAssertTrue(text.contains("\(keep) path segment"), text)
            XCTAssertTrue(text.contains("index 2"), text)
            XCTAssertEqual(peers.closes.count, closesBefore + 1, "the misbehaving next hop is closed")
            XCTAssertEqual(forwarder.connectionIDs, [])
            XCTAssertEqual(node.control.snapshot.interfaces.count, 0)
            XCTAssertEqual(node.control.snapshot.crossConnects.count, 0)
            XCTAssertEqual(node.dataplane.ports, 0)
            XCTAssertEqual(node.memifDirs, [])
        }
        // Still serving.
        peers.setAnswer(FakePeers.memifEndpoint())
        let conn = try await forwarder.request(NSMFixtures.memifRequest())
        XCTAssertEqual(conn.path.pathSegments.count, 4)
    }

    /// A caller's expiry far in the future arms a timer that sleeps, rather than trapping
    /// weftd (nanoseconds overflow).
    func testACallersFarExpiryIsHarmless() async throws {
        let f = Forwarder(settings: NSMFixtures.settings, control: node.control, peers: peers, logger: Logger(label: "test"))
        _ = try await f.request(NSMFixtures.memifRequest(), peerExpires: Date(timeIntervalSince1970: 1e12))
        try await Task.sleep(nanoseconds: 50_000_000)
        XCTAssertEqual(f.connectionIDs.count, 1)
        await f.shutdown()
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

    func testMonitorSeesUpdatesAndTheDelete() async throws {
        let (_, stream) = await forwarder.monitor.subscribe(Connection_MonitorScopeSelector())!
        var events = stream.makeAsyncIterator()
        _ = await events.next() // initial state
        let conn = try await forwarder.request(NSMFixtures.memifRequest())
        let update = await events.next()
        XCTAssertEqual(update?.type, .update)
        let weftID = conn.path.pathSegments[2].id
        XCTAssertEqual(update?.connections[weftID]?.path.index, 2, "Weft's own view")
        try await forwarder.close(conn)
        let delete = await events.next()
        XCTAssertEqual(delete?.type, .delete)
        XCTAssertEqual(delete?.connections[weftID]?.state, .down)
    }

    func testUnrefreshedConnectionExpiresAndIsClosedEverywhere() async throws {
        let t0 = clock.now()
        _ = try await forwarder.request(NSMFixtures.memifRequest(), peerToken: "t", peerExpires: t0.addingTimeInterval(30))
        XCTAssertEqual(forwarder.connectionIDs.count, 1)
        let armed = await eventually { self.clock.pendingDeadlines == [t0.addingTimeInterval(30)] }
        XCTAssertTrue(armed)
        clock.advance(by: 31)
        let closed = await eventually { self.peers.closes.count == 1 }
        XCTAssertTrue(closed)
        XCTAssertEqual(forwarder.connectionIDs, [])
        XCTAssertEqual(node.control.snapshot.interfaces.count, 0)
        XCTAssertEqual(node.memifDirs, [])
    }

    func testRefreshPostponesTheExpiry() async throws {
        let t0 = clock.now()
        let conn = try await forwarder.request(NSMFixtures.memifRequest(), peerExpires: t0.addingTimeInterval(30))
        var again = Networkservice_NetworkServiceRequest()
        again.connection = conn
        again.mechanismPreferences = NSMFixtures.memifRequest().mechanismPreferences
        _ = try await forwarder.request(again, peerExpires: t0.addingTimeInterval(60))
        let rearmed = await eventually { self.clock.pendingDeadlines == [t0.addingTimeInterval(60)] }
        XCTAssertTrue(rearmed, "\(clock.pendingDeadlines)")
        clock.advance(by: 31)
        try await Task.sleep(nanoseconds: 50_000_000)
        XCTAssertEqual(forwarder.connectionIDs.count, 1)
        XCTAssertEqual(peers.closes.count, 0)
    }

    /// Failures after the next hop answered undo everything: kernel side, dataplane, next hop.
    func testADataplaneFailureRollsEverythingBack() async throws {
        node.dataplane.failCrossConnects = true
        let e = await expectNSMError { try await self.forwarder.request(NSMFixtures.memifRequest()) }
        XCTAssertEqual(e?.code, .internalError)
        XCTAssertEqual(e?.step, "dataplane")
        XCTAssertEqual(peers.closes.count, 1)
        XCTAssertEqual(forwarder.connectionIDs, [])
        XCTAssertEqual(node.control.snapshot.interfaces.count, 0)
        XCTAssertEqual(node.memifDirs, [])
    }

    func testAClientSideThatCannotBeRealizedRollsBack() async throws {
        peers.setAnswer { url, req in
            var c = try FakePeers.memifEndpoint()(url, req)
            c.mechanism.parameters[Mech.inodeURL] = "file:///no/such/namespace"
            return c
        }
        let e = await expectNSMError { try await self.forwarder.request(NSMFixtures.memifRequest()) }
        XCTAssertEqual(e?.code, .notFound)
        XCTAssertEqual(peers.closes.count, 1)
        XCTAssertEqual(node.memifDirs, [])
        XCTAssertEqual(node.dataplane.log, [])
    }

    func testRefusingEndpointsAreTriedInTurn() async throws {
        peers.add(endpoint: "nse-2", service: "svc", url: "unix:///nse-2.sock")
        peers.setAnswer { url, req in
            if url == .unix("/nse-1.sock") { throw NSMError(.unavailable, "test", "nse-1 is down") }
            return try FakePeers.memifEndpoint(name: "nse-2")(url, req)
        }
        let conn = try await forwarder.request(NSMFixtures.memifRequest())
        XCTAssertEqual(conn.networkServiceEndpointName, "nse-2")
        XCTAssertEqual(peers.requests.map(\.url), [.unix("/nse-1.sock"), .unix("/nse-2.sock")])
    }

    func testReselectClosesTheOldConnectionAtTheNextHopAndRebuilds() async throws {
        let conn = try await forwarder.request(NSMFixtures.memifRequest())
        let ports = node.dataplane.log.filter { $0.hasPrefix("attach") }.count
        var again = Networkservice_NetworkServiceRequest()
        again.connection = conn
        again.connection.state = .reselectRequested
        again.mechanismPreferences = NSMFixtures.memifRequest().mechanismPreferences
        let rebuilt = try await forwarder.request(again)
        XCTAssertEqual(peers.closes.count, 1)
        XCTAssertEqual(rebuilt.state, .up)
        XCTAssertEqual(rebuilt.path.pathSegments[2].id, conn.path.pathSegments[2].id)
        XCTAssertEqual(node.dataplane.log.filter { $0.hasPrefix("attach") }.count, ports + 2)
        XCTAssertFalse(peers.requests[1].request.connection.hasMechanism, "the next hop is asked afresh")
        XCTAssertEqual(forwarder.connectionIDs.count, 1)
        XCTAssertEqual(node.control.snapshot.interfaces.count, 2)
    }

    func testAnotherMechanismRebuildsWithoutClosingTheNextHop() async throws {
        let conn = try await forwarder.request(NSMFixtures.memifRequest())
        var again = Networkservice_NetworkServiceRequest()
        again.connection = conn
        again.connection.mechanism.parameters[Mech.inodeURL] = "file:///proc/thread-self/ns/net" // now in the caller's namespace
        again.mechanismPreferences = NSMFixtures.memifRequest().mechanismPreferences
        let rebuilt = try await forwarder.request(again)
        XCTAssertEqual(peers.closes.count, 0)
        XCTAssertEqual(peers.requests.count, 2)
        XCTAssertTrue(rebuilt.mechanism.parameters[Mech.socketfile]?.hasPrefix("@") ?? false, "\(rebuilt.mechanism)")
        XCTAssertEqual(node.memifDirs, [], "the old socket file went")
        XCTAssertEqual(node.control.snapshot.interfaces.count, 2)
    }

    /// Shutdown closes every connection locally (the next hops keep theirs) and refuses new requests.
    func testShutdownClosesLocallyAndRefusesNewRequests() async throws {
        _ = try await forwarder.request(NSMFixtures.memifRequest(nscID: "a"))
        _ = try await forwarder.request(NSMFixtures.memifRequest(nscID: "b"))
        XCTAssertEqual(forwarder.connectionIDs.count, 2)
        await forwarder.shutdown()
        XCTAssertEqual(forwarder.connectionIDs, [])
        XCTAssertEqual(peers.closes.count, 0)
        XCTAssertEqual(node.control.snapshot.interfaces.count, 0)
        XCTAssertEqual(node.memifDirs, [])
        let e = await expectNSMError { try await self.forwarder.request(NSMFixtures.memifRequest(nscID: "c")) }
        XCTAssertEqual(e?.code, .unavailable)
    }

    /// Many connections at once (per-connection serialization): all built, all closed.
    func testConcurrentConnections() async throws {
        let conns = try await withThrowingTaskGroup(of: Connection_Connection.self) { g in
            for i in 0..<16 { g.addTask { try await self.forwarder.request(NSMFixtures.memifRequest(nscID: "n\(i)")) } }
            var out: [Connection_Connection] = []
            for try await c in g { out.append(c) }
            return out
        }
        XCTAssertEqual(forwarder.connectionIDs.count, 16)
        XCTAssertEqual(node.control.snapshot.crossConnects.count, 16)
        try await withThrowingTaskGroup(of: Void.self) { g in
            for c in conns { g.addTask { try await self.forwarder.close(c) } }
            try await g.waitForAll()
        }
        XCTAssertEqual(forwarder.connectionIDs, [])
        XCTAssertEqual(node.control.snapshot.interfaces.count, 0)
        XCTAssertEqual(peers.closes.count, 16)
    }
}
