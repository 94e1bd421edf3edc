import Foundation
import Logging
import WeftControl
import WeftModel
import WeftNSMProto

/// The dataplane change: both sides' interfaces and the cross-connect between them,
/// in one transaction of the control actor, once the next hop has answered and its
/// side is realized. A refresh leaves the dataplane alone.
struct CrossConnectElement: NSMElement {
    let control: ControlPlane
    let logger: Logger

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        if r.isRefresh { return try await next.request(&r) }
        let result = try await next.request(&r)
        guard let server = r.state.server, let client = r.state.client else {
            try? await next.close(r.rollback)
            throw NSMError(.internalError, "dataplane", "connection \(r.conn.id) has no \(r.state.server == nil ? "server" : "client") side to cross-connect")
        }
        let xc = CrossConnectConfig(name: Names.crossConnect(r.conn.id), a: server.interface.name, b: client.interface.name)
        do {
            _ = try await control.applyDynamic(adding: [server.interface, client.interface], crossConnects: [xc], removing: [])
        } catch {
            try? await next.close(r.rollback)
            throw NSMError(.internalError, "dataplane", "\(error)")
        }
        r.state.crossConnect = xc.name
        return result
    }

    /// Before the rest: the dataplane lets go of the interfaces before they are removed.
    func close(_ c: NSMClose, next: NSMNext) async throws {
        if let st = c.state, let xc = st.crossConnect {
            let names: Set<String> = Set([xc] + [st.server, st.client].compactMap { $0?.interface.name })
            do {
                _ = try await control.applyDynamic(adding: [], crossConnects: [], removing: names)
            } catch {
                logger.error("connection \(st.id): dataplane teardown: \(error)")
            }
        }
        try await next.close(c)
    }
}
