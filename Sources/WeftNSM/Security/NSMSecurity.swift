import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// What the caller of a Request or Close proved and sent: its TLS identity and its
/// token (gRPC metadata `nsm-client-token` / `nsm-client-token-expires`), how long it
/// waits (`grpc-timeout`), and where fds it passed can be found.
public struct NSMCaller: Sendable {
    public var token: String?
    public var expires: Date?
    public var spiffeID: SPIFFEID?
    public var certificate: Certificate?
    /// The caller's deadline, relative (NSM's timeout subtracts it from the expiry).
    public var requestTimeout: TimeInterval = 0
    /// Fds the caller passed on this connection (grpcfd), by inode URL.
    public var files: (any NSMFiles)?

    public init(token: String? = nil, expires: Date? = nil) {
        self.token = token
        self.expires = expires
    }

    var peerKey: P256.Signing.PublicKey? { certificate.flatMap { P256.Signing.PublicKey($0.publicKey) } }

    /// From a server call's metadata and transport context.
    static func from(metadata: Metadata, context: ServerContext) -> NSMCaller {
        var c = NSMCaller()
        c.token = metadata[stringValues: NSMMetadata.token].first(where: { _ in true })
        c.expires = metadata[stringValues: NSMMetadata.expires].first(where: { _ in true }).flatMap(RFC3339.parse)
        c.requestTimeout = metadata[stringValues: "grpc-timeout"].first(where: { _ in true }).flatMap(GRPCTimeout.parse) ?? 0
        if let t = context.transportSpecific as? HTTP2ServerTransport.Posix.Context, let cert = t.peerCertificate {
            c.certificate = cert
            c.spiffeID = SPIFFEID.of(cert)
        }
        return c
    }
}

/// Where a caller's or a next hop's passed fds are found (grpcfd's `inode://dev/ino`).
public protocol NSMFiles: Sendable {
    /// An fd the peer sent with that inode URL, waiting up to `timeout`; the caller owns it.
    func take(_ inodeURL: String, timeout: Duration) async -> Int32?
    /// Pass the file at `path` to the peer (it rides on the next bytes sent); its inode URL.
    func send(path: String) -> String?
}

enum NSMMetadata {
    static let token = "nsm-client-token"
    static let expires = "nsm-client-token-expires"
    /// The registry path (NSM's grpcmetadata), JSON.
    static let path = "path"
}

/// RFC 3339 times as NSM's Go code writes them (`time.RFC3339Nano`: any number of
/// fraction digits, `Z` or a numeric offset).
enum RFC3339 {
    static func parse(_ s: String) -> Date? {
        let u = Array(s.utf8)
        guard u.count >= 20 else { return nil }
        func num(_ a: Int, _ n: Int) -> Int? {
            guard a + n <= u.count else { return nil }
            var v = 0
            for b in u[a..<(a + n)] { guard b >= 48, b <= 57 else { return nil }; v = v * 10 + Int(b - 48) }
            return v
        }
        guard let y = num(0, 4), u[4] == 45, let mo = num(5, 2), u[7] == 45, let d = num(8, 2),
              u[10] == 84 || u[10] == 116, let h = num(11, 2), u[13] == 58, let mi = num(14, 2), u[16] == 58,
              let sec = num(17, 2) else { return nil }
        var i = 19
        var frac = 0.0
        if i < u.count, u[i] == 46 {
            i += 1
            var scale = 0.1
            let start = i
            while i < u.count, u[i] >= 48, u[i] <= 57 { frac += Double(u[i] - 48) * scale; scale /= 10; i += 1 }
            guard i > start else { return nil }
        }
        guard i < u.count else { return nil }
        var offset = 0
        if u[i] == 90 || u[i] == 122 { i += 1 } else if u[i] == 43 || u[i] == 45 {
            guard let oh = num(i + 1, 2), u.count > i + 3, u[i + 3] == 58, let om = num(i + 4, 2) else { return nil }
            offset = (oh * 3600 + om * 60) * (u[i] == 45 ? -1 : 1)
            i += 6
        } else { return nil }
        guard i == u.count else { return nil }
        var c = DateComponents()
        c.year = y; c.month = mo; c.day = d; c.hour = h; c.minute = mi; c.second = sec
        c.timeZone = TimeZone(identifier: "UTC")
        guard let base = Calendar(identifier: .gregorian).date(from: c) else { return nil }
        return base.addingTimeInterval(frac - Double(offset))
    }

    static func format(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: d)
    }
}

/// gRPC's `grpc-timeout` header: digits and a unit (H, M, S, m, u, n).
enum GRPCTimeout {
    static func parse(_ s: String) -> TimeInterval? {
        guard let unit = s.last, let v = Double(s.dropLast()), v >= 0 else { return nil }
        switch unit {
        case "H": return v * 3600
        case "M": return v * 60
        case "S": return v
        case "m": return v / 1e3
        case "u": return v / 1e6
        case "n": return v / 1e9
        default: return nil
        }
    }
}

/// Weft's security as an NSM forwarder: mutual TLS with its X.509-SVID on every
/// server and client, and NSM's path tokens. `nil` where weftd runs insecure
/// (NSM_INSECURE, for labs and tests only).
public final class NSMSecurity: Sendable {
    public let identity: IdentitySource
    let logger: Logger

    public init(identity: IdentitySource, logger: Logger) {
        self.identity = identity
        self.logger = logger
    }

    /// Servers: the SVID (reloaded at each handshake), a client certificate required
    /// and verified against the current bundle, the peer authorized by trust domain.
    public func serverSecurity() throws -> HTTP2ServerTransport.Posix.TransportSecurity {
        let roots = trustRoots()
        return try .mTLS(certificateReloader: identity) { [identity, logger] c in
            c.clientCertificateVerification = .noHostnameVerification
            c.trustRoots = roots
            c.customVerificationCallback = identity.verificationCallback(onRefused: { why in
                logger.warning("NSM API: TLS client refused: \(why)")
            })
        }
    }

    /// Clients: the SVID, the server verified the same way; `peer` learns who it is.
    func clientSecurity(peer: PeerBox) throws -> HTTP2ClientTransport.Posix.TransportSecurity {
        let roots = trustRoots()
        return try .mTLS(certificateReloader: identity) { [identity] c in
            c.serverCertificateVerification = .noHostnameVerification
            c.trustRoots = roots
            c.customVerificationCallback = identity.verificationCallback(
                onPeer: { id, cert in peer.set(id, cert) }, onRefused: { why in peer.refuse(why) })
        }
    }

    /// The trust roots TLS is configured with: the bundle at the time (the verification
    /// callback checks against the current one). Never the system's store, which a
    /// container may not have and which must not authorize NSM peers.
    func trustRoots() -> TLSConfig.TrustRootsSource {
        let der: [[UInt8]] = (identity.current?.bundle ?? []).compactMap { c in
            var s = DER.Serializer()
            return (try? s.serialize(c)).map { s.serializedBytes }
        }
        return .certificates(der.map { .bytes($0, format: .der) })
    }

    /// The metadata of one call to a verified peer: NSM's token for it.
    func metadata(for peer: PeerBox, timeout: Duration) async throws -> (Metadata, Certificate) {
        guard let (id, cert) = await peer.wait(timeout: timeout) else {
            throw RPCError(code: .unavailable, message: "TLS with the peer did not complete: \(peer.refusal ?? "timed out")")
        }
        let (tok, exp) = try identity.token(audience: id, peerNotAfter: cert.notValidAfter)
        var md: Metadata = [:]
        md.addString(tok, forKey: NSMMetadata.token)
        md.addString(RFC3339.format(exp), forKey: NSMMetadata.expires)
        return (md, cert)
    }
}

/// A client connection's verified peer, once the TLS handshake ran.
final class PeerBox: Sendable {
    private struct State {
        var peer: (SPIFFEID, Certificate)?
        var refusal: String?
    }
    private let state = Mutex(State())

    func set(_ id: SPIFFEID, _ cert: Certificate) { state.withLock { $0.peer = (id, cert) } }
    func refuse(_ why: String) { state.withLock { $0.refusal = why } }
    var refusal: String? { state.withLock { $0.refusal } }

    /// The verified peer, or nil when the handshake failed or did not finish in time
    /// (polled: a handshake takes a few milliseconds and happens once per connection).
    func wait(timeout: Duration) async -> (SPIFFEID, Certificate)? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (p, r) = state.withLock { ($0.peer, $0.refusal) }
            if let p { return p }
            if r != nil || ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(2))
        }
    }
}
