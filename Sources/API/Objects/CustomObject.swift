import Foundation
import SwiftProtobuf

// Objects of custom resources: JSON, kept whole, checked against their definition's schema.
//
// The server's machinery is generic over a kind's static `kindInfo`; a custom resource is known
// only at run time. So `CustomObject` takes its kind from the request it is served in: the router
// sets `CustomResources.current` (a task-local) around everything it does for a custom resource,
// and `CustomObject.kindInfo`, its schema, defaults, validation and columns read it there. Outside
// such a scope (the store's writer thread) only the object's bytes and key are used.

/// A custom resource as one version of it is served: its kind and the definition's parts that
/// shape its objects.
public struct CustomResource: Sendable {
    public let info: KindInfo
    public let definition: CustomResourceDefinition
    /// The version's openAPIV3Schema.
    public let schema: JSONValue
    public let statusSubresource: Bool
    public let scale: CustomResourceSubresourceScale?
    public let columns: [CustomResourceColumnDefinition]
    /// The schema as server-side apply reads it (`CustomResourceMessages`), the root one named
    /// `rootMessage`; empty for a client's resource.
    public let messages: [String: MessageSchema]
    public var rootMessage: String { "custom:\(info.groupResource)/\(info.version)" }
    /// The schema has defaults (objects are defaulted as they are read).
    public let readDefaults: Bool

    /// A custom resource as a client knows it: its kind and where it is served (no schema: the
    /// server checks the objects).
    public init(_ info: KindInfo) {
        self.info = info
        definition = CustomResourceDefinition()
        schema = .object([])
        statusSubresource = false
        scale = nil
        columns = []
        messages = [:]
        readDefaults = false
    }

    /// The served version `version` of `definition`; nil when it does not serve that version.
    public init?(_ definition: CustomResourceDefinition, version: String) {
        guard let served = definition.spec.versions.first(where: { $0.name == version && $0.served }) else { return nil }
        let names = definition.status.acceptedNames.plural.isEmpty ? definition.spec.names : definition.status.acceptedNames
        info = KindInfo(group: definition.spec.group, version: version, kind: names.kind, resource: names.plural,
                        singular: names.singular.isEmpty ? names.kind.lowercased() : names.singular,
                        shortNames: names.shortNames, namespaced: definition.spec.scope == "Namespaced")
        self.definition = definition
        schema = (try? JSONParser.parse(served.schema.openApiV3Schema)) ?? .object([])
        statusSubresource = served.subresources.hasStatus
        scale = served.subresources.hasScale ? served.subresources.scale : nil
        columns = served.additionalPrinterColumns
        messages = CustomResourceMessages.build(schema, root: "custom:\(info.groupResource)/\(version)")
        readDefaults = served.schema.openApiV3Schema.contains("\"default\"")
    }
}

public enum CustomResources {
    /// The custom resource being served by the current task (set by the API server's router).
    @TaskLocal public static var current: CustomResource?

    /// What `CustomObject.kindInfo` says outside a request's scope.
    static let unscoped = KindInfo(group: "custom.cox.io", version: "v1", kind: "CustomObject", resource: "customobjects",
                                   singular: "customobject", shortNames: [], namespaced: true)
}

/// An object of a custom resource: apiVersion, kind, metadata, and every other member as sent
/// (after pruning and defaulting by the schema). Stored as its JSON.
public struct CustomObject: APIObject, @unchecked Sendable {
    public var apiVersion = ""
    public var kind = ""
    public var metadata = ObjectMeta()
    /// The members other than apiVersion, kind and metadata, in order.
    public var content: [JSONMember] = []
    public var unknownFields = SwiftProtobuf.UnknownStorage()

    public init() {}

    public static var kindInfo: KindInfo { CustomResources.current?.info ?? CustomResources.unscoped }

    public subscript(member: String) -> JSONValue? {
        get { content.first { $0.key == member }?.value }
        set {
            if let index = content.firstIndex(where: { $0.key == member }) {
                if let newValue { content[index].value = newValue } else { content.remove(at: index) }
            } else if let newValue {
                content.append(JSONMember(member, newValue))
            }
        }
    }

    /// Sets the member at `path` (fields only: `.spec.replicas`), making the objects on the way.
    public mutating func set(_ path: JSONPathLite, to value: JSONValue) {
        func put(_ steps: ArraySlice<JSONPathLite.Step>, into container: JSONValue?) -> JSONValue {
            guard let step = steps.first, case .field(let name) = step else { return value }
            var members: [JSONMember] = { if case .object(let members)? = container { return members } else { return [] } }()
            let existing = members.first { $0.key == name }?.value
            let replaced = put(steps.dropFirst(), into: existing)
            if let index = members.firstIndex(where: { $0.key == name }) { members[index].value = replaced } else { members.append(JSONMember(name, replaced)) }
            return .object(members)
        }
        guard case .object(let members) = put(path.steps[...], into: .object(content)) else { return }
        content = members
    }

    /// The whole object as JSON.
    public var json: JSONValue {
        var members = [JSONMember("apiVersion", .string(apiVersion)), JSONMember("kind", .string(kind)), JSONMember("metadata", metadata.jsonValue())]
        members += content
        return .object(members)
    }

    // MARK: APIObject

    public func specDiffers(from other: CustomObject) -> Bool {
        // Everything but metadata and status is what bumps the generation.
        content.filter { $0.key != "status" } != other.content.filter { $0.key != "status" }
    }

    public mutating func copyStatus(from other: CustomObject) {
        // Without a status subresource the status is part of the object like the rest.
        guard CustomResources.current?.statusSubresource == true else { return }
        self["status"] = other["status"]
    }

    public mutating func applyDefaults() {
        setTypeMeta()
        guard let resource = CustomResources.current else { return }
        var value = JSONValue.object(content)
        value = CustomResourceSchema.prunedAndDefaulted(value, schema: resource.schema, root: true)
        if case .object(let members) = value { content = members }
    }

    public func validate() -> [FieldError] {
        var errors = validateObjectMeta(metadata, namespaced: Self.kindInfo.namespaced)
        guard let resource = CustomResources.current else { return errors }
        errors += CustomResourceSchema.validateObject(.object(content), schema: resource.schema)
        return errors
    }

    // MARK: JSON

    public init(json: JSONValue) throws {
        guard case .object(let members) = json else {
            throw JSONDecodeError(.typeMismatch(expected: "object", got: json.typeName))
        }
        for member in members {
            switch member.key {
            case "apiVersion":
                guard case .string(let text) = member.value else { throw JSONDecodeError(.typeMismatch(expected: "string", got: member.value.typeName), path: ["apiVersion"]) }
                apiVersion = text
            case "kind":
                guard case .string(let text) = member.value else { throw JSONDecodeError(.typeMismatch(expected: "string", got: member.value.typeName), path: ["kind"]) }
                kind = text
            case "metadata":
                metadata = try ObjectMeta(json: member.value)
            default:
                content.append(member)
            }
        }
    }

    /// Served versions differ only in their apiVersion (`conversion: None`, the one strategy
    /// without a webhook): within a request's scope an object is written out as the version the
    /// request names, and stored (the protobuf form) as the definition's storage version.
    /// Written out in a request's scope, it is also defaulted (and pruned) by the served version's
    /// schema, as Kubernetes does on read: a default added to the schema shows in objects stored
    /// before it.
    public func writeJSON(to writer: inout JSONWriter) {
        let served = Self.served(apiVersion, storage: false)
        guard let resource = CustomResources.current, resource.readDefaults, served == resource.info.apiVersion else {
            writer.value(json(apiVersion: served))
            return
        }
        var copy = self
        copy.apiVersion = served
        if case .object(let members) = CustomResourceSchema.prunedAndDefaulted(.object(content), schema: resource.schema, root: true) {
            copy.content = members
        }
        writer.value(copy.json)
    }

    func json(apiVersion: String) -> JSONValue {
        guard apiVersion != self.apiVersion else { return json }
        var copy = self
        copy.apiVersion = apiVersion
        return copy.json
    }

    /// The apiVersion `own` becomes in the current scope: the served version's, or with
    /// `storage` the storage version's; `own` when no scope of its group is bound.
    static func served(_ own: String, storage: Bool) -> String {
        guard let resource = CustomResources.current, !resource.info.group.isEmpty,
              own.isEmpty || own.hasPrefix(resource.info.group + "/") else { return own }
        if storage {
            guard let version = resource.definition.storageVersion else { return own }
            return "\(resource.info.group)/\(version)"
        }
        return resource.info.apiVersion
    }

    // MARK: Protobuf: the JSON (as stored: in the storage version), as field 1

    public func writeProto(to writer: inout ProtoWriter) {
        var w = JSONWriter()
        w.value(json(apiVersion: Self.served(apiVersion, storage: true)))
        writer.bytesField(1, w.bytes)
    }

    public mutating func mergeProto(from reader: inout ProtoReader) throws {
        while let field = try reader.nextField() {
            if field == 1 {
                self = try CustomObject(jsonBytes: try reader.bytes())
            } else {
                try reader.skip()
            }
        }
    }

    public static let protoMessageName = "cox.v1.CustomObject"

    public mutating func decodeMessage<D: SwiftProtobuf.Decoder>(decoder: inout D) throws {
        while let number = try decoder.nextFieldNumber() {
            if number == 1 {
                var bytes = Data()
                try decoder.decodeSingularBytesField(value: &bytes)
                self = try CustomObject(jsonBytes: Array(bytes))
            }
        }
    }

    public func traverse<V: SwiftProtobuf.Visitor>(visitor: inout V) throws {
        var w = JSONWriter()
        w.value(json(apiVersion: Self.served(apiVersion, storage: true)))
        try visitor.visitSingularBytesField(value: Data(w.bytes), fieldNumber: 1)
    }

    public func isEqualTo(message: any SwiftProtobuf.Message) -> Bool {
        guard let other = message as? CustomObject else { return false }
        return self == other
    }

    public static func == (lhs: CustomObject, rhs: CustomObject) -> Bool {
        lhs.apiVersion == rhs.apiVersion && lhs.kind == rhs.kind && lhs.metadata == rhs.metadata && lhs.content == rhs.content
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(jsonBytes())
    }
}

extension CustomResourceSchema {
    /// `value` without the members its schema does not name (unless it keeps unknown fields), and
    /// with the schema's defaults where members are missing (Kubernetes' pruning and defaulting).
    public static func prunedAndDefaulted(_ value: JSONValue, schema: JSONValue, root: Bool = false) -> JSONValue {
        switch value {
        case .object(var members):
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == .bool(true)
            if case .object(let properties)? = schema["properties"] {
                members = members.compactMap { member in
                    if let sub = properties.first(where: { $0.key == member.key })?.value {
                        return JSONMember(member.key, prunedAndDefaulted(member.value, schema: sub))
                    }
                    if root && (member.key == "apiVersion" || member.key == "kind" || member.key == "metadata") { return member }
                    return preserve ? member : nil
                }
                for property in properties where !members.contains(where: { $0.key == property.key }) {
                    if let fallback = property.value["default"] {
                        members.append(JSONMember(property.key, prunedAndDefaulted(fallback, schema: property.value)))
                    }
                }
            } else if case .object(let additional)? = schema["additionalProperties"] {
                members = members.map { JSONMember($0.key, prunedAndDefaulted($0.value, schema: .object(additional))) }
            } else if !preserve, schema["additionalProperties"] == nil || schema["additionalProperties"] == .bool(false) {
                if schema["type"] == .string("object"), schema["x-kubernetes-embedded-resource"] != .bool(true) { members = [] }
            }
            return .object(members)
        case .array(let items):
            guard let itemSchema = schema["items"] else { return value }
            return .array(items.map { prunedAndDefaulted($0, schema: itemSchema) })
        default:
            return value
        }
    }

    /// The paths of members the schema does not name (what pruning drops), for warnings and
    /// strict field validation.
    public static func unknownFields(_ value: JSONValue, schema: JSONValue, path: String = "", root: Bool = false) -> [String] {
        var found: [String] = []
        switch value {
        case .object(let members):
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == .bool(true)
            let properties: [JSONMember]? = { if case .object(let properties)? = schema["properties"] { return properties } else { return nil } }()
            for member in members {
                let memberPath = path.isEmpty ? member.key : "\(path).\(member.key)"
                if root && (member.key == "apiVersion" || member.key == "kind" || member.key == "metadata") { continue }
                if let properties {
                    if let sub = properties.first(where: { $0.key == member.key })?.value {
                        found += unknownFields(member.value, schema: sub, path: memberPath)
                    } else if !preserve {
                        found.append(memberPath)
                    }
                } else if case .object(let additional)? = schema["additionalProperties"] {
                    found += unknownFields(member.value, schema: .object(additional), path: memberPath)
                } else if !preserve, schema["type"] == .string("object"), schema["additionalProperties"] == nil,
                          schema["x-kubernetes-embedded-resource"] != .bool(true) {
                    found.append(memberPath)
                }
            }
        case .array(let items):
            if let itemSchema = schema["items"] {
                for (i, item) in items.enumerated() { found += unknownFields(item, schema: itemSchema, path: "\(path)[\(i)]") }
            }
        default:
            break
        }
        return found
    }

    /// Whether a string is of an OpenAPI format Kubernetes checks (the common ones; a format it
    /// does not know, or one not checked here, passes, as an unknown one does there).
    static func hasFormat(_ text: String, _ format: String) -> Bool {
        func matches(_ pattern: String) -> Bool { text.range(of: pattern, options: .regularExpression) != nil }
        switch format {
        case "date-time", "datetime":
            return matches(#"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$"#)
        case "date":
            return matches(#"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"#)
        case "uuid":
            return matches(#"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"#)
        case "ipv4":
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            return parts.count == 4 && parts.allSatisfy { part in UInt8(part) != nil && (part == "0" || !part.hasPrefix("0")) }
        case "ipv6":
            var address = in6_addr()
            return text.contains(":") && inet_pton(AF_INET6, text, &address) == 1
        case "cidr":
            let parts = text.split(separator: "/")
            guard parts.count == 2, let bits = Int(parts[1]) else { return false }
            let address = String(parts[0])
            if hasFormat(address, "ipv4") { return (0...32).contains(bits) }
            return hasFormat(address, "ipv6") && (0...128).contains(bits)
        case "mac":
            return matches(#"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$"#)
        case "email":
            return matches(#"^[^@\s]+@[^@\s]+\.[^@\s]+$"#)
        case "hostname":
            return text.count <= 253 && matches(#"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"#)
        case "byte":
            return Data(base64Encoded: text) != nil
        case "uri":
            return URL(string: text)?.scheme != nil
        default:
            return true
        }
    }

    /// An object's field errors against its schema, in Kubernetes' words: types, required
    /// members, enums, bounds, lengths, patterns, item counts.
    public static func validateObject(_ value: JSONValue, schema: JSONValue) -> [FieldError] {
        var errors: [FieldError] = []
        check(value, schema: schema, path: "", into: &errors)
        return errors
    }

    public static func shown(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): return text
        default: return text(value)
        }
    }

    static func check(_ value: JSONValue, schema: JSONValue, path: String, into errors: inout [FieldError]) {
        let field = path.isEmpty ? "<root>" : path
        if value == .null {
            if schema["nullable"] == .bool(true) { return }
            if case .string(let type)? = schema["type"], !type.isEmpty {
                errors.append(.invalid(field, "null", "\(field) in body must be of type \(type): \"null\""))
            }
            return
        }
        let intOrString = schema["x-kubernetes-int-or-string"] == .bool(true)
        if intOrString {
            switch value {
            case .int, .string: break
            default: errors.append(.invalid(field, shown(value), "\(field) in body must be of type integer or string: \"\(value.typeName)\""))
            }
        }
        if case .string(let type)? = schema["type"] {
            let matches: Bool
            switch (type, value) {
            case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("integer", .int), ("number", .int), ("number", .double): matches = true
            case ("integer", .double(let number)): matches = number.rounded() == number
            default: matches = type.isEmpty
            }
            guard matches else {
                let found = value.typeName == "number" ? (type == "integer" ? "number" : "number") : value.typeName
                errors.append(.invalid(field, json: value, "\(field) in body must be of type \(type): \"\(found)\""))
                return
            }
        }
        if case .array(let allowed)? = schema["enum"], !allowed.contains(value) {
            errors.append(.notSupported(field, shown(value), allowed.map(shown)))
        }
        switch value {
        case .object(let members):
            if case .array(let required)? = schema["required"] {
                for case .string(let name) in required where !members.contains(where: { $0.key == name }) {
                    errors.append(.required(path.isEmpty ? name : "\(path).\(name)"))
                }
            }
            if schema["x-kubernetes-embedded-resource"] == .bool(true) {
                // An object of some kind inside this one: it says which.
                for name in ["apiVersion", "kind"] {
                    guard case .string(let text)? = members.first(where: { $0.key == name })?.value, !text.isEmpty else {
                        errors.append(FieldError(.required, path.isEmpty ? name : "\(path).\(name)", detail: "must not be empty"))
                        continue
                    }
                }
            }
            if case .int(let most)? = schema["maxProperties"], members.count > most {
                errors.append(FieldError(.tooMany, field, detail: "must have at most \(most) items"))
            }
            if case .int(let least)? = schema["minProperties"], members.count < least {
                errors.append(.invalid(field, "\(members.count)", "\(field) in body should have at least \(least) properties"))
            }
            let properties: [JSONMember]? = { if case .object(let properties)? = schema["properties"] { return properties } else { return nil } }()
            for member in members {
                let memberPath = path.isEmpty ? member.key : "\(path).\(member.key)"
                if let sub = properties?.first(where: { $0.key == member.key })?.value {
                    check(member.value, schema: sub, path: memberPath, into: &errors)
                } else if case .object(let additional)? = schema["additionalProperties"] {
                    check(member.value, schema: .object(additional), path: memberPath, into: &errors)
                }
            }
        case .array(let items):
            if case .int(let most)? = schema["maxItems"], items.count > most {
                errors.append(FieldError(.tooMany, field, detail: "must have at most \(most) items"))
            }
            if case .int(let least)? = schema["minItems"], items.count < least {
                errors.append(.invalid(field, "\(items.count)", "\(field) in body should have at least \(least) items"))
            }
            if schema["x-kubernetes-list-type"] == .string("set") || schema["uniqueItems"] == .bool(true) {
                for (i, item) in items.enumerated() where items[..<i].contains(item) {
                    errors.append(.duplicate("\(path)[\(i)]", shown(item)))
                }
            }
            if schema["x-kubernetes-list-type"] == .string("map"), case .array(let names)? = schema["x-kubernetes-list-map-keys"] {
                // Items are told apart by their key fields: two with the same keys are one too many.
                let keys = names.compactMap { name -> String? in if case .string(let key) = name { return key } else { return nil } }
                var seen: [[JSONMember]] = []
                for (i, item) in items.enumerated() {
                    let key = keys.compactMap { name in item[name].map { JSONMember(name, $0) } }
                    if seen.contains(key) {
                        var error = FieldError.duplicate("\(path)[\(i)]", "map[string]interface {}{" + key.map { "\"\($0.key)\":" + String(decoding: JSONWriter.bytes($0.value), as: UTF8.self) }.joined(separator: ", ") + "}")
                        error.quoted = false
                        errors.append(error)
                    } else {
                        seen.append(key)
                    }
                }
            }
            if let itemSchema = schema["items"] {
                for (i, item) in items.enumerated() { check(item, schema: itemSchema, path: "\(path)[\(i)]", into: &errors) }
            }
        case .string(let text):
            if case .int(let most)? = schema["maxLength"], text.count > most {
                errors.append(FieldError(.tooLong, field, detail: "may not be more than \(most) bytes"))
            }
            if case .int(let least)? = schema["minLength"], text.count < least {
                errors.append(.invalid(field, text, "\(field) in body should be at least \(least) chars long"))
            }
            if case .string(let format)? = schema["format"], !Self.hasFormat(text, format) {
                errors.append(.invalid(field, text, "\(field) in body must be of type \(format): \"\(text)\""))
            }
            if case .string(let pattern)? = schema["pattern"], let expression = try? NSRegularExpression(pattern: pattern),
               expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) == nil {
                errors.append(.invalid(field, text, "\(field) in body should match '\(pattern)'"))
            }
        case .int, .double:
            let number: Double = { if case .int(let n) = value { return Double(n) } else if case .double(let d) = value { return d } else { return 0 } }()
            func bound(_ key: String) -> Double? {
                switch schema[key] {
                case .int(let n)?: return Double(n)
                case .double(let d)?: return d
                default: return nil
                }
            }
            if let minimum = bound("minimum") {
                let exclusive = schema["exclusiveMinimum"] == .bool(true)
                if exclusive ? number <= minimum : number < minimum {
                    errors.append(.invalid(field, json: value, "\(field) in body should be greater than \(exclusive ? "" : "or equal to ")\(shown(schema["minimum"]!))"))
                }
            }
            if let maximum = bound("maximum") {
                let exclusive = schema["exclusiveMaximum"] == .bool(true)
                if exclusive ? number >= maximum : number > maximum {
                    errors.append(.invalid(field, json: value, "\(field) in body should be less than \(exclusive ? "" : "or equal to ")\(shown(schema["maximum"]!))"))
                }
            }
            if let factor = bound("multipleOf"), factor != 0, (number / factor).rounded() != number / factor {
                errors.append(.invalid(field, json: value, "\(field) in body should be a multiple of \(shown(schema["multipleOf"]!))"))
            }
        default:
            break
        }
    }
}
