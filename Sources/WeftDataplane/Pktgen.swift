import CWeft
import Foundation
import WeftModel

/// weft-pktgen's model: a trial at one rate, and RFC 2544-style searches.
public enum Pktgen {
    public struct Template: Sendable {
        public var sizes: [Int] = [64]
        public var ipv6 = false
        public var vlanID = 0
        public var flows = 1
        /// Source MACs varied over this many values (bridge learning).
        public var macFlows = 1
        public var srcMAC: [UInt8] = [0x02, 0x77, 0x70, 0, 0, 1]
        public var dstMAC: [UInt8] = [0x02, 0x77, 0x70, 0, 0, 2]
        public var burst = 32
        /// RX queues to poll: as many as the peer transmits on (OVS: one per PMD + 1).
        public var rxQueues = 1
        /// VXLAN encapsulation (to feed a decap): VNI (0: none) and the outer headers.
        public var vxlanVNI = 0
        /// VNIs vxlanVNI ..< vxlanVNI + vxlanVNIs, cycled frame by frame (one connection each).
        public var vxlanVNIs = 1
        public var outerSrcMAC: [UInt8] = [0x02, 0x77, 0x70, 0, 0, 0x0a]
        public var outerDstMAC: [UInt8] = [0x02, 0x77, 0x70, 0, 0, 0x0b]
        public var outerSrcIP = "10.253.0.2", outerDstIP = "10.253.0.1"
        public init() {}
        /// IMIX 7:4:1 of 64, 570 and 1518 bytes (1514 without FCS).
        public static let imix = [64, 64, 64, 64, 64, 64, 64, 570, 570, 570, 570, 1514]
    }

    public struct Trial: Codable, Sendable {
        public var offeredPps: Double
        public var seconds: Double
        public var txPackets: UInt64, txRefused: UInt64, rxPackets: UInt64, rxForeign: UInt64
        public var lost: UInt64
        public var lossRatio: Double
        public var reordered: UInt64, duplicates: UInt64
        public var txPps: Double, rxPps: Double, rxGbps: Double
        /// Upper bounds of log2 latency buckets, microseconds.
        public var latencyP50us: Double?, latencyP90us: Double?, latencyP99us: Double?
        public var latencyMinUs: Double?, latencyMaxUs: Double?, latencyAvgUs: Double?
        /// Frames the generator skipped because it fell behind its schedule (descheduled):
        /// never sent, so not lost; the offered rate was that much lower.
        public var txSkipped: UInt64 = 0
    }

    public static func run(_ dp: Dataplane, tx: PortID, rx: PortID, template t: Template, ratePps: Double,
                           seconds: Double) throws -> Trial {
        var c = wf_pktgen_cfg()
        withUnsafeMutableBytes(of: &c.src_mac) { $0.copyBytes(from: t.srcMAC) }
        withUnsafeMutableBytes(of: &c.dst_mac) { $0.copyBytes(from: t.dstMAC) }
        c.ipv6 = t.ipv6 ? 1 : 0
        c.vlan_id = UInt16(t.vlanID)
        let src = IPAddress.parse(t.ipv6 ? "fd77::1" : "198.18.0.1")!, dst = IPAddress.parse(t.ipv6 ? "fd77::2" : "198.19.0.1")!
        withUnsafeMutableBytes(of: &c.src_ip) { $0.copyBytes(from: src) }
        withUnsafeMutableBytes(of: &c.dst_ip) { $0.copyBytes(from: dst) }
        c.src_port = 1024
        c.dst_port = 1234
        c.flows = UInt32(t.flows)
        c.mac_flows = UInt32(t.macFlows)
        c.n_sizes = UInt32(min(t.sizes.count, 16))
        withUnsafeMutableBytes(of: &c.sizes) { raw in
            // IMIX lists longer than 8 are folded into its distinct sizes in order.
            for (i, s) in t.sizes.prefix(16).enumerated() { raw.storeBytes(of: UInt32(s), toByteOffset: i * 4, as: UInt32.self) }
        }
        c.burst = UInt16(t.burst)
        c.rx_queues = UInt16(t.rxQueues)
        c.rate_pps = ratePps
        c.duration_ms = seconds * 1000
        if t.vxlanVNI > 0 {
            guard let os = IPAddress.parse(t.outerSrcIP), os.count == 4, let od = IPAddress.parse(t.outerDstIP), od.count == 4 else {
                throw DataplaneError(operation: "pktgen", object: "VXLAN template", errno: EINVAL, reason: "outer addresses must be IPv4")
            }
            c.vxlan_vni = UInt32(t.vxlanVNI)
            c.vxlan_vnis = UInt32(t.vxlanVNIs)
            withUnsafeMutableBytes(of: &c.outer_src_mac) { $0.copyBytes(from: t.outerSrcMAC) }
            withUnsafeMutableBytes(of: &c.outer_dst_mac) { $0.copyBytes(from: t.outerDstMAC) }
            withUnsafeMutableBytes(of: &c.outer_src_ip) { $0.copyBytes(from: os) }
            withUnsafeMutableBytes(of: &c.outer_dst_ip) { $0.copyBytes(from: od) }
        }
        var r = wf_pktgen_result()
        try check(wf_pktgen_run(dp.dp, tx.raw, rx.raw, &c, &r), "pktgen", "ports \(tx) -> \(rx)")
        let hz = Double(r.tsc_hz)
        let secs = Double(r.elapsed_tsc) / hz
        let buckets = withUnsafeBytes(of: r.latency_log2) { Array($0.bindMemory(to: UInt64.self)) }
        func pct(_ p: Double) -> Double? {
            let total = buckets.reduce(0, +)
            guard total > 0 else { return nil }
            var acc: UInt64 = 0
            for (b, n) in buckets.enumerated() {
                acc += n
                if Double(acc) >= p * Double(total) { return Double(UInt64(1) << UInt64(b + 1)) / hz * 1e6 }
            }
            return nil
        }
        let attempted = r.tx_attempted
        let lost = attempted > r.rx_packets ? attempted - r.rx_packets : 0
        let sent = seconds
        var trial = Trial(offeredPps: ratePps, seconds: sent, txPackets: r.tx_packets, txRefused: r.tx_refused,
                     rxPackets: r.rx_packets, rxForeign: r.rx_foreign, lost: lost,
                     lossRatio: attempted == 0 ? 0 : Double(lost) / Double(attempted),
                     reordered: r.reordered, duplicates: r.duplicates,
                     txPps: Double(r.tx_packets) / sent, rxPps: Double(r.rx_packets) / sent,
                     rxGbps: Double(r.rx_bytes) * 8 / sent / 1e9,
                     latencyP50us: pct(0.5), latencyP90us: pct(0.9), latencyP99us: pct(0.99),
                     latencyMinUs: r.rx_packets > 0 ? Double(r.latency_min) / hz * 1e6 : nil,
                     latencyMaxUs: r.rx_packets > 0 ? Double(r.latency_max) / hz * 1e6 : nil,
                     latencyAvgUs: r.rx_packets > 0 ? Double(r.latency_sum) / Double(r.rx_packets) / hz * 1e6 : nil)
        trial.txSkipped = r.tx_skipped
        _ = secs
        return trial
    }

    public struct Search: Codable, Sendable {
        public var maxRxPps: Double
        public var ndrPps: Double
        public var pdrPps: Double
        public var trials: [Trial]
    }

    /// RFC 2544-style binary search for the no-drop rate (loss 0) and the
    /// partial-drop rate (loss <= pdrLoss), from the unthrottled rate down.
    public static func search(_ dp: Dataplane, tx: PortID, rx: PortID, template: Template, trialSeconds: Double,
                              steps: Int = 8, pdrLoss: Double = 0.005) throws -> Search {
        var trials: [Trial] = []
        let top = try run(dp, tx: tx, rx: rx, template: template, ratePps: 0, seconds: trialSeconds)
        trials.append(top)
        let ceiling = max(top.txPps, 1)
        func find(_ ok: (Trial) -> Bool) throws -> Double {
            var lo = 0.0, hi = ceiling
            if ok(top) { return top.txPps }
            for _ in 0..<steps {
                let mid = (lo + hi) / 2
                let t = try run(dp, tx: tx, rx: rx, template: template, ratePps: mid, seconds: trialSeconds)
                trials.append(t)
                if ok(t) { lo = mid } else { hi = mid }
            }
            return lo
        }
        let ndr = try find { $0.lost == 0 && $0.duplicates == 0 }
        let pdr = try find { $0.lossRatio <= pdrLoss }
        return Search(maxRxPps: top.rxPps, ndrPps: ndr, pdrPps: pdr, trials: trials)
    }
}
