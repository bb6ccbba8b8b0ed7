import Foundation

/// A Kubernetes resource quantity (`500m`, `2`, `128Mi`, `1.5G`, `1e3`), parsed exactly.
public struct Quantity: Sendable, Hashable, CustomStringConvertible {
    /// The exact value in base units (cores, bytes, pods).
    public let value: Decimal
    /// The text it was parsed from.
    public let text: String

    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public let text: String
        public var description: String {
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got \"\(text)\")"
        }
    }

    static let binarySuffixes: [String: Int] = ["Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60]
    static let decimalSuffixes: [String: Int] = ["n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18]

    public init(parsing text: String) throws {
        let scalars = Array(text.unicodeScalars)
        var i = 0
        var negative = false
        if i < scalars.count, scalars[i] == "+" || scalars[i] == "-" {
            negative = scalars[i] == "-"
            i += 1
        }
        var digits = ""
        var sawDigit = false
        var sawDot = false
        while i < scalars.count, scalars[i].properties.numericType != nil && scalars[i].isASCII || scalars[i] == "." {
            if scalars[i] == "." {
                if sawDot { throw ParseError(text: text) }
                sawDot = true
            } else {
                sawDigit = true
            }
            digits.unicodeScalars.append(scalars[i])
            i += 1
        }
        guard sawDigit, var number = Decimal(string: digits.hasPrefix(".") ? "0" + digits : digits, locale: Locale(identifier: "en_US_POSIX")) else {
            throw ParseError(text: text)
        }
        let suffix = String(String.UnicodeScalarView(scalars[i...]))
        if let power = Self.binarySuffixes[suffix] {
            number *= pow(Decimal(2), power)
        } else if let power = Self.decimalSuffixes[suffix] {
            number *= pow(Decimal(10), power >= 0 ? power : 0)
            if power < 0 { number /= pow(Decimal(10), -power) }
        } else if let first = suffix.first, first == "e" || first == "E", let exponent = Int(suffix.dropFirst()), abs(exponent) <= 30 {
            if exponent >= 0 { number *= pow(Decimal(10), exponent) } else { number /= pow(Decimal(10), -exponent) }
        } else {
            throw ParseError(text: text)
        }
        self.value = negative ? -number : number
        self.text = text
    }

    /// The value in thousandths, rounded up (cpu `500m` is 500).
    public var milliValue: Int64 { Self.roundUp(value * 1000) }
    /// The value rounded up to a whole unit (memory in bytes).
    public var integerValue: Int64 { Self.roundUp(value) }

    static func roundUp(_ decimal: Decimal) -> Int64 {
        var input = decimal
        var rounded = Decimal()
        NSDecimalRound(&rounded, &input, 0, .up)
        let number = NSDecimalNumber(decimal: rounded)
        if number.compare(NSDecimalNumber(value: Int64.max)) == .orderedDescending { return Int64.max }
        if number.compare(NSDecimalNumber(value: Int64.min)) == .orderedAscending { return Int64.min }
        return number.int64Value
    }

    public var description: String { text }
}
