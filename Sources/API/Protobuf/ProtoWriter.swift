/// Appends protobuf wire format to one buffer in a single pass. Nested messages are written in
/// place behind a one-byte length that is widened afterwards only when the body is 128 bytes or
/// more, so no size is computed twice (swift-protobuf's encoder recomputes the sizes of nested
/// messages at every level, which dominates its cost on deeply nested objects).
///
/// The buffer is raw memory the writer owns (it is not copyable, and frees it when it ends):
/// appending to an `[UInt8]` checks uniqueness and capacity on every byte, which was a third of
/// encoding a Pod.
public struct ProtoWriter: ~Copyable {
    @usableFromInline var base: UnsafeMutablePointer<UInt8>
    @usableFromInline var count = 0
    @usableFromInline var capacity: Int

    public init(capacity: Int = 1024) {
        self.capacity = max(16, capacity)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// What has been written.
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

    /// Room for `n` more bytes.
    @inline(__always) @usableFromInline mutating func reserve(_ n: Int) {
        if count + n > capacity { grow(n) }
    }

    @inline(never) @usableFromInline mutating func grow(_ n: Int) {
        let newCapacity = max(capacity * 2, count + n)
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        bigger.update(from: base, count: count)
        base.deallocate()
        base = bigger
        capacity = newCapacity
    }

    @inline(__always) @usableFromInline mutating func varint(_ value: UInt64) {
        reserve(10)
        var v = value
        while v >= 0x80 {
            base[count] = UInt8(truncatingIfNeeded: v) | 0x80
            count += 1
            v >>= 7
        }
        base[count] = UInt8(v)
        count += 1
    }

    @inline(__always) @usableFromInline mutating func tag(_ field: Int, _ wireType: Int) {
        varint(UInt64(field << 3 | wireType))
    }

    @inline(__always) mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        reserve(bytes.count)
        UnsafeMutableRawPointer(base + count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    public mutating func string(_ field: Int, _ value: String) {
        tag(field, 2)
        func write(_ utf8: UnsafeBufferPointer<UInt8>) {
            varint(UInt64(utf8.count))
            append(UnsafeRawBufferPointer(utf8))
        }
        // Native strings lend their bytes without a copy (or a retain, as `var` + `withUTF8` took).
        if value.utf8.withContiguousStorageIfAvailable(write) == nil {
            var copy = value
            copy.withUTF8(write)
        }
    }

    public mutating func bytesField(_ field: Int, _ value: [UInt8]) {
        tag(field, 2)
        varint(UInt64(value.count))
        value.withUnsafeBytes { append($0) }
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
        reserve(1)
        base[count] = value ? 1 : 0
        count += 1
    }

    public mutating func double(_ field: Int, _ value: Double) {
        tag(field, 1)
        var bits = value.bitPattern.littleEndian
        withUnsafeBytes(of: &bits) { append($0) }
    }

    public mutating func float(_ field: Int, _ value: Float) {
        tag(field, 5)
        var bits = value.bitPattern.littleEndian
        withUnsafeBytes(of: &bits) { append($0) }
    }

    /// A length-delimited nested message whose body `write` appends.
    @inline(__always)
    public mutating func message(_ field: Int, _ write: (inout ProtoWriter) -> Void) {
        tag(field, 2)
        reserve(1)
        let lengthAt = count
        count += 1
        write(&self)
        let length = count - lengthAt - 1
        if length < 0x80 {
            base[lengthAt] = UInt8(length)
            return
        }
        widenLength(at: lengthAt, length)
    }

    /// Rewrites the one-byte length placeholder at `lengthAt` as the varint of `length`, moving
    /// the body behind it.
    @inline(never) mutating func widenLength(at lengthAt: Int, _ length: Int) {
        var prefix: (UInt64, Int) = (0, 0)  // up to 8 varint bytes packed little-endian, and their count
        var v = UInt64(length)
        while v >= 0x80 {
            prefix.0 |= (v & 0x7F | 0x80) << (8 * UInt64(prefix.1))
            prefix.1 += 1
            v >>= 7
        }
        prefix.0 |= v << (8 * UInt64(prefix.1))
        prefix.1 += 1
        let extra = prefix.1 - 1
        reserve(extra)
        let body = UnsafeMutableRawPointer(base + lengthAt + 1)
        (body + extra).copyMemory(from: body, byteCount: length)  // memmove: the regions overlap
        for i in 0..<prefix.1 { base[lengthAt + i] = UInt8(truncatingIfNeeded: prefix.0 >> (8 * UInt64(i))) }
        count += extra
    }

    /// One `map<string, string>` entry.
    public mutating func mapEntry(_ field: Int, _ key: String, _ value: String) {
        message(field) { w in
            if !key.isEmpty { w.string(1, key) }
            if !value.isEmpty { w.string(2, value) }
        }
    }
}
