import XCTest
@testable import WeftNSM
import WeftNSMProto

private func seg(_ name: String, _ id: String = "", token: String = "") -> Connection_PathSegment {
    var s = Connection_PathSegment()
    s.name = name
    s.id = id
    s.token = token
    return s
}

private func path(_ index: UInt32, _ segs: [Connection_PathSegment]) -> Connection_Path {
    var p = Connection_Path()
    p.index = index
    p.pathSegments = segs
    return p
}

/// Ids handed out in order, and how many were asked for.
private final class IDs {
    var issued: [String] = []
    func next() -> String {
        let id = "new-\(issued.count + 1)"
        issued.append(id)
        return id
    }
}

final class PathOpsTests: XCTestCase {

    // MARK: update (reference §2.5)

    func testUpdateEmptyPathAddsOneSegmentAtIndexZero() throws {
        var p = Connection_Path()
        let ids = IDs()
        let prev = try PathOps.update(&p, name: "weft", newID: ids.next)
        XCTAssertEqual(prev, 0)
        XCTAssertEqual(p.index, 0)
        XCTAssertEqual(p.pathSegments.map(\.name), ["weft"])
        XCTAssertEqual(p.pathSegments.map(\.id), ["new-1"])
        XCTAssertEqual(ids.issued.count, 1)
    }

    func testUpdateAppendsOwnSegmentAfterCaller() throws {
        var p = path(1, [seg("nsc", "a"), seg("nsmgr", "b")])
        let ids = IDs()
        let prev = try PathOps.update(&p, name: "weft", newID: ids.next)
        XCTAssertEqual(prev, 1)
        XCTAssertEqual(p.index, 2)
        XCTAssertEqual(p.pathSegments.map(\.name), ["nsc", "nsmgr", "weft"])
        XCTAssertEqual(p.pathSegments.map(\.id), ["a", "b", "new-1"])
        XCTAssertEqual(ids.issued, ["new-1"])
    }

    func testUpdateRefreshReusesOwnSegmentAndKeepsTheRest() throws {
        var p = path(1, [seg("nsc", "a"), seg("nsmgr", "b"), seg("weft", "X", token: "t"), seg("nse", "d")])
        let ids = IDs()
        let prev = try PathOps.update(&p, name: "weft", newID: ids.next)
        XCTAssertEqual(prev, 1)
        XCTAssertEqual(p.index, 2)
        XCTAssertEqual(p.pathSegments.map(\.name), ["nsc", "nsmgr", "weft", "nse"])
        XCTAssertEqual(p.pathSegments.map(\.id), ["a", "b", "X", "d"])
        XCTAssertEqual(p.pathSegments[2].token, "t")
        XCTAssertEqual(ids.issued, [], "a refresh must not mint a new id")
    }

    func testUpdateReplacesAnotherHopsSegment() throws {
        var p = path(1, [seg("nsc", "a"), seg("nsmgr", "b"), seg("other-forwarder", "Y")])
        let ids = IDs()
        let prev = try PathOps.update(&p, name: "weft", newID: ids.next)
        XCTAssertEqual(prev, 1)
        XCTAssertEqual(p.index, 2)
        XCTAssertEqual(p.pathSegments.count, 3)
        XCTAssertEqual(p.pathSegments[2].name, "weft")
        XCTAssertEqual(p.pathSegments[2].id, "new-1")
        XCTAssertNotEqual(p.pathSegments[2].id, "Y")
    }

    func testUpdateOwnSegmentWithEmptyIDGetsOne() throws {
        var p = path(0, [seg("nsc", "a"), seg("weft", "")])
        let ids = IDs()
        _ = try PathOps.update(&p, name: "weft", newID: ids.next)
        XCTAssertEqual(p.index, 1)
        XCTAssertEqual(p.pathSegments[1].id, "new-1")
    }

    func testUpdateWhenCurrentSegmentIsAlreadyOursLeavesPathAlone() throws {
        var p = path(2, [seg("nsc", "a"), seg("nsmgr", "b"), seg("weft", "X")])
        let before = p
        let ids = IDs()
        let prev = try PathOps.update(&p, name: "weft", newID: ids.next)
        XCTAssertEqual(prev, 2)
        XCTAssertEqual(p, before)
        XCTAssertEqual(ids.issued, [])
    }

    func testUpdateIndexPastTheEndThrows() {
        var p = path(2, [seg("nsc", "a"), seg("nsmgr", "b")])
        let before = p
        XCTAssertThrowsError(try PathOps.update(&p, name: "weft", newID: { "x" })) { e in
            XCTAssertTrue("\(e)".contains("path.index 2"), "\(e)")
        }
        XCTAssertEqual(p, before)
        var far = path(7, [seg("nsc", "a")])
        XCTAssertThrowsError(try PathOps.update(&far, name: "weft", newID: { "x" }))
    }

    /// NSM's updatepath: the caller's connection id must be its segment's id; a given id
    /// on an empty path is kept.
    func testConnectionIDRulesOfTheSDK() throws {
        var p = path(1, [seg("nsc", "a"), seg("nsmgr", "b")])
        let before = p
        XCTAssertThrowsError(try PathOps.update(&p, name: "weft", connectionID: "not-b", newID: { "x" })) { e in
            XCTAssertTrue("\(e)".contains("'not-b' is not the id of path segment 1"), "\(e)")
        }
        XCTAssertEqual(p, before, "nothing changed by a refused update")
        XCTAssertEqual(try PathOps.update(&p, name: "weft", connectionID: "b", newID: { "x" }), 1)
        XCTAssertEqual(p.pathSegments[2].id, "x")
        var empty = Connection_Path()
        XCTAssertEqual(try PathOps.update(&empty, name: "weft", connectionID: "given", newID: { "x" }), 0)
        XCTAssertEqual(empty.pathSegments.map(\.id), ["given"])
        var emptyNoID = Connection_Path()
        _ = try PathOps.update(&emptyNoID, name: "weft", connectionID: "", newID: { "fresh" })
        XCTAssertEqual(emptyNoID.pathSegments.map(\.id), ["fresh"])
    }

    // MARK: matches (MonitorConnections scope, reference §1.1)

    private func connection(_ service: String, _ segs: [Connection_PathSegment]) -> Connection_Connection {
        var c = Connection_Connection()
        c.networkService = service
        c.path = path(0, segs)
        return c
    }

    private func selector(_ segs: [Connection_PathSegment], services: [String] = []) -> Connection_MonitorScopeSelector {
        var s = Connection_MonitorScopeSelector()
        s.pathSegments = segs
        s.networkServices = services
        return s
    }

    func testEmptySelectorMatchesEverything() {
        let c = connection("svc", [seg("nsc", "1"), seg("weft", "2")])
        XCTAssertTrue(PathOps.matches(Connection_MonitorScopeSelector(), c))
        XCTAssertTrue(PathOps.matches(Connection_MonitorScopeSelector(), Connection_Connection()))
    }

    func testSelectorMatchesContiguousRunWithWildcards() {
        let c = connection("svc", [seg("nsc", "1"), seg("nsmgr", "2"), seg("weft", "3"), seg("nse", "4")])
        // What the NSMgr sends: its own segment.
        XCTAssertTrue(PathOps.matches(selector([seg("nsmgr", "2")]), c))
        // Empty id and empty name are wildcards.
        XCTAssertTrue(PathOps.matches(selector([seg("nsmgr"), seg("", "3")]), c))
        XCTAssertTrue(PathOps.matches(selector([seg("", ""), seg("weft", "3"), seg("nse")]), c))
        XCTAssertTrue(PathOps.matches(selector([seg("nsc", "1"), seg("nsmgr", "2"), seg("weft", "3"), seg("nse", "4")]), c))
        // A set field must agree.
        XCTAssertFalse(PathOps.matches(selector([seg("nsmgr", "9")]), c))
        XCTAssertFalse(PathOps.matches(selector([seg("other", "2")]), c))
        XCTAssertFalse(PathOps.matches(selector([seg("nsmgr", "2", token: "tok")]), c))
        // Order matters.
        XCTAssertFalse(PathOps.matches(selector([seg("weft"), seg("nsmgr")]), c))
    }

    func testSelectorDoesNotMatchNonContiguousSegments() {
        let c = connection("svc", [seg("nsc", "1"), seg("nsmgr", "2"), seg("weft", "3")])
        XCTAssertFalse(PathOps.matches(selector([seg("nsc", "1"), seg("weft", "3")]), c))
        XCTAssertFalse(PathOps.matches(selector([seg("nsc"), seg("nsmgr"), seg("weft"), seg("nse")]), c),
                       "a selector longer than the path")
    }

    func testSelectorNetworkServicesFilter() {
        let c = connection("svc-a", [seg("nsc", "1"), seg("weft", "2")])
        XCTAssertTrue(PathOps.matches(selector([], services: ["svc-a"]), c))
        XCTAssertTrue(PathOps.matches(selector([], services: ["svc-b", "svc-a"]), c))
        XCTAssertFalse(PathOps.matches(selector([], services: ["svc-b"]), c))
        XCTAssertTrue(PathOps.matches(selector([seg("weft", "2")], services: ["svc-a"]), c))
        XCTAssertFalse(PathOps.matches(selector([seg("weft", "2")], services: ["svc-b"]), c))
        XCTAssertFalse(PathOps.matches(selector([seg("weft", "9")], services: ["svc-a"]), c))
    }

    // MARK: matchEndpoints (NSM's MatchEndpoint, reference §5)

    private let svc = "my-service"

    private func nse(_ name: String, _ labels: [String: String], service: String? = nil) -> Registry_NetworkServiceEndpoint {
        var e = Registry_NetworkServiceEndpoint()
        e.name = name
        e.networkServiceNames = [service ?? svc]
        var l = Registry_NetworkServiceLabels()
        l.labels = labels
        e.networkServiceLabels = [service ?? svc: l]
        return e
    }

    private func match(source: [String: String] = [:], routes: [[String: String]] = [],
                       fallthrough ft: Bool = false, metadata: [String: String]? = nil) -> Registry_Match {
        var m = Registry_Match()
        m.sourceSelector = source
        m.routes = routes.map { var d = Registry_Destination(); d.destinationSelector = $0; return d }
        m.fallthrough = ft
        if let metadata { m.metadata.labels = metadata }
        return m
    }

    private func service(_ matches: [Registry_Match]) -> Registry_NetworkService {
        var s = Registry_NetworkService()
        s.name = svc
        s.matches = matches
        return s
    }

    private lazy var red = nse("red-1", ["color": "red"])
    private lazy var blue = nse("blue-1", ["color": "blue"])
    private lazy var red2 = nse("red-2", ["color": "red", "zone": "a"])
    private var all: [Registry_NetworkServiceEndpoint] { [red, blue, red2] }

    private func names(_ e: [Registry_NetworkServiceEndpoint]) -> [String] { e.map(\.name) }

    func testNoMatchesReturnsAllEndpoints() {
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: ["app": "x"], service: service([]), endpoints: all)),
                       ["red-1", "blue-1", "red-2"])
    }

    func testDestinationSelectorPicksEndpointsByTheirLabelsForThisService() {
        // "red-elsewhere" is red only for another service: it does not qualify.
        let elsewhere = nse("red-elsewhere", ["color": "red"], service: "other-service")
        let s = service([match(routes: [["color": "red"]])])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: [:], service: s, endpoints: all + [elsewhere])),
                       ["red-1", "red-2"])
        let z = service([match(routes: [["color": "red", "zone": "a"]])])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: [:], service: z, endpoints: all)), ["red-2"])
    }

    func testSourceSelectorNotSatisfiedGoesToNextMatch() {
        let s = service([
            match(source: ["app": "special"], routes: [["color": "red"]]),
            match(routes: [["color": "blue"]]),
        ])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: ["app": "plain"], service: s, endpoints: all)), ["blue-1"])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: ["app": "special"], service: s, endpoints: all)), ["red-1", "red-2"])
    }

    func testNoMatchAppliesReturnsNone() {
        // NSM returns nil when matches exist but no source selector applies.
        let s = service([match(source: ["app": "special"], routes: [["color": "red"]])])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: ["app": "plain"], service: s, endpoints: all)), [])
    }

    func testFallthroughWithNoCandidatesGoesOn() {
        let ft = service([
            match(routes: [["color": "green"]], fallthrough: true),
            match(routes: [["color": "blue"]]),
        ])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: [:], service: ft, endpoints: all)), ["blue-1"])
        // Without fallthrough the first applicable match decides, even with no candidates.
        let noFt = service([
            match(routes: [["color": "green"]]),
            match(routes: [["color": "blue"]]),
        ])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: [:], service: noFt, endpoints: all)), [])
        // Fallthrough with candidates stops there.
        let ftHit = service([
            match(routes: [["color": "red"]], fallthrough: true),
            match(routes: [["color": "blue"]]),
        ])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: [:], service: ftHit, endpoints: all)), ["red-1", "red-2"])
    }

    func testMetadataWithNoRoutesReturnsAll() {
        let s = service([match(metadata: ["my_forwarder_capability": "true"])])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: [:], service: s, endpoints: all)), ["red-1", "blue-1", "red-2"])
        // Empty metadata counts as set.
        let e = service([match(metadata: [:])])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: [:], service: e, endpoints: all)), ["red-1", "blue-1", "red-2"])
        // No metadata and no routes: nothing.
        let none = service([match()])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: [:], service: none, endpoints: all)), [])
    }

    /// NSM's MatchEndpoint (sdk pkg/tools/matchutils/utils.go) checks `fallthrough` before the
    /// metadata rule: a fallthrough Match with metadata and no routes has no candidates and so
    /// moves on to the next Match; it does not return every endpoint.
    func testFallthroughMatchWithMetadataAndNoRoutesGoesOnLikeNSM() {
        let s = service([
            match(fallthrough: true, metadata: ["my_forwarder_capability": "true"]),
            match(routes: [["color": "blue"]]),
        ])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: [:], service: s, endpoints: all)), ["blue-1"])
    }

    func testTemplateValueExpandedFromConnectionLabels() {
        let a = nse("nse-a", ["app": "nsc-a"])
        let b = nse("nse-b", ["app": "nsc-b"])
        let s = service([match(routes: [["app": "{{ .podName }}"]])])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: ["podName": "nsc-b"], service: s, endpoints: [a, b])), ["nse-b"])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: ["podName": "nsc-a"], service: s, endpoints: [a, b])), ["nse-a"])
        // Templates in a source selector too, with text around them.
        let src = service([match(source: ["app": "x-{{.podName}}"], routes: [["app": "nsc-a"]])])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: ["podName": "p", "app": "x-p"], service: src, endpoints: [a, b])), ["nse-a"])
        XCTAssertEqual(names(PathOps.matchEndpoints(labels: ["podName": "q", "app": "x-p"], service: src, endpoints: [a, b])), [])
    }

    func testIsSubset() {
        XCTAssertTrue(PathOps.isSubset(["a": "1", "b": "2"], [:], connection: [:]))
        XCTAssertTrue(PathOps.isSubset(["a": "1", "b": "2"], ["a": "1"], connection: [:]))
        XCTAssertFalse(PathOps.isSubset(["a": "1"], ["a": "2"], connection: [:]))
        XCTAssertFalse(PathOps.isSubset(["a": "1"], ["b": "1"], connection: [:]))
        XCTAssertTrue(PathOps.isSubset(["node": "n1"], ["node": "{{ .nodeName }}"], connection: ["nodeName": "n1"]))
    }

    // MARK: RoundRobin

    func testRoundRobinRotatesStartPerService() {
        let rr = RoundRobin()
        XCTAssertEqual(rr.order("s", ["a", "b", "c"]), ["a", "b", "c"])
        XCTAssertEqual(rr.order("s", ["a", "b", "c"]), ["b", "c", "a"])
        XCTAssertEqual(rr.order("s", ["a", "b", "c"]), ["c", "a", "b"])
        XCTAssertEqual(rr.order("s", ["a", "b", "c"]), ["a", "b", "c"])
        // Another service has its own turn.
        XCTAssertEqual(rr.order("t", ["x", "y"]), ["x", "y"])
        XCTAssertEqual(rr.order("t", ["x", "y"]), ["y", "x"])
        XCTAssertEqual(rr.order("s", ["a", "b", "c"]), ["b", "c", "a"])
        // An empty list does not use a turn.
        XCTAssertEqual(rr.order("s", [String]()), [])
        XCTAssertEqual(rr.order("s", ["a", "b", "c"]), ["c", "a", "b"])
    }

    func testRoundRobinCandidateListShrinking() {
        let rr = RoundRobin()
        _ = rr.order("s", ["a", "b", "c"])
        _ = rr.order("s", ["a", "b", "c"])
        // Turn 2 over two candidates wraps to the first.
        XCTAssertEqual(rr.order("s", ["a", "b"]), ["a", "b"])
        XCTAssertEqual(rr.order("s", ["a", "b"]), ["b", "a"])
    }
}
