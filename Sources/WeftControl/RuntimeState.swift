import WeftDataplane
import WeftKernel
import WeftModel
import Foundation
import Logging

/// What one weftd leaves on the machine, recorded so that the next start
/// can clean up after a kill -9: memif socket files, kernel links, the admin
/// socket. An flock on `weftd.lock` tells a live owner from a dead one (the
/// kernel drops the lock when the process dies, however it dies).
public final class RuntimeState {
    struct Record: Codable {
        var pid: Int32
        var adminSocket: String
        var sockets: [String]
        var links: [String]
    }

    public let dir: String
    let adminSocket: String
    let logger: Logger
    private var lockFD: Int32 = -1
    private var record: Record

    public var stateFile: String { "\(dir)/weftd.state" }

    public init(dir: String, adminSocket: String, logger: Logger) {
        self.dir = dir
        self.adminSocket = adminSocket
        self.logger = logger
        self.record = Record(pid: getpid(), adminSocket: adminSocket, sockets: [], links: [])
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
            let owner = (try? JSONDecoder().decode(Record.self, from: Data(contentsOf: URL(fileURLWithPath: stateFile))))?.pid
            throw ApplyError(message: "another weftd\(owner.map { " (pid \($0))" } ?? "") is running with runtime dir \(dir)")
        }
        lockFD = fd
        cleanupPrevious()
    }

    func cleanupPrevious() {
        var sockets: [String] = [adminSocket]
        var links: [String] = []
        if let data = FileManager.default.contents(atPath: stateFile),
           let old = try? JSONDecoder().decode(Record.self, from: data) {
            logger.notice("previous weftd (pid \(old.pid)) did not shut down cleanly; cleaning up after it")
            sockets += old.sockets + [old.adminSocket]
            links += old.links
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
        record.sockets = []
        record.links = []
        write()
    }

    func record(sockets: [String], links: [String]) {
        record.sockets = sockets
        record.links = links
        write()
    }

    private func write() {
        guard let data = try? JSONEncoder().encode(record) else { return }
        let tmp = stateFile + ".tmp"
        if FileManager.default.createFile(atPath: tmp, contents: data, attributes: [.posixPermissions: 0o600]) {
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
