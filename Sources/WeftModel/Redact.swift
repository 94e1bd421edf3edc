import Foundation

/// What must never reach a log line or an error message.
public enum Redact {
    /// `secret=...` in DPDK devargs (net_memif) replaced by `secret=***`.
    public static func devargs(_ s: String) -> String {
        guard s.contains("secret=") else { return s }
        var out = ""
        var rest = Substring(s)
        while let r = rest.range(of: "secret=") {
            out += rest[..<r.upperBound] + "***"
            rest = rest[r.upperBound...]
            if let end = rest.firstIndex(where: { $0 == "," || $0 == " " || $0 == "'" || $0 == "\"" || $0 == ")" }) {
                rest = rest[end...]
            } else {
                rest = ""
            }
        }
        return out + rest
    }
}
