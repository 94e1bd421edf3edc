import Foundation
import WeftControl
import WeftModel
import WeftNSMProto

/// Path segment metrics (reference §10): on every successful Request, Weft's own
/// segment gets server_* / client_* rx/tx bytes and packets, drops and the interface,
/// from the dataplane's counters of the connection's two interfaces.
struct MetricsElement: NSMElement {
    let control: ControlPlane

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        var result = try await next.request(&r)
        let own = Int(result.path.index)
        // ConnectElement keeps Weft's index inside the path; checked again rather than trusted.
        if own < result.path.pathSegments.count {
            result.path.pathSegments[own].metrics = Self.metrics(await control.interfaceStatus(), server: r.state.server,
                                                                 client: r.state.client)
        }
        return result
    }

    func close(_ c: NSMClose, next: NSMNext) async throws { try await next.close(c) }

    static func metrics(_ status: [InterfaceStatus], server: RealizedSide?, client: RealizedSide?) -> [String: String] {
        let st = Dictionary(status.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        var m: [String: String] = [:]
        for (prefix, side) in [("server", server), ("client", client)] {
            guard let side, let s = st[side.interface.name] else { continue }
            let c = s.counters
            m["\(prefix)_rx_bytes"] = String(c.rxBytes)
            m["\(prefix)_tx_bytes"] = String(c.txBytes)
            m["\(prefix)_rx_packets"] = String(c.rxPackets)
            m["\(prefix)_tx_packets"] = String(c.txPackets)
            m["\(prefix)_drops"] = String(c.drops.values.reduce(0, +))
            m["\(prefix)_interface"] = side.type + "/" + (side.podIfName ?? side.socketfile ?? side.interface.name)
        }
        return m
    }
}
