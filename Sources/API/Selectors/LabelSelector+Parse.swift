/// A parsed label selector: every requirement must hold (`app=web,tier in (a,b),!canary`).
public struct Selector: Sendable, Hashable, CustomStringConvertible {
    public enum Operator: String, Sendable, Hashable {
        case equals = "="
        case notEquals = "!="
        case `in` = "in"
        case notIn = "notin"
        case exists = "exists"
        case doesNotExist = "!"
    }

    public struct Requirement: Sendable, Hashable {
        public let key: String
        public let op: Operator
        /// Sorted, for stable printing.
        public let values: [String]

        public func matches(_ labels: [String: String]) -> Bool {
            let value = labels[key]
            switch op {
            case .equals, .in: return value.map { values.contains($0) } ?? false
            case .notEquals, .notIn: return value.map { !values.contains($0) } ?? true
            case .exists: return value != nil
            case .doesNotExist: return value == nil
            }
        }
    }

    public let requirements: [Requirement]

    /// Matches everything.
    public static let everything = Selector(requirements: [])

    public init(requirements: [Requirement]) {
        self.requirements = requirements
    }

    public var isEverything: Bool { requirements.isEmpty }

    public func matches(_ labels: [String: String]) -> Bool {
        requirements.allSatisfy { $0.matches(labels) }
    }

    public var description: String {
        requirements.map { r in
            switch r.op {
            case .equals: "\(r.key)=\(r.values[0])"
            case .notEquals: "\(r.key)!=\(r.values[0])"
            case .in: "\(r.key) in (\(r.values.joined(separator: ",")))"
            case .notIn: "\(r.key) notin (\(r.values.joined(separator: ",")))"
            case .exists: r.key
            case .doesNotExist: "!\(r.key)"
            }
        }.joined(separator: ",")
    }
}

/// A selector string that does not parse, with the position of the problem.
public struct SelectorParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let selector: String
    public let position: Int
    public let message: String
    public var description: String {
        "unable to parse label selector \"\(selector)\" at position \(position): \(message)"
    }
}

extension Selector {
    /// Parses the string form used by `-l` and `?labelSelector=`.
    public init(parsing text: String) throws {
        var lexer = SelectorLexer(text: text)
        var requirements: [Requirement] = []
        if text.allSatisfy(\.isWhitespace) {
            self.init(requirements: [])
            return
        }
        while true {
            requirements.append(try lexer.parseRequirement())
            lexer.skipSpaces()
            if lexer.atEnd { break }
            try lexer.expect(",")
        }
        self.init(requirements: requirements)
    }

    /// Converts a `LabelSelector` object (matchLabels + matchExpressions).
    public init(_ selector: LabelSelector) throws {
        var requirements: [Requirement] = []
        for key in selector.matchLabels.keys.sorted() {
            let value = selector.matchLabels[key]!
            try validateSelectorKey(key, selector: "\(key)=\(value)", position: 0)
            requirements.append(Requirement(key: key, op: .equals, values: [value]))
        }
        for expression in selector.matchExpressions {
            let op: Operator
            switch expression.operator {
            case "In": op = .in
            case "NotIn": op = .notIn
            case "Exists": op = .exists
            case "DoesNotExist": op = .doesNotExist
            default:
                throw SelectorParseError(selector: expression.key, position: 0,
                                         message: "operator \"\(expression.operator)\" is not one of In, NotIn, Exists, DoesNotExist")
            }
            if (op == .in || op == .notIn) && expression.values.isEmpty {
                throw SelectorParseError(selector: expression.key, position: 0, message: "operator \(expression.operator) needs at least one value")
            }
            if (op == .exists || op == .doesNotExist) && !expression.values.isEmpty {
                throw SelectorParseError(selector: expression.key, position: 0, message: "operator \(expression.operator) takes no values")
            }
            requirements.append(Requirement(key: expression.key, op: op, values: expression.values.sorted()))
        }
        self.init(requirements: requirements)
    }
}

func validateSelectorKey(_ key: String, selector: String, position: Int) throws {
    if let problem = LabelSyntax.keyProblem(key) {
        throw SelectorParseError(selector: selector, position: position, message: "invalid label key \"\(key)\": \(problem)")
    }
}

struct SelectorLexer {
    let text: String
    let chars: [Character]
    var index = 0

    init(text: String) {
        self.text = text
        self.chars = Array(text)
    }

    var atEnd: Bool { index >= chars.count }

    func fail(_ message: String) -> SelectorParseError {
        SelectorParseError(selector: text, position: index, message: message)
    }

    mutating func skipSpaces() {
        while index < chars.count, chars[index].isWhitespace { index += 1 }
    }

    mutating func expect(_ c: Character) throws {
        skipSpaces()
        guard index < chars.count, chars[index] == c else {
            throw fail(atEnd ? "expected '\(c)', found end of selector" : "expected '\(c)', found '\(chars[index])'")
        }
        index += 1
    }

    static func isWordChar(_ c: Character) -> Bool {
        c.isLetter || c.isNumber || c == "-" || c == "_" || c == "." || c == "/"
    }

    mutating func word() -> String {
        skipSpaces()
        let start = index
        while index < chars.count, Self.isWordChar(chars[index]) { index += 1 }
        return String(chars[start..<index])
    }

    mutating func parseRequirement() throws -> Selector.Requirement {
        skipSpaces()
        var negated = false
        if index < chars.count, chars[index] == "!" {
            negated = true
            index += 1
        }
        let keyPosition = index
        let key = word()
        guard !key.isEmpty else { throw fail(atEnd ? "expected a label key, found end of selector" : "expected a label key, found '\(chars[index])'") }
        try validateSelectorKey(key, selector: text, position: keyPosition)
        if negated { return .init(key: key, op: .doesNotExist, values: []) }
        skipSpaces()
        if atEnd || chars[index] == "," { return .init(key: key, op: .exists, values: []) }
        if chars[index] == "=" {
            index += 1
            if index < chars.count, chars[index] == "=" { index += 1 }
            return .init(key: key, op: .equals, values: [try value()])
        }
        if chars[index] == "!" {
            index += 1
            guard index < chars.count, chars[index] == "=" else { throw fail("expected '=' after '!'") }
            index += 1
            return .init(key: key, op: .notEquals, values: [try value()])
        }
        let opPosition = index
        let op = word()
        switch op {
        case "in", "notin":
            try expect("(")
            var values: [String] = []
            skipSpaces()
            if index < chars.count, chars[index] == ")" { throw fail("'\(op)' needs at least one value") }
            while true {
                values.append(try value())
                skipSpaces()
                if index < chars.count, chars[index] == ")" { index += 1; break }
                try expect(",")
            }
            return .init(key: key, op: op == "in" ? .in : .notIn, values: Array(Set(values)).sorted())
        default:
            index = opPosition
            throw fail("expected one of =, ==, !=, in, notin, ',' after key \"\(key)\"")
        }
    }

    mutating func value() throws -> String {
        skipSpaces()
        let position = index
        let v = word()
        if let problem = LabelSyntax.valueProblem(v) {
            index = position
            throw fail("invalid label value \"\(v)\": \(problem)")
        }
        return v
    }
}
