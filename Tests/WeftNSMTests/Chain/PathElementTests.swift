import Foundation
import SwiftProtobuf
import XCTest
@testable import WeftNSM
import WeftNSMProto

final class PathElementTests: XCTestCase {
    let clock = ManualClock()
    let table = ConnectionTable()

    func element() -> PathElement {
        PathElement(name: "weft", maxTokenLifetime: 600, clock: clock, newID: { "new-id" }, table: table)
    }

    func testStepsToItsOwnSegmentAndGivesTheCallerItsViewBack() async throws {
        let probe = Probe()
        var r = NSMRequest(NSMFixtures.memifRequest(), caller: NSMCaller(token: "jwt-of-nsmgr", expires: clock.now().addingTimeInterval(30)))
        let out = try await NSMNext([element(), probe]).request(&r)

        // Inside the chain: Weft's index and id; the caller's token and expiry in its segment.
        let seen = try XCTUnwrap(probe.requests.first)
        XCTAssertEqual(seen.conn.path.index, 2)
        XCTAssertEqual(seen.conn.id, "new-id")
        XCTAssertEqual(seen.conn.path.pathSegments.map(\.name), ["nsc", "nsmgr", "weft"])
        XCTAssertEqual(seen.prevIndex, 1)
        XCTAssertEqual(seen.callerID, "nsmgr-nsc-1")
        XCTAssertEqual(seen.firstSegmentID, "nsc-1")
        XCTAssertEqual(seen.conn.path.pathSegments[1].token, "jwt-of-nsmgr")
        XCTAssertEqual(seen.conn.path.pathSegments[1].expires.date, clock.now().addingTimeInterval(30))
        XCTAssertEqual(seen.conn.path.pathSegments[2].expires.date, clock.now().addingTimeInterval(600))

        // Back to the caller: its index and id.
        XCTAssertEqual(out.path.index, 1)
        XCTAssertEqual(out.id, "nsmgr-nsc-1")
    }

    func testFirstHopGetsOneSegment() async throws {
        let probe = Probe()
        var req = NSMFixtures.memifRequest()
        req.connection.clearPath()
        var r = NSMRequest(req)
        let out = try await NSMNext([element(), probe]).request(&r)
        let seen = try XCTUnwrap(probe.requests.first)
        XCTAssertEqual(seen.conn.path.pathSegments.map(\.name), ["weft"])
        XCTAssertEqual(seen.conn.path.index, 0)
        XCTAssertEqual(seen.prevIndex, 0)
        XCTAssertEqual(out.id, "nsmgr-nsc-1", "a given id on an empty path is kept (NSM's updatepath)")
        XCTAssertEqual(out.path.index, 0)
        var anonymous = NSMFixtures.memifRequest()
        anonymous.connection.clearPath()
        anonymous.connection.id = ""
        var r2 = NSMRequest(anonymous)
        let out2 = try await NSMNext([element(), Probe()]).request(&r2)
        XCTAssertEqual(out2.id, "new-id")
    }

    func testRefreshKeepsItsSegmentID() async throws {
        let probe = Probe()
        var req = NSMFixtures.memifRequest()
        req.connection.path.pathSegments.append(NSMFixtures.segment("weft", "weft-7"))
        var r = NSMRequest(req)
        _ = try await NSMNext([element(), probe]).request(&r)
        XCTAssertEqual(probe.requests.first?.conn.id, "weft-7")
        XCTAssertEqual(probe.requests.first?.conn.path.pathSegments.count, 3)
    }

    func testBadRequestsAreRefusedBeforeTheChain() async throws {
        let probe = Probe()
        var noConn = NSMRequest(Networkservice_NetworkServiceRequest())
        var e = await expectNSMError { try await NSMNext([self.element(), probe]).request(&noConn) }
        XCTAssertEqual(e?.code, .invalidArgument)

        var req = NSMFixtures.memifRequest()
        req.connection.networkService = ""
        var noService = NSMRequest(req)
        e = await expectNSMError { try await NSMNext([self.element(), probe]).request(&noService) }
        XCTAssertEqual(e?.code, .invalidArgument)
        XCTAssertTrue(e?.message.contains("network_service") ?? false)

        req = NSMFixtures.memifRequest()
        req.connection.path.index = 7
        var pastEnd = NSMRequest(req)
        e = await expectNSMError { try await NSMNext([self.element(), probe]).request(&pastEnd) }
        XCTAssertEqual(e?.code, .invalidArgument)
        XCTAssertTrue(e?.message.contains("index 7") ?? false, "\(String(describing: e))")
        XCTAssertEqual(probe.requests.count, 0)
    }

    /// Whatever comes back, the caller's view is made without indexing past the path.
    func testCallerViewOfAShortPathDoesNotTrap() {
        var c = Connection_Connection()
        c.path.pathSegments = [NSMFixtures.segment("x", "x-1")]
        let v = PathElement.callerView(c, prev: 3, callerID: "caller")
        XCTAssertEqual(v.id, "caller")
        XCTAssertEqual(v.path.index, 3)
    }

    func testCloseFindsWeftsIDFromTheCallersView() async throws {
        let probe = Probe()
        let chain = NSMNext([element(), probe])
        // The caller's view: its index, Weft's segment next.
        var c = Connection_Connection()
        c.id = "nsmgr-1"
        c.path.pathSegments = [NSMFixtures.segment("nsc", "nsc-1"), NSMFixtures.segment("nsmgr", "nsmgr-1"),
                               NSMFixtures.segment("weft", "weft-1")]
        c.path.index = 1
        try await chain.close(NSMClose(c, reason: .close))
        // Weft's own view.
        c.path.index = 2
        try await chain.close(NSMClose(c, reason: .close))
        // Weft's id named directly, with no path.
        table["weft-2"] = ConnectionState(id: "weft-2")
        var direct = Connection_Connection()
        direct.id = "weft-2"
        try await chain.close(NSMClose(direct, reason: .close))
        // Unknown: the id as sent (Begin reports it).
        var unknown = Connection_Connection()
        unknown.id = "who"
        try await chain.close(NSMClose(unknown, reason: .close))
        XCTAssertEqual(probe.closes.map(\.id), ["weft-1", "weft-1", "weft-2", "who"])
    }
}
