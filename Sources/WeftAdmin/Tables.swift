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
        var t = TextTable(["NAME", "A", "B", "A->B PKTS", "A->B BYTES", "A->B DROPS", "B->A PKTS", "B->A BYTES", "B->A DROPS"])
        for x in list {
            let c = x.counters
            t.add([x.name, x.a, x.b, String(c.aToB.packets), String(c.aToB.bytes), String(c.aToB.drops),
                   String(c.bToA.packets), String(c.bToA.bytes), String(c.bToA.drops)])
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
