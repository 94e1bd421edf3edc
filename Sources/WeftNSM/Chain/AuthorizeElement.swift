import Foundation
import SwiftProtobuf
import WeftNSMProto

/// NSM's updatetoken and authorize for a server (sdk `updatetoken.NewServer`,
/// `authorize.NewServer` with the default policies): Weft signs its own path segment's
/// token for the caller (ES256, `aud` = the caller's SPIFFE ID) and checks the path up
/// to its own segment: every token valid, chained, unexpired, and the caller's signed
/// by the caller's TLS key. A request without the caller's token expiry is refused
/// (NSM's timeout needs it). Refusals are PERMISSION_DENIED naming the policy.
///
/// With `security` nil (NSM_INSECURE) nothing is signed or checked.
struct AuthorizeElement: NSMElement {
    let security: NSMSecurity?
    let clock: NSMClock

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        guard let security else { return try await next.request(&r) }
        let own = r.ownIndex
        try authorize(caller: r.caller, ownIndex: own, prevIndex: Int(r.prevIndex), path: &r.conn.path, security: security)
        guard r.caller.expires != nil else {
            throw NSMError(.permissionDenied, "authorize", "the caller sent no token expiry (gRPC metadata \(NSMMetadata.expires))")
        }
        return try await next.request(&r)
    }

    func close(_ c: NSMClose, next: NSMNext) async throws {
        // Closes from outside are checked like requests; Weft's own (expiry, shutdown,
        // rollback) are not.
        if let security, let caller = c.caller {
            var path = c.connection.path
            let prev = Int(path.index)
            guard prev < path.pathSegments.count else {
                throw NSMError(.invalidArgument, "path", "connection.path.index \(prev) is past the last of \(path.pathSegments.count) segments")
            }
            if prev + 1 >= path.pathSegments.count { path.pathSegments.append(Connection_PathSegment()) }
            path.index = UInt32(prev + 1)
            if let t = caller.token { path.pathSegments[prev].token = t }
            try authorize(caller: caller, ownIndex: prev + 1, prevIndex: prev, path: &path, security: security)
        }
        try await next.close(c)
    }

    private func authorize(caller: NSMCaller, ownIndex own: Int, prevIndex prev: Int, path: inout Connection_Path,
                           security: NSMSecurity) throws {
        guard let callerID = caller.spiffeID, let cert = caller.certificate else {
            throw NSMError(.permissionDenied, "authorize", "the caller presented no SPIFFE X.509-SVID (mutual TLS is required)")
        }
        guard prev != own else {
            throw NSMError(.permissionDenied, "authorize", "the path has no segment before Weft's (a caller must sign its own)")
        }
        let (tok, exp) = try security.identity.token(audience: callerID, peerNotAfter: cert.notValidAfter, now: clock.now())
        path.pathSegments[own].token = tok
        path.pathSegments[own].expires = Google_Protobuf_Timestamp(date: exp)
        do {
            try TokenPolicy.check(tokens: path.pathSegments[0...own].map(\.token), index: own, peerKey: caller.peerKey, now: clock.now())
        } catch let d as TokenPolicy.Denied {
            throw NSMError(.permissionDenied, "authorize", "policy \(d.rule) failed: \(d.detail)")
        }
    }
}
