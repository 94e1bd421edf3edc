import WeftDataplane
import WeftKernel
import WeftModel
import Foundation
import Logging

/// What one weftd leaves on the machine, recorded so that the next start
/// can clean up after a kill -9: memif socket files, kernel links, the admin
/// socket. An flock on `weftd.lock` tells a live owner from a dead one (the
/// kernel drops the lock when the process dies, however it dies).
///
/// The file is a JSON header line (pid, admin socket) followed by a journal:
/// `+s path`, `-s path`, `+l name`, `-l name`. A change appends its own lines
/// (its cost does not grow with what the node runs); the journal is rewritten
/// compact when it has grown to twice what it describes.
public final class RuntimeState {
    struct Header: Codable {
        var pid: Int32
        var adminSocket: String
    }

    public let dir: String
    let adminSocket: String
    let logger: Logger
    private var lockFD: Int32 = -1
    private var sockets = Set<String>(), links = Set<String>()
    private var journalLines = 0

    public var stateFile: String { "\(dir)/weftd.state" }

    public init(dir: String, adminSocket: String, logger: Logger) {
        self.dir = dir
        self.adminSocket = adminSocket
        self.logger = logger
    }

    /// Take the lock (or fail naming the live owner), then remove what a dead
    /// previous run left behind.
    public func acquire() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        let fd = open("\(dir)/weftd.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ApplyError(message: "cannot open \(dir)/weftd.lock: \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            close(fd)
            let owner = Self.read(stateFile)?.header.pid
            throw ApplyError(message: "another weftd\(owner.map { " (pid \($0))" } ?? "") is running with runtime dir \(dir)")
        }
        lockFD = fd
        cleanupPrevious()
        rewrite()
    }

    /// The header and the live sockets and links a state file describes.
    static func read(_ path: String) -> (header: Header, sockets: Set<String>, links: Set<String>)? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard !lines.isEmpty, let header = try? JSONDecoder().decode(Header.self, from: Data(lines.removeFirst().utf8)) else { return nil }
        var s = Set<String>(), l = Set<String>()
        for line in lines where line.count > 3 {
            let v = String(line.dropFirst(3))
            switch line.prefix(3) {
            case "+s ": s.insert(v)
            case "-s ": s.remove(v)
            case "+l ": l.insert(v)
            case "-l ": l.remove(v)
            default: break
            }
        }
        return (header, s, l)
    }

    func cleanupPrevious() {
        var sockets: [String] = [adminSocket]
        var links: [String] = []
        if let old = Self.read(stateFile) {
            logger.notice("previous weftd (pid \(old.header.pid)) did not shut down cleanly; cleaning up after it")
            sockets += Array(old.sockets) + [old.header.adminSocket]
            links += Array(old.links)
        }
        for s in Set(sockets) {
            var st = stat()
            if lstat(s, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK {
                unlink(s)
                logger.info("removed stale socket \(s)")
            }
        }
        for l in Set(links) where if_nametoindex(l) != 0 {
            do {
                if try NetNS.deleteLink(l) { logger.info("removed stale kernel interface \(l)") }
            } catch { logger.warning("cannot remove stale kernel interface \(l): \(error)") }
        }
    }

    /// The whole set (a file apply): the journal is rewritten.
    func record(sockets: [String], links: [String]) {
        self.sockets = Set(sockets)
        self.links = Set(links)
        rewrite()
    }

    /// What one change created / removed: appended to the journal.
    func note(sockets: [String], links: [String]) {
        append(sockets.filter { self.sockets.insert($0).inserted }.map { "+s \($0)" }
               + links.filter { self.links.insert($0).inserted }.map { "+l \($0)" })
    }

    func forget(sockets: [String], links: [String]) {
        append(sockets.filter { self.sockets.remove($0) != nil }.map { "-s \($0)" }
               + links.filter { self.links.remove($0) != nil }.map { "-l \($0)" })
    }

    private func append(_ lines: [String]) {
        guard !lines.isEmpty else { return }
        journalLines += lines.count
        if journalLines > 2 * (sockets.count + links.count) + 64 { rewrite(); return }
        guard let h = FileHandle(forWritingAtPath: stateFile) else { rewrite(); return }
        h.seekToEndOfFile()
        h.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        try? h.close()
    }

    private func rewrite() {
        guard let header = try? JSONEncoder().encode(Header(pid: getpid(), adminSocket: adminSocket)) else { return }
        var text = String(decoding: header, as: UTF8.self) + "\n"
        for s in sockets.sorted() { text += "+s \(s)\n" }
        for l in links.sorted() { text += "+l \(l)\n" }
        journalLines = sockets.count + links.count
        let tmp = stateFile + ".tmp"
        if FileManager.default.createFile(atPath: tmp, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) {
            rename(tmp, stateFile)
        }
    }

    /// Clean exit: everything was removed by the controller; drop the record and lock.
    public func release() {
        unlink(stateFile)
        unlink(adminSocket)
        if lockFD >= 0 {
            flock(lockFD, LOCK_UN)
            close(lockFD)
            lockFD = -1
        }
    }
}
