import ArgumentParser
import Foundation
import WeftAdmin
import WeftDataplane
import WeftModel

/// weft-pktgen: a DPDK traffic generator and sink on Weft's own C core.
@main
struct WeftPktgen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weft-pktgen",
        abstract: "Send sequenced, timestamped frames on one port, receive them on another; loss, reordering, duplicates, latency, NDR/PDR.")

    @Option(help: "Devargs of the transmit port, e.g. net_memif0,role=client,socket=/run/weft/a.sock,socket-abstract=no")
    var tx: String
    @Option(help: "Devargs of the receive port (default: the transmit port).")
    var rx: String?
    @Option(help: "Frame size in bytes (ignored with --imix).") var size = 64
    @Flag(help: "IMIX 7:4:1 of 64/570/1514-byte frames.") var imix = false
    @Flag(help: "IPv6 instead of IPv4.") var ipv6 = false
    @Option(help: "802.1Q VLAN id (0: untagged).") var vlan = 0
    @Option(help: "Encapsulate in VXLAN with this VNI (to feed a decap; 0: none). --size is then the outer frame.") var vxlanVni = 0
    @Option(help: "With --vxlan-vni: cycle frame by frame over this many VNIs from it (one connection each).") var vxlanVnis = 1
    @Option(help: "VXLAN outer source/destination IPv4 addresses.") var outerSrc = "10.253.0.2"
    @Option(help: "") var outerDst = "10.253.0.1"
    @Option(help: "VXLAN outer destination MAC (the DUT's uplink).") var outerDstMac = "02:77:70:00:00:0b"
    @Option(help: "Flows: source address and port ranges.") var flows = 1
    @Option(help: "Source MACs: vary the last two bytes over this many values.") var macFlows = 1
    @Option(help: "Destination MAC (default 02:77:70:00:00:02).") var dstMac: String?
    @Option(help: "Offered rate, packets per second (0: as fast as possible).") var rate: Double = 0
    @Option(help: "Trial length, seconds.") var duration: Double = 2
    @Flag(help: "Search the no-drop (NDR) and 0.5 % partial-drop (PDR) rates.") var ndr = false
    @Option(help: "Binary-search steps for --ndr.") var steps = 8
    @Flag(help: "JSON output.") var json = false
    @Option(help: "EAL lcore to run on.") var lcore = 0
    @Option(help: "Seconds to wait for links to come up (memif peers).") var linkWait: Double = 15
    @Option(help: "RX queues on the receive port: as many as the peer sends on (memif: the server adopts the client's ring counts; OVS-DPDK sends on one queue per PMD thread plus one).")
    var rxQueues = 1
    @Option(help: "Seconds to keep the ports open after printing the result (a DUT that loses its counters when a memif peer leaves can be read meanwhile).")
    var hold: Double = 0

    func validate() throws {
        if !(60...9000).contains(size) { throw ValidationError("--size must be 60..9000") }
        if duration <= 0 || duration > 3600 { throw ValidationError("--duration must be 0..3600 seconds") }
        if rate < 0 { throw ValidationError("--rate must be >= 0") }
        if !(0...4094).contains(vlan) { throw ValidationError("--vlan must be 0..4094") }
        if !(0..<(1 << 24)).contains(vxlanVni) { throw ValidationError("--vxlan-vni must be 0..16777215") }
        if vxlanVni > 0 && size < 112 { throw ValidationError("--size must be at least 112 with --vxlan-vni (50 outer + 62)") }
        if vxlanVnis < 1 || vxlanVni + vxlanVnis > (1 << 24) { throw ValidationError("--vxlan-vnis must be >= 1 and --vxlan-vni + --vxlan-vnis <= 16777216") }
        if !(1...65535).contains(flows) { throw ValidationError("--flows must be 1..65535") }
        if !(1...65535).contains(macFlows) { throw ValidationError("--mac-flows must be 1..65535") }
        if !(1...8).contains(rxQueues) { throw ValidationError("--rx-queues must be 1..8") }
    }

    func run() throws {
        try EAL.initialize(arguments: ["weft-pktgen", "-l", String(lcore), "--no-huge", "-m", "1024", "--no-pci",
                                       "--log-level", "error", "--file-prefix", "weft-pktgen-\(getpid())"])
        var s = DataplaneSettings(workerLcores: [])
        s.mbufs = 32767
        s.mbufCache = 0
        let dp = try Dataplane(s)
        defer { dp.destroy(); EAL.cleanup() }
        let txPort = try dp.attach(devargs: tx)
        let rxPort = try rx.map { try dp.attach(devargs: $0, rxQueues: UInt16(rxQueues)) } ?? txPort
        let deadline = Date().addingTimeInterval(linkWait)
        while Date() < deadline {
            if (try? dp.info(txPort).linkUp) == true && (try? dp.info(rxPort).linkUp) == true { break }
            usleep(50_000)
        }
        guard try dp.info(txPort).linkUp, try dp.info(rxPort).linkUp else {
            throw ValidationError("links did not come up within \(linkWait) s (is the peer running?)")
        }
        var t = Pktgen.Template()
        t.sizes = imix ? Pktgen.Template.imix : [size]
        t.ipv6 = ipv6
        t.vlanID = vlan
        t.flows = flows
        t.macFlows = macFlows
        if let m = dstMac {
            let b = m.split(separator: ":").compactMap { UInt8($0, radix: 16) }
            guard b.count == 6 else { throw ValidationError("--dst-mac '\(m)' is not a MAC address") }
            t.dstMAC = b
        }
        t.rxQueues = rxQueues
        if vxlanVni > 0 {
            t.vxlanVNI = vxlanVni
            t.vxlanVNIs = vxlanVnis
            t.outerSrcIP = outerSrc
            t.outerDstIP = outerDst
            let b = outerDstMac.split(separator: ":").compactMap { UInt8($0, radix: 16) }
            guard b.count == 6 else { throw ValidationError("--outer-dst-mac '\(outerDstMac)' is not a MAC address") }
            t.outerDstMAC = b
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        if ndr {
            let r = try Pktgen.search(dp, tx: txPort, rx: rxPort, template: t, trialSeconds: duration, steps: steps)
            if json { print(String(decoding: try enc.encode(r), as: UTF8.self)) } else {
                print(String(format: "max rx %.3f Mpps, NDR %.3f Mpps, PDR(0.5%%) %.3f Mpps over %d trials",
                             r.maxRxPps / 1e6, r.ndrPps / 1e6, r.pdrPps / 1e6, r.trials.count))
            }
        } else {
            let r = try Pktgen.run(dp, tx: txPort, rx: rxPort, template: t, ratePps: rate, seconds: duration)
            if json { print(String(decoding: try enc.encode(r), as: UTF8.self)) } else {
                var tab = TextTable(["TX", "RX", "LOST", "LOSS%", "REORDERED", "DUPS", "TX-MPPS", "RX-MPPS", "P50-US", "P99-US", "MAX-US"])
                func f(_ v: Double?) -> String { v.map { String(format: "%.1f", $0) } ?? "-" }
                tab.add([String(r.txPackets), String(r.rxPackets), String(r.lost), String(format: "%.3f", r.lossRatio * 100),
                         String(r.reordered), String(r.duplicates), String(format: "%.3f", r.txPps / 1e6),
                         String(format: "%.3f", r.rxPps / 1e6), f(r.latencyP50us), f(r.latencyP99us), f(r.latencyMaxUs)])
                print(tab.render())
            }
        }
        if hold > 0 {
            fflush(stdout)
            usleep(UInt32(min(hold, 600) * 1_000_000))
        }
    }
}
