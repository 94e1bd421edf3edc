import XCTest
import WeftModel

/// The index that checks one change must reach the verdicts `Validator`
/// reaches on the whole resulting configuration: thousands of random changes
/// (names, claims, uplinks, VLAN ids, VXLAN keys, connections) on random nodes.
final class NodeIndexTests: XCTestCase {
    struct RNG: RandomNumberGenerator {
        var s: UInt64
        mutating func next() -> UInt64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s }
    }

    func randomInterface(_ r: inout RNG, names: [String], existing: [String]) -> InterfaceConfig {
        let name = names.randomElement(using: &r)!
        let pick = Int.random(in: 0..<7, using: &r)
        let uplinks = existing.isEmpty ? ["u0"] : existing
        switch pick {
        case 0: return InterfaceConfig(name: name, type: .ring)
        case 1: return InterfaceConfig(name: name, type: .afPacket, iface: ["veth0", "veth1", "veth2"].randomElement(using: &r)!)
        case 2: return InterfaceConfig(name: name, type: .memif, socket: ["/run/a.sock", "/run/b.sock"].randomElement(using: &r)!,
                                       id: Int.random(in: 0..<2, using: &r))
        case 3:
            var i = InterfaceConfig(name: name, type: .ring)
            var u = UnderlayConfig()
            u.ipv4 = "10.0.0.1/24"
            i.underlay = u
            return i
        case 4:
            var i = InterfaceConfig(name: name, type: .vlan)
            i.uplink = uplinks.randomElement(using: &r)!
            i.vlanID = Int.random(in: 0..<3, using: &r)
            return i
        case 5:
            var i = InterfaceConfig(name: name, type: .vxlan)
            i.uplink = uplinks.randomElement(using: &r)!
            i.vni = Int.random(in: 1..<3, using: &r)
            i.remote = ["10.0.0.2", "10.0.0.3", "192.0.2.9"].randomElement(using: &r)!
            return i
        default: return InterfaceConfig(name: "bad name!", type: .ring)
        }
    }

    func testTheIndexReachesTheValidatorsVerdicts() {
        var r = RNG(s: 0x9e3779b97f4a7c15)
        var agreed = 0, refused = 0
        let names = (0..<8).map { "i\($0)" }
        for _ in 0..<20000 {
            // A valid node.
            var base = WeftConfig()
            for _ in 0..<Int.random(in: 0..<7, using: &r) {
                base.interfaces.append(randomInterface(&r, names: names, existing: base.interfaces.map(\.name)))
            }
            for k in 0..<Int.random(in: 0..<3, using: &r) {
                base.crossConnects.append(CrossConnectConfig(name: "x\(k)", a: names.randomElement(using: &r)!, b: names.randomElement(using: &r)!))
            }
            guard Validator.validate(base).isEmpty else { continue }
            // A random change.
            var removing = Set<String>()
            for _ in 0..<Int.random(in: 0..<3, using: &r) {
                let pool = base.interfaces.map(\.name) + base.crossConnects.map(\.name)
                if let n = pool.randomElement(using: &r) { removing.insert(n) }
            }
            var adding: [InterfaceConfig] = []
            for _ in 0..<Int.random(in: 0..<3, using: &r) {
                adding.append(randomInterface(&r, names: names, existing: base.interfaces.map(\.name)))
            }
            var xcs: [CrossConnectConfig] = []
            if Bool.random(using: &r) {
                xcs.append(CrossConnectConfig(name: ["x0", "x5"].randomElement(using: &r)!, a: names.randomElement(using: &r)!,
                                              b: names.randomElement(using: &r)!))
            }
            var after = base
            after.crossConnects.removeAll { removing.contains($0.name) }
            after.interfaces.removeAll { removing.contains($0.name) }
            after.interfaces += adding
            after.crossConnects += xcs
            let full = Validator.validate(after)
            let delta = NodeIndex(base).check(adding: adding, crossConnects: xcs, removing: removing, node: base)
            // One difference by design: a change through the APIs may not take an
            // uplink away from under tunnels that stay (a file reload re-creates them).
            let strands = base.interfaces.contains {
                ($0.type == .vlan || $0.type == .vxlan) && !removing.contains($0.name) && $0.uplink.map(removing.contains) == true
            }
            XCTAssertEqual(full.isEmpty && !strands, delta.isEmpty,
                           "base \(base.interfaces.map { "\($0.name):\($0.type.rawValue)/\($0.uplink ?? "")/\($0.iface ?? $0.socket ?? "")" }) xcs \(base.crossConnects.map { "\($0.name)=\($0.a)-\($0.b)" }); remove \(removing.sorted()); add \(adding.map { "\($0.name):\($0.type.rawValue)/\($0.uplink ?? "")/\($0.vlanID.map(String.init) ?? "")/\($0.iface ?? $0.socket ?? "")" }) \(xcs.map { "\($0.name)=\($0.a)-\($0.b)" })\nfull: \(full)\ndelta: \(delta)")
            agreed += 1
            if !full.isEmpty { refused += 1 }
        }
        XCTAssertGreaterThan(agreed, 1500)
        XCTAssertGreaterThan(refused, 100)
        XCTAssertGreaterThan(agreed - refused, 100)
    }
}
