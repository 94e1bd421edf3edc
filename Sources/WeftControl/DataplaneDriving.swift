import WeftDataplane
import WeftModel

/// What the control module asks of the dataplane: the seam between the
/// reconciler and the C core. `Dataplane` (WeftDataplane) is the real one;
/// the control module's unit tests drive a recording fake, without EAL.
///
/// Every call is made by the control actor (`ControlPlane`), one at a time.
/// Mutations are hitless: they publish a new table with one atomic store (or,
/// between `hold()` and `release()`, together at `release()`).
public protocol DataplaneDriving: AnyObject {
    // Ports
    func attach(devargs: String, rxQueues: UInt16, mtu: UInt16, promiscuous: Bool, netns: String?) throws -> PortID
    func attachKernel(ifname: String, netns: String?, backend: KernelBackend, rxQueues: UInt16, promiscuous: Bool,
                      fixPeerChecksum: Bool) throws -> PortID
    func attachMemif(_ m: Dataplane.MemifSettings) throws -> PortID
    func createTestPort(name: String) throws -> PortID
    func detach(_ port: PortID) throws
    func info(_ port: PortID) throws -> PortInfo
    func memifStatus(_ port: PortID) -> MemifStatus?
    @discardableResult func pollLinks() -> Int

    /// Stop the workers and free everything (after the last change).
    func destroy()

    // Publishing
    func hold()
    func release() throws

    // Tunnels and the underlay
    func addVLAN(uplink: PortID, id: UInt16) throws -> SideID
    func addVXLAN(uplink: PortID, vni: UInt32, remote: [UInt8], dstPort: UInt16, localPort: UInt16) throws -> SideID
    func deleteTunnel(_ side: SideID) throws
    func setUnderlay(_ port: PortID, _ u: Dataplane.Underlay) throws
    func clearUnderlay(_ port: PortID) throws
    func addStaticNeighbour(_ port: PortID, ip: [UInt8], mac: [UInt8]) throws
    func neighbours() -> [Neighbour]

    // Connections
    func addCrossConnect(_ a: SideID, _ b: SideID) throws -> XCSlot
    func offload(_ slot: XCSlot, _ mode: Dataplane.OffloadMode) throws
    func offloadStatus(_ slot: XCSlot) throws -> Dataplane.OffloadStatus
    /// Offloaded connections whose rules failed go back to software; how many did.
    func offloadCheck() -> Int
    func deleteCrossConnect(_ slot: XCSlot) throws
    func addReplication(ingress: SideID, members: [SideID], cloneMinBytes: UInt32) throws -> (Dataplane.P2MPID, [XCSlot])
    func addBridge(members: [(side: SideID, shg: UInt16)], settings: Dataplane.BridgeSettings) throws -> (Dataplane.P2MPID, [XCSlot])
    func updateP2MP(_ id: Dataplane.P2MPID, members: [(side: SideID, shg: UInt16)]) throws -> [XCSlot]
    func deleteP2MP(_ id: Dataplane.P2MPID) throws
    func bridgeMACs(_ id: Dataplane.P2MPID) -> [MACEntry]
    func bridgeStats(_ id: Dataplane.P2MPID) -> BridgeStats

    // Counters
    func counters(_ port: PortID) -> InterfaceCounters
    func counters(_ slot: XCSlot) -> CrossConnectCounters
    func workerStats() -> [WorkerStats]
    /// Drop reasons in the C core's order: name, description, stage.
    var dropReasons: [(name: String, description: String, stage: String)] { get }
    /// Table publishes so far and the work of the last one (nil: not counted).
    func publishStats() -> Dataplane.TableStats?

    // Packet trace
    func traceStart(port: PortID?, count: UInt32) throws
    func traceStop()
    func traceClear()
    func traceState() -> (armed: Bool, left: UInt32)
    func tracedFrames() -> [TracedFrame]

    // Capture
    func captureStart(_ s: CaptureSettings) throws
    func captureStop()
    func captureStatus() -> CaptureStatus?
}

extension DataplaneDriving {
    public func publishStats() -> Dataplane.TableStats? { nil }
    public func traceStart(port: PortID?, count: UInt32) throws { throw ApplyError(message: "this dataplane cannot trace") }
    public func traceStop() {}
    public func traceClear() {}
    public func traceState() -> (armed: Bool, left: UInt32) { (false, 0) }
    public func tracedFrames() -> [TracedFrame] { [] }
    public func captureStart(_ s: CaptureSettings) throws { throw ApplyError(message: "this dataplane cannot capture") }
    public func captureStop() {}
    public func captureStatus() -> CaptureStatus? { nil }
}

extension Dataplane: DataplaneDriving {
    public func publishStats() -> Dataplane.TableStats? { tableStats() }
    public var dropReasons: [(name: String, description: String, stage: String)] { DropReason.all }
}

/// Drivers without a NIC (the tests' fakes): nothing is ever offloaded.
public extension DataplaneDriving {
    func offload(_ slot: XCSlot, _ mode: Dataplane.OffloadMode) throws {
        if mode == .required { throw OffloadRefused(description: "offload required but not possible: this dataplane has no NIC") }
    }
    func offloadCheck() -> Int { 0 }
    func offloadStatus(_ slot: XCSlot) throws -> Dataplane.OffloadStatus {
        Dataplane.OffloadStatus(offloaded: false, why: "offload off", packets: [0, 0], bytes: [0, 0])
    }
}

struct OffloadRefused: Error, CustomStringConvertible {
    var description: String
}
