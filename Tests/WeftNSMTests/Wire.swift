import Foundation

/// Hand-built protobuf wire bytes (encoding spec: tag = field << 3 | wire type; varints
/// 7 bits at a time, low group first; length-delimited = length varint then the bytes).
/// Used to pin the generated code to NSM's field numbers independently of SwiftProtobuf.
enum Wire {
    static let varintType: UInt64 = 0, lengthDelimited: UInt64 = 2

    static func varint(_ value: UInt64) -> [UInt8] {
        var v = value
        var out: [UInt8] = []
        while v >= 0x80 {
            out.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
        return out
    }

    static func tag(_ field: UInt64, _ wireType: UInt64) -> [UInt8] { varint(field << 3 | wireType) }

    /// uint32/uint64/bool/enum field.
    static func uint(_ field: UInt64, _ v: UInt64) -> [UInt8] { tag(field, varintType) + varint(v) }

    /// int32 field: negative values are sign-extended to 64 bits (10 bytes on the wire).
    static func int32(_ field: UInt64, _ v: Int32) -> [UInt8] { tag(field, varintType) + varint(UInt64(bitPattern: Int64(v))) }

    static func bytes(_ field: UInt64, _ b: [UInt8]) -> [UInt8] {
        tag(field, lengthDelimited) + varint(UInt64(b.count)) + b
    }

    static func string(_ field: UInt64, _ s: String) -> [UInt8] { bytes(field, Array(s.utf8)) }

    /// An embedded message made of the given encoded fields.
    static func message(_ field: UInt64, _ parts: [UInt8]...) -> [UInt8] { bytes(field, parts.flatMap { $0 }) }

    /// One map<string,string> entry: an embedded message with key = 1, value = 2.
    static func entry(_ field: UInt64, _ key: String, _ value: String) -> [UInt8] {
        message(field, string(1, key), string(2, value))
    }

    /// google.protobuf.Timestamp{seconds = 1, nanos = 2} as an embedded message.
    static func timestamp(_ field: UInt64, seconds: Int64, nanos: Int32 = 0) -> [UInt8] {
        var inner: [UInt8] = []
        if seconds != 0 { inner += tag(1, varintType) + varint(UInt64(bitPattern: seconds)) }
        if nanos != 0 { inner += int32(2, nanos) }
        return bytes(field, inner)
    }
}
