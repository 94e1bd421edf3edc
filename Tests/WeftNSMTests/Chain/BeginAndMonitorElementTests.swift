import Foundation
import Logging
import XCTest
@testable import WeftNSM
import WeftNSMProto

final class BeginElementTests: XCTestCase {
    let table = ConnectionTable()
    func begin() -> BeginElement { BeginElement(table: table, logger: Logger(label: "test")) }

    func request(_ mechanism: String = Mech.memif, params: [String: String] = [:]) -> NSMRequest {
        let base = pathedRequest()
        var received = base.received
        var m = Connection_Mechanism()
        m.cls = Mech.local
        m.type = mechanism
        m.parameters = params
        received.mechanismPreferences = [m]
        var r = NSMRequest(received)
        r.conn = base.conn
        r.prevIndex = base.prevIndex
        return r
    }

    /// The probe records what it saw and marks the state as its own.
    func probe() -> Probe {
        Probe { r in
            r.state.serverMechanism = r.serverMechanism
            r.state.nextHopURL = .unix("/nse.sock")
            return r.conn
        }
    }

    func testFirstRequestBuildsAndIsStored() async throws {
        let p = probe()
        var r = request()
        let out = try await NSMNext([begin(), p]).request(&r)
        XCTAssertEqual(p.requests.first?.isRefresh, false)
        XCTAssertEqual(p.requests.first?.serverMechanism.type, Mech.memif)
        XCTAssertEqual(table.ids, ["weft-1"])
        XCTAssertEqual(table["weft-1"]?.own, out)
        XCTAssertEqual(table["weft-1"]?.nextHopURL, .unix("/nse.sock"))
    }

    func testSameMechanismIsARefreshWithWhatTheConnectionHas() async throws {
        var r = request()
        _ = try await NSMNext([begin(), probe()]).request(&r)
        let p = probe()
        var again = request()
        again.conn.mechanism = table["weft-1"]!.serverMechanism
        _ = try await NSMNext([begin(), p]).request(&again)
        XCTAssertEqual(p.requests.first?.isRefresh, true)
        XCTAssertEqual(p.requests.first?.state.nextHopURL, .unix("/nse.sock"))
        XCTAssertEqual(p.closes.count, 0)
    }

    func testAnotherMechanismClosesHereAndRebuilds() async throws {
        var r = request(params: [Mech.inodeURL: "file:///a"])
        _ = try await NSMNext([begin(), probe()]).request(&r)
        let p = probe()
        var other = request(params: [Mech.inodeURL: "file:///b"])
        other.conn.mechanism = other.received.mechanismPreferences[0]
        _ = try await NSMNext([begin(), p]).request(&other)
        XCTAssertEqual(p.closes.map(\.reason), [.mechanismChanged])
        XCTAssertFalse(p.closes[0].closesNextHop)
        XCTAssertEqual(p.requests.first?.isRefresh, false)
        XCTAssertEqual(table.ids, ["weft-1"])
    }

    func testReselectClosesEverywhereAndStartsOver() async throws {
        var r = request()
        _ = try await NSMNext([begin(), probe()]).request(&r)
        let p = probe()
        var reselect = request()
        reselect.conn.state = .reselectRequested
        reselect.conn.networkServiceEndpointName = "nse-old"
        reselect.conn.mechanism = table["weft-1"]!.serverMechanism
        _ = try await NSMNext([begin(), p]).request(&reselect)
        XCTAssertEqual(p.closes.map(\.reason), [.reselect])
        XCTAssertTrue(p.closes[0].closesNextHop)
        let seen = try XCTUnwrap(p.requests.first)
        XCTAssertEqual(seen.isRefresh, false)
        XCTAssertEqual(seen.conn.state, .up)
        XCTAssertEqual(seen.conn.networkServiceEndpointName, "")
        XCTAssertEqual(seen.conn.mechanism.type, "")
    }

    func testAFailedRequestStoresNothingAndBadPreferencesAreRefused() async throws {
        var r = request()
        _ = await expectNSMError { try await NSMNext([self.begin(), Probe { _ in throw NSMError(.unavailable, "t", "x") }]).request(&r) }
        XCTAssertEqual(table.ids, [])
        var bad = request("WIREGUARD")
        let e = await expectNSMError { try await NSMNext([self.begin(), self.probe()]).request(&bad) }
        XCTAssertEqual(e?.code, .invalidArgument)
    }

    func testCloseRemovesTheConnectionAndUnknownIsNotFound() async throws {
        var r = request()
        _ = try await NSMNext([begin(), probe()]).request(&r)
        let p = Probe()
        var c = NSMClose(Connection_Connection(), reason: .close)
        c.id = "weft-1"
        try await NSMNext([begin(), p]).close(c)
        XCTAssertEqual(table.ids, [])
        XCTAssertEqual(p.closes.first?.state?.nextHopURL, .unix("/nse.sock"))
        // Again: not found; an expiry of a connection already gone: nothing.
        let e = await expectNSMError { try await NSMNext([self.begin(), p]).close(c) }
        XCTAssertEqual(e?.code, .notFound)
        c.reason = .expired
        try await NSMNext([begin(), p]).close(c)
        XCTAssertEqual(p.closes.count, 1)
    }
}

final class LimitTests: XCTestCase {
    /// New connections past nsm.max_connections_per_client / max_connections are refused
    /// with RESOURCE_EXHAUSTED naming the setting; refreshes never are.
    func testConnectionLimits() async throws {
        let table = ConnectionTable()
        let begin = BeginElement(table: table, logger: Logger(label: "t"), maxConnections: 3, maxPerClient: 2)
        func req(_ id: String, client: String) -> NSMRequest {
            var r = pathedRequest(id: id)
            r.conn.path.pathSegments[0].name = client
            var m = Connection_Mechanism(); m.cls = Mech.local; m.type = Mech.memif
            var rec = r.received; rec.mechanismPreferences = [m]
            var out = NSMRequest(rec); out.conn = r.conn; out.prevIndex = r.prevIndex
            return out
        }
        let stored = Probe { r in r.state.serverMechanism = r.serverMechanism; return r.conn }
        for (id, client) in [("a1", "pod-a"), ("a2", "pod-a")] {
            var r = req(id, client: client)
            _ = try await NSMNext([begin, stored]).request(&r)
        }
        var third = req("a3", client: "pod-a")
        let e = await expectNSMError { try await NSMNext([begin, stored]).request(&third) }
        XCTAssertEqual(e?.code, .resourceExhausted)
        XCTAssertTrue(e?.message.contains("nsm.max_connections_per_client") ?? false, "\(String(describing: e))")
        var refresh = req("a2", client: "pod-a")
        _ = try await NSMNext([begin, stored]).request(&refresh)
        var other = req("b1", client: "pod-b")
        _ = try await NSMNext([begin, stored]).request(&other)
        var fourth = req("c1", client: "pod-c")
        let e2 = await expectNSMError { try await NSMNext([begin, stored]).request(&fourth) }
        XCTAssertTrue(e2?.message.contains("nsm.max_connections)") ?? false, "\(String(describing: e2))")
        XCTAssertEqual(table.ids.sorted(), ["a1", "a2", "b1"])
    }

    /// Monitor streams are bounded in number, and a reader that falls behind loses its
    /// stream instead of growing weftd's memory.
    func testMonitorStreamLimits() async throws {
        let hub = MonitorHub(maxSubscribers: 1, maxQueued: 8)
        let first = await hub.subscribe(Connection_MonitorScopeSelector())
        XCTAssertNotNil(first)
        let second = await hub.subscribe(Connection_MonitorScopeSelector())
        XCTAssertNil(second, "a second stream past the limit")
        let refused = await hub.refused
        XCTAssertEqual(refused, 1)
        var c = Connection_Connection(); c.id = "x"
        for _ in 0..<20 { await hub.publish(.update, [c]) }  // nobody reads
        let overflowed = await hub.overflowed, count = await hub.subscriberCount
        XCTAssertEqual(overflowed, 1)
        XCTAssertEqual(count, 0)
        let ended = await hub.endedByOverflow(first!.0)
        XCTAssertTrue(ended)
        var n = 0
        for await _ in first!.1 { n += 1 }
        XCTAssertEqual(n, 8, "the queued events are still delivered, then the stream ends")
        let again = await hub.subscribe(Connection_MonitorScopeSelector())
        XCTAssertNotNil(again, "a new stream once the slow one is gone")
    }
}

final class MonitorElementTests: XCTestCase {
    func testUpdateOnRequestDeleteOnClose() async throws {
        let hub = MonitorHub()
        let (_, stream) = await hub.subscribe(Connection_MonitorScopeSelector())!
        var events = stream.makeAsyncIterator()
        let initial = await events.next()
        XCTAssertEqual(initial?.type, .initialStateTransfer)
        XCTAssertEqual(initial?.connections.count, 0)

        var r = pathedRequest()
        // A failure publishes nothing.
        _ = await expectNSMError { try await NSMNext([MonitorElement(hub: hub), Probe { _ in throw NSMError(.unavailable, "t", "x") }]).request(&r) }
        let out = try await NSMNext([MonitorElement(hub: hub), Probe()]).request(&r)
        let update = await events.next()
        XCTAssertEqual(update?.type, .update)
        XCTAssertEqual(update?.connections["weft-1"], out)

        var st = ConnectionState(id: "weft-1")
        st.own = out
        var c = NSMClose(out, reason: .close)
        c.state = st
        try await NSMNext([MonitorElement(hub: hub), Probe()]).close(c)
        let delete = await events.next()
        XCTAssertEqual(delete?.type, .delete)
        XCTAssertEqual(delete?.connections["weft-1"]?.state, .down)
        await hub.finishAll()
    }
}
