import Foundation
import XCTest

/// NSM requests fuzzed against a real weftd (Tests/peers/nsm_cluster/fuzz_requests.py):
/// seeded, structure-aware mutations of valid Requests, refreshes, Closes and
/// Monitor calls, sent as NSM's NSMgr sends them (mTLS, path tokens, grpcfd), with
/// the invariants checked after every case (no UNKNOWN/INTERNAL, weftd alive,
/// kernel and dataplane exactly what Monitor reports, nothing left at the end).
/// WEFT_NSM_FUZZ_SEED replays a run; WEFT_NSM_FUZZ_CASES sets its length.
final class NSMFuzzSystemTests: SystemTestCase {
    func testMutatedRequestsGetClearErrorsAndLeaveNothingBehind() throws {
        let env = ProcessInfo.processInfo.environment
        let seed = env["WEFT_NSM_FUZZ_SEED"].flatMap(Int.init) ?? Int.random(in: 1...Int(Int32.max))
        let cases = env["WEFT_NSM_FUZZ_CASES"].flatMap(Int.init) ?? 500
        print("NSM request fuzzing: seed \(seed), \(cases) cases (WEFT_NSM_FUZZ_SEED=\(seed) replays)")
        let script = Paths.root.appendingPathComponent("Tests/peers/nsm_cluster/fuzz_requests.py").path
        let out = "/tmp/wt-nsmfuzz-\(uniqueTag()).jsonl"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = sh(["python3", script, "--weftd", Paths.weftd, "--weftctl", Paths.weftctl, "--seed", String(seed),
                    "--count", String(cases), "--out", out], timeout: TimeInterval(120 + cases))
        let lines = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? r.out).split(separator: "\n")
        let summary = lines.last { $0.contains("\"summary\"") }.map(String.init) ?? "no summary line"
        XCTAssertEqual(r.status, 0, "seed \(seed): \(summary.suffix(3000))\n\(r.err.suffix(3000))")
        XCTAssertTrue(summary.contains("\"ok\": true"), "seed \(seed): \(summary.suffix(3000))")
    }
}

/// The admin socket fuzzed against a real weftd (Tests/peers/fuzz_admin.py): every
/// command mutated, misbehaving clients; each case answered (or closed) cleanly,
/// nothing that would change the node accepted, the node unchanged, weftd alive.
/// WEFT_ADMIN_FUZZ_SEED replays; WEFT_ADMIN_FUZZ_CASES sets the length.
final class AdminFuzzSystemTests: SystemTestCase {
    func testMutatedAdminRequestsAreRefusedCleanly() throws {
        let env = ProcessInfo.processInfo.environment
        let seed = env["WEFT_ADMIN_FUZZ_SEED"].flatMap(Int.init) ?? Int.random(in: 1...Int(Int32.max))
        let cases = env["WEFT_ADMIN_FUZZ_CASES"].flatMap(Int.init) ?? 800
        print("admin socket fuzzing: seed \(seed), \(cases) cases (WEFT_ADMIN_FUZZ_SEED=\(seed) replays)")
        let tag = uniqueTag()
        let w = Weftd(tag: tag)
        w.write("""
        interfaces:
          - {name: a, type: ring}
          - {name: b, type: ring}
          - {name: up, type: null}
          - {name: v5, type: vlan, uplink: up, vlan_id: 5}
        cross_connects:
          - {name: x, a: a, b: b}
        """)
        XCTAssertTrue(w.start(), w.log)
        defer { XCTAssertEqual(w.stop(), 0, "weftd exits cleanly after the fuzzing") }
        let pid = try XCTUnwrap(w.process?.processIdentifier)
        let r = sh(["python3", Paths.root.appendingPathComponent("Tests/peers/fuzz_admin.py").path, "--socket", w.socket,
                    "--pid", String(pid), "--seed", String(seed), "--count", String(cases)], timeout: TimeInterval(60 + cases))
        XCTAssertEqual(r.status, 0, "seed \(seed): \(r.out.suffix(4000)) \(r.err.suffix(2000))")
        XCTAssertTrue(r.out.contains("\"ok\": true"), String(r.out.suffix(2000)) + String(w.log.suffix(2000)))
        XCTAssertTrue(w.process?.isRunning == true, String(w.log.suffix(3000)))
    }
}
