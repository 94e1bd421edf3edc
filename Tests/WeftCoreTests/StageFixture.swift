import Foundation
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel

/// EAL can start once per process; every stage test shares this one:
/// `--no-huge`, no PCI, no shared files, only the calling lcore.
enum StageEAL {
    static let ready: Void = {
        do {
            try EAL.initialize(arguments: [
                "weft-stage-tests", "-l", "0,1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                "--log-level", "lib.eal:error", "--file-prefix", "weft-stage-\(getpid())",
            ])
        } catch {
            fatalError("EAL init for stage tests failed: \(error)")
        }
    }()

    /// A dataplane with no worker lcores: tests drive worker 0 with pollOnce().
    static func dataplane(maxCrossConnects: UInt32 = 64) throws -> Dataplane {
        _ = ready
        var s = DataplaneSettings(workerLcores: [])
        s.mbufs = 4095
        s.mbufCache = 0
        s.maxCrossConnects = maxCrossConnects
        return try Dataplane(s)
    }
}

/// An Ethernet/IPv4/UDP frame with a recognisable payload.
func testFrame(src: UInt8, dst: UInt8, seq: UInt16, size: Int = 64) -> [UInt8] {
    var f: [UInt8] = [0x02, 0, 0, 0, 0, dst, 0x02, 0, 0, 0, 0, src, 0x08, 0x00]
    let ipLen = size - 14, udpLen = size - 34
    f += [0x45, 0, UInt8(ipLen >> 8), UInt8(ipLen & 0xff), 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, src, 10, 0, 0, dst]
    f += [0x13, 0x88, 0x13, 0x89, UInt8(udpLen >> 8), UInt8(udpLen & 0xff), 0, 0]
    while f.count < size { f.append(UInt8(truncatingIfNeeded: f.count &+ Int(seq))) }
    f[f.count - 2] = UInt8(seq >> 8); f[f.count - 1] = UInt8(seq & 0xff)
    return f
}
