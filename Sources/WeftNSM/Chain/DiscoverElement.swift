import Foundation
import Synchronization
import WeftNSMProto

/// NSM's discover and roundrobin: finds the next hop in the registry (the named
/// endpoint on a heal, else the service's endpoints that are not expired and that its
/// matches select for the connection's labels), then tries them in round-robin order
/// until one accepts. Only a next hop's refusal moves on to the next candidate; any
/// other failure (a bad answer, a mechanism that cannot be realized) ends the request.
/// A refresh goes to the next hop the connection has.
struct DiscoverElement: NSMElement {
    let peers: NSMPeers
    let clock: NSMClock
    let roundRobin: RoundRobin
    /// For messages: where the registry is.
    let registry: NSMURL

    func request(_ r: inout NSMRequest, next: NSMNext) async throws -> Connection_Connection {
        if r.isRefresh {
            r.nextHopURL = r.state.nextHopURL
            r.conn.networkServiceEndpointName = r.state.nextHop.networkServiceEndpointName
            return try await next.request(&r)
        }
        let (candidates, payload) = try await find(r.conn)
        var failures: [String] = []
        for nse in candidates {
            let url: NSMURL
            do { url = try NSMURL.parse(nse.url) } catch {
                failures.append("\(nse.name): \(error)")
                continue
            }
            var attempt = r
            attempt.conn.networkServiceEndpointName = nse.name
            attempt.conn.payload = payload
            attempt.nextHopURL = url
            do {
                let result = try await next.request(&attempt)
                r = attempt
                return result
            } catch let e as NextHopRefused {
                failures.append("\(nse.name) at \(nse.url): \(e.underlying)")
            }
        }
        throw NSMError(.unavailable, "endpoint", "no endpoint accepted the request: " + failures.joined(separator: "; "))
    }

    func close(_ c: NSMClose, next: NSMNext) async throws { try await next.close(c) }

    /// The candidates in the order to try them, and the payload (the service's when the
    /// connection names none).
    func find(_ conn: Connection_Connection) async throws -> ([Registry_NetworkServiceEndpoint], String) {
        var payload = conn.payload
        do {
            if !conn.networkServiceEndpointName.isEmpty {
                let named = try await peers.findEndpoints(service: nil, name: conn.networkServiceEndpointName)
                if named.isEmpty {
                    throw NSMError(.notFound, "discover", "network service endpoint '\(conn.networkServiceEndpointName)' is not registered")
                }
                return (named, payload)
            }
            guard let ns = try await peers.findService(conn.networkService) else {
                throw NSMError(.notFound, "discover", "network service '\(conn.networkService)' is not registered")
            }
            if payload.isEmpty { payload = ns.payload }
            let now = clock.now()
            let all = try await peers.findEndpoints(service: conn.networkService, name: nil)
                .filter { !$0.hasExpirationTime || $0.expirationTime.date > now }
            let candidates = roundRobin.order(conn.networkService,
                                              PathOps.matchEndpoints(labels: conn.labels, service: ns, endpoints: all))
            if candidates.isEmpty {
                throw NSMError(.notFound, "discover", "no endpoint of network service '\(conn.networkService)' matches labels \(conn.labels)")
            }
            return (candidates, payload)
        } catch let e as NSMError { throw e } catch {
            throw NSMError(.unavailable, "discover", "registry at \(registry): \(error)")
        }
    }
}

/// Per-service round robin over endpoint candidates (NSM's roundrobin element).
public final class RoundRobin: Sendable {
    private let next = Mutex<[String: Int]>([:])
    public init() {}
    /// The candidates in the order to try them: starting at this service's turn.
    public func order<T>(_ service: String, _ c: [T]) -> [T] {
        guard !c.isEmpty else { return c }
        let start = next.withLock { n in
            let s = (n[service] ?? 0) % c.count
            n[service] = s + 1
            return s
        }
        return Array(c[start...] + c[..<start])
    }
}
