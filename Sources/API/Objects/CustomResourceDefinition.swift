import Foundation

// CustomResourceDefinition (apiextensions.k8s.io/v1): a kind the server learns at run time. Its
// names, scope and versions are checked as Kubernetes checks them, and its schema must be
// structural; what this server does not do (CEL rules, conversion webhooks, $ref, the
// combinators) is refused, naming the field, never stored to be silently ignored.

extension CustomResourceDefinition: APIObject {
    public static let kindInfo = KindInfo(group: "apiextensions.k8s.io", version: "v1", kind: "CustomResourceDefinition",
                                          resource: "customresourcedefinitions", singular: "customresourcedefinition",
                                          shortNames: ["crd", "crds"], namespaced: false)
    public func specDiffers(from other: CustomResourceDefinition) -> Bool { Self.differs(spec, other.spec) }
    public mutating func copyStatus(from other: CustomResourceDefinition) { if other.hasStatus { status = other.status } else { clearStatus() } }
}

extension CustomResourceDefinitionList: APIObjectList {}

extension CustomResourceDefinition {
    /// The version objects are stored in (exactly one, once valid).
    public var storageVersion: String? { spec.versions.first { $0.storage }?.name }

    public mutating func applyDefaults() {
        setTypeMeta()
        if spec.names.singular.isEmpty { spec.names.singular = spec.names.kind.lowercased() }
        if spec.names.listKind.isEmpty, !spec.names.kind.isEmpty { spec.names.listKind = spec.names.kind + "List" }
        if !spec.hasConversion || spec.conversion.strategy.isEmpty { spec.conversion.strategy = "None" }
        // What the server makes of the definition, at once (Kubernetes' controllers do this a
        // moment later): the names are taken as they are, and it is served from now on.
        if let storage = storageVersion, !status.storedVersions.contains(storage) { status.storedVersions.append(storage) }
        // Names found taken (by the server, at the create) stay refused.
        if status.conditions.contains(where: { $0.type == "NamesAccepted" && $0.status == "False" }) { return }
        status.acceptedNames = spec.names
        setCondition("NamesAccepted", reason: "NoConflicts", message: "no conflicts found")
        setCondition("Established", reason: "InitialNamesAccepted", message: "the initial names have been accepted")
    }

    public static func condition(_ type: String, _ status: String, _ reason: String, _ message: String) -> CustomResourceDefinitionCondition {
        var condition = CustomResourceDefinitionCondition()
        condition.type = type
        condition.status = status
        condition.reason = reason
        condition.message = message
        condition.lastTransitionTime = .nowSeconds()
        return condition
    }

    mutating func setCondition(_ type: String, reason: String, message: String) {
        if let index = status.conditions.firstIndex(where: { $0.type == type }) {
            guard status.conditions[index].status != "True" else { return }
            status.conditions.remove(at: index)
        }
        var condition = CustomResourceDefinitionCondition()
        condition.type = type
        condition.status = "True"
        condition.reason = reason
        condition.message = message
        condition.lastTransitionTime = .nowSeconds()
        status.conditions.append(condition)
    }

    public func validate() -> [FieldError] {
        var errors = validateObjectMeta(metadata, namespaced: false)
        let names = spec.names
        if spec.group.isEmpty {
            errors.append(.required("spec.group"))
        } else if let problem = NameSyntax.subdomainProblem(spec.group) {
            errors.append(.invalid("spec.group", spec.group, problem))
        } else if !spec.group.contains(".") {
            errors.append(.invalid("spec.group", spec.group, "should be a domain with at least one dot"))
        }
        if !metadata.name.isEmpty, !names.plural.isEmpty, !spec.group.isEmpty, metadata.name != "\(names.plural).\(spec.group)" {
            errors.append(.invalid("metadata.name", metadata.name, "must be spec.names.plural+\".\"+spec.group"))
        }
        errors += Self.validateNames(names, path: "spec.names")
        if spec.scope.isEmpty {
            errors.append(.required("spec.scope"))
        } else if spec.scope != "Namespaced" && spec.scope != "Cluster" {
            errors.append(.notSupported("spec.scope", spec.scope, ["Cluster", "Namespaced"]))
        }
        if spec.preserveUnknownFields {
            errors.append(.invalid("spec.preserveUnknownFields", "true",
                                   "must be false in v1 (set x-kubernetes-preserve-unknown-fields: true in the schema where unknown fields are kept)"))
        }
        if spec.conversion.strategy != "None" {
            if spec.conversion.strategy == "Webhook" {
                errors.append(FieldError(.forbidden, "spec.conversion.strategy", detail: "conversion webhooks are not supported by this server: use None (one schema, only the apiVersion changes between versions)"))
            } else {
                errors.append(.notSupported("spec.conversion.strategy", spec.conversion.strategy, ["None", "Webhook"]))
            }
        }
        if spec.versions.filter(\.storage).count != 1 {
            errors.append(.invalid("spec.versions", "\(spec.versions.count) versions", "must have exactly one version marked as storage version"))
        }
        var seen: Set<String> = []
        for (i, version) in spec.versions.enumerated() {
            let path = "spec.versions[\(i)]"
            if version.name.isEmpty {
                errors.append(.required("\(path).name"))
            } else if let problem = NameSyntax.dns1035Problem(version.name) {
                errors.append(.invalid("\(path).name", version.name, problem))
            } else if !seen.insert(version.name).inserted {
                errors.append(.duplicate("\(path).name", version.name))
            }
            if !version.hasSchema || version.schema.openApiV3Schema.isEmpty {
                errors.append(.required("\(path).schema.openAPIV3Schema", "schemas are required"))
            } else {
                errors += CustomResourceSchema.validateDefinition(version.schema.openApiV3Schema, path: "\(path).schema.openAPIV3Schema")
            }
            if version.subresources.hasScale {
                let scale = version.subresources.scale
                let scalePath = "\(path).subresources.scale"
                if !scale.specReplicasPath.hasPrefix(".spec.") {
                    errors.append(.invalid("\(scalePath).specReplicasPath", scale.specReplicasPath, "should be a json path under .spec"))
                }
                if !scale.statusReplicasPath.hasPrefix(".status.") {
                    errors.append(.invalid("\(scalePath).statusReplicasPath", scale.statusReplicasPath, "should be a json path under .status"))
                }
                if !scale.labelSelectorPath.isEmpty, !scale.labelSelectorPath.hasPrefix(".spec.") && !scale.labelSelectorPath.hasPrefix(".status.") {
                    errors.append(.invalid("\(scalePath).labelSelectorPath", scale.labelSelectorPath, "should be a json path under either .spec or .status"))
                }
            }
            for (j, column) in version.additionalPrinterColumns.enumerated() {
                let columnPath = "\(path).additionalPrinterColumns[\(j)]"
                if column.name.isEmpty { errors.append(.required("\(columnPath).name")) }
                let types = ["boolean", "date", "integer", "number", "string"]
                if column.type.isEmpty {
                    errors.append(.required("\(columnPath).type"))
                } else if !types.contains(column.type) {
                    errors.append(.notSupported("\(columnPath).type", column.type, types))
                }
                if column.jsonPath.isEmpty {
                    errors.append(.required("\(columnPath).jsonPath"))
                } else if JSONPathLite(column.jsonPath) == nil {
                    errors.append(.invalid("\(columnPath).jsonPath", column.jsonPath, "must be a simple json path"))
                }
                if column.priority < 0 { errors.append(.invalid("\(columnPath).priority", "\(column.priority)", "must be greater than or equal to 0")) }
            }
        }
        return errors
    }

    static func validateNames(_ names: CustomResourceDefinitionNames, path: String) -> [FieldError] {
        var errors: [FieldError] = []
        func lowerLabel(_ field: String, _ value: String, required: Bool) {
            if value.isEmpty {
                if required { errors.append(.required("\(path).\(field)")) }
            } else if let problem = NameSyntax.dns1035Problem(value) {
                errors.append(.invalid("\(path).\(field)", value, problem))
            }
        }
        lowerLabel("plural", names.plural, required: true)
        lowerLabel("singular", names.singular, required: false)
        for (i, short) in names.shortNames.enumerated() { lowerLabel("shortNames[\(i)]", short, required: true) }
        for (field, value) in [("kind", names.kind), ("listKind", names.listKind)] {
            if value.isEmpty {
                if field == "kind" { errors.append(.required("\(path).kind")) }
            } else if NameSyntax.dns1035Problem(value.lowercased()) != nil {
                errors.append(.invalid("\(path).\(field)", value, "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?"))
            }
        }
        if !names.kind.isEmpty, names.kind == names.listKind {
            errors.append(.invalid("\(path).listKind", names.listKind, "kind and listKind may not be the same or parsing become ambiguous"))
        }
        for (i, category) in names.categories.enumerated() where category.isEmpty {
            errors.append(.invalid("\(path).categories[\(i)]", category, "must be non-empty"))
        }
        return errors
    }
}

/// A simple JSON path as printer columns and scale paths use them: `.spec.replicas`,
/// `.status.conditions[0].type`, `.metadata.labels['app']` (no filters, no wildcards).
public struct JSONPathLite: Sendable, Hashable {
    public enum Step: Sendable, Hashable {
        case field(String)
        case index(Int)
    }

    public let steps: [Step]

    public init?(_ text: String) {
        var text = Substring(text.trimmingCharacters(in: .whitespaces))
        if text.hasPrefix("{"), text.hasSuffix("}") { text = text.dropFirst().dropLast() }
        guard text.hasPrefix(".") else { return nil }
        var steps: [Step] = []
        while !text.isEmpty {
            if text.hasPrefix(".") {
                text = text.dropFirst()
                let name = text.prefix { $0 != "." && $0 != "[" }
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else { return nil }
                steps.append(.field(String(name)))
                text = text.dropFirst(name.count)
            } else if text.hasPrefix("[") {
                guard let close = text.firstIndex(of: "]") else { return nil }
                let inner = text[text.index(after: text.startIndex)..<close]
                if let index = Int(inner), index >= 0 {
                    steps.append(.index(index))
                } else if inner.count >= 2, let quote = inner.first, quote == "'" || quote == "\"", inner.last == quote {
                    steps.append(.field(String(inner.dropFirst().dropLast())))
                } else {
                    return nil
                }
                text = text[text.index(after: close)...]
            } else {
                return nil
            }
        }
        guard !steps.isEmpty else { return nil }
        self.steps = steps
    }

    /// The value at this path in `value`, or nil when a step finds nothing.
    public func evaluate(_ value: JSONValue) -> JSONValue? {
        var current = value
        for step in steps {
            switch step {
            case .field(let name):
                guard let next = current[name] else { return nil }
                current = next
            case .index(let index):
                guard case .array(let items) = current, index < items.count else { return nil }
                current = items[index]
            }
        }
        return current
    }
}

/// Structural schemas (Kubernetes' rules for a CRD's `openAPIV3Schema`), as far as this server
/// serves them.
public enum CustomResourceSchema {
    static let types = ["array", "boolean", "integer", "number", "object", "string"]
    static let keywords: Set<String> = [
        "type", "format", "title", "description", "default", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
        "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "multipleOf", "enum", "maxProperties",
        "minProperties", "required", "items", "properties", "additionalProperties", "nullable", "example", "externalDocs",
        "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys", "x-kubernetes-list-type", "x-kubernetes-map-type",
    ]
    /// Keywords Kubernetes knows that this server does not serve: refused, saying so.
    static let unsupported: [String: String] = [
        "x-kubernetes-validations": "CEL validation rules are not supported by this server",
        "allOf": "allOf is not supported by this server", "anyOf": "anyOf is not supported by this server",
        "oneOf": "oneOf is not supported by this server", "not": "not is not supported by this server",
        "$ref": "$ref is not supported", "$schema": "$schema is not supported", "id": "id is not supported",
        "definitions": "definitions are not supported", "dependencies": "dependencies are not supported",
        "patternProperties": "patternProperties is not supported", "additionalItems": "additionalItems is not supported",
    ]

    /// The field errors of a definition's schema (JSON text): it must be an object schema at the
    /// root, with a type on every node (unless it is int-or-string or keeps unknown fields), items
    /// for arrays, not both properties and additionalProperties, and only keywords served here.
    public static func validateDefinition(_ text: String, path: String) -> [FieldError] {
        guard let schema = try? JSONParser.parse(text) else { return [.invalid(path, text, "must be a JSON object")] }
        guard case .object = schema else { return [.invalid(path, text, "must be a JSON object")] }
        var errors: [FieldError] = []
        switch schema["type"] {
        case nil, .string("")?: errors.append(.required("\(path).type", "must not be empty at the root"))
        case .string("object")?: break
        case let other?: errors.append(.invalid("\(path).type", Self.text(other), "must be object at the root"))
        }
        validate(schema, path: path, root: true, into: &errors)
        return errors
    }

    static func text(_ value: JSONValue) -> String {
        if case .string(let text) = value { return text }
        var writer = JSONWriter()
        writer.value(value)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    static func validate(_ schema: JSONValue, path: String, root: Bool, into errors: inout [FieldError]) {
        guard case .object(let members) = schema else {
            errors.append(.invalid(path, text(schema), "must be a schema object"))
            return
        }
        for member in members where !keywords.contains(member.key) {
            if let why = unsupported[member.key] {
                errors.append(FieldError(.forbidden, "\(path).\(member.key)", detail: why))
            } else {
                errors.append(FieldError(.forbidden, "\(path).\(member.key)", detail: "unknown schema keyword"))
            }
        }
        func flag(_ name: String) -> Bool {
            if case .bool(true)? = schema[name] { return true }
            return false
        }
        let intOrString = flag("x-kubernetes-int-or-string")
        let preserve = flag("x-kubernetes-preserve-unknown-fields")
        var type = ""
        switch schema["type"] {
        case nil: break
        case .string(let value)?:
            type = value
            if !value.isEmpty, !types.contains(value) { errors.append(.notSupported("\(path).type", value, types)) }
        case let other?: errors.append(.invalid("\(path).type", text(other), "must be a string"))
        }
        if intOrString && !type.isEmpty {
            errors.append(FieldError(.forbidden, "\(path).type", detail: "must be empty if x-kubernetes-int-or-string is true"))
        }
        if !root, type.isEmpty, !intOrString, !preserve {
            errors.append(.required("\(path).type", "must not be empty for specified object fields"))
        }
        if flag("x-kubernetes-embedded-resource"), type != "object" {
            errors.append(.invalid("\(path).type", type, "must be object if x-kubernetes-embedded-resource is true"))
        }
        if case .object(let properties)? = schema["properties"] {
            if schema["additionalProperties"] != nil, schema["additionalProperties"] != .bool(false) {
                errors.append(FieldError(.forbidden, "\(path).additionalProperties", detail: "additionalProperties and properties are mutual exclusive"))
            }
            if !type.isEmpty, type != "object" {
                errors.append(.invalid("\(path).properties", "", "must only be used with type object"))
            }
            for property in properties { validate(property.value, path: "\(path).properties[\(property.key)]", root: false, into: &errors) }
        } else if let properties = schema["properties"] {
            errors.append(.invalid("\(path).properties", text(properties), "must be an object of schemas"))
        }
        switch schema["additionalProperties"] {
        case .object?: validate(schema["additionalProperties"]!, path: "\(path).additionalProperties", root: false, into: &errors)
        case nil, .bool?: break
        case let other?: errors.append(.invalid("\(path).additionalProperties", text(other), "must be a schema or a boolean"))
        }
        if type == "array" {
            switch schema["items"] {
            case .object?: validate(schema["items"]!, path: "\(path).items", root: false, into: &errors)
            case nil: errors.append(.required("\(path).items", "must be specified"))
            case let other?: errors.append(.invalid("\(path).items", text(other), "must be a schema (a list of schemas is not supported)"))
            }
        } else if schema["items"] != nil {
            errors.append(FieldError(.forbidden, "\(path).items", detail: "must only be used with type array"))
        }
        if let required = schema["required"] {
            if case .array(let names) = required, names.allSatisfy({ if case .string = $0 { return true } else { return false } }) {} else {
                errors.append(.invalid("\(path).required", text(required), "must be a list of property names"))
            }
        }
        if let values = schema["enum"], case .array = values {} else if let values = schema["enum"] {
            errors.append(.invalid("\(path).enum", text(values), "must be a list"))
        }
        if let fallback = schema["default"] {
            // A default must itself be valid where it goes (Kubernetes checks it so).
            var problems: [FieldError] = []
            check(fallback, schema: schema, path: "\(path).default", into: &problems)
            errors += problems
        }
        if case .string(let pattern)? = schema["pattern"], (try? NSRegularExpression(pattern: pattern)) == nil {
            errors.append(.invalid("\(path).pattern", pattern, "must be a valid regular expression"))
        }
        if let listType = schema["x-kubernetes-list-type"] {
            let allowed = ["atomic", "map", "set"]
            if case .string(let value) = listType, allowed.contains(value) {
                if type != "array" { errors.append(.invalid("\(path).x-kubernetes-list-type", value, "must only be used if type is array")) }
                if value == "map", schema["x-kubernetes-list-map-keys"] == nil {
                    errors.append(.required("\(path).x-kubernetes-list-map-keys", "must not be empty if x-kubernetes-list-type is map"))
                }
            } else {
                errors.append(.notSupported("\(path).x-kubernetes-list-type", text(listType), allowed))
            }
        }
        for key in ["maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties"] {
            if let value = schema[key] {
                if case .int(let number) = value, number >= 0 {} else {
                    errors.append(.invalid("\(path).\(key)", text(value), "must be a non-negative integer"))
                }
            }
        }
    }
}
