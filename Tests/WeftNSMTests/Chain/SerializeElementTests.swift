import Foundation
import Synchronization
import XCTest
@testable import WeftNSM
import WeftNSMProto

/// Gates the chain's end: each request records its start, waits for its gate to be
/// opened, records its end.
final class Gates: Sendable {
    struct State {
        var open: Set<String> = []
        var events: [String] = []
    }
    let state = Mutex(State())
    var events: [String] { state.withLock { $0.events } }
    func open(_ tag: String) { state.withLock { _ = $0.open.insert(tag) } }
    func record(_ e: String) { state.withLock { $0.events.append(e) } }
    func wait(_ tag: String) async {
        while !state.withLock({ $0.open.contains(tag) }) { try? await Task.sleep(nanoseconds: 1_000_000) }
    }
}

final class SerializeElementTests: XCTestCase {
    /// The probe tags requests by their network service, and waits for that tag's gate.
    func chain(_ gates: Gates, _ serial: KeyedSerial) -> NSMNext {
        let probe = Probe { r in
            let tag = r.conn.networkService
            gates.record("start \(tag)")
            await gates.wait(tag)
            gates.record("end \(tag)")
            return r.conn
        }
        return NSMNext([SerializeElement(serial: serial), probe])
    }

    func start(_ chain: NSMNext, id: String, tag: String) -> Task<Connection_Connection, Error> {
        Task {
            var r = pathedRequest(id: id, service: tag)
            return try await chain.request(&r)
        }
    }

    func testOneConnectionsRequestsRunOneAfterAnother() async throws {
        let gates = Gates(), serial = KeyedSerial()
        let chain = chain(gates, serial)
        let first = start(chain, id: "conn-1", tag: "a")
        let started = await eventually { gates.events == ["start a"] }
        XCTAssertTrue(started)
        let second = start(chain, id: "conn-1", tag: "b")
        // b waits behind a.
        try await Task.sleep(nanoseconds: 100_000_000)
        XCTAssertEqual(gates.events, ["start a"])
        gates.open("b")
        try await Task.sleep(nanoseconds: 50_000_000)
        XCTAssertEqual(gates.events, ["start a"], "b ran before a finished")
        gates.open("a")
        _ = try await first.value
        _ = try await second.value
        XCTAssertEqual(gates.events, ["start a", "end a", "start b", "end b"])
        let busy = await serial.busyKeys
        XCTAssertEqual(busy, [])
    }

    func testDifferentConnectionsRunSideBySide() async throws {
        let gates = Gates(), serial = KeyedSerial()
        let chain = chain(gates, serial)
        let a = start(chain, id: "conn-1", tag: "a")
        let b = start(chain, id: "conn-2", tag: "b")
        // Both are inside at once.
        let both = await eventually { Set(gates.events) == ["start a", "start b"] }
        XCTAssertTrue(both, "\(gates.events)")
        gates.open("b")
        _ = try await b.value
        XCTAssertEqual(gates.events.last, "end b", "b waited for a")
        gates.open("a")
        _ = try await a.value
    }

    func testAFailedRequestReleasesItsConnection() async throws {
        let serial = KeyedSerial()
        let failing = NSMNext([SerializeElement(serial: serial), Probe { _ in throw NSMError(.internalError, "t", "fails") }])
        var r = pathedRequest(id: "conn-1")
        let e = await expectNSMError { try await failing.request(&r) }
        XCTAssertEqual(e?.message, "fails")
        let busy = await serial.busyKeys
        XCTAssertEqual(busy, [])
        // The next one for that id runs.
        var again = pathedRequest(id: "conn-1")
        _ = try await NSMNext([SerializeElement(serial: serial), Probe()]).request(&again)
    }

    func testCloseAndExpiryQueueBehindARequest() async throws {
        let gates = Gates(), serial = KeyedSerial()
        let chain = chain(gates, serial)
        let req = start(chain, id: "conn-1", tag: "a")
        _ = await eventually { gates.events == ["start a"] }
        let closing = Task {
            var c = NSMClose(Connection_Connection(), reason: .expired)
            c.id = "conn-1"
            try await NSMNext([SerializeElement(serial: serial), Probe()]).close(c)
            gates.record("closed")
        }
        try await Task.sleep(nanoseconds: 50_000_000)
        XCTAssertEqual(gates.events, ["start a"])
        gates.open("a")
        _ = try await req.value
        try await closing.value
        XCTAssertEqual(gates.events, ["start a", "end a", "closed"])
    }

    /// Shutdown: what runs finishes, what comes later is refused.
    func testCloseWaitsForWorkInFlightThenRefuses() async throws {
        let gates = Gates(), serial = KeyedSerial()
        let chain = chain(gates, serial)
        let inFlight = start(chain, id: "conn-1", tag: "a")
        _ = await eventually { gates.events == ["start a"] }
        let closed = Task { await serial.close(); gates.record("serial closed") }
        try await Task.sleep(nanoseconds: 50_000_000)
        XCTAssertEqual(gates.events, ["start a"])
        gates.open("a")
        _ = try await inFlight.value
        await closed.value
        XCTAssertEqual(gates.events, ["start a", "end a", "serial closed"])
        var late = pathedRequest(id: "conn-2", service: "late")
        let e = await expectNSMError { try await chain.request(&late) }
        XCTAssertEqual(e?.code, .unavailable)
    }
}
