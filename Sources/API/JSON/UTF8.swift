/// Makes a String from UTF-8 bytes, or nil when they are not valid UTF-8.
///
/// The standard library's `String(validating:as:)` is generic and shows up at the top of the codec
/// profiles; object fields are almost always ASCII, for which `String(decoding:as:)` is both
/// fast and exact, so only non-ASCII input takes the validating path.
@inline(__always)
func makeString(_ bytes: UnsafeRawBufferPointer) -> String? {
    var index = 0
    let count = bytes.count
    while index < count {
        if bytes[index] >= 0x80 { return String(validating: bytes, as: UTF8.self) }
        index += 1
    }
    return String(decoding: bytes, as: UTF8.self)
}
