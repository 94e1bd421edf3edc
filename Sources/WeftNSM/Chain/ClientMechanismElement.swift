import Foundation
import WeftControl
import WeftNSMProto

/// NSM's mechanisms (client side) with filtermechanisms and mechanismpriority: offers
/// the next hop what fits its URL (LOCAL for unix, REMOTE otherwise, in
/// NSM_MECHANISM_PRIORITY order), then realizes the mechanism it chose (a veth pair
/// into the endpoint's pod, a memif socket, a VXLAN or VLAN side). A tunnel caps the
/// connection's MTU. A refresh offers the mechanism the connection has, and realizes
/// nothing.
struct ClientMechanismElement: NSMElement {
    let control: ControlPlane
    let plumbing: Plumbing
    let priority: [String]

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        if r.isRefresh {
            r.conn.mechanism = r.state.nextHop.mechanism
            r.clientPreferences = [r.state.nextHop.mechanism]
            return try await next.request(&r)
        }
        guard let url = r.nextHopURL else { throw NSMError(.internalError, "mechanism", "no next hop chosen") }
        r.conn.clearMechanism()
        r.clientPreferences = MechanismPolicy.clientPreferences(nextHopLocal: url.isLocal, connection: r.conn, priority: priority,
                                                                tunnel: plumbing.offeredTunnel)
        var result = try await next.request(&r)

        // ConnectElement checked that the answer carries a mechanism of the right class.
        let answer = r.state.nextHop, id = r.conn.id, first = r.firstSegmentID
        var undo: [() -> Void] = []
        let side: RealizedSide
        do {
            (side, _) = try await control.withKernel { [plumbing] in
                try plumbing.prepare(answer.mechanism, side: .client, connectionID: id, firstSegmentID: first,
                                     mtu: answer.context.mtu, viaLabel: answer.labels[Mech.via], undo: &undo)
            }
        } catch {
            if !undo.isEmpty { await control.withKernel { for u in undo.reversed() { u() } } }
            try? await next.close(r.rollback)
            throw error
        }
        r.state.client = side
        if let t = side.tunnelMTU {
            result.context.mtu = clampMTU(result.context.mtu, t)
            r.state.nextHop.context.mtu = clampMTU(r.state.nextHop.context.mtu, t)
        }
        return result
    }

    func close(_ c: NSMClose, next: NSMNext) async throws {
        if let s = c.state?.client { await control.withKernel { [plumbing] in plumbing.remove(s) } }
        try await next.close(c)
    }
}
