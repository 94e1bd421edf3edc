// weft-stagebench: cycles per packet of the P2P cross-connect stage against
// the io-forward limit (RX burst + TX burst, nothing else) on the same ring
// ports, in one process, alternating the two contenders round by round.
// See perf/stage-bench.sh and perf/RESULTS.md.
import Foundation
import WeftCore

var rounds = 9, iterations: UInt32 = 200_000, burst: UInt16 = 32, frameSize = 64
var only: String? = nil
var inflight = 512
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--rounds": rounds = Int(args.next()!)!
    case "--iterations": iterations = UInt32(args.next()!)!
    case "--burst": burst = UInt16(args.next()!)!
    case "--frame": frameSize = Int(args.next()!)!
    case "--only": only = args.next()!
    case "--inflight": inflight = min(Int(args.next()!)!, 1024 - 256) // the test port rings hold 1024
    default:
        FileHandle.standardError.write(Data("usage: weft-stagebench [--rounds N] [--iterations N] [--burst N] [--frame BYTES] [--only xconnect|baseline] [--inflight FRAMES]\n".utf8))
        exit(2)
    }
}

try EAL.initialize(arguments: ["weft-stagebench", "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                               "--log-level", "error", "--file-prefix", "weft-bench-\(getpid())"])
var s = DataplaneSettings(workerLcores: [])
s.burst = burst
s.mbufs = 8191
s.mbufCache = 0
let dp = try Dataplane(s)
let a = try dp.createTestPort(name: "ba"), b = try dp.createTestPort(name: "bb")
_ = try dp.addCrossConnect(a, b)
var frame = [UInt8](repeating: 0, count: frameSize)
frame[0] = 0x02; frame[5] = 0x02; frame[6] = 0x02; frame[11] = 0x01; frame[12] = 0x08
// Frames circulating in the loop: their mbuf headers are the working set.
for _ in 0..<inflight { try dp.inject(a, frame: frame) }

func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }

var xc: [Double] = [], base: [Double] = [], ratios: [Double] = []
for r in 0..<rounds {
    var pair: [String: Double] = [:]
    // Alternate who goes first, so drift on a noisy machine hits both.
    let order = r % 2 == 0 ? ["baseline", "xconnect"] : ["xconnect", "baseline"]
    for who in order where only == nil || only == who {
        let (c, p) = who == "xconnect" ? try dp.benchCrossConnect(a, b, iterations: iterations)
                                       : try dp.benchIOBaseline(a, b, iterations: iterations)
        pair[who] = Double(c) / Double(max(p, 1))
        print("round \(r) \(who): \(p) packets, \(String(format: "%.2f", pair[who]!)) cycles/packet")
    }
    if let x = pair["xconnect"] { xc.append(x) }
    if let y = pair["baseline"] { base.append(y) }
    if let x = pair["xconnect"], let y = pair["baseline"] { ratios.append(x / y) }
}
print("burst \(burst), frame \(frameSize) B, \(inflight) frames in flight, \(iterations) polls per round, \(rounds) rounds, TSC \(EAL.tscHz / 1_000_000) MHz")
if !xc.isEmpty { print(String(format: "xconnect: median %.2f cycles/packet", median(xc))) }
if !base.isEmpty { print(String(format: "io-forward baseline: median %.2f cycles/packet", median(base))) }
if !ratios.isEmpty {
    print(String(format: "ratio xconnect/baseline: median %.3f (min %.3f, max %.3f)", median(ratios), ratios.min()!, ratios.max()!))
}
dp.destroy()
EAL.cleanup()
