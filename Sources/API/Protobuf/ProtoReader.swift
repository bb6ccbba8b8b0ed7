/// Why protobuf bytes could not be read.
public struct ProtoDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public let offset: Int
    public var description: String { "\(reason) at byte \(offset)" }
}

/// Reads protobuf wire format from a borrowed buffer. Every read is bounds-checked; a malformed
/// input is an error, never a crash.
public struct ProtoReader {
    let buffer: UnsafeRawBufferPointer
    var position = 0
    /// Nesting depth left; deeper input is refused (a crafted message could otherwise recurse
    /// until the stack runs out).
    let depthLeft: Int

    public static let maxDepth = 64

    public init(_ buffer: UnsafeRawBufferPointer, depthLeft: Int = ProtoReader.maxDepth) {
        self.buffer = buffer
        self.depthLeft = depthLeft
    }

    func fail(_ reason: String) -> ProtoDecodingError { ProtoDecodingError(reason: reason, offset: position) }

    public var wireType = 0

    /// The next field number, or nil at the end. Sets `wireType`.
    public mutating func nextField() throws -> Int? {
        if position >= buffer.count { return nil }
        let key = try varint()
        let field = Int(truncatingIfNeeded: key >> 3)
        wireType = Int(key & 7)
        if field <= 0 || field > 536_870_911 { throw fail("invalid field number \(field)") }
        return field
    }

    @inline(__always)
    public mutating func varint() throws -> UInt64 {
        // Tags and most lengths fit in one byte.
        if position < buffer.count, buffer[position] < 0x80 {
            defer { position += 1 }
            return UInt64(buffer[position])
        }
        return try longVarint()
    }

    mutating func longVarint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while position < buffer.count {
            let byte = buffer[position]
            position += 1
            if shift == 63 && byte > 1 { throw fail("varint overflows 64 bits") }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
            if shift > 63 { throw fail("varint longer than 10 bytes") }
        }
        throw fail("truncated varint")
    }

    @inline(__always) mutating func expect(_ wire: Int) throws {
        if wireType != wire { throw fail("wire type \(wireType) where \(wire) was expected") }
    }

    public mutating func lengthDelimited() throws -> UnsafeRawBufferPointer {
        try expect(2)
        let length = try varint()
        guard length <= UInt64(buffer.count - position) else { throw fail("length \(length) runs past the end") }
        let slice = UnsafeRawBufferPointer(rebasing: buffer[position..<(position + Int(length))])
        position += Int(length)
        return slice
    }

    public mutating func string() throws -> String {
        let slice = try lengthDelimited()
        guard let string = makeString(slice) else { throw fail("invalid UTF-8 in string") }
        return string
    }

    public mutating func bytes() throws -> [UInt8] { Array(try lengthDelimited()) }

    public mutating func int64() throws -> Int64 {
        try expect(0)
        return Int64(bitPattern: try varint())
    }

    /// A repeated int64 field's values here: one (unpacked) or a packed run of them.
    public mutating func int64s() throws -> [Int64] {
        if wireType == 0 { return [Int64(bitPattern: try varint())] }
        try expect(2)
        var packed = ProtoReader(try lengthDelimited(), depthLeft: depthLeft)
        var values: [Int64] = []
        while packed.position < packed.buffer.count { values.append(Int64(bitPattern: try packed.varint())) }
        return values
    }

    public mutating func int32() throws -> Int32 {
        try expect(0)
        return Int32(truncatingIfNeeded: Int64(bitPattern: try varint()))
    }

    public mutating func uint64() throws -> UInt64 {
        try expect(0)
        return try varint()
    }

    public mutating func uint32() throws -> UInt32 {
        try expect(0)
        return UInt32(truncatingIfNeeded: try varint())
    }

    public mutating func bool() throws -> Bool {
        try expect(0)
        return try varint() != 0
    }

    mutating func fixed(_ count: Int) throws -> UInt64 {
        guard buffer.count - position >= count else { throw fail("truncated fixed-width value") }
        var value: UInt64 = 0
        for i in 0..<count { value |= UInt64(buffer[position + i]) << (8 * UInt64(i)) }
        position += count
        return value
    }

    public mutating func double() throws -> Double {
        try expect(1)
        return Double(bitPattern: try fixed(8))
    }

    public mutating func float() throws -> Float {
        try expect(5)
        return Float(bitPattern: UInt32(try fixed(4)))
    }

    /// A reader for a nested message's body.
    public mutating func nested() throws -> ProtoReader {
        if depthLeft <= 0 { throw fail("messages nested deeper than \(Self.maxDepth) levels") }
        return ProtoReader(try lengthDelimited(), depthLeft: depthLeft - 1)
    }

    /// Skips a field this schema does not know (forward compatibility, as protobuf intends).
    public mutating func skip() throws {
        switch wireType {
        case 0: _ = try varint()
        case 1: _ = try fixed(8)
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed(4)
        default: throw fail("unsupported wire type \(wireType)")
        }
    }

    /// A `map<string, string>` entry.
    public mutating func mapEntry() throws -> (String, String) {
        var entry = try nested()
        var key = "", value = ""
        while let field = try entry.nextField() {
            switch field {
            case 1: key = try entry.string()
            case 2: value = try entry.string()
            default: try entry.skip()
            }
        }
        return (key, value)
    }
}

/// A message with a generated, specialised protobuf codec (scripts/gen-json.py). Wire-compatible
/// with swift-protobuf's encoding of the same schema.
public protocol ProtoCodable {
    init()
    func writeProto(to writer: inout ProtoWriter)
    /// Merges fields read from `reader` into self (protobuf's merge semantics: scalars replace,
    /// repeated fields and maps append, nested messages merge).
    mutating func mergeProto(from reader: inout ProtoReader) throws
}

extension ProtoCodable {
    public init(protobuf bytes: [UInt8]) throws {
        self.init()
        try bytes.withUnsafeBytes { buffer in
            var reader = ProtoReader(buffer)
            try mergeProto(from: &reader)
        }
    }

    public func protoBytes() -> [UInt8] {
        var writer = ProtoWriter()
        writeProto(to: &writer)
        return writer.bytes
    }
}

extension ProtoWriter {
    public mutating func message<M: ProtoCodable>(_ field: Int, _ value: M) {
        message(field) { value.writeProto(to: &$0) }
    }
}

extension ProtoReader {
    public mutating func merge<M: ProtoCodable>(into value: inout M) throws {
        var sub = try nested()
        try value.mergeProto(from: &sub)
    }

    public mutating func message<M: ProtoCodable>(_ type: M.Type) throws -> M {
        var value = M()
        try merge(into: &value)
        return value
    }
}
