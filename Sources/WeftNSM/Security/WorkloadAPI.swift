import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import WeftNSMProto

/// A client of the SPIFFE Workload API (the SPIRE agent's socket,
/// `SPIFFE_ENDPOINT_SOCKET`): streams Weft's X.509-SVIDs and trust bundle into an
/// `IdentitySource` and keeps streaming, reconnecting after the agent restarts. A new
/// SVID replaces the old for the next TLS handshake and token; nothing else changes.
public struct WorkloadAPIClient: Sendable {
    public let socketPath: String
    let identity: IdentitySource
    let logger: Logger

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// `unix:///path`, `unix:/path` or a plain absolute path.
    public static func socketPath(_ endpoint: String) throws -> String {
        var p = endpoint
        if p.hasPrefix("unix://") { p = String(p.dropFirst("unix://".count)) } else if p.hasPrefix("unix:") { p = String(p.dropFirst("unix:".count)) }
        guard p.hasPrefix("/"), p.utf8.count <= 107 else {
            throw Invalid(description: "SPIFFE_ENDPOINT_SOCKET '\(endpoint)' is not unix:///path (at most 107 bytes)")
        }
        return p
    }

    public init(socketPath: String, identity: IdentitySource, logger: Logger) {
        self.socketPath = socketPath
        self.identity = identity
        self.logger = logger
    }

    /// Until cancelled. Each message's first SVID becomes the identity; a message Weft
    /// cannot use is logged and skipped (the current SVID stays).
    public func run() async {
        var failing = false
        while !Task.isCancelled {
            do {
                let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext)
                try await withGRPCClient(transport: transport) { client in
                    let api = SpiffeWorkloadAPI.Client(wrapping: client)
                    var md: Metadata = [:]
                    md.addString("true", forKey: "workload.spiffe.io")
                    try await api.fetchX509SVID(X509SVIDRequest(), metadata: md) { resp in
                        for try await m in resp.messages { self.accept(m) }
                    }
                }
                failing = false
                if !Task.isCancelled { logger.warning("SPIFFE Workload API at \(socketPath): stream ended; reconnecting") }
            } catch {
                if Task.isCancelled { return }
                if !failing { logger.warning("SPIFFE Workload API at \(socketPath): \(error); retrying every second") }
                failing = true
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    func accept(_ m: X509SVIDResponse) {
        guard let first = m.svids.first else {
            logger.warning("SPIFFE Workload API: a message without SVIDs (is this workload registered with SPIRE?)")
            return
        }
        do {
            let svid = try SVID(spiffeID: first.spiffeID, chainDER: Array(first.x509Svid), keyDER: Array(first.x509SvidKey),
                                bundleDER: Array(first.bundle))
            let rotated = identity.current != nil
            identity.update(svid)
            logger.notice("SPIFFE identity \(rotated ? "rotated" : "received"): \(svid.id), valid until \(svid.notAfter)")
        } catch {
            logger.error("SPIFFE Workload API: unusable SVID: \(error)")
        }
    }
}
