import Crypto
import Foundation
import NIOCertificateReloading
import NIOCore
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// A SPIFFE ID: `spiffe://<trust domain>/<path>`.
public struct SPIFFEID: Hashable, Sendable, CustomStringConvertible {
    public let trustDomain: String
    public let path: String

    public init?(_ s: String) {
        guard s.hasPrefix("spiffe://") else { return nil }
        let rest = s.dropFirst("spiffe://".count)
        let td = rest.prefix { $0 != "/" }
        guard !td.isEmpty, td.allSatisfy({ $0.isLetter || $0.isNumber || "-._".contains($0) }), td == td.lowercased()
        else { return nil }
        trustDomain = String(td)
        path = String(rest.dropFirst(td.count))
        if path == "/" || path.hasSuffix("/") || path.contains("//") { return nil }
    }

    public var description: String { "spiffe://\(trustDomain)\(path)" }

    /// The SPIFFE ID of an X.509-SVID: its one `spiffe://` URI SAN.
    public static func of(_ cert: Certificate) -> SPIFFEID? {
        guard let sans = try? cert.extensions.subjectAlternativeNames else { return nil }
        var ids: [SPIFFEID] = []
        for case .uniformResourceIdentifier(let u) in sans { if let id = SPIFFEID(u) { ids.append(id) } }
        return ids.count == 1 ? ids[0] : nil
    }
}

/// One X.509-SVID as the Workload API hands it out, with its trust bundle.
public struct SVID: Sendable {
    public let id: SPIFFEID
    /// Leaf first.
    public let chain: [Certificate]
    let chainDER: [[UInt8]]
    public let key: P256.Signing.PrivateKey
    let keyDER: [UInt8]
    /// The CA certificates of the trust domain.
    public let bundle: [Certificate]
    public var notAfter: Date { chain[0].notValidAfter }

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// From the Workload API's fields: the chain and bundle as concatenated DER, the
    /// key as PKCS#8 DER.
    public init(spiffeID: String, chainDER: [UInt8], keyDER: [UInt8], bundleDER: [UInt8]) throws {
        guard let id = SPIFFEID(spiffeID) else { throw Invalid(description: "'\(spiffeID)' is not a SPIFFE ID") }
        let certs = try DERSequence.split(chainDER)
        guard !certs.isEmpty else { throw Invalid(description: "the SVID for \(spiffeID) has no certificate") }
        let parsed = try certs.map { try Certificate(derEncoded: $0) }
        guard SPIFFEID.of(parsed[0]) == id else { throw Invalid(description: "the SVID's certificate does not name \(spiffeID)") }
        let k: P256.Signing.PrivateKey
        do { k = try P256.Signing.PrivateKey(derRepresentation: keyDER) } catch {
            throw Invalid(description: "the SVID's key is not an ECDSA P-256 key in PKCS#8 DER (NSM's tokens are ES256)")
        }
        guard P256.Signing.PublicKey(parsed[0].publicKey)?.rawRepresentation == k.publicKey.rawRepresentation else {
            throw Invalid(description: "the SVID's key does not match its certificate")
        }
        let roots = try DERSequence.split(bundleDER).map { try Certificate(derEncoded: $0) }
        guard !roots.isEmpty else { throw Invalid(description: "the SVID for \(spiffeID) comes without a trust bundle") }
        self.id = id
        self.chain = parsed
        self.chainDER = certs
        self.key = k
        self.keyDER = keyDER
        self.bundle = roots
    }
}

/// Splits concatenated ASN.1 DER values (the Workload API's certificate lists).
enum DERSequence {
    static func split(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            guard bytes.count - i >= 2, bytes[i] == 0x30 else { throw SVID.Invalid(description: "certificate list is not DER (byte \(i))") }
            var len = Int(bytes[i + 1]), hdr = 2
            if len & 0x80 != 0 {
                let n = len & 0x7f
                guard n >= 1, n <= 4, bytes.count - i >= 2 + n else { throw SVID.Invalid(description: "bad DER length at byte \(i)") }
                len = 0
                for j in 0..<n { len = len << 8 | Int(bytes[i + 2 + j]) }
                hdr = 2 + n
            }
            guard len <= bytes.count - i - hdr else { throw SVID.Invalid(description: "DER value at byte \(i) runs past the end") }
            out.append(Array(bytes[i..<(i + hdr + len)]))
            i += hdr + len
        }
        return out
    }
}

/// Weft's identity: the current X.509-SVID (from the Workload API), what TLS presents
/// (a certificate reloader, so a rotation takes effect at the next handshake and live
/// connections stay up), how peers are verified (against the current bundle, by trust
/// domain) and how NSM tokens are made.
public final class IdentitySource: CertificateReloader, Sendable {
    private struct State {
        var svid: SVID?
        var rotations = 0
        var waiters: [CheckedContinuation<SVID?, Never>] = []
        var abandoned = false
    }
    private let state = Mutex(State())
    /// Trust domains whose members may connect (Weft's own by default: NSM's
    /// `tlsconfig.AuthorizeAny()` inside the bundle's trust domain).
    let allowedTrustDomains: Set<String>?
    let maxTokenLifetime: TimeInterval

    public init(maxTokenLifetime: TimeInterval, allowedTrustDomains: Set<String>? = nil) {
        self.maxTokenLifetime = maxTokenLifetime
        self.allowedTrustDomains = allowedTrustDomains
    }

    public var current: SVID? { state.withLock { $0.svid } }
    public var rotations: Int { state.withLock { $0.rotations } }

    /// A new SVID (the first, or a rotation).
    public func update(_ svid: SVID) {
        let waiters: [CheckedContinuation<SVID?, Never>] = state.withLock { s in
            if s.svid != nil { s.rotations += 1 }
            s.svid = svid
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: svid) }
    }

    /// The first SVID; nil if `abandonWaiters` gave up on it.
    public func first() async -> SVID? {
        await withCheckedContinuation { (c: CheckedContinuation<SVID?, Never>) in
            let now: SVID?? = state.withLock { s in
                if let v = s.svid { return .some(v) }
                if s.abandoned { return .some(nil) }
                s.waiters.append(c)
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }

    /// Wake every `first()` waiter with nil (the caller's time bound ran out).
    public func abandonWaiters() {
        let w = state.withLock { s -> [CheckedContinuation<SVID?, Never>] in
            s.abandoned = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for c in w { c.resume(returning: nil) }
    }

    // MARK: TLS

    public var sslContextConfigurationOverride: NIOSSLContextConfigurationOverride {
        var o = NIOSSLContextConfigurationOverride()
        guard let s = current,
              let certs = try? s.chainDER.map({ try NIOSSLCertificate(bytes: $0, format: .der) }),
              let key = try? NIOSSLPrivateKey(bytes: s.keyDER, format: .der)
        else { return o }
        o.certificateChain = certs.map { .certificate($0) }
        o.privateKey = .privateKey(key)
        return o
    }

    public struct PeerRefused: Error, CustomStringConvertible {
        public var description: String
    }

    /// Verifies a TLS peer's chain against the current bundle (RFC 5280, now) and
    /// authorizes it by trust domain. Returns the validated chain, leaf first.
    public func verify(peer certs: [NIOSSLCertificate]) async throws -> (SPIFFEID, [Certificate]) {
        guard let own = current else { throw PeerRefused(description: "no SVID yet") }
        guard !certs.isEmpty else { throw PeerRefused(description: "the peer sent no certificate") }
        let parsed = try certs.map { try Certificate(derEncoded: try $0.toDERBytes()) }
        var verifier = Verifier(rootCertificates: CertificateStore(own.bundle)) { RFC5280Policy(validationTime: Date()) }
        let result = await verifier.validate(leaf: parsed[0], intermediates: CertificateStore(parsed.dropFirst()))
        guard case .validCertificate(let chain) = result else {
            let why: String
            if parsed[0].notValidAfter <= Date() { why = "the peer's certificate expired at \(parsed[0].notValidAfter)" }
            else if parsed[0].notValidBefore > Date() { why = "the peer's certificate is not valid before \(parsed[0].notValidBefore)" }
            else { why = "the peer's certificate does not chain to the trust bundle of \(own.id.trustDomain)" }
            throw PeerRefused(description: why)
        }
        guard let id = SPIFFEID.of(parsed[0]) else { throw PeerRefused(description: "the peer's certificate has no single spiffe:// URI SAN") }
        let allowed = allowedTrustDomains ?? [own.id.trustDomain]
        guard allowed.contains(id.trustDomain) else {
            throw PeerRefused(description: "peer \(id) is not in trust domain \(allowed.sorted().joined(separator: ", "))")
        }
        return (id, Array(chain))
    }

    /// The TLS verification callback for NIOSSL: the peer's validated chain goes into
    /// the handshake's metadata (grpc-swift then shows it to handlers); `onPeer` learns
    /// the peer's ID (clients use it as their tokens' audience).
    public func verificationCallback(onPeer: (@Sendable (SPIFFEID, Certificate) -> Void)? = nil,
                                     onRefused: (@Sendable (String) -> Void)? = nil)
        -> @Sendable ([NIOSSLCertificate], EventLoopPromise<NIOSSLVerificationResultWithMetadata>) -> Void {
        { [self] certs, promise in
            Task {
                do {
                    let (id, chain) = try await self.verify(peer: certs)
                    onPeer?(id, chain[0])
                    let nio = try chain.map { c -> NIOSSLCertificate in
                        var s = DER.Serializer(); try s.serialize(c)
                        return try NIOSSLCertificate(bytes: s.serializedBytes, format: .der)
                    }
                    promise.succeed(.certificateVerified(VerificationMetadata(ValidatedCertificateChain(nio))))
                } catch {
                    onRefused?("\(error)")
                    promise.succeed(.failed)
                }
            }
        }
    }

    // MARK: Tokens

    /// NSM's token for one hop (sdk `spiffejwt.TokenGeneratorFunc`): `sub` = own ID,
    /// `aud` = the peer's, expiring after NSM_MAX_TOKEN_LIFETIME or with the own or the
    /// peer's certificate, whichever is first.
    public func token(audience: SPIFFEID?, peerNotAfter: Date? = nil, now: Date = Date()) throws -> (String, Date) {
        guard let s = current else { throw PeerRefused(description: "no SVID to sign a token with") }
        var exp = now.addingTimeInterval(maxTokenLifetime)
        if s.notAfter < exp { exp = s.notAfter }
        if let p = peerNotAfter, p < exp { exp = p }
        let t = NSMToken(subject: s.id.description, audience: audience.map { [$0.description] } ?? [], expires: exp)
        return (try t.sign(with: s.key), exp)
    }
}

