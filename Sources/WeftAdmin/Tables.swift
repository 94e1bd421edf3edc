import Foundation
import WeftModel

/// Plain-text tables for weftctl: columns padded to their widest cell,
/// numbers right-aligned.
public struct TextTable {
    public var headers: [String]
    public var rows: [[String]] = []
    public init(_ headers: [String]) { self.headers = headers }
    public mutating func add(_ row: [String]) { rows.append(row) }

    public func render() -> String {
        let all = [headers] + rows
        let widths = headers.indices.map { i in all.map { $0.indices.contains(i) ? $0[i].count : 0 }.max() ?? 0 }
        func isNumber(_ s: String) -> Bool { !s.isEmpty && s.allSatisfy { $0.isNumber || $0 == "." } }
        func line(_ r: [String]) -> String {
            r.indices.map { i in
                let pad = String(repeating: " ", count: widths[i] - r[i].count)
                return isNumber(r[i]) ? pad + r[i] : r[i] + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }
}

public enum Render {
    public static func interfaces(_ list: [InterfaceStatus]) -> String {
        var t = TextTable(["NAME", "TYPE", "BACKEND", "PORT", "LINK", "MAC", "DETAIL", "XCONNECT",
                           "RX-PKTS", "RX-BYTES", "TX-PKTS", "TX-BYTES", "DROPS"])
        for i in list {
            t.add([i.name, i.type, i.backend, i.port.map(String.init) ?? "-", i.link, i.mac, i.detail, i.crossConnect ?? "-",
                   String(i.counters.rxPackets), String(i.counters.rxBytes), String(i.counters.txPackets),
                   String(i.counters.txBytes), String(i.counters.totalDrops)])
        }
        // What the drivers did (offloads turned off on a veth peer, a fallback and why,
        // a memif peer and its last disconnect reason), one line per interface.
        let notes = list.filter { !$0.note.isEmpty }.map { "  \($0.name): \($0.note)" }
        return t.render() + (notes.isEmpty ? "" : "\n" + notes.joined(separator: "\n"))
    }

    public static func crossConnects(_ list: [CrossConnectStatus]) -> String {
        var t = TextTable(["NAME", "A", "B", "A->B PKTS", "A->B BYTES", "A->B DROPS", "B->A PKTS", "B->A BYTES", "B->A DROPS",
                           "SWITCHED BY"])
        for x in list {
            let c = x.counters
            t.add([x.name, x.a, x.b, String(c.aToB.packets), String(c.aToB.bytes), String(c.aToB.drops),
                   String(c.bToA.packets), String(c.bToA.bytes), String(c.bToA.drops), x.offload ?? "-"])
        }
        return t.render()
    }

    public static func drops(_ list: [DropStatus]) -> String {
        var t = TextTable(["STAGE", "REASON", "COUNT", "BY INTERFACE", "DESCRIPTION"])
        for d in list {
            let by = d.byInterface.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            t.add([d.stage, d.reason, String(d.count), by.isEmpty ? "-" : by, d.description])
        }
        return t.render()
    }

    public static func neighbours(_ list: [Neighbour], interfaces: [InterfaceStatus]) -> String {
        var t = TextTable(["INTERFACE", "IP", "MAC", "STATE", "AGE-S", "PROBES", "TUNNELS"])
        for n in list {
            let name = interfaces.first { $0.port == n.port }?.name ?? "port \(n.port)"
            t.add([name, n.ip, n.state == "incomplete" || n.state == "failed" ? "-" : n.mac, n.state,
                   n.state == "static" ? "-" : String(n.ageMs / 1000), String(n.probes), String(n.users)])
        }
        return t.render()
    }

    public static func groups(_ list: [P2MPStatus], labels: [String: String]) -> String {
        var out = "labels: \(Capabilities.describe(labels))"
        for g in list {
            out += "\n\n\(g.name) (\(g.mode)\(g.ingress.map { ", ingress \($0)" } ?? ""))"
            var t = TextTable(["MEMBER", "SHG", "TO-PKTS", "TO-BYTES", "TO-DROPS", "FROM-PKTS", "FROM-BYTES", "FROM-DROPS"])
            for m in g.members {
                t.add([m.interface, String(m.splitHorizonGroup), String(m.toMember.packets), String(m.toMember.bytes),
                       String(m.toMember.drops), String(m.fromMember.packets), String(m.fromMember.bytes), String(m.fromMember.drops)])
            }
            out += "\n" + t.render()
            if let s = g.stats {
                out += "\nlearned \(s.learned), moves \(s.moves), flooded \(s.flooded), limit drops \(s.limitDrops)"
            }
            if let macs = g.macs, !macs.isEmpty {
                var mt = TextTable(["MAC", "MEMBER", "AGE-S", "WORKER"])
                for e in macs {
                    let who = e.member < g.members.count ? g.members[e.member].interface : "#\(e.member)"
                    mt.add([e.mac, who, e.isStatic ? "static" : String(format: "%.1f", Double(e.ageMs) / 1000), String(e.worker)])
                }
                out += "\n" + mt.render()
            }
        }
        return out
    }

    public static func workers(_ list: [WorkerStats], tscHz: UInt64) -> String {
        var t = TextTable(["WORKER", "LCORE", "QUEUES", "POLLED", "RX-PKTS", "BUSY-CYCLES", "IDLE-CYCLES", "BUSY%", "CYCLES/PKT"])
        for w in list {
            let total = w.busyCycles + w.idleCycles
            let busy = total == 0 ? "0.0" : String(format: "%.1f", 100 * Double(w.busyCycles) / Double(total))
            t.add([String(w.worker), String(w.lcore), String(w.queues), String(w.activeQueues), String(w.rxPackets), String(w.busyCycles),
                   String(w.idleCycles), busy, w.cyclesPerPacket.map { String(format: "%.1f", $0) } ?? "-"])
        }
        return t.render() + "\n(TSC \(tscHz / 1_000_000) MHz; busy = cycles in polls that returned packets; POLLED = queues not asleep)"
    }
}

// MARK: - Live rates

/// What moved between two readings, per second. A counter that went down (the
/// interface was removed and added again meanwhile) counts from zero.
public struct InterfaceRate: Codable, Equatable, Sendable {
    public var name: String
    public var rxPPS: Double, rxBPS: Double, txPPS: Double, txBPS: Double, dropsPS: Double
    public init(name: String, rxPPS: Double, rxBPS: Double, txPPS: Double, txBPS: Double, dropsPS: Double) {
        self.name = name; self.rxPPS = rxPPS; self.rxBPS = rxBPS; self.txPPS = txPPS; self.txBPS = txBPS; self.dropsPS = dropsPS
    }
}

public struct CrossConnectRate: Codable, Equatable, Sendable {
    public var name: String
    public var aToBPPS: Double, aToBBPS: Double, bToAPPS: Double, bToABPS: Double, dropsPS: Double
}

public struct WorkerRate: Codable, Equatable, Sendable {
    public var worker: Int
    public var rxPPS: Double
    /// Share of the interval's cycles spent in polls that received frames (0...1).
    public var busy: Double
    public var cyclesPerPacket: Double?
}

public enum Rates {
    static func delta(_ a: UInt64, _ b: UInt64) -> Double { b >= a ? Double(b - a) : Double(b) }

    public static func interfaces(_ before: [InterfaceStatus], _ after: [InterfaceStatus], seconds: Double) -> [InterfaceRate] {
        let old = Dictionary(before.map { ($0.name, $0.counters) }, uniquingKeysWith: { a, _ in a })
        return after.map { i in
            let o = old[i.name] ?? InterfaceCounters(), n = i.counters
            return InterfaceRate(name: i.name,
                                 rxPPS: delta(o.rxPackets, n.rxPackets) / seconds, rxBPS: 8 * delta(o.rxBytes, n.rxBytes) / seconds,
                                 txPPS: delta(o.txPackets, n.txPackets) / seconds, txBPS: 8 * delta(o.txBytes, n.txBytes) / seconds,
                                 dropsPS: delta(o.totalDrops, n.totalDrops) / seconds)
        }
    }

    public static func crossConnects(_ before: [CrossConnectStatus], _ after: [CrossConnectStatus], seconds: Double) -> [CrossConnectRate] {
        let old = Dictionary(before.map { ($0.name, $0.counters) }, uniquingKeysWith: { a, _ in a })
        return after.map { x in
            let o = old[x.name] ?? CrossConnectCounters(), n = x.counters
            return CrossConnectRate(name: x.name,
                                    aToBPPS: delta(o.aToB.packets, n.aToB.packets) / seconds, aToBBPS: 8 * delta(o.aToB.bytes, n.aToB.bytes) / seconds,
                                    bToAPPS: delta(o.bToA.packets, n.bToA.packets) / seconds, bToABPS: 8 * delta(o.bToA.bytes, n.bToA.bytes) / seconds,
                                    dropsPS: (delta(o.aToB.drops, n.aToB.drops) + delta(o.bToA.drops, n.bToA.drops)) / seconds)
        }
    }

    public static func workers(_ before: [WorkerStats], _ after: [WorkerStats], seconds: Double) -> [WorkerRate] {
        let old = Dictionary(before.map { ($0.worker, $0) }, uniquingKeysWith: { a, _ in a })
        return after.map { w in
            let busy = delta(old[w.worker]?.busyCycles ?? 0, w.busyCycles), idle = delta(old[w.worker]?.idleCycles ?? 0, w.idleCycles)
            let rx = delta(old[w.worker]?.rxPackets ?? 0, w.rxPackets)
            return WorkerRate(worker: w.worker, rxPPS: rx / seconds, busy: busy + idle == 0 ? 0 : busy / (busy + idle),
                              cyclesPerPacket: rx == 0 ? nil : busy / rx)
        }
    }

    /// 1234567 -> "1.23M": packets and bits per second at a glance.
    public static func si(_ v: Double) -> String {
        let a = abs(v)
        for (limit, suffix) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] where a >= limit {
            return String(format: "%.2f%@", v / limit, suffix)
        }
        return String(format: "%.0f", v)
    }
}

extension Render {
    public static func interfaceRates(_ list: [InterfaceRate], seconds: Double) -> String {
        var t = TextTable(["NAME", "RX-PPS", "RX-BPS", "TX-PPS", "TX-BPS", "DROPS/S"])
        for r in list { t.add([r.name, Rates.si(r.rxPPS), Rates.si(r.rxBPS), Rates.si(r.txPPS), Rates.si(r.txBPS), Rates.si(r.dropsPS)]) }
        return t.render() + "\n(per second over \(String(format: "%.1f", seconds)) s)"
    }

    public static func crossConnectRates(_ list: [CrossConnectRate], seconds: Double) -> String {
        var t = TextTable(["NAME", "A->B PPS", "A->B BPS", "B->A PPS", "B->A BPS", "DROPS/S"])
        for r in list { t.add([r.name, Rates.si(r.aToBPPS), Rates.si(r.aToBBPS), Rates.si(r.bToAPPS), Rates.si(r.bToABPS), Rates.si(r.dropsPS)]) }
        return t.render() + "\n(per second over \(String(format: "%.1f", seconds)) s)"
    }

    public static func workerRates(_ list: [WorkerRate], seconds: Double) -> String {
        var t = TextTable(["WORKER", "RX-PPS", "BUSY%", "CYCLES/PKT"])
        for r in list {
            t.add([String(r.worker), Rates.si(r.rxPPS), String(format: "%.1f", 100 * r.busy), r.cyclesPerPacket.map { String(format: "%.1f", $0) } ?? "-"])
        }
        return t.render() + "\n(per second over \(String(format: "%.1f", seconds)) s)"
    }
}
