import Foundation
import Synchronization
import WeftKernel

/// The fds Weft received over grpcfd and still uses: pod network namespaces and
/// endpoints' sockets, by their inode URL, reachable as /proc/self/fd/N. One per
/// inode (a repeat is closed at once). Namespaces no connection names any more are
/// closed by `sweep` after a grace period; sockets are kept (one per endpoint socket
/// ever found, which is what a Close or refresh may still dial).
final class ReceivedFiles: Sendable {
    enum Kind: Sendable { case netns, socket }
    private struct Entry { var fd: Int32; var kind: Kind; var lastUsed: ContinuousClock.Instant }
    private let entries = Mutex<[InodeURL: Entry]>([:])

    static let shared = ReceivedFiles()

    /// Keep `fd` (the caller gives it up) as `inode`; the path to use it by.
    @discardableResult
    func keep(_ inode: InodeURL, fd: Int32, kind: Kind) -> String {
        let (kept, extra): (Int32, Int32?) = entries.withLock { e in
            if var x = e[inode] {
                x.lastUsed = .now
                e[inode] = x
                return (x.fd, fd)
            }
            e[inode] = Entry(fd: fd, kind: kind, lastUsed: .now)
            return (fd, nil)
        }
        if let extra, extra != kept { close(extra) }
        return "/proc/self/fd/\(kept)"
    }

    /// Where a received file is, if Weft holds it.
    func path(_ inode: InodeURL) -> String? {
        entries.withLock { e in
            guard var x = e[inode] else { return nil }
            x.lastUsed = .now
            e[inode] = x
            return "/proc/self/fd/\(x.fd)"
        }
    }

    var count: Int { entries.withLock { $0.count } }

    /// Close the namespaces not in `inUse` and unused for `grace`.
    func sweep(inUse: Set<InodeURL>, grace: Duration = .seconds(30)) {
        let now = ContinuousClock.now
        let doomed: [Int32] = entries.withLock { e in
            var out: [Int32] = []
            for (k, v) in e where v.kind == .netns && !inUse.contains(k) && now - v.lastUsed > grace {
                out.append(v.fd)
                e[k] = nil
            }
            return out
        }
        for fd in doomed { close(fd) }
    }
}

/// A connection's fds in the proxy (a served caller or a dialled peer).
struct ProxyFiles: NSMFiles {
    let proxy: FDProxy
    let connection: FDProxy.Connection

    func take(_ inodeURL: String, timeout: Duration) async -> Int32? {
        guard let inode = InodeURL(inodeURL) else { return nil }
        return try? await proxy.take(inode, from: connection, timeout: timeout)
    }

    func send(path: String) -> String? {
        let fd = open(path, 0o10000000 /* O_PATH */ | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard let inode = try? InodeURL(fd: fd), (try? proxy.send(fd, to: connection)) != nil else { return nil }
        return inode.description
    }
}

extension NSMFiles {
    /// Claim the fd a peer passed for `url` (an inode URL) into the received files.
    /// Returns whether Weft now holds it.
    /// A file Weft holds already is only looked for briefly (a peer that sends it again
    /// has sent it before the request; one that does not must not cost a second).
    @discardableResult
    func claim(_ url: String?, kind: ReceivedFiles.Kind, timeout: Duration = .seconds(1)) async -> Bool {
        guard let url, let inode = InodeURL(url) else { return false }
        let held = ReceivedFiles.shared.path(inode) != nil
        guard let fd = await take(url, timeout: held ? .milliseconds(50) : timeout) else { return held }
        ReceivedFiles.shared.keep(inode, fd: fd, kind: kind)
        return true
    }
}

/// A listening unix socket of Weft's own at `path` (the NSM API's public socket that
/// the fd proxy serves).
func listenUnix(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw NSMError(.internalError, "listen", "socket: \(String(cString: strerror(errno)))") }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
        close(fd)
        throw NSMError(.invalidArgument, "listen", "\(path) is too long for a unix socket")
    }
    withUnsafeMutableBytes(of: &addr.sun_path) { p in
        for (i, b) in bytes.enumerated() { p[i] = b }
        p[bytes.count] = 0
    }
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard rc == 0, listen(fd, 256) == 0 else {
        let e = errno
        close(fd)
        throw NSMError(.internalError, "listen", "bind/listen \(path): \(String(cString: strerror(e)))")
    }
    return fd
}
