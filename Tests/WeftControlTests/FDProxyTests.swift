import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import WeftKernel
import WeftNSMProto
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The fd proxy between unix-socket peers that pass fds (NSM's grpcfd) and
/// NIO: fake peers made of plain sockets, fds counted before and after.
final class FDProxyTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        // Short: bridge socket paths must fit a sockaddr_un. mkdtemp makes it 0700.
        var template = Array("/tmp/wfp-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw posix("mkdtemp") }
        dir = String(cString: template)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    // MARK: - The proxy's work

    func testServedConnectionCarriesFDsBothWaysAlongsideMegabytes() throws {
        let before = openFDs()
        try {
            let proxy = try FDProxy(directory: dir)
            let pub = try listen("\(dir)/pub.sock"), backend = try listen("\(dir)/grpc.sock")
            defer { close(pub); close(backend) }
            try proxy.serve(listening: pub, backend: "\(dir)/grpc.sock")

            let peer = try connect("\(dir)/pub.sock")
            let nio = try accept(backend)
            defer { close(peer); close(nio) }
            // What NIO reports as remotePeer for this connection: the bound path.
            let remotePeer = "unix:" + (try peerName(nio))
            XCTAssertTrue(remotePeer.hasPrefix("unix:\(dir)/b-"), remotePeer)

            let files = try (0..<3).map { try tempFile("in-\($0)") }
            let outFile = try tempFile("out")
            defer { (files + [outFile]).forEach { close($0) } }

            // Queued before any byte flows: it rides on the first bytes NIO writes.
            try proxy.send(outFile, to: .served(remotePeer: remotePeer))

            let size = 4 << 20
            let up = randomBytes(size), down = randomBytes(size)
            let gotUp = Box<[UInt8]>([]), gotDown = Box<([UInt8], [Int32])>(([], []))
            let group = DispatchGroup()
            DispatchQueue.global().async(group: group) {
                // The fds ride on the first 1,000 bytes, the rest is plain writes.
                try! self.sendWithFDs(peer, Array(up[0..<1000]), fds: files)
                self.writeAll(peer, Array(up[1000...]))
            }
            DispatchQueue.global().async(group: group) {
                self.writeAll(nio, down)
                shutdown(nio, Int32(SHUT_WR))
            }
            DispatchQueue.global().async(group: group) { gotUp.value = self.readExactly(nio, size) }
            DispatchQueue.global().async(group: group) { gotDown.value = self.readToEndWithFDs(peer) }
            XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
            let (up2, (down2, fdsDown)) = (gotUp.value, gotDown.value)

            XCTAssertEqual(up2.count, size)
            XCTAssertEqual(down2.count, size)
            XCTAssertTrue(up2 == up, "bytes from the peer changed on the way")
            XCTAssertTrue(down2 == down, "bytes to the peer changed on the way")

            // The peer got exactly the fd we sent.
            XCTAssertEqual(fdsDown.count, 1)
            XCTAssertEqual(try fdsDown.map { try InodeURL(fd: $0) }, [try InodeURL(fd: outFile)])
            fdsDown.forEach { close($0) }

            // The gRPC side finds each fd by its inode on its connection, while
            // that connection lasts (the peer has only half-closed it so far).
            for f in files.reversed() {
                let inode = try InodeURL(fd: f)
                let got = try proxy.take(inode, from: .served(remotePeer: remotePeer), timeout: .seconds(2))
                XCTAssertEqual(try InodeURL(fd: got), inode)
                XCTAssertNotEqual(got, f)
                close(got)
            }
            // Unknown inode: a clean timeout, not earlier.
            let start = ContinuousClock.now
            XCTAssertThrowsError(try proxy.take(InodeURL(dev: 1, ino: 2), from: .served(remotePeer: remotePeer),
                                                timeout: .milliseconds(150))) {
                XCTAssertEqual(($0 as? KernelError)?.errno, ETIMEDOUT, "\($0)")
            }
            XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(140))
            // Another connection's fds are not this one's.
            XCTAssertThrowsError(try proxy.take(try InodeURL(fd: files[0]), from: .served(remotePeer: "unix:\(dir)/b-999.sock"),
                                                timeout: .milliseconds(10))) {
                XCTAssertEqual(($0 as? KernelError)?.errno, ENOENT, "\($0)")
            }
            shutdown(peer, Int32(SHUT_WR))
            XCTAssertEqual(readToEnd(nio).count, 0)

            try waitFor { proxy.stats.bridgesOpen == 0 }
            let s = proxy.stats
            XCTAssertEqual(s.fdsReceived, 3)
            XCTAssertEqual(s.fdsTaken, 3)
            XCTAssertEqual(s.fdsSent, 1)
            XCTAssertEqual(s.fdsHeld, 0)
            XCTAssertEqual(s.bytesFromPeers, UInt64(size))
            XCTAssertEqual(s.bytesToPeers, UInt64(size))
            XCTAssertEqual(s.ctrunc, 0)
            // Nothing left behind in the private directory but the test's own files.
            XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir).contains { $0.hasPrefix("b-") })
        }()
        assertNoFDLeak(since: before)
    }

    func testDialerCarriesFDsBothWaysToAPeerGivenAsProcFD() throws {
        let before = openFDs()
        try {
            let proxy = try FDProxy(directory: dir)
            let peerListener = try listen("\(dir)/nsmgr.sock")
            // NSM hands over sockets as O_PATH fds; we dial /proc/self/fd/N.
            let opath = open("\(dir)/nsmgr.sock", 0o10000000 /* O_PATH, hidden from Swift without _GNU_SOURCE */ | O_CLOEXEC)
            XCTAssertGreaterThanOrEqual(opath, 0)
            defer { close(peerListener); close(opath) }
            let dialer = try proxy.dial("/proc/self/fd/\(opath)")
            XCTAssertTrue(dialer.localPath.hasPrefix("\(dir)/d-"), dialer.localPath)

            let client = try connect(dialer.localPath)
            let peer = try accept(peerListener)
            defer { close(client); close(peer) }
            let outFile = try tempFile("out"), inFile = try tempFile("in")
            defer { close(outFile); close(inFile) }

            // Client to peer: the queued fd rides on the client's bytes.
            try proxy.send(outFile, to: .dialer(dialer.id))
            writeAll(client, Array("request".utf8))
            let (bytes, fds) = try recvWithFDs(peer)
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self), "request")
            XCTAssertEqual(try fds.map { try InodeURL(fd: $0) }, [try InodeURL(fd: outFile)])
            fds.forEach { close($0) }
            try proxy.flush(.dialer(dialer.id), timeout: .seconds(1))

            // Peer to client: the fd is kept for the dialer, the bytes go on.
            try sendWithFDs(peer, Array("answer".utf8), fds: [inFile])
            XCTAssertEqual(String(decoding: readExactly(client, 6), as: UTF8.self), "answer")
            let inode = try InodeURL(fd: inFile)
            let got = try proxy.take(inode, from: .dialer(dialer.id), timeout: .seconds(2))
            XCTAssertEqual(try InodeURL(fd: got), inode)
            close(got)
            // Taken: the fd is the caller's now, the dialer holds it no more (a long-lived
            // connection passing many files never fills its cap).
            XCTAssertThrowsError(try proxy.take(inode, from: .dialer(dialer.id), timeout: .milliseconds(20)))
            XCTAssertEqual(proxy.stats.fdsHeld, 0)

            // As Go's grpcfd sends them: one fd on each of the first bytes of a write.
            let many = try (0..<10).map { try tempFile("many-\($0)") }
            defer { many.forEach { close($0) } }
            let frame = Array("0123456789-and-the-rest".utf8)
            for (i, f) in many.enumerated() { try sendWithFDs(peer, [frame[i]], fds: [f]) }
            writeAll(peer, Array(frame[10...]))
            XCTAssertEqual(readExactly(client, frame.count), frame)
            for f in many {
                let id = try InodeURL(fd: f)
                let got = try proxy.take(id, from: .dialer(dialer.id), timeout: .seconds(1))
                XCTAssertEqual(try InodeURL(fd: got), id)
                close(got)
            }

            // Half-close both ways: the peer sees EOF, can still answer, then ends.
            shutdown(client, Int32(SHUT_WR))
            XCTAssertEqual(readToEnd(peer).count, 0)
            writeAll(peer, Array("bye".utf8))
            // Not close: the defer above closes peer, and a second close could
            // hit an fd the proxy opened meanwhile under the same number.
            shutdown(peer, Int32(SHUT_RDWR))
            XCTAssertEqual(String(decoding: readToEnd(client), as: UTF8.self), "bye")
            try waitFor { proxy.stats.bridgesOpen == 0 }
            // The connection that carried the fd ended: the fd went with it.
            XCTAssertThrowsError(try proxy.take(inode, from: .dialer(dialer.id), timeout: .milliseconds(50)))

            try proxy.undial(dialer)
            XCTAssertThrowsError(try proxy.take(inode, from: .dialer(dialer.id), timeout: .milliseconds(10))) {
                XCTAssertEqual(($0 as? KernelError)?.errno, ENOENT, "\($0)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dialer.localPath))
            let s = proxy.stats
            XCTAssertEqual(s.fdsSent, 1)
            XCTAssertEqual(s.fdsReceived, 11)
            XCTAssertEqual(s.fdsTaken, 11)
            XCTAssertEqual(s.dialersOpen, 0)

            // A peer that is not there: the client's connection ends, counted.
            let nowhere = try proxy.dial("\(dir)/absent.sock")
            let lost = try connect(nowhere.localPath)
            XCTAssertEqual(readToEnd(lost).count, 0)
            close(lost)
            XCTAssertEqual(proxy.stats.connectFailed, 1)
            // Queued fds are capped per dialer; the extra one is refused, not lost silently.
            for _ in 0..<64 { try proxy.send(outFile, to: .dialer(nowhere.id)) }
            XCTAssertThrowsError(try proxy.send(outFile, to: .dialer(nowhere.id))) {
                XCTAssertEqual(($0 as? KernelError)?.errno, ENOBUFS, "\($0)")
            }
            XCTAssertThrowsError(try proxy.flush(.dialer(nowhere.id), timeout: .milliseconds(20))) {
                XCTAssertEqual(($0 as? KernelError)?.errno, ETIMEDOUT, "\($0)")
            }
            try proxy.undial(nowhere)
            XCTAssertEqual(proxy.stats.fdsSendDropped, 64)
        }()
        assertNoFDLeak(since: before)
    }

    func testHostilePeersCostThemselvesOnly() throws {
        let before = openFDs()
        try {
            let proxy = try FDProxy(directory: dir)
            let pub = try listen("\(dir)/pub.sock"), backend = try listen("\(dir)/grpc.sock")
            defer { close(pub); close(backend) }
            try proxy.serve(listening: pub, backend: "\(dir)/grpc.sock")

            // 300 fds at once (the kernel carries at most 253 per message: two
            // messages back to back). 64 are held, the rest closed and counted.
            do {
                let peer = try connect("\(dir)/pub.sock"), nio = try accept(backend)
                var pairs: [Int32] = []
                for _ in 0..<150 {
                    var sv: [Int32] = [0, 0]
                    XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv), 0)
                    pairs += sv
                }
                try sendWithFDs(peer, [1], fds: Array(pairs[0..<253]))
                try sendWithFDs(peer, [2], fds: Array(pairs[253...]))
                XCTAssertEqual(readExactly(nio, 2), [1, 2])
                let remotePeer = "unix:" + (try peerName(nio))
                // The first ones are held; one past the cap is not.
                close(try proxy.take(try InodeURL(fd: pairs[0]), from: .served(remotePeer: remotePeer), timeout: .seconds(1)))
                XCTAssertThrowsError(try proxy.take(try InodeURL(fd: pairs[299]), from: .served(remotePeer: remotePeer),
                                                    timeout: .milliseconds(50)))
                pairs.forEach { close($0) }
                // A taken fd is the caller's: the connection holds one fewer, and the same
                // file is not there to take again.
                XCTAssertThrowsError(try proxy.take(try InodeURL(fd: pairs[0]), from: .served(remotePeer: remotePeer),
                                                    timeout: .milliseconds(20)))
                let s = proxy.stats
                XCTAssertEqual(s.fdsReceived, 300)
                XCTAssertEqual(s.fdsHeld, 63)
                XCTAssertEqual(s.fdsOverCap, 236)
                XCTAssertEqual(s.ctrunc, 0)
                close(peer)
                close(nio)
                try waitFor { proxy.stats.bridgesOpen == 0 }
                XCTAssertEqual(proxy.stats.fdsHeld, 0)
                XCTAssertEqual(proxy.stats.fdsUnclaimed, 63)
            }

            // A peer that never reads: the proxy stops reading NIO at its cap and
            // keeps serving everyone else.
            let lazy = try connect("\(dir)/pub.sock"), lazyNIO = try accept(backend)
            _ = fcntl(lazyNIO, F_SETFL, fcntl(lazyNIO, F_GETFL) | O_NONBLOCK)
            var stuffed = 0
            let chunk = [UInt8](repeating: 7, count: 65536)
            for _ in 0..<400 {
                let n = chunk.withUnsafeBytes { Glibc.send(lazyNIO, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n > 0 { stuffed += n } else { usleep(1000) }
            }
            XCTAssertLessThan(stuffed, 400 * 65536, "the writer never felt back-pressure")

            // Garbage, and a peer that sends and closes at once: bytes pass, nothing breaks.
            do {
                let g = try connect("\(dir)/pub.sock"), gn = try accept(backend)
                let junk = randomBytes(100_000)
                writeAll(g, junk)
                close(g)
                XCTAssertTrue(readToEnd(gn) == junk)
                close(gn)
            }

            // 1,000 peers that connect and close at once; NIO (here: a thread)
            // accepts and closes too.
            let total0 = proxy.stats.bridgesTotal
            let acceptor = Acceptor(backend)
            for _ in 0..<1000 { close(try connect("\(dir)/pub.sock")) }
            try waitFor(seconds: 30) { proxy.stats.bridgesTotal == total0 + 1000 && proxy.stats.bridgesOpen == 1 }
            // Every one reached the backend: none is left in its backlog for the
            // accept below to pick up instead of the next peer's.
            try waitFor(seconds: 30) { acceptor.accepted == 1000 }
            acceptor.stop()

            // Still alive for a well-behaved peer while the lazy one is stuck.
            let ok = try connect("\(dir)/pub.sock"), okNIO = try accept(backend)
            writeAll(ok, Array("ping".utf8))
            XCTAssertEqual(readExactly(okNIO, 4), Array("ping".utf8))
            writeAll(okNIO, Array("pong".utf8))
            XCTAssertEqual(readExactly(ok, 4), Array("pong".utf8))
            close(ok)
            close(okNIO)
            close(lazy)
            close(lazyNIO)
            try waitFor { proxy.stats.bridgesOpen == 0 }
            let s = proxy.stats
            XCTAssertEqual(s.connectFailed, 0)
            XCTAssertEqual(s.acceptRefused, 0)
            XCTAssertEqual(s.fdsHeld, 0)
        }()
        assertNoFDLeak(since: before)
    }

    /// Real gRPC both ends: a client dials through one proxy, the server is
    /// served behind another. The client's fd arrives at the server keyed by
    /// the remotePeer its handler sees, and the server's answer fd comes back.
    func testGRPCServerFindsTheClientsFDByItsRemotePeer() async throws {
        let serverDir = dir + "/s", clientDir = dir + "/c"
        XCTAssertEqual(mkdir(serverDir, 0o700), 0)
        XCTAssertEqual(mkdir(clientDir, 0o700), 0)
        let serverProxy = try FDProxy(directory: serverDir)
        let clientProxy = try FDProxy(directory: clientDir)
        let answerFile = try tempFile("answer"), requestFile = try tempFile("request")
        defer { close(answerFile); close(requestFile) }

        let health = FDHealth(proxy: serverProxy, answer: answerFile)
        let backendPath = serverDir + "/grpc.sock"
        let server = GRPCServer(transport: .http2NIOPosix(address: .unixDomainSocket(path: backendPath), transportSecurity: .plaintext),
                                services: [health])
        let serving = Task { try await server.serve() }
        _ = try await server.listeningAddress
        let pub = try listen(dir + "/forwarder.sock")
        defer { close(pub) }
        try serverProxy.serve(listening: pub, backend: backendPath)

        let dialer = try clientProxy.dial(dir + "/forwarder.sock")
        // Queued before the client even connects: rides on its first bytes.
        try clientProxy.send(requestFile, to: .dialer(dialer.id))
        let requestInode = try InodeURL(fd: requestFile)
        let answer = try await withGRPCClient(
            transport: .http2NIOPosix(target: .unixDomainSocket(path: dialer.localPath), transportSecurity: .plaintext)
        ) { client in
            var req = Grpc_Health_V1_HealthCheckRequest()
            req.service = requestInode.description
            let answer = try await Grpc_Health_V1_Health.Client(wrapping: client).check(req)
            // The server's fd rode on the answer to the client's dialer; it is
            // there while the connection lasts.
            let answerInode = try InodeURL(fd: answerFile)
            let got = try await clientProxy.take(answerInode, from: .dialer(dialer.id), timeout: .seconds(2))
            XCTAssertEqual(try InodeURL(fd: got), answerInode)
            close(got)
            return answer
        }
        XCTAssertEqual(answer.status, .serving)
        // The handlers' take: an unknown inode times out cleanly, not earlier.
        let start = ContinuousClock.now
        do {
            _ = try await clientProxy.take(InodeURL(dev: 1, ino: 2), from: .dialer(dialer.id), timeout: .milliseconds(100))
            XCTFail("took an fd that never came")
        } catch let e as KernelError {
            XCTAssertEqual(e.errno, ETIMEDOUT, "\(e)")
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(100))
        let peers = health.peers
        XCTAssertEqual(peers.count, 1)
        XCTAssertTrue(peers[0].hasPrefix("unix:\(serverDir)/b-") && peers[0].hasSuffix(".sock"), "\(peers)")

        server.beginGracefulShutdown()
        _ = try? await serving.value
        try clientProxy.undial(dialer)
        try waitFor { serverProxy.stats.bridgesOpen == 0 && clientProxy.stats.bridgesOpen == 0 }
        XCTAssertEqual(serverProxy.stats.fdsReceived, 1)
        XCTAssertEqual(serverProxy.stats.fdsSent, 1)
        XCTAssertEqual(clientProxy.stats.fdsSent, 1)
        XCTAssertEqual(clientProxy.stats.fdsReceived, 1)
    }

    func testInodeURLMatchesGrpcfd() throws {
        XCTAssertEqual(InodeURL("inode://2049/131090"), InodeURL(dev: 2049, ino: 131_090))
        XCTAssertEqual(InodeURL(dev: 64768, ino: 4_026_531_840).description, "inode://64768/4026531840")
        for bad in ["inode://1", "inode://x/2", "file:///1/2", "inode://1/2/3", "inode://-1/2", "inode:///2", ""] {
            XCTAssertNil(InodeURL(bad), bad)
        }
        let f = try tempFile("id")
        defer { close(f) }
        XCTAssertEqual(try InodeURL(fd: f), try InodeURL(path: "/proc/self/fd/\(f)"))
        XCTAssertThrowsError(try InodeURL(path: "\(dir)/absent"))
    }

    func testStartChecksItsDirectoryAndSweepsWhatAnEarlierRunLeft() throws {
        chmod(dir, 0o755)
        XCTAssertThrowsError(try FDProxy(directory: dir)) {
            XCTAssertEqual(($0 as? KernelError)?.errno, EPERM, "\($0)")
        }
        chmod(dir, 0o700)
        XCTAssertThrowsError(try FDProxy(directory: dir + "/" + String(repeating: "x", count: 80)))

        // A kill -9 leaves bound sockets behind: the proxy's own names go, nothing else.
        for name in ["b-7.sock", "d-12.sock", "b-x.sock", "grpc.sock"] { close(try listen("\(dir)/\(name)")) }
        FileManager.default.createFile(atPath: "\(dir)/b-8.sock", contents: Data())
        _ = try FDProxy(directory: dir)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["b-8.sock", "b-x.sock", "grpc.sock"])
    }

    // MARK: - Plain sockets

    struct SysError: Error, CustomStringConvertible {
        var what: String
        var errno: Int32
        var description: String { "\(what): \(String(cString: strerror(errno)))" }
    }

    func posix(_ what: String) -> SysError { SysError(what: what, errno: errno) }

    func address(_ path: String) -> sockaddr_un {
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { buf in
            let b = Array(path.utf8)
            precondition(b.count < buf.count)
            buf.copyBytes(from: b)
        }
        return sa
    }

    func listen(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var sa = address(path)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, Glibc.listen(fd, 1024) == 0 else { close(fd); throw posix("listen on \(path)") }
        return fd
    }

    func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var sa = address(path)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { close(fd); throw posix("connect to \(path)") }
        return bounded(fd)
    }

    /// Reads give up after 10 s: a byte the proxy lost fails the test instead of hanging it.
    func bounded(_ fd: Int32) -> Int32 {
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    func accept(_ listener: Int32) throws -> Int32 {
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { throw posix("accept") }
        return bounded(fd)
    }

    func peerName(_ fd: Int32) throws -> String {
        var sa = sockaddr_un()
        var len = socklen_t(MemoryLayout<sockaddr_un>.size)
        let rc = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) }
        }
        guard rc == 0 else { throw posix("getpeername") }
        return withUnsafeBytes(of: &sa.sun_path) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    }

    func tempFile(_ name: String) throws -> Int32 {
        let fd = open("\(dir)/\(name)", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw posix("create \(name)") }
        return fd
    }

    // cmsghdr on 64-bit Linux: 16 bytes of header, then the fds (Glibc's CMSG_* are macros Swift cannot call).
    static let cmsgHeader = MemoryLayout<cmsghdr>.size

    func sendWithFDs(_ fd: Int32, _ bytes: [UInt8], fds: [Int32]) throws {
        let dataLen = fds.count * 4
        var control = [UInt8](repeating: 0, count: FDProxyTests.cmsgHeader + (dataLen + 7) / 8 * 8)
        control.withUnsafeMutableBytes { c in
            var h = cmsghdr()
            h.cmsg_len = FDProxyTests.cmsgHeader + dataLen
            h.cmsg_level = SOL_SOCKET
            h.cmsg_type = Int32(SCM_RIGHTS)
            withUnsafeBytes(of: &h) { c.copyMemory(from: $0) }
            fds.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: c[FDProxyTests.cmsgHeader...]).copyMemory(from: $0) }
        }
        var bytes = bytes
        let n = bytes.withUnsafeMutableBytes { b in
            control.withUnsafeMutableBytes { c in
                var iov = iovec(iov_base: b.baseAddress, iov_len: b.count)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var m = msghdr()
                    m.msg_iov = iovp
                    m.msg_iovlen = 1
                    m.msg_control = c.baseAddress
                    m.msg_controllen = c.count
                    return sendmsg(fd, &m, Int32(MSG_NOSIGNAL))
                }
            }
        }
        guard n == bytes.count else { throw posix("sendmsg") }
    }

    func recvWithFDs(_ fd: Int32, max: Int = 65536) throws -> ([UInt8], [Int32]) {
        var bytes = [UInt8](repeating: 0, count: max)
        var control = [UInt8](repeating: 0, count: 4096)
        var fds: [Int32] = []
        let n = bytes.withUnsafeMutableBytes { b in
            control.withUnsafeMutableBytes { c in
                var iov = iovec(iov_base: b.baseAddress, iov_len: b.count)
                return withUnsafeMutablePointer(to: &iov) { iovp -> Int in
                    var m = msghdr()
                    m.msg_iov = iovp
                    m.msg_iovlen = 1
                    m.msg_control = c.baseAddress
                    m.msg_controllen = c.count
                    let n = recvmsg(fd, &m, Int32(MSG_CMSG_CLOEXEC))
                    // Walk the control messages (one SCM_RIGHTS in practice).
                    var off = 0
                    while n >= 0, off + FDProxyTests.cmsgHeader <= m.msg_controllen {
                        let h = c.load(fromByteOffset: off, as: cmsghdr.self)
                        guard h.cmsg_len >= FDProxyTests.cmsgHeader else { break }
                        if h.cmsg_level == SOL_SOCKET, h.cmsg_type == Int32(SCM_RIGHTS) {
                            let k = (h.cmsg_len - FDProxyTests.cmsgHeader) / 4
                            for i in 0..<k {
                                fds.append(c.loadUnaligned(fromByteOffset: off + FDProxyTests.cmsgHeader + 4 * i, as: Int32.self))
                            }
                        }
                        off += (h.cmsg_len + 7) / 8 * 8
                    }
                    return n
                }
            }
        }
        guard n >= 0 else { throw posix("recvmsg") }
        return (Array(bytes[0..<n]), fds)
    }

    func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, min($0.count, 100_000), Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { XCTFail("write: \(String(cString: strerror(errno)))"); return }
            off += n
        }
    }

    func readExactly(_ fd: Int32, _ count: Int) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: count)
        while out.count < count {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, count - out.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    func readToEnd(_ fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return out }
            out += buf[0..<n]
        }
    }

    func readToEndWithFDs(_ fd: Int32) -> ([UInt8], [Int32]) {
        var out: [UInt8] = [], fds: [Int32] = []
        while let (b, f) = try? recvWithFDs(fd) {
            fds += f
            if b.isEmpty { break }
            out += b
        }
        return (out, fds)
    }

    func randomBytes(_ n: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<n / 8).flatMap { _ in withUnsafeBytes(of: g.next() as UInt64) { Array($0) } } + [UInt8](repeating: 0x5a, count: n % 8)
    }

    /// No fd the test did not have before: the proxy closes everything before
    /// its deinit returns, but the runtime may open (and close) one of its own
    /// meanwhile, so a new fd must last a second to count. Fds closed meanwhile
    /// are not the proxy's doing: earlier tests' child processes and pipes are
    /// reaped on other threads while this one runs (seen in CI).
    func assertNoFDLeak(since before: [String], file: StaticString = #filePath, line: UInt = #line) {
        let end = Date().addingTimeInterval(1)
        var leaked = Set(openFDs()).subtracting(before)
        while !leaked.isEmpty, Date() < end {
            usleep(10000)
            leaked = Set(openFDs()).subtracting(before)
        }
        XCTAssertEqual(leaked.sorted(), [], "fds leaked", file: file, line: line)
    }

    /// The process's open fds as "fd -> target", so a leak names itself.
    /// Timerfds are left out: libdispatch opens one lazily (seen during the
    /// first test of a run) and the proxy never makes any.
    func openFDs() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return names.compactMap { n in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(n)"),
                  target != "anon_inode:[timerfd]" else { return nil }
            return "\(n) -> \(target)"
        }.sorted()
    }

    func waitFor(seconds: Double = 5, _ cond: () -> Bool) throws {
        let end = Date().addingTimeInterval(seconds)
        while !cond() {
            if Date() > end {
                XCTFail("timed out waiting")
                return
            }
            usleep(5000)
        }
    }
}

/// A result filled by one thread and read after DispatchGroup.wait.
final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// Accepts and closes on a listener until stopped (a backend that hangs up).
final class Acceptor: @unchecked Sendable {
    let fd: Int32
    let lock = NSLock()
    var stopping = false
    var _accepted = 0
    var accepted: Int { lock.withLock { _accepted } }
    let done = DispatchSemaphore(value: 0)

    init(_ fd: Int32) {
        self.fd = fd
        Thread.detachNewThread { self.run() }
    }

    func run() {
        while !(lock.withLock { stopping }) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 20) > 0 {
                let c = Glibc.accept(fd, nil, nil)
                if c >= 0 {
                    close(c)
                    lock.withLock { _accepted += 1 }
                }
            }
        }
        done.signal()
    }

    func stop() {
        lock.withLock { stopping = true }
        done.wait()
    }
}

/// Health as an fd-passing service: the request names an inode the client sent
/// over the connection; the handler takes it by the remotePeer it was given and
/// answers with an fd of its own.
final class FDHealth: Grpc_Health_V1_Health.SimpleServiceProtocol, @unchecked Sendable {
    let proxy: FDProxy
    let answer: Int32
    private let lock = NSLock()
    private var _peers: [String] = []
    var peers: [String] { lock.withLock { _peers } }

    init(proxy: FDProxy, answer: Int32) {
        self.proxy = proxy
        self.answer = answer
    }

    func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        lock.withLock { _peers.append(context.remotePeer) }
        guard let inode = InodeURL(request.service) else {
            throw RPCError(code: .invalidArgument, message: "\(request.service) is not an inode URL")
        }
        let fd = try await proxy.take(inode, from: .served(remotePeer: context.remotePeer), timeout: .seconds(2))
        defer { close(fd) }
        var r = Grpc_Health_V1_HealthCheckResponse()
        r.status = try InodeURL(fd: fd) == inode ? .serving : .notServing
        try proxy.send(answer, to: .served(remotePeer: context.remotePeer))
        return r
    }

    func watch(request: Grpc_Health_V1_HealthCheckRequest, response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
               context: ServerContext) async throws {
        throw RPCError(code: .unimplemented, message: "watch")
    }
}
