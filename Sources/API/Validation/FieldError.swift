/// One problem with one field, worded as Kubernetes words it:
/// `spec.containers[1].name: Duplicate value: "web"`.
public struct FieldError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case required = "Required value"
        case invalid = "Invalid value"
        case duplicate = "Duplicate value"
        case notSupported = "Unsupported value"
        case tooLong = "Too long"
        case tooMany = "Too many"
        case forbidden = "Forbidden"
        case notFound = "Not found"
    }

    public let field: String
    public let kind: Kind
    public let value: String?
    public let detail: String
    /// Whether the value is shown in quotes (a string); numbers and booleans are not, as in Kubernetes.
    public var quoted = true

    public init(_ kind: Kind, _ field: String, value: String? = nil, detail: String = "") {
        self.kind = kind
        self.field = field
        self.value = value
        self.detail = detail
    }

    /// An invalid value of any JSON type, shown as Kubernetes shows it (`Invalid value: -1`).
    public static func invalid(_ field: String, json value: JSONValue, _ detail: String) -> FieldError {
        var error = FieldError(.invalid, field, value: CustomResourceSchema.shown(value), detail: detail)
        if case .string = value {} else { error.quoted = false }
        return error
    }

    public var description: String { "\(field): \(body)" }

    /// The error without its field, as a Status cause's message carries it (the field is beside it).
    public var body: String {
        var s = kind.rawValue
        if let value { s += quoted ? ": \"\(value)\"" : ": \(value)" }
        if !detail.isEmpty { s += ": \(detail)" }
        return s
    }

    /// The cause type Kubernetes gives this kind of error (`FieldValueForbidden`, …).
    public var causeType: String {
        switch kind {
        case .required: "FieldValueRequired"
        case .invalid: "FieldValueInvalid"
        case .duplicate: "FieldValueDuplicate"
        case .notSupported: "FieldValueNotSupported"
        case .tooLong: "FieldValueTooLong"
        case .tooMany: "FieldValueTooMany"
        case .forbidden: "FieldValueForbidden"
        case .notFound: "FieldValueNotFound"
        }
    }

    public static func required(_ field: String, _ detail: String = "") -> FieldError { .init(.required, field, detail: detail) }
    public static func invalid(_ field: String, _ value: String, _ detail: String) -> FieldError { .init(.invalid, field, value: value, detail: detail) }
    public static func duplicate(_ field: String, _ value: String) -> FieldError { .init(.duplicate, field, value: value) }
    public static func notSupported(_ field: String, _ value: String, _ supported: [String]) -> FieldError {
        .init(.notSupported, field, value: value, detail: "supported values: " + supported.map { "\"\($0)\"" }.joined(separator: ", "))
    }
}

/// The errors of one object, as one error: the message Kubernetes gives for `Invalid`.
public struct ValidationError: Error, Sendable, CustomStringConvertible {
    public let kind: String
    public let group: String
    public let name: String
    public let errors: [FieldError]

    public init(kind: String, group: String = "", name: String, errors: [FieldError]) {
        self.kind = kind
        self.group = group
        self.name = name
        self.errors = errors
    }

    /// Kubernetes' words: the kind qualified by its group (`Deployment.apps "web" is invalid: …`).
    public var description: String {
        let list = errors.map(\.description)
        let joined = list.count == 1 ? list[0] : "[" + list.joined(separator: ", ") + "]"
        return "\(group.isEmpty ? kind : kind + "." + group) \"\(name)\" is invalid: \(joined)"
    }
}

extension APIObject {
    /// Throws a ValidationError when `validate()` finds anything.
    public func validated() throws -> Self {
        let errors = validate()
        if !errors.isEmpty { throw ValidationError(kind: Self.kindInfo.kind, group: Self.kindInfo.group, name: metadata.name, errors: errors) }
        return self
    }
}
