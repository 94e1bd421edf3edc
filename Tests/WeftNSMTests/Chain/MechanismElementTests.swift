import Foundation
import Logging
import XCTest
@testable import WeftNSM
import WeftModel
import WeftNSMProto

private func mech(_ cls: String, _ type: String, _ params: [String: String] = [:]) -> Connection_Mechanism {
    var m = Connection_Mechanism()
    m.cls = cls
    m.type = type
    m.parameters = params
    return m
}

/// The two mechanism elements over a control plane with a fake dataplane; MEMIF
/// sides only (socket files in a temporary runtime directory, or abstract sockets
/// "in" weftd's own namespace), so nothing is created on the machine.
final class MechanismElementTests: XCTestCase {
    var node: FakeNode!
    var plumbing: Plumbing!

    override func setUp() {
        node = FakeNode()
        plumbing = Plumbing(logger: Logger(label: "test"), runtimeDir: node.runtimeDir, forwarderName: "weft",
                            node: { [control = node.control] in control.snapshot })
    }

    override func tearDown() { node.remove() }

    func server() -> ServerMechanismElement { ServerMechanismElement(control: node.control, plumbing: plumbing) }
    func client(priority: [String] = []) -> ClientMechanismElement {
        ClientMechanismElement(control: node.control, plumbing: plumbing, priority: priority)
    }

    // MARK: server side

    func testServerSideRealizesTheCallersMechanismFirst() async throws {
        var r = pathedRequest()
        r.serverMechanism = mech(Mech.local, Mech.memif)
        let probe = Probe()
        let out = try await NSMNext([server(), probe]).request(&r)
        // Realized before the rest ran; the caller gets Weft's parameters.
        XCTAssertNotNil(probe.requests.first?.state.server)
        XCTAssertEqual(node.memifDirs.count, 1)
        XCTAssertEqual(out.mechanism.type, Mech.memif)
        let socket = try XCTUnwrap(out.mechanism.parameters[Mech.socketfile])
        XCTAssertTrue(socket.hasPrefix(node.runtimeDir + "/memif/"), socket)
        XCTAssertEqual(r.state.serverMechanism, out.mechanism)

        // Close removes it, after the rest.
        var c = NSMClose(out, reason: .close)
        c.state = r.state
        try await NSMNext([server(), probe]).close(c)
        XCTAssertEqual(probe.closes.count, 1)
        XCTAssertEqual(node.memifDirs, [])
    }

    func testServerSideIsUndoneWhenTheRestFails() async throws {
        var r = pathedRequest()
        r.serverMechanism = mech(Mech.local, Mech.memif)
        let failing = Probe { _ in throw NSMError(.unavailable, "endpoint", "nobody") }
        _ = await expectNSMError { try await NSMNext([self.server(), failing]).request(&r) }
        XCTAssertEqual(failing.requests.count, 1)
        XCTAssertEqual(node.memifDirs, [])
    }

    func testABadServerParameterFailsBeforeTheNextHopIsAsked() async throws {
        var r = pathedRequest()
        r.serverMechanism = mech(Mech.local, Mech.kernel) // no inodeURL
        let probe = Probe()
        let e = await expectNSMError { try await NSMNext([self.server(), probe]).request(&r) }
        XCTAssertEqual(e?.code, .invalidArgument)
        XCTAssertEqual(probe.requests.count, 0)
    }

    func testMEMIFWithIPPayloadIsRefusedBeforeAnythingIsMade() async throws {
        var r = pathedRequest()
        r.conn.payload = "IP"
        r.serverMechanism = mech(Mech.local, Mech.memif)
        let probe = Probe()
        let e = await expectNSMError { try await NSMNext([self.server(), probe]).request(&r) }
        XCTAssertEqual(e?.code, .failedPrecondition)
        XCTAssertTrue(e?.message.contains("MEMIF with IP payload") ?? false, "\(String(describing: e))")
        XCTAssertEqual(probe.requests.count, 0)
        XCTAssertEqual(node.memifDirs, [])
    }

    func testServerSideOnRefreshRealizesNothing() async throws {
        var r = pathedRequest()
        r.isRefresh = true
        r.state.serverMechanism = mech(Mech.local, Mech.memif, [Mech.socketfile: "/already/there"])
        let out = try await NSMNext([server(), Probe()]).request(&r)
        XCTAssertEqual(out.mechanism.parameters[Mech.socketfile], "/already/there")
        XCTAssertEqual(node.memifDirs, [])
    }

    // MARK: client side

    func testClientSideOffersByTheNextHopsURL() async throws {
        let probe = Probe { r in
            throw NextHopRefused(underlying: NSMError(.unavailable, "t", "\(r.clientPreferences.map(\.type))"))
        }
        var local = pathedRequest()
        local.nextHopURL = .unix("/nse.sock")
        local.conn.mechanism = mech(Mech.local, Mech.kernel) // the caller's: never offered on
        _ = try? await NSMNext([client(priority: ["MEMIF"]), probe]).request(&local)
        var remote = pathedRequest()
        remote.nextHopURL = .tcp(host: "10.0.0.2", port: 5001)
        _ = try? await NSMNext([client(), probe]).request(&remote)
        let offers = probe.requests.map { $0.clientPreferences.map { "\($0.cls)/\($0.type)" } }
        XCTAssertEqual(offers, [["LOCAL/MEMIF", "LOCAL/KERNEL"], ["REMOTE/VLAN"]]) // no tunnel address: no VXLAN
        XCTAssertFalse(probe.requests[0].conn.hasMechanism)
        XCTAssertEqual(probe.requests[0].clientPreferences[1].parameters[Mech.name]?.count ?? 99 <= 15, true)
    }

    func testClientSideRealizesTheAnswersMechanism() async throws {
        var r = pathedRequest()
        r.nextHopURL = .unix("/nse.sock")
        let answering = Probe { r in
            r.state.nextHop = r.conn
            r.state.nextHop.mechanism = mech(Mech.local, Mech.memif, [Mech.inodeURL: "file:///proc/self/ns/net"])
            return r.conn
        }
        _ = try await NSMNext([client(), answering]).request(&r)
        let side = try XCTUnwrap(r.state.client)
        XCTAssertEqual(side.type, Mech.memif)
        XCTAssertEqual(side.interface.abstract, true)
        XCTAssertEqual(side.netns, "/proc/self/ns/net")
    }

    func testAnAnswerThatCannotBeRealizedClosesTheNextHop() async throws {
        var r = pathedRequest()
        r.nextHopURL = .unix("/nse.sock")
        let answering = Probe { r in
            r.state.nextHop = r.conn
            r.state.nextHopURL = r.nextHopURL
            r.state.nextHop.mechanism = mech(Mech.local, Mech.memif, [Mech.inodeURL: "file:///no/such/namespace"])
            return r.conn
        }
        let e = await expectNSMError { try await NSMNext([self.client(), answering]).request(&r) }
        XCTAssertEqual(e?.code, .notFound)
        XCTAssertEqual(answering.closes.map(\.reason), [.rollback])
        XCTAssertEqual(answering.closes.first?.state?.nextHopURL, .unix("/nse.sock"))
    }

    func testClientSideOnRefreshOffersWhatItHas() async throws {
        var r = pathedRequest()
        r.isRefresh = true
        r.state.nextHop.mechanism = mech(Mech.local, Mech.memif, [Mech.socketfile: "@/tmp/memif/x/memif.socket"])
        let probe = Probe()
        _ = try await NSMNext([client(), probe]).request(&r)
        XCTAssertEqual(probe.requests.first?.clientPreferences, [r.state.nextHop.mechanism])
        XCTAssertEqual(probe.requests.first?.conn.mechanism, r.state.nextHop.mechanism)
        XCTAssertNil(r.state.client)
    }
}

/// The dataplane and IP context elements, with ring interfaces standing in for the sides.
final class CrossConnectAndContextElementTests: XCTestCase {
    var node: FakeNode!
    override func setUp() { node = FakeNode() }
    override func tearDown() { node.remove() }

    func sides(_ r: inout NSMRequest, kernelNetns: String? = nil) {
        r.state.server = RealizedSide(side: .server, type: kernelNetns == nil ? Mech.memif : Mech.kernel,
                                      interface: InterfaceConfig(name: "srv", type: .ring), netns: kernelNetns,
                                      podIfName: kernelNetns == nil ? nil : "nsm-1")
        r.state.client = RealizedSide(side: .client, type: Mech.memif, interface: InterfaceConfig(name: "cli", type: .ring))
    }

    func xc() -> CrossConnectElement { CrossConnectElement(control: node.control, logger: Logger(label: "test")) }

    func testCrossConnectsBothSidesInOneChangeAndRemovesThem() async throws {
        var r = pathedRequest()
        sides(&r)
        _ = try await NSMNext([xc(), Probe()]).request(&r)
        XCTAssertEqual(node.control.snapshot.interfaces.map(\.name), ["srv", "cli"])
        XCTAssertEqual(node.control.snapshot.crossConnects.map(\.name), [Names.crossConnect("weft-1")])
        XCTAssertEqual(r.state.crossConnect, Names.crossConnect("weft-1"))

        let probe = Probe()
        var c = NSMClose(r.conn, reason: .close)
        c.state = r.state
        try await NSMNext([xc(), probe]).close(c)
        XCTAssertEqual(node.control.snapshot.interfaces.count, 0)
        XCTAssertEqual(node.control.snapshot.crossConnects.count, 0)
        XCTAssertEqual(probe.closes.count, 1)
    }

    func testADataplaneRefusalClosesTheRest() async throws {
        node.dataplane.failCrossConnects = true
        var r = pathedRequest()
        sides(&r)
        let probe = Probe()
        let e = await expectNSMError { try await NSMNext([self.xc(), probe]).request(&r) }
        XCTAssertEqual(e?.code, .internalError)
        XCTAssertEqual(e?.step, "dataplane")
        XCTAssertEqual(probe.closes.map(\.reason), [.rollback])
        XCTAssertEqual(node.control.snapshot.interfaces.count, 0, "the dataplane change was all or nothing")
    }

    func testARefreshLeavesTheDataplaneAlone() async throws {
        var r = pathedRequest()
        sides(&r)
        r.isRefresh = true
        _ = try await NSMNext([xc(), Probe()]).request(&r)
        XCTAssertEqual(node.dataplane.log, [])
    }

    func context(_ ip: String) -> Connectioncontext_ConnectionContext {
        var c = Connectioncontext_ConnectionContext()
        c.ipContext.srcIpAddrs = [ip]
        return c
    }

    func element() -> ContextElement {
        ContextElement(control: node.control, plumbing: Plumbing(logger: Logger(label: "test"), runtimeDir: node.runtimeDir,
                                                                 forwarderName: "weft", node: { WeftConfig() }),
                       logger: Logger(label: "test"))
    }

    func testContextIsTheAnswersAndARefreshSendsWhatIsApplied() async throws {
        var r = pathedRequest()
        sides(&r)
        let answering = Probe { r in
            var c = r.conn
            c.context = self.context("10.0.0.1/32")
            return c
        }
        _ = try await NSMNext([element(), answering]).request(&r)
        XCTAssertEqual(r.state.context, context("10.0.0.1/32"))

        // Refresh: the next hop is sent the applied context; a changed answer is taken.
        var refresh = pathedRequest()
        refresh.isRefresh = true
        refresh.state = r.state
        refresh.conn.context = context("192.0.2.9/32") // the caller's: not what the next hop gets
        let changing = Probe { r in
            var c = r.conn
            c.context = self.context("10.0.0.2/32")
            return c
        }
        _ = try await NSMNext([element(), changing]).request(&refresh)
        XCTAssertEqual(changing.requests.first?.conn.context, context("10.0.0.1/32"))
        XCTAssertEqual(refresh.state.context, context("10.0.0.2/32"))
    }

    func testAContextThatCannotBeAppliedClosesTheRest() async throws {
        var r = pathedRequest()
        sides(&r, kernelNetns: "/no/such/namespace")
        let probe = Probe()
        _ = await expectNSMError { try await NSMNext([self.element(), probe]).request(&r) }
        XCTAssertEqual(probe.closes.map(\.reason), [.rollback])
    }
}
