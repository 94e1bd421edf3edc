import Foundation
import Logging
import Synchronization
import XCTest
@testable import WeftNSM
import WeftControl
import WeftDataplane
import WeftModel
import WeftNSMProto

/// A dataplane that records what it is asked and touches nothing: ports and
/// tunnels get fresh ids; counters are derived from the port id (so metrics
/// tests can tell the sides apart). `failCrossConnects` makes every
/// cross-connect fail (a dataplane refusal).
final class FakeDataplane: DataplaneDriving, Sendable {
    struct State {
        var nextPort: UInt16 = 0
        var nextSlot: UInt32 = 0
        var ports: Set<UInt16> = []
        var memifs: [UInt16: Dataplane.MemifSettings] = [:]
        var slots: Set<UInt32> = []
        var failCrossConnects = false
        var log: [String] = []
    }
    let state = Mutex(State())

    var failCrossConnects: Bool {
        get { state.withLock { $0.failCrossConnects } }
        set { state.withLock { $0.failCrossConnects = newValue } }
    }
    var ports: Int { state.withLock { $0.ports.count } }
    var crossConnects: Int { state.withLock { $0.slots.count } }
    var log: [String] { state.withLock { $0.log } }

    private func newPort(_ what: String) -> PortID {
        state.withLock { s in
            s.nextPort += 1
            s.ports.insert(s.nextPort)
            s.log.append("attach \(what) \(s.nextPort)")
            return PortID(s.nextPort)
        }
    }

    func attach(devargs: String, rxQueues: UInt16, mtu: UInt16, promiscuous: Bool, netns: String?) throws -> PortID { newPort(devargs) }
    func attachKernel(ifname: String, netns: String?, backend: KernelBackend, rxQueues: UInt16, promiscuous: Bool,
                      fixPeerChecksum: Bool) throws -> PortID { newPort("kernel \(ifname)") }
    func attachMemif(_ m: Dataplane.MemifSettings) throws -> PortID {
        let p = newPort("memif \(m.socket)")
        state.withLock { $0.memifs[p.raw] = m }
        return p
    }
    func createTestPort(name: String) throws -> PortID { newPort("ring \(name)") }
    func detach(_ port: PortID) throws {
        state.withLock { s in
            s.ports.remove(port.raw)
            s.memifs[port.raw] = nil
            s.log.append("detach \(port.raw)")
        }
    }
    func info(_ port: PortID) throws -> PortInfo {
        PortInfo(deviceName: "fake\(port.raw)", driver: "fake", mac: "02:00:00:00:00:01", linkUp: true, speedMbps: 0,
                 rxQueues: 1, txQueues: 1, mtu: 1500, rxWorkers: [], txIPv4ChecksumOffload: false)
    }
    func memifStatus(_ port: PortID) -> MemifStatus? { nil }
    func pollLinks() -> Int { 0 }
    func destroy() {}
    func hold() {}
    func release() throws {}
    func addVLAN(uplink: PortID, id: UInt16) throws -> SideID { SideID(raw: 0x8000_0000 | UInt32(id)) }
    func addVXLAN(uplink: PortID, vni: UInt32, remote: [UInt8], dstPort: UInt16, localPort: UInt16) throws -> SideID {
        SideID(raw: 0x8000_0000 | vni)
    }
    func deleteTunnel(_ side: SideID) throws {}
    func setUnderlay(_ port: PortID, _ u: Dataplane.Underlay) throws {}
    func clearUnderlay(_ port: PortID) throws {}
    func addStaticNeighbour(_ port: PortID, ip: [UInt8], mac: [UInt8]) throws {}
    func neighbours() -> [Neighbour] { [] }
    func addCrossConnect(_ a: SideID, _ b: SideID) throws -> XCSlot {
        try state.withLock { s in
            if s.failCrossConnects { throw ApplyError(message: "fake dataplane refuses cross-connects") }
            s.nextSlot += 1
            s.slots.insert(s.nextSlot)
            s.log.append("xc \(a.raw)-\(b.raw)")
            return XCSlot(s.nextSlot)
        }
    }
    func deleteCrossConnect(_ slot: XCSlot) throws { state.withLock { _ = $0.slots.remove(slot.raw) } }
    func addReplication(ingress: SideID, members: [SideID], cloneMinBytes: UInt32) throws -> (Dataplane.P2MPID, [XCSlot]) {
        throw ApplyError(message: "not in the fake")
    }
    func addBridge(members: [(side: SideID, shg: UInt16)], settings: Dataplane.BridgeSettings) throws -> (Dataplane.P2MPID, [XCSlot]) {
        throw ApplyError(message: "not in the fake")
    }
    func updateP2MP(_ id: Dataplane.P2MPID, members: [(side: SideID, shg: UInt16)]) throws -> [XCSlot] { [] }
    func deleteP2MP(_ id: Dataplane.P2MPID) throws {}
    func bridgeMACs(_ id: Dataplane.P2MPID) -> [MACEntry] { [] }
    func bridgeStats(_ id: Dataplane.P2MPID) -> BridgeStats { BridgeStats(learned: 0, moves: 0, flooded: 0, limitDrops: 0) }
    /// Port n: n*100 bytes and n packets each way, n drops.
    func counters(_ port: PortID) -> InterfaceCounters {
        let n = UInt64(port.raw)
        return InterfaceCounters(rxPackets: n, rxBytes: n * 100, txPackets: n + 1, txBytes: (n + 1) * 100, drops: ["fake": n])
    }
    func counters(_ slot: XCSlot) -> CrossConnectCounters { CrossConnectCounters() }
    func workerStats() -> [WorkerStats] { [] }
    var dropReasons: [(name: String, description: String, stage: String)] { [("fake", "fake drop", "fake")] }
}

/// The registry and the next hops, in memory. `answer` plays the next hop.
final class FakePeers: NSMPeers {
    typealias Answer = @Sendable (NSMURL, Networkservice_NetworkServiceRequest) throws -> Connection_Connection
    struct State {
        var services: [String: Registry_NetworkService] = [:]
        var endpoints: [Registry_NetworkServiceEndpoint] = []
        var requests: [(url: NSMURL, request: Networkservice_NetworkServiceRequest)] = []
        var closes: [(url: NSMURL, connection: Connection_Connection)] = []
        var answer: Answer
    }
    let state: Mutex<State>

    init(answer: @escaping Answer = FakePeers.memifEndpoint()) { state = Mutex(State(answer: answer)) }

    var requests: [(url: NSMURL, request: Networkservice_NetworkServiceRequest)] { state.withLock { $0.requests } }
    var closes: [(url: NSMURL, connection: Connection_Connection)] { state.withLock { $0.closes } }
    func setAnswer(_ a: @escaping Answer) { state.withLock { $0.answer = a } }

    func add(service name: String, matches: [Registry_Match] = []) {
        var s = Registry_NetworkService()
        s.name = name
        s.matches = matches
        state.withLock { $0.services[name] = s }
    }

    func add(endpoint name: String, service: String, url: String, labels: [String: String] = [:]) {
        var e = Registry_NetworkServiceEndpoint()
        e.name = name
        e.networkServiceNames = [service]
        e.url = url
        var l = Registry_NetworkServiceLabels()
        l.labels = labels
        e.networkServiceLabels = [service: l]
        state.withLock { $0.endpoints.append(e) }
    }

    func findService(_ name: String) async throws -> Registry_NetworkService? { state.withLock { $0.services[name] } }

    func findEndpoints(service: String?, name: String?) async throws -> [Registry_NetworkServiceEndpoint] {
        state.withLock { s in
            s.endpoints.filter { e in
                (service.map { e.networkServiceNames.contains($0) } ?? true) && (name.map { e.name == $0 } ?? true)
            }
        }
    }

    func request(_ url: NSMURL, _ req: Networkservice_NetworkServiceRequest) async throws -> Connection_Connection {
        let answer = state.withLock { s in
            s.requests.append((url, req))
            return s.answer
        }
        return try answer(url, req)
    }

    func close(_ url: NSMURL, _ conn: Connection_Connection) async throws {
        state.withLock { $0.closes.append((url, conn)) }
    }

    /// A well-behaved local endpoint: it appends its own segment and answers with
    /// MEMIF in its "pod" (weftd's own namespace: nothing is created there).
    static func memifEndpoint(name: String = "nse-1") -> Answer {
        { _, req in
            var c = req.connection
            let i = Int(c.path.index) + 1
            if i >= c.path.pathSegments.count {
                var s = Connection_PathSegment()
                s.name = name
                s.id = "id-" + name
                c.path.pathSegments.append(s)
            }
            var m = Connection_Mechanism()
            m.cls = Mech.local
            m.type = Mech.memif
            m.parameters[Mech.inodeURL] = "file:///proc/self/ns/net"
            c.mechanism = c.hasMechanism && !c.mechanism.type.isEmpty ? c.mechanism : m
            c.context.ipContext.srcIpAddrs = ["172.16.1.101/32"]
            c.context.ipContext.dstIpAddrs = ["172.16.1.100/32"]
            return c
        }
    }
}

/// A control plane over the fake dataplane, its runtime directory in a fresh
/// temporary directory (server-side MEMIF sockets go there).
struct FakeNode {
    let dataplane = FakeDataplane()
    let control: ControlPlane
    let runtimeDir: String

    init() {
        runtimeDir = NSTemporaryDirectory() + "weft-nsm-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: runtimeDir, withIntermediateDirectories: true)
        var base = WeftConfig()
        base.dataplane.workers = [1]
        base.admin.runtimeDir = runtimeDir
        base.admin.socket = runtimeDir + "/weftd.sock"
        control = ControlPlane(base: base, dataplane: dataplane, logger: Logger(label: "test"), state: nil)
    }

    /// Files left in the runtime directory's memif/ folder.
    var memifDirs: [String] { (try? FileManager.default.contentsOfDirectory(atPath: runtimeDir + "/memif")) ?? [] }

    func remove() { try? FileManager.default.removeItem(atPath: runtimeDir) }
}

enum NSMFixtures {
    static let settings: NSMSettings = {
        var s = NSMSettings()
        s.name = "weft"
        s.register = false
        return s
    }()

    static func segment(_ name: String, _ id: String) -> Connection_PathSegment {
        var s = Connection_PathSegment()
        s.name = name
        s.id = id
        return s
    }

    /// What an NSMgr sends: the path [nsc, nsmgr] at index 1, a MEMIF preference
    /// without a namespace (the socket is Weft's file).
    static func memifRequest(service: String = "svc", nscID: String = "nsc-1") -> Networkservice_NetworkServiceRequest {
        var r = Networkservice_NetworkServiceRequest()
        r.connection.id = "nsmgr-" + nscID
        r.connection.networkService = service
        r.connection.path.pathSegments = [segment("nsc", nscID), segment("nsmgr", "nsmgr-" + nscID)]
        r.connection.path.index = 1
        r.connection.labels = ["app": "nsc"]
        var m = Connection_Mechanism()
        m.cls = Mech.local
        m.type = Mech.memif
        r.mechanismPreferences = [m]
        return r
    }
}

/// The NSMError thrown by `body`, or a failure.
func expectNSMError<T>(_ body: () async throws -> T, file: StaticString = #filePath, line: UInt = #line) async -> NSMError? {
    do {
        _ = try await body()
        XCTFail("expected an NSMError", file: file, line: line)
    } catch let e as NSMError {
        return e
    } catch {
        XCTFail("expected an NSMError, got \(type(of: error)): \(error)", file: file, line: line)
    }
    return nil
}
