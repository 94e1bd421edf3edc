import Foundation
import Logging
import WeftControl
import WeftNSMProto

/// The IP context inside both pods (addresses, routes, neighbours, MTU), as the next
/// hop answered it. A refresh sends the context as applied and applies the answer's
/// only when it changed.
struct ContextElement: NSMElement {
    let control: ControlPlane
    let plumbing: Plumbing
    let logger: Logger

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        if r.isRefresh { r.conn.context = r.state.context }
        let result = try await next.request(&r)
        let ctx = result.context
        if r.isRefresh {
            guard ctx != r.state.context else { return result }
            logger.info("connection \(r.conn.id): context changed on refresh; applying it")
            try await apply(ctx, r.state, previous: r.state.context)
            r.state.context = ctx
            return result
        }
        do {
            try await apply(ctx, r.state)
        } catch {
            let st = r.state
            await control.withKernel { [plumbing] in
                if let s = st.server { plumbing.removeContext(ctx, on: s) }
                if let s = st.client { plumbing.removeContext(ctx, on: s) }
            }
            try? await next.close(r.rollback)
            throw error
        }
        r.state.context = ctx
        return result
    }

    /// Policy rules live in the pods, not on the interfaces: removed here.
    func close(_ c: NSMClose, next: NSMNext) async throws {
        if let st = c.state, st.context.hasIpContext, !st.context.ipContext.policies.isEmpty {
            await control.withKernel { [plumbing] in
                if let s = st.server { plumbing.removeContext(st.context, on: s) }
                if let s = st.client { plumbing.removeContext(st.context, on: s) }
            }
        }
        try await next.close(c)
    }

    private func apply(_ ctx: Connectioncontext_ConnectionContext, _ st: ConnectionState,
                       previous: Connectioncontext_ConnectionContext? = nil) async throws {
        guard let server = st.server, let client = st.client else { return }
        try await control.withKernel { [plumbing] in
            try plumbing.applyContext(ctx, on: server, peer: client, previous: previous)
            try plumbing.applyContext(ctx, on: client, peer: server, previous: previous)
        }
    }
}
