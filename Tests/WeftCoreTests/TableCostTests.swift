import XCTest
import WeftDataplane
import WeftModel

/// A change's table work does not grow with the connections on the node:
/// the table's root is copied, and only the parts the change touched are
/// built (the rest is shared). Counted in bytes, parts and sides, never timed.
final class TableCostTests: XCTestCase {
    struct Cost { var bytes: UInt64; var parts: UInt32; var sides: UInt32 }

    /// One uplink with n VXLAN tunnel-to-tunnel connections, then one more
    /// connection added (two tunnels and a cross-connect, one publish) and removed.
    func cost(connections n: Int) throws -> (add: Cost, remove: Cost, port: Cost) {
        let dp = try StageEAL.dataplane(maxCrossConnects: 32768)
        defer { dp.destroy() }
        let up = try dp.createTestPort(name: "tcup"), a = try dp.createTestPort(name: "tca"), b = try dp.createTestPort(name: "tcb")
        var u = Dataplane.Underlay()
        u.ipv4 = (IPAddress.parse("10.70.0.1")!, 24)
        u.gateway4 = IPAddress.parse("10.70.0.254")
        try dp.setUnderlay(up, u)
        try dp.addStaticNeighbour(up, ip: IPAddress.parse("10.70.0.254")!, mac: [2, 0, 0, 0, 0x70, 2])
        // Remotes behind the gateway: one neighbour for all.
        func remote(_ i: Int) -> [UInt8] { [10, 71, UInt8(1 + i / 250), UInt8(1 + i % 250)] }
        dp.hold()
        for i in 0..<n {
            let x = try dp.addVXLAN(uplink: up, vni: UInt32(2 * i + 2), remote: remote(i), dstPort: 4789, localPort: 4789)
            let y = try dp.addVXLAN(uplink: up, vni: UInt32(2 * i + 3), remote: remote(i), dstPort: 4789, localPort: 4789)
            _ = try dp.addCrossConnect(x, y)
        }
        try dp.release()
        // One more connection, in one publish.
        dp.hold()
        let x = try dp.addVXLAN(uplink: up, vni: 1_000_000, remote: [10, 72, 0, 1], dstPort: 4789, localPort: 4789)
        let y = try dp.addVXLAN(uplink: up, vni: 1_000_001, remote: [10, 72, 0, 1], dstPort: 4789, localPort: 4789)
        let slot = try dp.addCrossConnect(x, y)
        try dp.release()
        let s1 = dp.tableStats()
        dp.hold()
        try dp.deleteCrossConnect(slot)
        try dp.deleteTunnel(x)
        try dp.deleteTunnel(y)
        try dp.release()
        let s2 = dp.tableStats()
        // A P2P cross-connect between two ports.
        let p = try dp.addCrossConnect(a, b)
        let s3 = dp.tableStats()
        try dp.deleteCrossConnect(p)
        return (Cost(bytes: s1.lastBytes, parts: s1.lastParts, sides: s1.lastSides),
                Cost(bytes: s2.lastBytes, parts: s2.lastParts, sides: s2.lastSides),
                Cost(bytes: s3.lastBytes, parts: s3.lastParts, sides: s3.lastSides))
    }

    func testAChangesTableWorkDoesNotGrowWithTheConnections() throws {
        var costs: [Int: (add: Cost, remove: Cost, port: Cost)] = [:]
        for n in [1, 1000, 10000] {
            costs[n] = try cost(connections: n)
            let c = costs[n]!
            print("table-cost n=\(n): add a VXLAN connection \(c.add.bytes) B in \(c.add.parts) parts, \(c.add.sides) sides; remove it \(c.remove.bytes) B in \(c.remove.parts) parts; P2P ports \(c.port.bytes) B in \(c.port.parts) parts, \(c.port.sides) sides")
        }
        let small = costs[1]!, big = costs[10000]!
        // The same sides and at most a chunk per key, marker and template, whatever the node holds...
        XCTAssertEqual(big.add.sides, small.add.sides)
        XCTAssertLessThanOrEqual(big.add.parts, 10, "root, 3 chunk indexes, 2 templates' chunks, 2 keys' and 2 markers' chunks")
        XCTAssertEqual(big.port.parts, small.port.parts)
        XCTAssertEqual(big.port.bytes, small.port.bytes, "a port change never touches VXLAN's parts")
        // ...and bytes within the decap hash's chunk index (8 bytes per 64 slots).
        XCTAssertLessThan(Double(big.add.bytes), Double(small.add.bytes) * 1.5, "\(big.add.bytes) vs \(small.add.bytes)")
        XCTAssertLessThan(Double(big.remove.bytes), Double(small.remove.bytes) * 1.5)
    }
}
