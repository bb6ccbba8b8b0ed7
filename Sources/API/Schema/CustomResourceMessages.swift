/// A custom resource's openAPIV3Schema as the messages server-side apply reads (`Schema`): each
/// object with properties a message, a map where only `additionalProperties` is given, anything
/// else (`x-kubernetes-preserve-unknown-fields` without properties, embedded resources) free-form.
/// Lists merge by `x-kubernetes-list-type`: `map` item by item by its one key (several keys: the
/// list is taken as atomic), `set` as a set of scalars, `atomic` (the default) whole.
public enum CustomResourceMessages {
    /// The messages for `schema`, the root one named `root` (with `apiVersion`, `kind` and the
    /// built-in `ObjectMeta` as `metadata`).
    public static func build(_ schema: JSONValue, root: String) -> [String: MessageSchema] {
        var out: [String: MessageSchema] = [:]

        func type(of node: JSONValue, path: String) -> SchemaType {
            if node["x-kubernetes-int-or-string"] == .bool(true) { return .intOrString }
            if node["x-kubernetes-embedded-resource"] == .bool(true) { return .freeform }
            switch node["type"] {
            case .string("string")?: return .string
            case .string("integer")?: return .int64
            case .string("number")?: return .double
            case .string("boolean")?: return .bool
            case .string("array")?: return .array(node["items"].map { type(of: $0, path: path + "[]") } ?? .freeform)
            case .string("object")?:
                if case .object(let properties)? = node["properties"], !properties.isEmpty {
                    let name = "\(root):\(path)"
                    out[name] = MessageSchema(name, definition: name, fields: properties.map { field($0.key, $0.value, path: path + "." + $0.key) })
                    return .message(name)
                }
                if let additional = node["additionalProperties"], case .object = additional { return .map(type(of: additional, path: path + "{}")) }
                return .freeform
            default:
                return .freeform
            }
        }

        func field(_ name: String, _ node: JSONValue, path: String) -> FieldSchema {
            var fieldType = type(of: node, path: path)
            guard case .array(let element) = fieldType else { return FieldSchema(name, fieldType) }
            switch node["x-kubernetes-list-type"] {
            case .string("map")?:
                let keys = node["x-kubernetes-list-map-keys"]?.elements?.compactMap { value -> String? in
                    if case .string(let key) = value { return key } else { return nil }
                } ?? []
                guard keys.count == 1 else { return FieldSchema(name, fieldType, listType: .atomic) }
                if case .message = element {} else {
                    // Items merged by key are objects even when their schema names no fields.
                    let itemName = "\(root):\(path)[]"
                    out[itemName] = MessageSchema(itemName, definition: itemName, fields: [])
                    fieldType = .array(.message(itemName))
                }
                return FieldSchema(name, fieldType, listType: .map, listMapKeys: keys, patchStrategy: "merge", patchMergeKey: keys[0])
            case .string("set")?:
                return FieldSchema(name, fieldType, listType: .set, patchStrategy: "merge")
            default:
                return FieldSchema(name, fieldType, listType: .atomic)
            }
        }

        var fields = [FieldSchema("apiVersion", .string), FieldSchema("kind", .string), FieldSchema("metadata", .message("ObjectMeta"))]
        if case .object(let properties)? = schema["properties"] {
            for property in properties where !["apiVersion", "kind", "metadata"].contains(property.key) {
                fields.append(field(property.key, property.value, path: property.key))
            }
        }
        out[root] = MessageSchema(root, definition: root, fields: fields)
        return out
    }
}
