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

    public static func message(_ name: String) -> MessageSchema? { messages[name] }

    /// The schema of a kind's object (`Pod`, `Deployment`, ...).
    public static func of<T: APIObject>(_ type: T.Type) -> MessageSchema? { messages[String(describing: T.self)] }
}
