import Foundation
import XCTest
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// Start, stop, crash, restart, reload and bad input, with weftd as a process.
final class LifecycleSystemTests: SystemTestCase {
    func testSigtermRemovesSocketsAndKernelInterfaces() throws {
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: m, type: memif, socket: \(w.dir)/m.sock}
          - {name: t, type: tap, iface: wt\(tag)tap}
        cross_connects:
          - {name: mt, a: m, b: t}
        """)
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(w.dir)/m.sock"))
        XCTAssertNotEqual(if_nametoindex("wt\(tag)tap"), 0, "tap device created")
        var st = stat()
        XCTAssertEqual(stat(w.socket, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600, "admin socket is owner-only")

        XCTAssertEqual(w.stop(), 0, w.log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(w.dir)/m.sock"), "memif socket left behind")
        XCTAssertFalse(FileManager.default.fileExists(atPath: w.socket), "admin socket left behind")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(w.dir)/weftd.state"), "state file left behind")
        XCTAssertEqual(if_nametoindex("wt\(tag)tap"), 0, "tap device left behind")
        XCTAssertTrue(w.log.contains("weftd stopped"), w.log)
    }

    func testRestartAfterKill9CleansUpAndRebuilds() throws {
        let tag = uniqueTag()
        let n1 = PodNamespace(tag: tag, index: 1), n2 = PodNamespace(tag: tag, index: 2)
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: pod1, type: af_packet, iface: \(n1.hostEnd)}
          - {name: pod2, type: af_packet, iface: \(n2.hostEnd)}
          - {name: m, type: memif, socket: \(w.dir)/m.sock}
          - {name: s, type: null}
        cross_connects:
          - {name: p2p, a: pod1, b: pod2}
          - {name: ms, a: m, b: s}
        """)
        XCTAssertTrue(w.start(), w.log)
        XCTAssertEqual(pingCounts(n1.ping(n2.address, count: 2).out)?.received, 2)
        w.kill9()
        // What a crash leaves: socket files and the state record.
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(w.dir)/m.sock"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(w.dir)/weftd.state"))

        XCTAssertTrue(w.start(), "restart failed:\n" + w.log)
        XCTAssertTrue(w.log.contains("did not shut down cleanly"), w.log)
        XCTAssertTrue(w.log.contains("removed stale socket \(w.dir)/m.sock"), w.log)
        XCTAssertEqual(try w.interfaces().map(\.name), ["pod1", "pod2", "m", "s"])
        XCTAssertEqual(pingCounts(n1.ping(n2.address, count: 3).out)?.received, 3)

        // A second instance on the same runtime dir is refused while one runs.
        let second = sh([Paths.weftd, "run", "--config", w.configPath])
        XCTAssertEqual(second.status, 1)
        XCTAssertTrue(second.err.contains("another weftd (pid"), second.err)
        XCTAssertEqual(w.stop(), 0)
    }

    func testReloadAppliesOnlyTheDiffAndABadFileChangesNothing() throws {
        let tag = uniqueTag()
        let n1 = PodNamespace(tag: tag, index: 1), n2 = PodNamespace(tag: tag, index: 2)
        let w = Weftd(tag: tag)
        let base = """
        interfaces:
          - {name: pod1, type: af_packet, iface: \(n1.hostEnd)}
          - {name: pod2, type: af_packet, iface: \(n2.hostEnd)}
          - {name: s1, type: null}
        cross_connects:
          - {name: p2p, a: pod1, b: pod2}

        """
        w.write(base)
        XCTAssertTrue(w.start(), w.log)
        XCTAssertEqual(pingCounts(n1.ping(n2.address, count: 2).out)?.received, 2)
        let portsBefore = try w.interfaces().map(\.port)

        // A bad file: an unknown key. Rejected with file, line and key; nothing changes.
        w.write(base + "  - {name: extra, a: s1, b: s2, colour: red}\n")
        let badLine = (w.header() + base).split(separator: "\n", omittingEmptySubsequences: false).count
        let bad = w.ctl(["reload"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.err.contains("\(w.configPath):\(badLine): cross_connects[1].colour: unknown key 'colour'"), bad.err)
        XCTAssertEqual(try w.interfaces().map(\.port), portsBefore)

        // A valid change: only the new objects are created (SIGHUP path).
        w.write(base.replacingOccurrences(of: "cross_connects:", with: "  - {name: s2, type: null}\ncross_connects:")
                + "  - {name: sinks, a: s1, b: s2}\n")
        kill(w.process!.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(10)
        let applied = "reload: added interfaces: s2; added cross-connects: sinks; 4 unchanged"
        while !w.log.contains(applied) && Date() < deadline { usleep(100_000) }
        XCTAssertEqual(try w.crossConnects().map(\.name), ["p2p", "sinks"])
        XCTAssertEqual(Array(try w.interfaces().map(\.port).prefix(3)), portsBefore, "unchanged interfaces were re-created")
        XCTAssertTrue(w.log.contains(applied), w.log)
        XCTAssertEqual(pingCounts(n1.ping(n2.address, count: 2).out)?.received, 2)

        // A file whose kernel interface is missing: refused before anything is touched.
        w.write(base.replacingOccurrences(of: "cross_connects:", with: "  - {name: pod3, type: af_packet, iface: wt\(tag)zz}\ncross_connects:")
                + "  - {name: s1p3, a: s1, b: pod3}\n")
        let missing = w.ctl(["reload"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("interface 'pod3': iface: kernel interface 'wt\(tag)zz' does not exist"), missing.err)
        XCTAssertTrue(missing.err.contains("Nothing was applied"), missing.err)
        XCTAssertEqual(try w.crossConnects().map(\.name), ["p2p", "sinks"])
        XCTAssertEqual(w.stop(), 0)
    }

    func testBadStartupConfigsFailClearlyAndLeaveNothing() throws {
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        let cases: [(body: String, expect: String)] = [
            ("interfaces:\n  - {name: a, type: memif\n", "YAML"),
            ("interfaces:\n  - {name: a, type: null, colour: red}\n", "interfaces[0].colour: unknown key 'colour'"),
            ("interfaces:\n  - {name: a, type: null}\n  - {name: a, type: null}\n", "duplicate interface name 'a'"),
            ("interfaces:\n  - {name: a, type: null}\n  - {name: b, type: null}\n  - {name: c, type: null}\ncross_connects:\n  - {name: x, a: a, b: b}\n  - {name: y, a: b, b: c}\n",
             "interface 'b' is already in cross-connect 'x'"),
            ("interfaces:\n  - {name: k, type: af_packet, iface: wt\(tag)no}\n", "kernel interface 'wt\(tag)no' does not exist"),
            ("interfaces:\n  - {name: m, type: memif, socket: /nonexistent-\(tag)/m.sock}\n", "memif socket directory '/nonexistent-\(tag)' does not exist"),
            ("interfaces:\n  - {name: p, type: pci, pci: \"0000:ee:1f.7\"}\n", "no PCI device 0000:ee:1f.7"),
        ]
        for c in cases {
            w.write(c.body)
            let r = sh([Paths.weftd, "run", "--config", w.configPath], timeout: 60)
            XCTAssertEqual(r.status, 1, "weftd accepted:\n\(c.body)\n\(r.err)")
            XCTAssertTrue(r.err.contains(c.expect), "expected '\(c.expect)' in:\n\(r.err)")
            XCTAssertTrue(r.err.contains(w.configPath) || r.err.contains("Nothing was applied"), r.err)
            // Nothing applied and nothing left: no sockets, no state record.
            let left = (try? FileManager.default.contentsOfDirectory(atPath: w.dir)) ?? []
            XCTAssertEqual(left.filter { $0 != "weft.yaml" && $0 != "weftd.lock" }, [], "left behind: \(left)")
            let v = sh([Paths.weftd, "validate", "--config", w.configPath])
            if c.expect.contains("does not exist") || c.expect.contains("no PCI device") {
                XCTAssertEqual(v.status, 0, "validate checks the file, not the machine")
            } else {
                XCTAssertEqual(v.status, 1, v.out)
                XCTAssertTrue(v.err.contains(c.expect), v.err)
            }
        }
    }
}

final class StaleSocketSystemTests: SystemTestCase {
    func testStaleMemifSocketIsReplacedAndALiveOneRefused() throws {
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        // A socket file nobody listens on (as a crashed DPDK process leaves it).
        let stale = "\(w.dir)/stale.sock"
        let s = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0)
        var addr = sockaddr_un(); addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(stale.utf8)) }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(s)
        XCTAssertTrue(FileManager.default.fileExists(atPath: stale))
        w.write("interfaces:\n  - {name: m, type: memif, socket: \(stale)}\n")
        XCTAssertTrue(w.start(), w.log)
        XCTAssertTrue(w.log.contains("removed stale memif socket \(stale)"), w.log)
        // A second weftd (other runtime dir) may not take a socket that is live.
        let w2 = Weftd(tag: tag + "b")
        w2.write("interfaces:\n  - {name: m, type: memif, socket: \(stale)}\n")
        XCTAssertFalse(w2.start(), "took a live socket")
        XCTAssertTrue(w2.log.contains("memif socket \(stale) is in use by another process"), w2.log)
        XCTAssertEqual(w.stop(), 0)
    }

    /// An admin client that goes away before reading its answer (Ctrl-C or a
    /// `timeout` on weftctl) costs nothing: weftd used to die of SIGPIPE.
    func testAdminClientThatClosesEarlyDoesNotStopWeftd() throws {
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        w.write("interfaces:\n  - {name: n, type: null}\n")
        XCTAssertTrue(w.start(), w.log)
        let py = """
        import socket, sys
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sys.argv[1])
            s.sendall(b'{"command":"show-interfaces"}\\n')
            s.close()
        """
        let r = sh(["python3", "-c", py, w.socket])
        XCTAssertEqual(r.status, 0, r.err)
        usleep(300_000)
        XCTAssertEqual(w.process?.isRunning, true, "weftd ended: " + w.log.suffix(2000))
        XCTAssertEqual(try w.interfaces().map(\.name), ["n"], "and still answers")
        XCTAssertEqual(w.stop(), 0)
    }
}
