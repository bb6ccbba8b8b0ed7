/// Makes a String from UTF-8 bytes, or nil when they are not valid UTF-8.
///
/// The standard library's `String(validating:as:)` is generic and showed up at the top of the
/// codec profiles; `String._tryFromUTF8` (public, underscored: what `String(validatingCString:)`
/// uses) validates and copies in one pass with the ASCII fast path.
@inline(__always)
func makeString(_ bytes: UnsafeRawBufferPointer) -> String? {
    String._tryFromUTF8(bytes.assumingMemoryBound(to: UInt8.self))
}
