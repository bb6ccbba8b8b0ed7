/// Stored objects carry no resourceVersion: it is the revision of the row that holds them (as
/// etcd's mod_revision). To hand out protobuf bytes with the version set, without re-encoding,
/// append a tiny message that sets only `metadata.resourceVersion`: protobuf merges concatenated
/// messages field by field, and every kind has `metadata` as field 3.
public enum ResourceVersionSuffix {
    /// `metadata` (field 3) in every top-level kind.
    static let metadataTag: UInt8 = 3 << 3 | 2
    /// `resource_version` (field 5) in ObjectMeta.
    static let resourceVersionTag: UInt8 = 5 << 3 | 2

    public static func bytes(_ revision: Int64) -> [UInt8] {
        let digits = Array(String(revision).utf8)
        // At most 19 digits, so both lengths fit in one varint byte.
        return [metadataTag, UInt8(digits.count + 2), resourceVersionTag, UInt8(digits.count)] + digits
    }

    /// `stored` with the resourceVersion set to `revision`.
    public static func appending(_ revision: Int64, to stored: [UInt8]) -> [UInt8] {
        var out = stored
        out.append(contentsOf: bytes(revision))
        return out
    }
}
