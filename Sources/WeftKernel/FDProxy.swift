import CWeftKernel
import Foundation

/// A file's identity as NSM's grpcfd names it: "inode://<st_dev>/<st_ino>",
/// both decimal (edwarnicke/grpcfd url.go: FDToURL / URLStringToDevIno).
public struct InodeURL: Hashable, Sendable, CustomStringConvertible {
    public var dev: UInt64
    public var ino: UInt64

    public init(dev: UInt64, ino: UInt64) {
        self.dev = dev
        self.ino = ino
    }

    /// Parse "inode://<dev>/<ino>"; nil for anything else (a peer's text is untrusted).
    public init?(_ text: String) {
        let scheme = "inode://"
        guard text.hasPrefix(scheme) else { return nil }
        let rest = text.dropFirst(scheme.count).split(separator: "/", omittingEmptySubsequences: false)
        guard rest.count == 2, let dev = UInt64(rest[0]), let ino = UInt64(rest[1]) else { return nil }
        self.init(dev: dev, ino: ino)
    }

    /// The identity of the file at path (stat follows symlinks, as Go's os.Stat).
    public init(path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw KernelError(operation: "stat \(path)", errno: errno, detail: "")
        }
        self.init(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
    }

    /// The identity of an open file descriptor.
    public init(fd: Int32) throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw KernelError(operation: "fstat fd \(fd)", errno: errno, detail: "")
        }
        self.init(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
    }

    public var description: String { "inode://\(dev)/\(ino)" }
}

/// Passes file descriptors alongside gRPC on unix sockets, as NSM's grpcfd
/// does, for a gRPC stack (grpc-swift on NIO) that cannot: a C thread bridges
/// each connection byte for byte and keeps the fds aside
/// (CShims/kernel/src/fdproxy.c, weft_fdproxy.h).
///
/// Serve: `serve(listening:backend:)` bridges every peer of the public socket
/// to the gRPC server's internal socket from a path of its own; the handler
/// finds its connection's fds by the remotePeer it was given
/// (`.served(remotePeer:)`, "unix:<path>"). Dial: `dial(_:)` gives a socket
/// path for the gRPC client to connect to instead of the peer.
///
/// Sendable: every C call is safe from any thread at once; the object only
/// holds constants. `take` and `flush` block their thread up to their timeout.
/// Stopping is deinit: the thread ends and every fd and socket file it made
/// goes with it.
public final class FDProxy: @unchecked Sendable {
    let proxy: OpaquePointer
    /// The private directory the bridge sockets live in.
    public let directory: String

    /// A dialer: the socket the gRPC client connects to, bridged to one peer.
    public struct Dialer: Hashable, Sendable {
        public let id: Int32
        /// Where the gRPC client connects ("unix:" + this as its target).
        public let localPath: String
        public let peer: String
    }

    /// Whose fds: one served connection, or all of a dialer's.
    public enum Connection: Hashable, Sendable, CustomStringConvertible {
        /// A served connection by the path the gRPC server reports as its peer;
        /// "unix:<path>" (grpc-swift's remotePeer) or the bare path.
        case served(remotePeer: String)
        case dialer(Int32)

        var bridgePath: String? {
            guard case .served(let peer) = self else { return nil }
            return peer.hasPrefix("unix:") ? String(peer.dropFirst(5)) : peer
        }
        var dialerID: Int32 {
            if case .dialer(let id) = self { return id }
            return -1
        }
        public var description: String {
            switch self {
            case .served(let peer): return "served connection \(peer)"
            case .dialer(let id): return "dialer \(id)"
            }
        }
    }

    public struct Stats: Sendable, Equatable {
        public var bridgesOpen: UInt64, bridgesTotal: UInt64, dialersOpen: UInt64
        public var fdsHeld: UInt64, fdsReceived: UInt64, fdsDuplicate: UInt64, fdsOverCap: UInt64
        public var fdsUnclaimed: UInt64, fdsTaken: UInt64, fdsSent: UInt64, fdsSendDropped: UInt64
        public var ctrunc: UInt64, connectFailed: UInt64, acceptRefused: UInt64
        public var bytesFromPeers: UInt64, bytesToPeers: UInt64
    }

    /// Start the proxy's thread. `directory` must exist with mode 0700 (or
    /// stricter) and be short enough for socket paths in it.
    public init(directory: String) throws {
        var p: OpaquePointer?
        wf_clear_last_error()
        let rc = wf_fdproxy_start(directory, &p)
        guard rc == 0, let p else { throw Netlink.error(rc, "start the fd proxy in \(directory)") }
        proxy = p
        self.directory = directory
    }

    deinit { wf_fdproxy_stop(proxy) }

    func check(_ rc: Int32, _ op: @autoclosure () -> String) throws {
        if rc < 0 { throw Netlink.error(rc, op()) }
    }

    /// Bridge every peer that connects to `fd` (bound and listening; the proxy
    /// keeps its own copy and makes it non-blocking) to the gRPC server at `backend`.
    public func serve(listening fd: Int32, backend: String) throws {
        wf_clear_last_error()
        try check(wf_fdproxy_serve(proxy, fd, backend), "serve fd \(fd) to \(backend)")
    }

    /// A socket for the gRPC client, bridged to `peer` (a socket path, or
    /// /proc/self/fd/N of an O_PATH fd of one).
    public func dial(_ peer: String) throws -> Dialer {
        var buf = [CChar](repeating: 0, count: 128)
        wf_clear_last_error()
        let id = wf_fdproxy_dial(proxy, peer, &buf, buf.count)
        try check(id, "dial \(peer)")
        return Dialer(id: id, localPath: String(cString: buf), peer: peer)
    }

    public func undial(_ dialer: Dialer) throws {
        wf_clear_last_error()
        try check(wf_fdproxy_undial(proxy, dialer.id), "undial \(dialer.peer)")
    }

    static func milliseconds(_ d: Duration) -> Int32 {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        return Int32(clamping: max(0, ms))
    }

    /// The fd (close-on-exec, the caller's to close; the connection no longer holds
    /// it) with identity `inode` that came in on `connection`, waiting up to `timeout` for it
    /// (this thread blocks meanwhile). Throws ETIMEDOUT when it did not come,
    /// ENOENT when the connection is gone.
    public func take(_ inode: InodeURL, from connection: Connection, timeout: Duration) throws -> Int32 {
        try takeNow(inode, from: connection, waitingMilliseconds: FDProxy.milliseconds(timeout))
    }

    /// The same for a gRPC handler: an fd usually arrives before the request
    /// that names it (it rides on earlier bytes), so the first look finds it;
    /// otherwise this sleeps between looks instead of holding one of the few
    /// threads of Swift's cooperative pool. Cancellation ends the wait.
    public func take(_ inode: InodeURL, from connection: Connection, timeout: Duration) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                return try takeNow(inode, from: connection, waitingMilliseconds: 0)
            } catch let e as KernelError where e.errno == ETIMEDOUT {
                guard ContinuousClock.now < deadline else {
                    throw KernelError(operation: "take \(inode) from \(connection)", errno: ETIMEDOUT,
                                      detail: "not arrived in \(timeout)")
                }
                try await Task.sleep(for: .milliseconds(2))
            }
        }
    }

    func takeNow(_ inode: InodeURL, from connection: Connection, waitingMilliseconds ms: Int32) throws -> Int32 {
        wf_clear_last_error()
        let fd = wf_fdproxy_take(proxy, connection.bridgePath, connection.dialerID, inode.dev, inode.ino, ms)
        try check(fd, "take \(inode) from \(connection)")
        return fd
    }

    /// Queue a copy of `fd` to ride on the next bytes that go to the peer of `connection`.
    public func send(_ fd: Int32, to connection: Connection) throws {
        wf_clear_last_error()
        try check(wf_fdproxy_send(proxy, connection.bridgePath, connection.dialerID, fd),
                  "send fd \(fd) to \(connection)")
    }

    /// Wait until every fd queued for `connection` went out (bytes must flow to the peer).
    public func flush(_ connection: Connection, timeout: Duration) throws {
        wf_clear_last_error()
        try check(wf_fdproxy_flush(proxy, connection.bridgePath, connection.dialerID, FDProxy.milliseconds(timeout)),
                  "flush fds to \(connection)")
    }

    public var stats: Stats {
        var s = wf_fdproxy_stats()
        wf_fdproxy_get_stats(proxy, &s)
        return Stats(bridgesOpen: s.bridges_open, bridgesTotal: s.bridges_total, dialersOpen: s.dialers_open,
                     fdsHeld: s.fds_held, fdsReceived: s.fds_received, fdsDuplicate: s.fds_duplicate,
                     fdsOverCap: s.fds_over_cap, fdsUnclaimed: s.fds_unclaimed, fdsTaken: s.fds_taken,
                     fdsSent: s.fds_sent, fdsSendDropped: s.fds_send_dropped, ctrunc: s.ctrunc,
                     connectFailed: s.connect_failed, acceptRefused: s.accept_refused,
                     bytesFromPeers: s.bytes_from_peers, bytesToPeers: s.bytes_to_peers)
    }
}
