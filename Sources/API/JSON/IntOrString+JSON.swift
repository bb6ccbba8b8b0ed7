/// IntOrString is a bare number or a bare string in JSON (`port: 8080`, `port: http`, `maxSurge: 25%`).
extension IntOrString: JSONCodable {
    public init(int: Int32) {
        self.init()
        value = .intVal(int)
    }

    public init(string: String) {
        self.init()
        value = .strVal(string)
    }

    public init(json: JSONValue) throws {
        self.init()
        switch json {
        case .int: value = .intVal(try json.decodeInt32())
        case .string(let s): value = .strVal(s)
        default: throw JSONDecodeError(.typeMismatch(expected: "integer or string", got: json.typeName))
        }
    }

    public func writeJSON(to w: inout JSONWriter) {
        switch value {
        case .intVal(let i): w.int(i)
        case .strVal(let s): w.string(s)
        case nil: w.int(0)
        }
    }

    /// A user-facing rendering: `8080` or `http`.
    public var displayString: String {
        switch value {
        case .intVal(let i): String(i)
        case .strVal(let s): s
        case nil: "0"
        }
    }
}

extension IntOrString {
    /// As a count of `total` things (maxSurge, maxUnavailable): the number, or the percentage of
    /// `total` rounded up or down; nil when it is neither.
    public func scaled(of total: Int, roundUp: Bool) -> Int? {
        switch value {
        case .intVal(let number)?: return Int(number)
        case .strVal(let text)?:
            guard text.hasSuffix("%"), let percent = Double(text.dropLast()) else { return nil }
            let exact = Double(total) * percent / 100
            return Int(roundUp ? exact.rounded(.up) : exact.rounded(.down))
        case nil: return nil
        }
    }
}
