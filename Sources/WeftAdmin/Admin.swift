import Foundation
import WeftModel

/// weftctl <-> weftd: one JSON request line, one JSON response, over a unix
/// socket that only the owner can open (mode 0600).
public struct AdminRequest: Codable, Equatable, Sendable {
    public enum Command: String, Codable, Sendable {
        case showInterfaces = "show-interfaces"
        case showCrossConnects = "show-cross-connects"
        case showDrops = "show-drops"
        case showWorkers = "show-workers"
        case showNeighbours = "show-neighbours"
        case showGroups = "show-groups"
        case connect
        case disconnect
        case addInterface = "add-interface"
        case deleteInterface = "delete-interface"
        case addCrossConnect = "add-cross-connect"
        case deleteCrossConnect = "delete-cross-connect"
        case reload
        /// Packet trace: start (name: the interface, nil for any; count), stop, show, clear.
        case traceStart = "trace-start"
        case traceStop = "trace-stop"
        case traceShow = "trace-show"
        case traceClear = "trace-clear"
        /// Capture to a pcapng file: start (capture), stop, status.
        case captureStart = "capture-start"
        case captureStop = "capture-stop"
        case captureStatus = "capture-status"
    }
    public var command: Command
    public var interface: InterfaceConfig?
    public var crossConnect: CrossConnectConfig?
    public var name: String?
    /// connect: the members and the hint labels that pick the mode.
    public var members: [String]?
    public var labels: [String: String]?
    /// trace-start: how many frames.
    public var count: Int?
    public var capture: CaptureRequest?
    public init(command: Command, interface: InterfaceConfig? = nil, crossConnect: CrossConnectConfig? = nil, name: String? = nil,
                members: [String]? = nil, labels: [String: String]? = nil, count: Int? = nil, capture: CaptureRequest? = nil) {
        self.command = command; self.interface = interface; self.crossConnect = crossConnect; self.name = name
        self.members = members; self.labels = labels; self.count = count; self.capture = capture
    }
}

public struct AdminResponse: Codable, Equatable, Sendable {
    public var ok: Bool
    public var error: String?
    public var summary: ApplySummary?
    public var interfaces: [InterfaceStatus]?
    public var crossConnects: [CrossConnectStatus]?
    public var drops: [DropStatus]?
    public var workers: [WorkerStats]?
    public var neighbours: [Neighbour]?
    public var groups: [P2MPStatus]?
    public var labels: [String: String]?
    public var tscHz: UInt64?
    public var trace: TraceStatus?
    public var captureStatus: CaptureStatus?
    public init(ok: Bool, error: String? = nil) { self.ok = ok; self.error = error }
    public static func failure(_ message: String) -> AdminResponse { AdminResponse(ok: false, error: message) }
}

/// Serves admin requests on a dedicated thread (blocking I/O stays off the
/// async runtime). Requests are handled one at a time; the handler is async
/// (it awaits the control actor) and this thread waits for its answer.
public final class AdminServer: @unchecked Sendable {
    public typealias Handler = @Sendable (AdminRequest) async -> AdminResponse
    public let path: String
    let handler: Handler
    private var fd: Int32 = -1
    private let stopFlag = NSLock()
    private var stopping = false
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)

    public init(path: String, handler: @escaping Handler) {
        self.path = path
        self.handler = handler
    }

    public func start() throws {
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ApplyError(message: "admin socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_un()
        try fill(&addr, path)
        // Owner-only from the moment the socket exists: no window with wider permissions.
        let old = umask(0o177)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(old)
        guard rc == 0, listen(fd, 16) == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw ApplyError(message: "admin socket \(path): \(e)")
        }
        chmod(path, 0o600)
        let t = Thread { [self] in serve(); done.signal() }
        t.name = "weft-admin"
        thread = t
        t.start()
    }

    public func stop() {
        stopFlag.lock(); stopping = true; stopFlag.unlock()
        if thread != nil { done.wait() }
        thread = nil
        if fd >= 0 { close(fd); fd = -1 }
        unlink(path)
    }

    private var isStopping: Bool { stopFlag.lock(); defer { stopFlag.unlock() }; return stopping }

    private func serve() {
        while !isStopping {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 200) <= 0 { continue }
            let c = accept(fd, nil, nil)
            if c < 0 { continue }
            handle(c)
            close(c)
        }
    }

    private func handle(_ c: Int32) {
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard let line = readLine(c, limit: 1 << 20) else { return }
        let response: AdminResponse
        do {
            let req = try JSONDecoder().decode(AdminRequest.self, from: line)
            response = answer(req)
        } catch {
            response = .failure("malformed request: \(error)")
        }
        var out = (try? JSONEncoder().encode(response)) ?? Data("{\"ok\":false}".utf8)
        out.append(0x0a)
        writeAll(c, out)
    }

    /// Run the async handler and wait for it on this (non-async) thread.
    private func answer(_ req: AdminRequest) -> AdminResponse {
        final class Box: @unchecked Sendable { var value: AdminResponse? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        let h = handler
        Task {
            box.value = await h(req)
            done.signal()
        }
        done.wait()
        return box.value ?? .failure("no answer")
    }
}

public enum AdminClient {
    public static func send(_ req: AdminRequest, socketPath: String, timeoutSeconds: Int = 120) throws -> AdminResponse {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ApplyError(message: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var addr = sockaddr_un()
        try fill(&addr, socketPath)
        var rc: Int32
        repeat {
            rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        } while rc != 0 && errno == EINTR
        guard rc == 0 else {
            throw ApplyError(message: "cannot reach weftd at \(socketPath): \(String(cString: strerror(errno))) (is weftd running? see --socket)")
        }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var data = try JSONEncoder().encode(req)
        data.append(0x0a)
        writeAll(fd, data)
        guard let line = readLine(fd, limit: 64 << 20) else {
            throw ApplyError(message: "no answer from weftd at \(socketPath)")
        }
        return try JSONDecoder().decode(AdminResponse.self, from: line)
    }
}

private func fill(_ addr: inout sockaddr_un, _ path: String) throws {
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
        throw ApplyError(message: "socket path too long: \(path)")
    }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
}

private func readLine(_ fd: Int32, limit: Int) -> Data? {
    var data = Data()
    var buf = [UInt8](repeating: 0, count: 65536)
    while data.count < limit {
        let n = read(fd, &buf, buf.count)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        data.append(contentsOf: buf[0..<n])
        if let i = data.firstIndex(of: 0x0a) { return data.prefix(upTo: i) }
    }
    return data.isEmpty ? nil : data
}

/// MSG_NOSIGNAL: a peer that went away (a weftctl stopped with Ctrl-C during a
/// slow reload) costs an EPIPE here, never a SIGPIPE that ends the process.
private func writeAll(_ fd: Int32, _ data: Data) {
    data.withUnsafeBytes { raw in
        var off = 0
        while off < raw.count {
            let n = send(fd, raw.baseAddress! + off, raw.count - off, Int32(MSG_NOSIGNAL))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            off += n
        }
    }
}
