/// A parsed JSON document. Objects keep their members in document order so that decoding can
/// report the first unknown field a user wrote, and so that duplicate keys can be refused.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([JSONMember])

    /// The name a user would use for this value's type in an error message.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int, .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// The member named `key`, for objects; nil otherwise.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first(where: { $0.key == key })?.value
    }
}

public struct JSONMember: Sendable, Equatable {
    public var key: String
    public var value: JSONValue
    public init(_ key: String, _ value: JSONValue) {
        self.key = key
        self.value = value
    }
}

/// Finds a repeated key among an object's keys as they are read, in time linear in their number:
/// while the object is small its members are compared directly (no allocation: most objects are
/// small), past that a set of the keys takes over. An object with 100,000 keys costs 100,000 set
/// inserts, not 5,000,000,000 comparisons.
public struct DuplicateKeyCheck {
    static let directLimit = 8
    private var hashed: Set<String>?

    public init() {}

    /// Whether `key` is not yet among `members` (the keys read so far, in order); call once per
    /// key, before appending it.
    public mutating func isNew(_ key: String, among members: [JSONMember]) -> Bool {
        if hashed == nil {
            if members.count < Self.directLimit { return !members.contains { $0.key == key } }
            hashed = Set(members.map(\.key))
        }
        return hashed!.insert(key).inserted
    }
}
