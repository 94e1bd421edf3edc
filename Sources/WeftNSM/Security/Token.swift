import Crypto
import Foundation

/// NSM's path tokens: compact JWS (JWT) signed ES256 with the hop's X.509-SVID key,
/// claims `sub` (own SPIFFE ID), `aud` (the peer's, as a one-element array, which is
/// how NSM's Go token library writes it and what its `tokens_chained` policy reads) and
/// `exp` (seconds). Nothing else is signed or expected.
public struct NSMToken: Equatable, Sendable {
    public var subject: String
    public var audience: [String]
    public var expires: Date
    /// `aud` was a JSON string, not an array: JWT allows it, NSM's tokens_chained
    /// policy (`p1.aud[_] == p2.sub`) does not.
    public var audienceIsString = false

    public init(subject: String, audience: [String], expires: Date) {
        self.subject = subject
        self.audience = audience
        self.expires = expires
    }

    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public var description: String
        init(_ d: String) { description = d }
    }

    /// The signed compact form.
    public func sign(with key: P256.Signing.PrivateKey) throws -> String {
        let header = #"{"alg":"ES256","typ":"JWT"}"#
        var claims: [String: Any] = ["sub": subject, "exp": Int64(expires.timeIntervalSince1970.rounded(.down))]
        if !audience.isEmpty { claims["aud"] = audience }
        let payload = try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])
        let input = Base64URL.encode(Data(header.utf8)) + "." + Base64URL.encode(payload)
        let sig = try key.signature(for: Data(input.utf8))
        return input + "." + Base64URL.encode(sig.rawRepresentation)
    }

    /// The claims of a compact JWS, without checking its signature (NSM's `tokens_valid`:
    /// the token decodes). `aud` may be a string or an array, as JWT allows.
    public static func decode(_ token: String) throws -> NSMToken {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw Invalid("not a JWT (\(parts.count) parts, want 3)") }
        guard let h = Base64URL.decode(parts[0]),
              let hj = try? JSONSerialization.jsonObject(with: h) as? [String: Any]
        else { throw Invalid("header is not base64url JSON") }
        guard hj["alg"] as? String != nil else { throw Invalid("header has no alg") }
        guard let p = Base64URL.decode(parts[1]),
              let pj = try? JSONSerialization.jsonObject(with: p) as? [String: Any]
        else { throw Invalid("payload is not base64url JSON") }
        guard Base64URL.decode(parts[2]) != nil else { throw Invalid("signature is not base64url") }
        let sub = pj["sub"] as? String ?? ""
        var aud: [String] = []
        var audString = false
        if let a = pj["aud"] as? String { aud = [a]; audString = true } else if let a = pj["aud"] as? [Any] { aud = a.compactMap { $0 as? String } }
        guard let exp = (pj["exp"] as? NSNumber)?.doubleValue else { throw Invalid("payload has no numeric exp") }
        var t = NSMToken(subject: sub, audience: aud, expires: Date(timeIntervalSince1970: exp))
        t.audienceIsString = audString
        return t
    }

    /// Whether `token` is an ES256 JWS whose signature `key` verifies (NSM's
    /// `io.jwt.verify_es256`: the signature only, not the claims).
    public static func verifyES256(_ token: String, key: P256.Signing.PublicKey) -> Bool {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let h = Base64URL.decode(parts[0]),
              let hj = try? JSONSerialization.jsonObject(with: h) as? [String: Any],
              hj["alg"] as? String == "ES256",
              let raw = Base64URL.decode(parts[2]),
              let sig = try? P256.Signing.ECDSASignature(rawRepresentation: raw)
        else { return false }
        return key.isValidSignature(sig, for: Data((parts[0] + "." + parts[1]).utf8))
    }
}

enum Base64URL {
    static func encode(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode<S: StringProtocol>(_ s: S) -> Data? {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !t.contains("=") else { return nil }
        while t.count % 4 != 0 { t += "=" }
        return Data(base64Encoded: t)
    }
}

/// NSM's default authorization policies for a NetworkService server (sdk
/// `pkg/tools/opa/policies/common` and `server`), checked on the path up to and
/// including the server's own segment: every token decodes (`tokens_valid`), each
/// segment's `aud` names the next segment's `sub` (`tokens_chained`), none has expired
/// (`tokens_expired`), and the previous segment's token is signed by the key of the TLS
/// peer (`prev_token_signed`).
public enum TokenPolicy {
    public struct Denied: Error, CustomStringConvertible, Equatable {
        /// The policy's name, as NSM's policy files are named.
        public var rule: String
        public var detail: String
        public var description: String { "\(rule): \(detail)" }
    }

    /// The policies in NSM's order (its policy files, alphabetically): a token that does
    /// not decode fails the first policy that reads it, as in NSM.
    public static func check(tokens: [String], index: Int, peerKey: P256.Signing.PublicKey?, now: Date) throws {
        var claims: [NSMToken?] = []
        var decodeErrors: [String?] = []
        for t in tokens {
            do { claims.append(try NSMToken.decode(t)); decodeErrors.append(nil) } catch {
                claims.append(nil)
                decodeErrors.append(t.isEmpty ? "has no token" : "'s token: \(error)")
            }
        }
        if claims.count >= 2 {
            for i in 0..<(claims.count - 1) {
                guard let a = claims[i], let b = claims[i + 1] else {
                    let bad = claims[i] == nil ? i : i + 1
                    throw Denied(rule: "tokens_chained", detail: "path segment \(bad) \(decodeErrors[bad]!)")
                }
                if a.audienceIsString {
                    throw Denied(rule: "tokens_chained", detail: "path segment \(i)'s token has aud as a string, not a list")
                }
                if !a.audience.contains(b.subject) {
                    throw Denied(rule: "tokens_chained",
                                 detail: "path segment \(i)'s token is for \(a.audience) but segment \(i + 1)'s is from '\(b.subject)'")
                }
            }
        }
        for (i, c) in claims.enumerated() {
            guard let c else { throw Denied(rule: "tokens_expired", detail: "path segment \(i) \(decodeErrors[i]!)") }
            if !(now < c.expires) { throw Denied(rule: "tokens_expired", detail: "path segment \(i)'s token expired at \(c.expires)") }
        }
        for (i, e) in decodeErrors.enumerated() {
            if let e { throw Denied(rule: "tokens_valid", detail: "path segment \(i) \(e)") }
        }
        guard index >= 1, index - 1 < tokens.count else {
            throw Denied(rule: "prev_token_signed", detail: "there is no previous path segment (index \(index))")
        }
        guard let peerKey else { throw Denied(rule: "prev_token_signed", detail: "the TLS peer has no ECDSA P-256 key") }
        guard NSMToken.verifyES256(tokens[index - 1], key: peerKey) else {
            throw Denied(rule: "prev_token_signed", detail: "path segment \(index - 1)'s token is not signed by the TLS peer's key")
        }
    }
}
