import Foundation
import SwiftProtobuf

/// Kubernetes timestamps in JSON: RFC 3339, UTC, seconds precision (`metav1.Time`) or
/// microseconds (`metav1.MicroTime`).
public typealias Timestamp = Google_Protobuf_Timestamp

extension Timestamp {
    /// Now, truncated to whole seconds, as Kubernetes stores `metav1.Time`.
    public static func nowSeconds() -> Timestamp {
        Timestamp(seconds: Int64(Date().timeIntervalSince1970), nanos: 0)
    }

    /// `metav1.Time` precision (status and condition times): the date's whole seconds.
    public init(wholeSecondsOf date: Date) {
        self.init(seconds: Int64(date.timeIntervalSince1970.rounded(.down)), nanos: 0)
    }

    public var rfc3339: String { format(microseconds: false) }

    public func format(microseconds: Bool) -> String {
        // Into one buffer (this runs for every timestamp of every JSON encode and audit line).
        let (y, mo, d) = Self.civil(fromDays: floorDiv(seconds, 86_400))
        let secondOfDay = seconds - floorDiv(seconds, 86_400) * 86_400
        var b: [UInt8] = []
        b.reserveCapacity(32)
        appendPadded(y, 4, &b); b.append(UInt8(ascii: "-")); appendPadded(mo, 2, &b); b.append(UInt8(ascii: "-")); appendPadded(d, 2, &b)
        b.append(UInt8(ascii: "T"))
        appendPadded(secondOfDay / 3600, 2, &b); b.append(UInt8(ascii: ":"))
        appendPadded(secondOfDay / 60 % 60, 2, &b); b.append(UInt8(ascii: ":"))
        appendPadded(secondOfDay % 60, 2, &b)
        if microseconds {
            b.append(UInt8(ascii: "."))
            appendPadded(Int64(nanos / 1000), 6, &b)
        } else if nanos != 0 {
            b.append(UInt8(ascii: "."))
            appendPadded(Int64(nanos), 9, &b)
            while b.last == UInt8(ascii: "0") { b.removeLast() }
        }
        b.append(UInt8(ascii: "Z"))
        return String(decoding: b, as: UTF8.self)
    }

    /// Parses `2024-01-02T03:04:05Z`, with optional fraction and `+hh:mm` offset.
    public init?(rfc3339 text: String) {
        let b = Array(text.utf8)
        func num(_ from: Int, _ count: Int) -> Int64? {
            guard from + count <= b.count else { return nil }
            var v: Int64 = 0
            for i in from..<(from + count) {
                guard b[i] >= 0x30, b[i] <= 0x39 else { return nil }
                v = v * 10 + Int64(b[i] - 0x30)
            }
            return v
        }
        guard b.count >= 20, let year = num(0, 4), b[4] == 0x2D, let month = num(5, 2), b[7] == 0x2D,
              let day = num(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t") || b[10] == 0x20,
              let hour = num(11, 2), b[13] == 0x3A, let minute = num(14, 2), b[16] == 0x3A, let second = num(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var i = 19
        var nanos: Int64 = 0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                if digits < 9 { nanos = nanos * 10 + Int64(b[i] - 0x30) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<9 where digits < 9 { nanos *= 10 }
        }
        var offset: Int64 = 0
        guard i < b.count else { return nil }
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            guard let oh = num(i + 1, 2), b.count > i + 3, b[i + 3] == 0x3A, let om = num(i + 4, 2) else { return nil }
            offset = (oh * 3600 + om * 60) * (b[i] == UInt8(ascii: "-") ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = Self.days(fromCivil: year, month, day)
        self.init(seconds: days * 86_400 + hour * 3600 + minute * 60 + second - offset, nanos: Int32(nanos))
    }

    // Howard Hinnant's civil-calendar algorithms (public domain), proleptic Gregorian.
    static func days(fromCivil y: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y - 1 : y
        let era = floorDiv(y, 400)
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z: Int64) -> (Int64, Int64, Int64) {
        let z = z + 719_468
        let era = floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, m, d)
    }
}

private func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
    a >= 0 ? a / b : -((-a + b - 1) / b)
}

/// `value` in decimal, zero-padded on the left to `width` digits (after the sign, if negative).
private func appendPadded(_ value: Int64, _ width: Int, _ b: inout [UInt8]) {
    if value < 0 { b.append(UInt8(ascii: "-")) }
    let digits = String(value.magnitude)  // a small string: no allocation
    for _ in digits.utf8.count..<max(width, digits.utf8.count) { b.append(UInt8(ascii: "0")) }
    b.append(contentsOf: digits.utf8)
}

extension JSONValue {
    public func decodeTimestamp() throws -> Timestamp {
        let text = try decodeString()
        guard let timestamp = Timestamp(rfc3339: text) else {
            throw JSONDecodeError(.invalidValue("\"\(text)\" is not an RFC 3339 time (like 2024-01-02T15:04:05Z)"))
        }
        return timestamp
    }
}

extension JSONWriter {
    public mutating func timestamp(_ value: Timestamp, microseconds: Bool) {
        string(value.format(microseconds: microseconds))
    }
}
