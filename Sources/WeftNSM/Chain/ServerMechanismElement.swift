import Foundation
import Logging
import WeftControl
import WeftNSMProto

/// NSM's mechanisms (server side): realizes the mechanism towards the caller (KERNEL:
/// a veth pair into the caller's pod; MEMIF: the socket; VXLAN: the tunnel's VNI and
/// addresses) before anything is asked of the next hop, so a bad parameter fails
/// first; answers the caller with it. A tunnel caps the connection's MTU.
struct ServerMechanismElement: NSMElement {
    let control: ControlPlane
    let plumbing: Plumbing

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        // grpcfd: the caller's pod namespace came as an fd with the request (again on a
        // refresh: claimed so the proxy does not hold it).
        if let files = r.caller.files {
            let mechs = [r.received.connection.mechanism] + r.received.mechanismPreferences
            // A v1.1 memif's answer, sent back on a refresh, names Weft's own socket file:
            // no fd comes for it, and waiting for one cost every such refresh a second
            // (found by fuzz_requests.py).
            let ownFiles = Set(mechs.compactMap { m -> String? in
                guard Mech.isMemifSocketFile(m), let path = m.parameters[Mech.socketfile],
                      path.hasPrefix(plumbing.runtimeDir + "/memif/"), let u = m.parameters[Mech.inodeURL],
                      Mech.namesSocketFile(u, path: path) else { return nil }
                return u
            })
            for url in Set(mechs.compactMap { $0.parameters[Mech.inodeURL] }) where url.hasPrefix("inode://") && !ownFiles.contains(url) {
                if await files.claim(url, kind: .netns) {
                    plumbing.logger.debug("grpcfd: the caller's network namespace \(url) came as an fd")
                }
            }
        }
        if r.isRefresh {
            var result = try await next.request(&r)
            result.mechanism = r.state.serverMechanism
            return result
        }
        // Weft's dataplane cross-connects Ethernet frames; a memif in IP mode would need
        // an L3 cross-connect (not served yet).
        if r.conn.payload == "IP", r.serverMechanism.type == Mech.memif {
            throw NSMError(.failedPrecondition, "mechanism",
                           "\(r.serverMechanism.type) with IP payload is not served by this forwarder (Ethernet payload only)")
        }
        // The MTU goes to the veths and the dataplane: out of their range it failed there,
        // as INTERNAL, after the kernel work (found by fuzz_requests.py).
        try Self.checkMTU(r.conn.context.mtu, "context.MTU")
        // The kernel steps register their undo as they go.
        var undo: [() -> Void] = []
        let pref = r.serverMechanism, id = r.conn.id, first = r.firstSegmentID, mtu = UInt32(r.conn.context.mtu)
        let side: RealizedSide, mech: Connection_Mechanism
        do {
            (side, mech) = try await control.withKernel { [plumbing] in
                try plumbing.prepare(pref, side: .server, connectionID: id, firstSegmentID: first, mtu: mtu, undo: &undo)
            }
        } catch {
            await undoKernel(undo)
            throw error
        }
        r.state.server = side
        r.state.serverMechanism = mech
        if let t = side.tunnelMTU { r.conn.context.mtu = clampMTU(r.conn.context.mtu, t) }
        do {
            var result = try await next.request(&r)
            // Weft's own memif socket file (made by the dataplane, so only now) goes to the
            // caller as an fd; the answer, and what a refresh compares against, name it by
            // its inode URL.
            let answered = mech.type == Mech.memif ? Self.passingFiles(mech, to: r.caller.files) : mech
            r.state.serverMechanism = answered
            result.mechanism = answered
            return result
        } catch {
            await undoKernel(undo)
            throw error
        }
    }

    /// What the dataplane carries (WeftModel's Validator: interfaces' mtu); 0 is unset.
    static let mtuRange: ClosedRange<UInt32> = 68...9702

    static func checkMTU(_ mtu: UInt32, _ field: String, code: NSMError.Code = .invalidArgument) throws {
        guard mtu == 0 || mtuRange.contains(mtu) else {
            throw NSMError(code, "mechanism", "\(field) \(mtu) is out of range: 0 (unset) or \(mtuRange.lowerBound)..\(mtuRange.upperBound)")
        }
    }

    /// NSM's sendfd (server): a `file://` inodeURL of Weft's own (the v1.1 memif socket
    /// file) goes to the caller as its fd, and the parameter becomes its inode URL. (A
    /// KERNEL answer's inodeURL is the caller's own namespace: left as the caller sent it.)
    static func passingFiles(_ mech: Connection_Mechanism, to files: (any NSMFiles)?) -> Connection_Mechanism {
        guard let files, let u = mech.parameters[Mech.inodeURL], u.hasPrefix("file://"),
              let inode = files.send(path: String(u.dropFirst("file://".count))) else { return mech }
        var m = mech
        m.parameters[Mech.inodeURL] = inode
        return m
    }

    /// After the rest (the dataplane lets go of the interface first).
    func close(_ c: NSMClose, next: NSMNext) async throws {
        try await next.close(c)
        if let s = c.state?.server { await control.withKernel { [plumbing] in plumbing.remove(s) } }
    }

    private func undoKernel(_ undo: [() -> Void]) async {
        guard !undo.isEmpty else { return }
        await control.withKernel { for u in undo.reversed() { u() } }
    }
}
