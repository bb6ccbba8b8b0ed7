/// The shape of every message in `Protos/`, as Kubernetes declares the same types: JSON names,
/// types, required fields, descriptions, and how each list merges. Generated into
/// `Schema.generated.swift` by `scripts/gen-codecs.py`; strategic merge patch, server-side apply
/// and the OpenAPI documents read it.
public indirect enum SchemaType: Sendable, Equatable {
    case string, bool, int32, int64, double, bytes
    /// RFC 3339 (metav1.Time); `microTime` with microseconds (metav1.MicroTime).
    case time, microTime
    /// A resource quantity ("100m", "1Gi"; numbers accepted on input).
    case quantity
    case intOrString
    /// Any JSON object (FieldsV1).
    case freeform
    /// A message of `Protos/`, by its name.
    case message(String)
    case array(SchemaType)
    /// An object with string keys.
    case map(SchemaType)
}

/// How a list merges (Kubernetes' `+listType`).
public enum ListType: String, Sendable {
    /// Replaced as a whole.
    case atomic
    /// Scalars, each at most once; merged as a set.
    case set
    /// Objects identified by `listMapKeys`; merged item by item.
    case map
}

public struct FieldSchema: Sendable {
    public let name: String
    public let type: SchemaType
    public let description: String
    public let required: Bool
    public let listType: ListType?
    public let listMapKeys: [String]
    /// Strategic merge patch: "merge" (lists merged by `patchMergeKey`, or as sets of scalars),
    /// "retainKeys", or empty (replaced).
    public let patchStrategy: String
    public let patchMergeKey: String

    public init(_ name: String, _ type: SchemaType, description: String = "", required: Bool = false, listType: ListType? = nil,
                listMapKeys: [String] = [], patchStrategy: String = "", patchMergeKey: String = "") {
        self.name = name
        self.type = type
        self.description = description
        self.required = required
        self.listType = listType
        self.listMapKeys = listMapKeys
        self.patchStrategy = patchStrategy
        self.patchMergeKey = patchMergeKey
    }
}

public struct MessageSchema: Sendable {
    public let name: String
    /// Kubernetes' definition name (`io.k8s.api.core.v1.Pod`).
    public let definition: String
    public let description: String
    public let fields: [FieldSchema]
    private let index: [String: Int]

    public init(_ name: String, definition: String, description: String = "", fields: [FieldSchema]) {
        self.name = name
        self.definition = definition
        self.description = description
        self.fields = fields
        index = Dictionary(fields.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { first, _ in first })
    }

    public subscript(field name: String) -> FieldSchema? { index[name].map { fields[$0] } }
}

public enum Schema {
    /// Every message, by its name in `Protos/`.
    public static let messages: [String: MessageSchema] = Dictionary(
        generatedMessages.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })

    /// A message by name: one of `Protos/`, else one of the custom resource being served
    /// (`CustomResources.current`).
    public static func message(_ name: String) -> MessageSchema? { messages[name] ?? CustomResources.current?.messages[name] }

    /// The schema of a kind's object (`Pod`, `Deployment`, ...; a custom object's from the
    /// custom resource being served).
    public static func of<T: APIObject>(_ type: T.Type) -> MessageSchema? {
        if T.self == CustomObject.self { return CustomResources.current.flatMap { $0.messages[$0.rootMessage] } }
        return messages[String(describing: T.self)]
    }
}

extension Schema {
    /// The paths of the members of `value` that its schema does not have (`spec.replicaz`,
    /// `spec.containers[0].nmae`), in document order; found without copying anything.
    public static func unknownFields(_ value: JSONValue, as type: SchemaType, path: String = "") -> [String] {
        var found: [String] = []
        visit(value, as: type, path: path, prune: false, unknown: &found)
        return found
    }

    /// `value` without the members its schema does not have (what Kubernetes drops when it is
    /// not asked to be strict).
    public static func pruned(_ value: JSONValue, as type: SchemaType) -> JSONValue {
        var ignored: [String] = []
        return visit(value, as: type, path: "", prune: true, unknown: &ignored)
    }

    @discardableResult
    static func visit(_ value: JSONValue, as type: SchemaType, path: String, prune: Bool, unknown: inout [String]) -> JSONValue {
        switch (type, value) {
        case (.message(let name), .object(let members)):
            guard let schema = message(name) else { return value }
            var kept: [JSONMember] = []
            if prune { kept.reserveCapacity(members.count) }
            for member in members {
                let here = path.isEmpty ? member.key : path + "." + member.key
                guard let field = schema[field: member.key] else {
                    unknown.append(here)
                    continue
                }
                let child = visit(member.value, as: field.type, path: here, prune: prune, unknown: &unknown)
                if prune { kept.append(JSONMember(member.key, child)) }
            }
            return prune ? .object(kept) : value
        case (.array(let element), .array(let items)):
            var kept: [JSONValue] = []
            for (index, item) in items.enumerated() {
                let child = visit(item, as: element, path: "\(path)[\(index)]", prune: prune, unknown: &unknown)
                if prune { kept.append(child) }
            }
            return prune ? .array(kept) : value
        case (.map(let values), .object(let members)):
            guard case .message = values else { return value }
            var kept: [JSONMember] = []
            for member in members {
                let child = visit(member.value, as: values, path: path + "." + member.key, prune: prune, unknown: &unknown)
                if prune { kept.append(JSONMember(member.key, child)) }
            }
            return prune ? .object(kept) : value
        default:
            // Scalars, and values of the wrong type (the decoder names those).
            return value
        }
    }
}
