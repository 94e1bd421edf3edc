import Foundation

/// IPv4/IPv6 text <-> bytes, with prefixes, through inet_pton/inet_ntop.
public enum IPAddress {
    public static func parse(_ s: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, s, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// "192.0.2.1/24" -> (bytes, 24); the prefix must fit the family.
    public static func parseCIDR(_ s: String) -> (address: [UInt8], prefix: Int)? {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = parse(String(parts[0])), let p = Int(parts[1]), p >= 0, p <= a.count * 8 else { return nil }
        return (a, p)
    }

    public static func format4(_ b: [UInt8]) -> String { b.prefix(4).map(String.init).joined(separator: ".") }

    public static func format6(_ b: [UInt8]) -> String {
        var a = in6_addr()
        withUnsafeMutableBytes(of: &a) { $0.copyBytes(from: b.prefix(16)) }
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
        return String(cString: buf)
    }

    public static func format(_ b: [UInt8]) -> String { b.count == 16 ? format6(b) : format4(b) }

    /// Whether the first `bits` bits of two addresses of one family agree.
    public static func samePrefix(_ a: [UInt8], _ b: [UInt8], bits: Int) -> Bool {
        guard a.count == b.count else { return false }
        var left = bits
        for i in 0..<a.count where left > 0 {
            let mask: UInt8 = left >= 8 ? 0xff : UInt8(truncatingIfNeeded: 0xff << (8 - left))
            if a[i] & mask != b[i] & mask { return false }
            left -= 8
        }
        return true
    }
}
