import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SwiftProtobuf
import WeftNSMProto
import XCTest

/// A test NSMgr/registry and a test endpoint, served from the test process with the
/// generated protos over real gRPC on unix sockets.

final class Recorder: @unchecked Sendable {
    private let lock = NSLock()
    private var _registrations: [Registry_NetworkServiceEndpoint] = []
    private var _requests: [Networkservice_NetworkServiceRequest] = []
    private var _closes: [Connection_Connection] = []
    func add(_ r: Registry_NetworkServiceEndpoint) { lock.lock(); _registrations.append(r); lock.unlock() }
    func add(_ r: Networkservice_NetworkServiceRequest) { lock.lock(); _requests.append(r); lock.unlock() }
    func add(_ c: Connection_Connection) { lock.lock(); _closes.append(c); lock.unlock() }
    var registrations: [Registry_NetworkServiceEndpoint] { lock.lock(); defer { lock.unlock() }; return _registrations }
    var requests: [Networkservice_NetworkServiceRequest] { lock.lock(); defer { lock.unlock() }; return _requests }
    var closes: [Connection_Connection] { lock.lock(); defer { lock.unlock() }; return _closes }
}

/// NetworkServiceRegistry + NetworkServiceEndpointRegistry with an in-memory store.
final class TestRegistry: Registry_NetworkServiceRegistry.SimpleServiceProtocol, @unchecked Sendable {
    let rec = Recorder()
    private let lock = NSLock()
    var services: [String: Registry_NetworkService] = [:]
    var endpoints: [String: Registry_NetworkServiceEndpoint] = [:]
    let expiry: TimeInterval

    init(expiry: TimeInterval = 60) { self.expiry = expiry }

    func add(service: Registry_NetworkService) { lock.withLock { services[service.name] = service } }
    func add(endpoint: Registry_NetworkServiceEndpoint) { lock.withLock { endpoints[endpoint.name] = endpoint } }

    func snapshot() -> ([Registry_NetworkService], [Registry_NetworkServiceEndpoint]) {
        lock.withLock { (Array(services.values), Array(endpoints.values)) }
    }
    func remove(service: String) { lock.withLock { _ = services.removeValue(forKey: service) } }
    func remove(endpoint: String) { lock.withLock { _ = endpoints.removeValue(forKey: endpoint) } }

    func register(request: Registry_NetworkService, context: ServerContext) async throws -> Registry_NetworkService {
        add(service: request); return request
    }
    func find(request: Registry_NetworkServiceQuery, response: RPCWriter<Registry_NetworkServiceResponse>, context: ServerContext) async throws {
        let all = snapshot().0
        for s in all where request.networkService.name.isEmpty || s.name == request.networkService.name {
            var r = Registry_NetworkServiceResponse(); r.networkService = s
            try await response.write(r)
        }
    }
    func unregister(request: Registry_NetworkService, context: ServerContext) async throws -> Google_Protobuf_Empty {
        remove(service: request.name); return Google_Protobuf_Empty()
    }

    /// The endpoint registry, as its own service value.
    var nse: EndpointRegistry { EndpointRegistry(owner: self) }

    struct EndpointRegistry: Registry_NetworkServiceEndpointRegistry.SimpleServiceProtocol {
        let owner: TestRegistry
        func register(request: Registry_NetworkServiceEndpoint, context: ServerContext) async throws -> Registry_NetworkServiceEndpoint {
            var r = request
            r.expirationTime = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(owner.expiry))
            owner.rec.add(r)
            owner.add(endpoint: r)
            return r
        }
        func find(request: Registry_NetworkServiceEndpointQuery, response: RPCWriter<Registry_NetworkServiceEndpointResponse>,
                  context: ServerContext) async throws {
            let all = owner.snapshot().1
            let q = request.networkServiceEndpoint
            for e in all {
                if !q.name.isEmpty && e.name != q.name { continue }
                if !q.networkServiceNames.isEmpty && !q.networkServiceNames.allSatisfy(e.networkServiceNames.contains) { continue }
                var r = Registry_NetworkServiceEndpointResponse(); r.networkServiceEndpoint = e
                try await response.write(r)
            }
        }
        func unregister(request: Registry_NetworkServiceEndpoint, context: ServerContext) async throws -> Google_Protobuf_Empty {
            owner.remove(endpoint: request.name); return Google_Protobuf_Empty()
        }
    }
}

/// A test NSE: answers with a KERNEL mechanism in its namespace and an IP context, as an
/// NSM endpoint with IPAM does; or refuses, when told to.
final class TestEndpoint: Networkservice_NetworkService.SimpleServiceProtocol, @unchecked Sendable {
    let name: String
    let netns: String
    let rec = Recorder()
    var refuse = false
    /// Changes the answer (e.g. a REMOTE mechanism, a VLAN with a `via` label).
    var shape: (@Sendable (inout Connection_Connection) -> Void)?
    let srcIP: String, dstIP: String

    init(name: String, netns: String, srcIP: String = "172.16.1.101/32", dstIP: String = "172.16.1.100/32") {
        self.name = name; self.netns = netns; self.srcIP = srcIP; self.dstIP = dstIP
    }

    func request(request: Networkservice_NetworkServiceRequest, context: ServerContext) async throws -> Connection_Connection {
        rec.add(request)
        if refuse { throw RPCError(code: .permissionDenied, message: "test endpoint refuses") }
        var c = request.connection
        // Path: step to our own segment (reused on refresh).
        let i = Int(c.path.index) + 1
        if i >= c.path.pathSegments.count {
            var s = Connection_PathSegment(); s.name = name; s.id = UUID().uuidString.lowercased()
            c.path.pathSegments.append(s)
        }
        if c.context.ipContext.srcIpAddrs.isEmpty {
            c.context.ipContext.srcIpAddrs = [srcIP]
            c.context.ipContext.dstIpAddrs = [dstIP]
        }
        if let shape {
            shape(&c)
            return c
        }
        var mech = c.hasMechanism && !c.mechanism.type.isEmpty ? c.mechanism
            : try XCTUnwrap(request.mechanismPreferences.first { $0.type == "KERNEL" }, "no KERNEL preference")
        mech.parameters["inodeURL"] = "file:///var/run/netns/\(netns)"
        c.mechanism = mech
        return c
    }

    func close(request: Connection_Connection, context: ServerContext) async throws -> Google_Protobuf_Empty {
        rec.add(request)
        return Google_Protobuf_Empty()
    }
}

/// Serves services on a unix socket for the life of the object.
final class TestGRPCServer: @unchecked Sendable {
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let task: Task<Void, Error>
    let path: String

    init(path: String, services: [any RegistrableRPCService]) async throws {
        self.path = path
        unlink(path)
        server = GRPCServer(transport: .http2NIOPosix(address: .unixDomainSocket(path: path), transportSecurity: .plaintext),
                            services: services)
        let s = server
        task = Task { try await s.serve() }
        _ = try await server.listeningAddress
    }

    func stop() async {
        server.beginGracefulShutdown()
        _ = try? await task.value
        unlink(path)
    }
}

/// A gRPC client to weftd's NSM socket, as an NSMgr would use it.
func withNSM<R: Sendable>(_ socket: String, _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> R) async throws -> R {
    try await withGRPCClient(transport: .http2NIOPosix(target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)) {
        try await body($0)
    }
}

/// A request as the NSMgr forwards it to a forwarder: the NSC's and the NSMgr's segments.
func nsmRequest(service: String, mechanism: String = "KERNEL", params: [String: String],
                callerExpires: Date = Date().addingTimeInterval(600)) -> Networkservice_NetworkServiceRequest {
    var r = Networkservice_NetworkServiceRequest()
    var c = Connection_Connection()
    c.networkService = service
    c.labels = ["podName": "nsc"]
    var nsc = Connection_PathSegment(); nsc.name = "nsc"; nsc.id = UUID().uuidString.lowercased()
    nsc.expires = Google_Protobuf_Timestamp(date: callerExpires)
    var mgr = Connection_PathSegment(); mgr.name = "nsmgr"; mgr.id = UUID().uuidString.lowercased()
    mgr.expires = Google_Protobuf_Timestamp(date: callerExpires)
    c.path.pathSegments = [nsc, mgr]
    c.path.index = 1
    c.id = mgr.id
    r.connection = c
    var m = Connection_Mechanism(); m.cls = "LOCAL"; m.type = mechanism; m.parameters = params
    r.mechanismPreferences = [m]
    return r
}

/// A remote NSMgr as a forwarder on another node reaches it (tcp): it adds its own path
/// segment and relays Request/Close to its node's forwarder over that node's unix socket.
final class TestNSMgrRelay: Networkservice_NetworkService.SimpleServiceProtocol, @unchecked Sendable {
    let name: String
    let forwarderSocket: String
    let rec = Recorder()
    /// How long this NSMgr's segment is valid (the next forwarder's expiry timer follows it).
    var segmentLifetime: TimeInterval = 600
    private let lock = NSLock()
    private var _answers: [Connection_Connection] = []
    var answers: [Connection_Connection] { lock.withLock { _answers } }

    init(name: String, forwarderSocket: String) { self.name = name; self.forwarderSocket = forwarderSocket }

    func step(_ c: inout Connection_Connection) -> UInt32 {
        let prev = c.path.index
        let i = Int(prev) + 1
        if i >= c.path.pathSegments.count {
            var s = Connection_PathSegment(); s.name = name; s.id = UUID().uuidString.lowercased()
            c.path.pathSegments.append(s)
        } else if c.path.pathSegments[i].name != name {
            c.path.pathSegments[i].name = name; c.path.pathSegments[i].id = UUID().uuidString.lowercased()
        }
        c.path.pathSegments[i].expires = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(segmentLifetime))
        c.path.index = UInt32(i)
        c.id = c.path.pathSegments[i].id
        return prev
    }

    func request(request: Networkservice_NetworkServiceRequest, context: ServerContext) async throws -> Connection_Connection {
        rec.add(request)
        var r = request
        let prev = step(&r.connection)
        var answer = try await withNSM(forwarderSocket) { try await Networkservice_NetworkService.Client(wrapping: $0).request(r) }
        lock.withLock { _answers.append(answer) }
        answer.path.index = prev
        answer.id = answer.path.pathSegments[Int(prev)].id
        return answer
    }

    func close(request: Connection_Connection, context: ServerContext) async throws -> Google_Protobuf_Empty {
        rec.add(request)
        var c = request
        _ = step(&c)
        _ = try await withNSM(forwarderSocket) { try await Networkservice_NetworkService.Client(wrapping: $0).close(c) }
        return Google_Protobuf_Empty()
    }
}

/// Serves services on 127.0.0.1 (an ephemeral TCP port) for the life of the object.
final class TestTCPServer: @unchecked Sendable {
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let task: Task<Void, Error>
    let port: Int

    init(services: [any RegistrableRPCService]) async throws {
        server = GRPCServer(transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext),
                            services: services)
        let s = server
        task = Task { try await s.serve() }
        let addr = try await server.listeningAddress
        port = try XCTUnwrap(addr?.ipv4?.port)
    }

    func stop() async {
        server.beginGracefulShutdown()
        _ = try? await task.value
    }
}

/// The call fails with `code` and a message that names `fragment` (the field or step).
func expectRPCError(_ code: RPCError.Code, _ fragment: String, _ body: () async throws -> Void,
                    file: StaticString = #filePath, line: UInt = #line) async {
    do {
        try await body()
        XCTFail("expected \(code) naming '\(fragment)'", file: file, line: line)
    } catch let e as RPCError {
        XCTAssertEqual(e.code, code, e.message, file: file, line: line)
        XCTAssertTrue(e.message.contains(fragment), "'\(e.message)' does not name '\(fragment)'", file: file, line: line)
    } catch {
        XCTFail("unexpected \(error)", file: file, line: line)
    }
}
