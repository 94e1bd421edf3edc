import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509
import XCTest
@testable import WeftNSM
import WeftNSMProto

/// A CA of the test's own that mints X.509-SVIDs (EC P-256, a spiffe:// URI SAN).
struct TestCA {
    let key = P256.Signing.PrivateKey()
    let cert: Certificate
    let trustDomain: String

    init(trustDomain: String, notAfter: Date = Date().addingTimeInterval(86400)) throws {
        self.trustDomain = trustDomain
        let name = try DistinguishedName { CommonName("test CA \(trustDomain)") }
        cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: notAfter,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectAlternativeNames([.uniformResourceIdentifier("spiffe://\(trustDomain)")])
            },
            issuerPrivateKey: .init(key))
    }

    /// An SVID for `path`, as the Workload API would hand it out.
    func svid(_ path: String, notBefore: Date = Date().addingTimeInterval(-60), notAfter: Date = Date().addingTimeInterval(3600))
        throws -> (SVID, P256.Signing.PrivateKey) {
        let k = P256.Signing.PrivateKey()
        let leaf = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(k.publicKey),
            notValidBefore: notBefore, notValidAfter: notAfter,
            issuer: cert.subject, subject: try DistinguishedName { OrganizationName("SPIRE") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true, keyAgreement: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames([.uniformResourceIdentifier("spiffe://\(trustDomain)\(path)")])
            },
            issuerPrivateKey: .init(key))
        let svid = try SVID(spiffeID: "spiffe://\(trustDomain)\(path)", chainDER: try Self.der(leaf),
                            keyDER: Array(k.derRepresentation), bundleDER: try Self.der(cert))
        return (svid, k)
    }

    static func der(_ c: Certificate) throws -> [UInt8] {
        var s = DER.Serializer()
        try s.serialize(c)
        return s.serializedBytes
    }

    static func nio(_ c: Certificate) throws -> NIOSSLCertificate { try NIOSSLCertificate(bytes: der(c), format: .der) }
}

final class TokenTests: XCTestCase {
    func testSignedTokenDecodesAndVerifiesAndTamperingIsCaught() throws {
        let k = P256.Signing.PrivateKey()
        let exp = Date(timeIntervalSince1970: 2_000_000_000)
        let t = try NSMToken(subject: "spiffe://a/x", audience: ["spiffe://a/y"], expires: exp).sign(with: k)
        XCTAssertEqual(try NSMToken.decode(t), NSMToken(subject: "spiffe://a/x", audience: ["spiffe://a/y"], expires: exp))
        XCTAssertTrue(NSMToken.verifyES256(t, key: k.publicKey))
        XCTAssertFalse(NSMToken.verifyES256(t, key: P256.Signing.PrivateKey().publicKey), "another key verifies")
        var parts = t.split(separator: ".").map(String.init)
        parts[1] = Base64URL.encode(Data(#"{"aud":["spiffe://a/y"],"exp":2000000000,"sub":"spiffe://a/evil"}"#.utf8))
        XCTAssertFalse(NSMToken.verifyES256(parts.joined(separator: "."), key: k.publicKey), "a changed payload verifies")
        for bad in ["", "a.b", "!!.!!.!!", "e30.e30.", Base64URL.encode(Data(#"{"alg":"ES256"}"#.utf8)) + ".e30.AA"] {
            XCTAssertThrowsError(try NSMToken.decode(bad), "'\(bad)' decoded")
        }
    }

    /// Tokens made by PyJWT (independent of Weft's code) verify here, and Weft's verify
    /// in PyJWT with the audience checked.
    func testInteropWithPyJWT() throws {
        let k = P256.Signing.PrivateKey()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("weft-jwt-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try k.pemRepresentation.write(to: dir.appendingPathComponent("key.pem"), atomically: true, encoding: .utf8)
        try k.publicKey.pemRepresentation.write(to: dir.appendingPathComponent("pub.pem"), atomically: true, encoding: .utf8)
        let mine = try NSMToken(subject: "spiffe://td/weft", audience: ["spiffe://td/nse"], expires: Date().addingTimeInterval(600)).sign(with: k)
        let py = """
        import jwt, sys, time
        d = sys.argv[1]
        key = open(d + "/key.pem").read(); pub = open(d + "/pub.pem").read()
        c = jwt.decode(sys.argv[2], pub, algorithms=["ES256"], audience="spiffe://td/nse")
        assert c["sub"] == "spiffe://td/weft", c
        print(jwt.encode({"sub": "spiffe://td/nsmgr", "aud": ["spiffe://td/weft"], "exp": int(time.time()) + 300}, key, algorithm="ES256"))
        print(jwt.encode({"sub": "spiffe://td/nsc", "aud": "spiffe://td/nsmgr", "exp": int(time.time()) + 300}, key, algorithm="ES256"))
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", py, dir.path, mine]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run(); p.waitUntilExit()
        let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, "PyJWT refused Weft's token or is missing (scripts/install.sh installs it): "
                       + String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        let lines = o.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2)
        guard lines.count == 2 else { return }
        XCTAssertTrue(NSMToken.verifyES256(lines[0], key: k.publicKey))
        XCTAssertEqual(try NSMToken.decode(lines[0]).audience, ["spiffe://td/weft"])
        XCTAssertEqual(try NSMToken.decode(lines[1]).audience, ["spiffe://td/nsmgr"], "a string aud reads as one audience")
        XCTAssertEqual(try NSMToken.decode(lines[1]).subject, "spiffe://td/nsc")
        XCTAssertTrue(try NSMToken.decode(lines[1]).audienceIsString)
        // NSM's chain policy reads aud as a list: a string aud does not chain.
        XCTAssertThrowsError(try TokenPolicy.check(tokens: [lines[1], lines[0]], index: 1, peerKey: k.publicKey, now: Date())) { e in
            XCTAssertEqual((e as? TokenPolicy.Denied)?.rule, "tokens_chained")
        }
    }

    func testPoliciesNameTheRuleThatFails() throws {
        let nsc = P256.Signing.PrivateKey(), nsmgr = P256.Signing.PrivateKey(), weft = P256.Signing.PrivateKey()
        let later = Date().addingTimeInterval(300)
        func tok(_ sub: String, _ aud: String, _ k: P256.Signing.PrivateKey, exp: Date = later) throws -> String {
            try NSMToken(subject: "spiffe://td/\(sub)", audience: ["spiffe://td/\(aud)"], expires: exp).sign(with: k)
        }
        let good = [try tok("nsc", "nsmgr", nsc), try tok("nsmgr", "weft", nsmgr), try tok("weft", "nsmgr", weft)]
        XCTAssertNoThrow(try TokenPolicy.check(tokens: good, index: 2, peerKey: nsmgr.publicKey, now: Date()))
        func rule(_ tokens: [String], peer: P256.Signing.PublicKey? = nil) -> String? {
            do { try TokenPolicy.check(tokens: tokens, index: 2, peerKey: peer ?? nsmgr.publicKey, now: Date()); return nil }
            catch let d as TokenPolicy.Denied { return d.rule } catch { return "\(error)" }
        }
        XCTAssertEqual(rule([good[0], "", good[2]]), "tokens_chained", "NSM's order: an empty token fails the chain first")
        XCTAssertEqual(rule([good[0], good[1], "x.y.z"]), "tokens_chained")
        let stringAud = try NSMToken.decode(try tok("nsc", "nsmgr", nsc))
        XCTAssertFalse(stringAud.audienceIsString)
        XCTAssertEqual(rule([good[0], try tok("nsmgr", "someone-else", nsmgr), good[2]]), "tokens_chained")
        XCTAssertEqual(rule([try tok("nsc", "nsmgr", nsc, exp: Date().addingTimeInterval(-1)), good[1], good[2]]), "tokens_expired")
        XCTAssertEqual(rule(good, peer: nsc.publicKey), "prev_token_signed", "a token signed by another key than the TLS peer's")
        XCTAssertEqual(rule([good[0], try tok("nsmgr", "weft", P256.Signing.PrivateKey()), good[2]]), "prev_token_signed", "a forged token")
    }

    func testRFC3339AsGoWritesIt() {
        XCTAssertEqual(RFC3339.parse("2026-11-29T15:04:05Z"), Date(timeIntervalSince1970: 1_795_964_645))
        XCTAssertEqual(RFC3339.parse("2026-11-29T15:04:05.5Z")!.timeIntervalSince1970, 1_795_964_645.5, accuracy: 1e-6)
        XCTAssertEqual(RFC3339.parse("2026-11-29T15:04:05.123456789Z")!.timeIntervalSince1970, 1_795_964_645.123456789, accuracy: 1e-5)
        XCTAssertEqual(RFC3339.parse("2026-11-29T16:04:05+01:00"), Date(timeIntervalSince1970: 1_795_964_645))
        XCTAssertEqual(RFC3339.parse("2026-11-29T14:34:05-00:30"), Date(timeIntervalSince1970: 1_795_964_645))
        for bad in ["", "2026-11-29", "2026-11-29T15:04:05", "2026-11-29T15:04:05.Z", "2026-11-29T15:04:05Zjunk", "x026-11-29T15:04:05Z"] {
            XCTAssertNil(RFC3339.parse(bad), bad)
        }
        let d = Date(timeIntervalSince1970: 1_795_964_645.25)
        XCTAssertEqual(RFC3339.parse(RFC3339.format(d))!.timeIntervalSince1970, d.timeIntervalSince1970, accuracy: 1e-3)
        XCTAssertEqual(GRPCTimeout.parse("15S"), 15)
        XCTAssertEqual(GRPCTimeout.parse("1500m"), 1.5)
        XCTAssertNil(GRPCTimeout.parse("15x"))
    }

    func testSPIFFEIDs() {
        XCTAssertEqual(SPIFFEID("spiffe://example.org/ns/default/sa/weft")?.trustDomain, "example.org")
        XCTAssertEqual(SPIFFEID("spiffe://example.org")?.path, "")
        for bad in ["", "http://x/y", "spiffe://", "spiffe:///x", "spiffe://Example.org/x", "spiffe://a/b/", "spiffe://a//b"] {
            XCTAssertNil(SPIFFEID(bad), bad)
        }
    }
}

final class IdentityTests: XCTestCase {
    func testSVIDFromWorkloadAPIFieldsAndItsFaults() throws {
        let ca = try TestCA(trustDomain: "test.weft")
        let (svid, _) = try ca.svid("/weft")
        XCTAssertEqual(svid.id.description, "spiffe://test.weft/weft")
        let chain = svid.chainDER.flatMap { $0 }
        let bundle = try TestCA.der(ca.cert)
        XCTAssertEqual(try DERSequence.split(chain + bundle).count, 2)
        XCTAssertThrowsError(try DERSequence.split([0x30, 0x82, 0xff]))
        XCTAssertThrowsError(try DERSequence.split([0x04, 0x00]))
        XCTAssertThrowsError(try SVID(spiffeID: "spiffe://test.weft/other", chainDER: chain, keyDER: svid.keyDER, bundleDER: bundle),
                             "a certificate for another ID accepted")
        XCTAssertThrowsError(try SVID(spiffeID: "spiffe://test.weft/weft", chainDER: chain,
                                      keyDER: Array(P256.Signing.PrivateKey().derRepresentation), bundleDER: bundle), "a foreign key accepted")
        XCTAssertThrowsError(try SVID(spiffeID: "spiffe://test.weft/weft", chainDER: chain, keyDER: svid.keyDER, bundleDER: []),
                             "an SVID without a bundle accepted")
    }

    func testPeersAreVerifiedByBundleExpiryAndTrustDomain() async throws {
        let ca = try TestCA(trustDomain: "test.weft")
        let id = IdentitySource(maxTokenLifetime: 600)
        id.update(try ca.svid("/weft").0)
        let (nsmgr, _) = try ca.svid("/nsmgr")
        let (peer, chain) = try await id.verify(peer: [try TestCA.nio(nsmgr.chain[0])])
        XCTAssertEqual(peer.description, "spiffe://test.weft/nsmgr")
        XCTAssertEqual(chain.count, 2, "leaf and root")

        func refused(_ c: Certificate) async -> String? {
            do { _ = try await id.verify(peer: [try TestCA.nio(c)]); return nil } catch { return "\(error)" }
        }
        let expired = try ca.svid("/old", notBefore: Date().addingTimeInterval(-7200), notAfter: Date().addingTimeInterval(-3600)).0
        let r1 = await refused(expired.chain[0])
        XCTAssertTrue(r1?.contains("expired") ?? false, "\(String(describing: r1))")
        let other = try TestCA(trustDomain: "other.td")
        let r2 = await refused(try other.svid("/nsmgr").0.chain[0])
        XCTAssertTrue(r2?.contains("does not chain") ?? false, "\(String(describing: r2))")
        // The same CA key with another trust domain's name still chains, but is refused by domain.
        let id2 = IdentitySource(maxTokenLifetime: 600, allowedTrustDomains: ["only.this"])
        id2.update(try ca.svid("/weft").0)
        do { _ = try await id2.verify(peer: [try TestCA.nio(nsmgr.chain[0])]); XCTFail("trust domain not checked") }
        catch { XCTAssertTrue("\(error)".contains("not in trust domain"), "\(error)") }
    }

    func testTokensFollowNSMExpiryRulesAndRotation() throws {
        let ca = try TestCA(trustDomain: "test.weft")
        let id = IdentitySource(maxTokenLifetime: 600)
        let soon = Date().addingTimeInterval(120)
        id.update(try ca.svid("/weft", notAfter: soon).0)
        let nsmgr = SPIFFEID("spiffe://test.weft/nsmgr")!
        let (t, exp) = try id.token(audience: nsmgr)
        XCTAssertEqual(exp.timeIntervalSince1970, soon.timeIntervalSince1970, accuracy: 1, "capped by the own certificate")
        XCTAssertEqual(try NSMToken.decode(t).audience, [nsmgr.description])
        let (_, exp2) = try id.token(audience: nsmgr, peerNotAfter: Date().addingTimeInterval(30))
        XCTAssertEqual(exp2.timeIntervalSinceNow, 30, accuracy: 2, "capped by the peer's certificate")
        let (rotated, key2) = try ca.svid("/weft")
        id.update(rotated)
        XCTAssertEqual(id.rotations, 1)
        let (t3, exp3) = try id.token(audience: nsmgr)
        XCTAssertTrue(NSMToken.verifyES256(t3, key: key2.publicKey), "signed with the new key")
        XCTAssertEqual(exp3.timeIntervalSinceNow, 600, accuracy: 2)
        XCTAssertNotNil(id.sslContextConfigurationOverride.certificateChain)
    }

    /// The element alone: a caller without mTLS, without a token, with a forged token,
    /// and a good one.
    func testAuthorizeElement() async throws {
        let ca = try TestCA(trustDomain: "test.weft")
        let id = IdentitySource(maxTokenLifetime: 600)
        id.update(try ca.svid("/weft").0)
        let el = AuthorizeElement(security: NSMSecurity(identity: id, logger: .init(label: "t")), clock: SystemClock())
        let (nsmgr, nsmgrKey) = try ca.svid("/nsmgr")
        let nscKey = P256.Signing.PrivateKey()
        let later = Date().addingTimeInterval(300)
        func request(token: String?, cert: Certificate?, expires: Date? = later) -> NSMRequest {
            var c = NSMCaller(token: token, expires: expires)
            c.certificate = cert
            c.spiffeID = cert.flatMap(SPIFFEID.of)
            var r = NSMRequest(Networkservice_NetworkServiceRequest(), caller: c)
            var path = Connection_Path()
            var s0 = Connection_PathSegment(); s0.name = "nsc"; s0.token = try! NSMToken(subject: "spiffe://test.weft/nsc", audience: ["spiffe://test.weft/nsmgr"], expires: later).sign(with: nscKey)
            var s1 = Connection_PathSegment(); s1.name = "nsmgr"; s1.token = token ?? ""
            path.pathSegments = [s0, s1, Connection_PathSegment()]
            path.index = 2
            r.conn.path = path
            r.prevIndex = 1
            return r
        }
        let good = try NSMToken(subject: "spiffe://test.weft/nsmgr", audience: ["spiffe://test.weft/weft"], expires: later).sign(with: nsmgrKey)
        let forged = try NSMToken(subject: "spiffe://test.weft/nsmgr", audience: ["spiffe://test.weft/weft"], expires: later).sign(with: P256.Signing.PrivateKey())
        func outcome(_ r: NSMRequest) async -> String {
            var r = r
            do { let c = try await el.request(&r, next: NSMNext([])); return c.path.pathSegments[2].token.isEmpty ? "no own token" : "ok" }
            catch let e as NSMError { return "\(e.code) \(e.message)" } catch { return "\(error)" }
        }
        let ok = await outcome(request(token: good, cert: nsmgr.chain[0]))
        XCTAssertEqual(ok, "ok")
        let noTLS = await outcome(request(token: good, cert: nil))
        XCTAssertTrue(noTLS.hasPrefix("permissionDenied") && noTLS.contains("mutual TLS"), noTLS)
        let noToken = await outcome(request(token: nil, cert: nsmgr.chain[0]))
        XCTAssertTrue(noToken.contains("tokens_chained") && noToken.contains("has no token"), noToken)
        let bad = await outcome(request(token: forged, cert: nsmgr.chain[0]))
        XCTAssertTrue(bad.contains("prev_token_signed"), bad)
        let noExpiry = await outcome(request(token: good, cert: nsmgr.chain[0], expires: nil))
        XCTAssertTrue(noExpiry.contains("expiry"), noExpiry)
        // Weft's own token is for the caller and signed with Weft's key.
        var r = request(token: good, cert: nsmgr.chain[0])
        let c = try await el.request(&r, next: NSMNext([]))
        let own = try NSMToken.decode(c.path.pathSegments[2].token)
        XCTAssertEqual(own.subject, "spiffe://test.weft/weft")
        XCTAssertEqual(own.audience, ["spiffe://test.weft/nsmgr"])
        XCTAssertTrue(NSMToken.verifyES256(c.path.pathSegments[2].token, key: id.current!.key.publicKey))
    }
}
