/// Object uids: random (version 4) UUIDs in lower-case text, as Kubernetes writes them.
/// Formatted by hand: Foundation's UUID().uuidString.lowercased() costs two string allocations.
enum UID {
    static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    static func random() -> String {
        var generator = SystemRandomNumberGenerator()
        var high = generator.next() as UInt64
        var low = generator.next() as UInt64
        high = (high & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000  // version 4
        low = (low & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000    // RFC 4122 variant
        var text = [UInt8](repeating: UInt8(ascii: "-"), count: 36)
        var position = 0
        for value in [high, low] {
            for shift in stride(from: 60, through: 0, by: -4) {
                if position == 8 || position == 13 || position == 18 || position == 23 { position += 1 }
                text[position] = hex[Int((value >> UInt64(shift)) & 0xF)]
                position += 1
            }
        }
        return String(decoding: text, as: UTF8.self)
    }
}
