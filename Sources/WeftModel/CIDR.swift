import Foundation

/// "10.0.0.1/24" or "fd00::1/64" (a bare address gets the full-length prefix).
public struct CIDR: Equatable, Sendable, CustomStringConvertible {
    public var address: [UInt8]
    public var prefix: UInt8
    public var family: Int32 { address.count == 4 ? AF_INET : AF_INET6 }
    public var description: String { CIDR.text(address) + "/\(prefix)" }

    public init?(_ s: String) {
        let parts = s.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let first = parts.first, let a = IPAddress.parse(String(first)) else { return nil }
        let max = a.count * 8
        if parts.count == 2 {
            guard let p = Int(parts[1]), (0...max).contains(p) else { return nil }
            prefix = UInt8(p)
        } else {
            prefix = UInt8(max)
        }
        address = a
    }

    /// The network address (host bits cleared), for a route.
    public var network: CIDR {
        var c = self
        for i in 0..<address.count {
            let bits = Int(prefix) - i * 8
            let mask: UInt8 = bits >= 8 ? 0xff : bits <= 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            c.address[i] &= mask
        }
        return c
    }

    public static func text(_ a: [UInt8]) -> String {
        var buf = [CChar](repeating: 0, count: 64)
        let af = a.count == 4 ? AF_INET : AF_INET6
        _ = a.withUnsafeBufferPointer { inet_ntop(af, $0.baseAddress, &buf, 64) }
        return String(cString: buf)
    }
}
