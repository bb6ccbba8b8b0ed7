/// Appends protobuf wire format to one buffer in a single pass. Nested messages are written in
/// place behind a one-byte length that is widened afterwards only when the body is 128 bytes or
/// more, so no size is computed twice (swift-protobuf's encoder recomputes the sizes of nested
/// messages at every level, which dominates its cost on deeply nested objects).
public struct ProtoWriter {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 1024) {
        bytes.reserveCapacity(capacity)
    }

    @inline(__always) mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    @inline(__always) mutating func tag(_ field: Int, _ wireType: Int) {
        varint(UInt64(field << 3 | wireType))
    }

    public mutating func string(_ field: Int, _ value: String) {
        tag(field, 2)
        var value = value
        value.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    public mutating func bytesField(_ field: Int, _ value: [UInt8]) {
        tag(field, 2)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func int64(_ field: Int, _ value: Int64) {
        tag(field, 0)
        varint(UInt64(bitPattern: value))
    }

    /// int32 is sign-extended to 64 bits on the wire, as protobuf requires.
    public mutating func int32(_ field: Int, _ value: Int32) {
        tag(field, 0)
        varint(UInt64(bitPattern: Int64(value)))
    }

    public mutating func uint64(_ field: Int, _ value: UInt64) {
        tag(field, 0)
        varint(value)
    }

    public mutating func bool(_ field: Int, _ value: Bool) {
        tag(field, 0)
        bytes.append(value ? 1 : 0)
    }

    public mutating func double(_ field: Int, _ value: Double) {
        tag(field, 1)
        var bits = value.bitPattern.littleEndian
        withUnsafeBytes(of: &bits) { bytes.append(contentsOf: $0) }
    }

    public mutating func float(_ field: Int, _ value: Float) {
        tag(field, 5)
        var bits = value.bitPattern.littleEndian
        withUnsafeBytes(of: &bits) { bytes.append(contentsOf: $0) }
    }

    /// A length-delimited nested message whose body `write` appends.
    @inline(__always)
    public mutating func message(_ field: Int, _ write: (inout ProtoWriter) -> Void) {
        tag(field, 2)
        let lengthAt = bytes.count
        bytes.append(0)
        write(&self)
        let length = bytes.count - lengthAt - 1
        if length < 0x80 {
            bytes[lengthAt] = UInt8(length)
            return
        }
        var prefix: [UInt8] = []
        var v = UInt64(length)
        while v >= 0x80 {
            prefix.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        prefix.append(UInt8(v))
        bytes.replaceSubrange(lengthAt..<(lengthAt + 1), with: prefix)
    }

    /// One `map<string, string>` entry.
    public mutating func mapEntry(_ field: Int, _ key: String, _ value: String) {
        message(field) { w in
            if !key.isEmpty { w.string(1, key) }
            if !value.isEmpty { w.string(2, value) }
        }
    }
}
