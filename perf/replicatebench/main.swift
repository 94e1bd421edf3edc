// weft-replicatebench: cycles per replica of a replication group, reference-
// counted clones against copies, by frame size, alternating the two
// strategies round by round. See perf/replicate-bench.sh and RESULTS.md.
import Foundation
import WeftDataplane
import WeftModel

var rounds = 7, iterations: UInt32 = 20_000, members = 4
var sizes = [64, 128, 256, 512, 1024, 1500]
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--rounds": rounds = Int(args.next()!)!
    case "--iterations": iterations = UInt32(args.next()!)!
    case "--members": members = Int(args.next()!)!
    case "--sizes": sizes = args.next()!.split(separator: ",").map { Int($0)! }
    default:
        FileHandle.standardError.write(Data("usage: weft-replicatebench [--rounds N] [--iterations N] [--members N] [--sizes 64,256,...]\n".utf8))
        exit(2)
    }
}
try EAL.initialize(arguments: ["weft-replicatebench", "-l", "0", "--no-huge", "-m", "1024", "--no-pci", "--no-shconf",
                               "--log-level", "error", "--file-prefix", "weft-rbench-\(getpid())"])
func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }

print("members \(members), burst 32, \(iterations) polls per round, \(rounds) rounds, TSC \(EAL.tscHz / 1_000_000) MHz")
print("frame  copy cyc/replica  clone cyc/replica  clone/copy (min-max)")
var seq = 0
for size in sizes {
    var copy: [Double] = [], clone: [Double] = [], ratio: [Double] = []
    for r in 0..<rounds {
        var pair: [String: Double] = [:]
        for mode in (r % 2 == 0 ? ["copy", "clone"] : ["clone", "copy"]) {
            var s = DataplaneSettings(workerLcores: [])
            s.mbufs = 16383
            s.mbufCache = 0
            let dp = try Dataplane(s)
            seq += 1
            let ing = try dp.createTestPort(name: "i\(seq)")
            let ms = try (0..<members).map { try dp.createTestPort(name: "m\(seq)_\($0)") }
            _ = try dp.addReplication(ingress: SideID(ing), members: ms.map(SideID.init), cloneMinBytes: mode == "clone" ? 64 : 65535)
            var frame = [UInt8](repeating: 0xab, count: size)
            frame[0] = 0xff; frame[12] = 0x08
            _ = dp.injectMany(ing, frame: frame, count: 256)
            let (c, f) = try dp.benchReplicate(ingress: ing, members: ms, iterations: iterations)
            pair[mode] = Double(c) / Double(max(f, 1) * UInt64(members))
            dp.destroy()
        }
        copy.append(pair["copy"]!); clone.append(pair["clone"]!); ratio.append(pair["clone"]! / pair["copy"]!)
    }
    print(String(format: "%5d  %16.1f  %17.1f  %.2f (%.2f-%.2f)", size, median(copy), median(clone), median(ratio),
                 ratio.min()!, ratio.max()!))
}
EAL.cleanup()
