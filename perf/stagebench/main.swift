// weft-stagebench: cycles per packet of the P2P cross-connect stage against
// the io-forward limit (RX burst + TX burst, nothing else) on the same ring
// ports, in one process, alternating the two contenders round by round.
// --stage vlan|vxlan: the "xconnect" contender is instead a round trip
// through a VLAN (push + pop) or VXLAN (encap + decap, IPv4 underlay) tunnel:
// cycles per packet are the mean of the two directions. --stage bridge: a
// bridge domain of the two ports (lookup + learn + unicast); --stage
// replicate: a replication group from a to 4 members (per ingress frame).
// See perf/stage-bench.sh and perf/RESULTS.md.
import Foundation
import WeftDataplane
import WeftModel

var rounds = 9, iterations: UInt32 = 200_000, burst: UInt16 = 32, frameSize = 64
var only: String? = nil
var inflight = 512
var stage = "p2p"
var replicas: [PortID] = []
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--rounds": rounds = Int(args.next()!)!
    case "--iterations": iterations = UInt32(args.next()!)!
    case "--burst": burst = UInt16(args.next()!)!
    case "--frame": frameSize = Int(args.next()!)!
    case "--only": only = args.next()!
    case "--stage": stage = args.next()!
    case "--inflight": inflight = min(Int(args.next()!)!, 1024 - 256) // the test port rings hold 1024
    default:
        FileHandle.standardError.write(Data("usage: weft-stagebench [--rounds N] [--iterations N] [--burst N] [--frame BYTES] [--only xconnect|baseline] [--inflight FRAMES] [--stage p2p|vlan|vxlan|bridge|replicate]\n".utf8))
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
switch stage {
case "p2p": _ = try dp.addCrossConnect(a, b)
case "vlan": _ = try dp.addCrossConnect(SideID(a), try dp.addVLAN(uplink: b, id: 100))
case "vxlan":
    var u = Dataplane.Underlay()
    u.ipv4 = (IPAddress.parse("10.0.0.1")!, 24)
    u.vxlanPorts = [4789]
    try dp.setUnderlay(b, u)
    try dp.addStaticNeighbour(b, ip: IPAddress.parse("10.0.0.2")!, mac: [0x02, 0, 0, 0, 0, 0x22])
    let t = try dp.addVXLAN(uplink: b, vni: 100, remote: IPAddress.parse("10.0.0.2")!, dstPort: 4789, localPort: 4789)
    _ = try dp.addCrossConnect(SideID(a), t)
case "bridge":
    // A bridge domain of a and b; the frames' destination is a static MAC on b,
    // their source is learned on a: every frame is a lookup, a learn refresh
    // and a unicast to b.
    var bs = Dataplane.BridgeSettings()
    bs.statics = [(mac: [0x02, 0, 0, 0, 0, 0x02], member: 1)]
    _ = try dp.addBridge(members: [(SideID(a), 0), (SideID(b), 0)], settings: bs)
case "replicate":
    // A replication group: every frame from a to b and three more members
    // (64-byte frames are copied, below clone_min_bytes); cycles per ingress frame.
    replicas = try (1...3).map { try dp.createTestPort(name: "br\($0)") } + [b]
    _ = try dp.addReplication(ingress: SideID(a), members: replicas.map(SideID.init))
default:
    FileHandle.standardError.write(Data("--stage must be p2p, vlan, vxlan, bridge or replicate\n".utf8))
    exit(2)
}
var frame = [UInt8](repeating: 0, count: frameSize)
frame[0] = 0x02; frame[5] = 0x02; frame[6] = 0x02; frame[11] = 0x01; frame[12] = 0x08
// IPv4/UDP 10.0.1.1:5000 -> 10.0.1.2:5001 (the encap's flow hash reads it).
let ipv4: [UInt8] = [0x45, 0, UInt8((frameSize - 14) >> 8), UInt8((frameSize - 14) & 0xff), 0, 0, 0, 0, 64, 17, 0, 0,
                     10, 0, 1, 1, 10, 0, 1, 2, 0x13, 0x88, 0x13, 0x89]
frame.replaceSubrange(14..<(14 + ipv4.count), with: ipv4)
// Frames circulating in the loop: their mbuf headers are the working set.
for _ in 0..<inflight { try dp.inject(a, frame: frame) }
// A tunnel round trip leaves frames in both directions' rings: the baseline
// then gets its own pair of ports, and its frames at the start of each of its
// rounds (the worker drops what is left there during the next round trip,
// once: these ports have no cross-connect).
let (ba, bb) = stage == "p2p" || stage == "bridge" ? (a, b) : (try dp.createTestPort(name: "bc"), try dp.createTestPort(name: "bd"))

func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }

var baselineFed = false
var xc: [Double] = [], base: [Double] = [], ratios: [Double] = []
for r in 0..<rounds {
    var pair: [String: Double] = [:]
    // Alternate who goes first, so drift on a noisy machine hits both.
    let order = r % 2 == 0 ? ["baseline", "xconnect"] : ["xconnect", "baseline"]
    for who in order where only == nil || only == who {
        if who == "baseline" && stage != "p2p" && stage != "bridge" && !baselineFed {
            for _ in 0..<inflight { try dp.inject(ba, frame: frame) }
        }
        if stage != "p2p" && stage != "bridge" { baselineFed = who == "baseline" } // a round trip drops them
        let (c, p) = who == "baseline" ? try dp.benchIOBaseline(ba, bb, iterations: iterations)
            : stage == "p2p" || stage == "bridge" ? try dp.benchCrossConnect(a, b, iterations: iterations)
            : stage == "replicate" ? try { let r = try dp.benchReplicate(ingress: a, members: replicas, iterations: iterations)
                                           return (cycles: r.cycles, packets: r.frames) }()
            : try dp.benchRoundTrip(pod: a, uplink: b, reflectIPv4: stage == "vxlan", iterations: iterations)
        pair[who] = Double(c) / Double(max(p, 1))
        print("round \(r) \(who): \(p) packets, \(String(format: "%.2f", pair[who]!)) cycles/packet")
    }
    if let x = pair["xconnect"] { xc.append(x) }
    if let y = pair["baseline"] { base.append(y) }
    if let x = pair["xconnect"], let y = pair["baseline"] { ratios.append(x / y) }
}
print("stage \(stage), burst \(burst), frame \(frameSize) B, \(inflight) frames in flight, \(iterations) polls per round, \(rounds) rounds, TSC \(EAL.tscHz / 1_000_000) MHz")
if !xc.isEmpty { print(String(format: "xconnect: median %.2f cycles/packet", median(xc))) }
if !base.isEmpty { print(String(format: "io-forward baseline: median %.2f cycles/packet", median(base))) }
if !ratios.isEmpty {
    print(String(format: "ratio xconnect/baseline: median %.3f (min %.3f, max %.3f)", median(ratios), ratios.min()!, ratios.max()!))
}
dp.destroy()
EAL.cleanup()
