import API

/// The OpenAPI documents kubectl reads for validation, `explain` and patch metadata: Swagger 2.0
/// at `/openapi/v2` (JSON, or the protobuf form older kubectl asks for) and OpenAPI 3.0 at
/// `/openapi/v3` (an index, then one document per group-version). Built once from the schema
/// generated from `Protos/`, with Kubernetes' definition names, `x-kubernetes-group-version-kind`
/// on every kind, each list's `x-kubernetes-list-type`/`-list-map-keys` and patch strategy and
/// merge key, required fields and descriptions.
enum OpenAPI {
    enum Version { case v2, v3 }

    static let metaV1 = "io.k8s.apimachinery.pkg.apis.meta.v1"
    static let quantity = "io.k8s.apimachinery.pkg.api.resource.Quantity"
    static let intOrString = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"

    static func reference(_ definition: String, _ version: Version) -> JSONValue {
        .object([JSONMember("$ref", .string((version == .v2 ? "#/definitions/" : "#/components/schemas/") + definition))])
    }

    static func definitionName(_ message: String) -> String {
        Schema.message(message)?.definition ?? message
    }

    /// The schema of a value of `type` (a property, an array's items, a map's values).
    static func schema(_ type: SchemaType, _ version: Version) -> [JSONMember] {
        switch type {
        case .string: return [JSONMember("type", .string("string"))]
        case .bool: return [JSONMember("type", .string("boolean"))]
        case .int32: return [JSONMember("type", .string("integer")), JSONMember("format", .string("int32"))]
        case .int64: return [JSONMember("type", .string("integer")), JSONMember("format", .string("int64"))]
        case .double: return [JSONMember("type", .string("number")), JSONMember("format", .string("double"))]
        case .bytes: return [JSONMember("type", .string("string")), JSONMember("format", .string("byte"))]
        case .time: return reference("\(metaV1).Time", version).members!
        case .microTime: return reference("\(metaV1).MicroTime", version).members!
        case .quantity: return reference(quantity, version).members!
        case .intOrString: return reference(intOrString, version).members!
        case .message(let name): return reference(definitionName(name), version).members!
        case .freeform: return [JSONMember("type", .string("object"))]
        case .array(let element):
            return [JSONMember("type", .string("array")), JSONMember("items", .object(schema(element, version)))]
        case .map(let values):
            return [JSONMember("type", .string("object")), JSONMember("additionalProperties", .object(schema(values, version)))]
        }
    }

    static func property(_ field: FieldSchema, _ version: Version) -> JSONValue {
        var members = schema(field.type, version)
        if !field.description.isEmpty {
            if members.first?.key == "$ref" && version != .v2 {
                // OpenAPI 3 ignores a description beside a $ref; Kubernetes wraps the $ref in allOf
                // there (and keeps them side by side in v2, as its swagger.json does).
                members = [JSONMember("allOf", .array([.object(members)]))]
            }
            members.append(JSONMember("description", .string(field.description)))
        }
        if let listType = field.listType { members.append(JSONMember("x-kubernetes-list-type", .string(listType.rawValue))) }
        if !field.listMapKeys.isEmpty { members.append(JSONMember("x-kubernetes-list-map-keys", .array(field.listMapKeys.map { .string($0) }))) }
        if !field.patchMergeKey.isEmpty { members.append(JSONMember("x-kubernetes-patch-merge-key", .string(field.patchMergeKey))) }
        if !field.patchStrategy.isEmpty { members.append(JSONMember("x-kubernetes-patch-strategy", .string(field.patchStrategy))) }
        return .object(members)
    }

    /// group-version-kind of every served kind and of its list, by message name.
    static let kinds: [String: (group: String, version: String, kind: String)] = {
        var out: [String: (String, String, String)] = ["Status": ("", "v1", "Status")]
        for type in Kinds.all {
            let info = type.kindInfo
            let name = String(describing: type)
            out[name] = (info.group, info.version, info.kind)
            out[name + "List"] = (info.group, info.version, info.kind + "List")
        }
        return out
    }()

    static func gvk(_ entry: (group: String, version: String, kind: String)) -> JSONValue {
        .array([.object([JSONMember("group", .string(entry.group)), JSONMember("kind", .string(entry.kind)), JSONMember("version", .string(entry.version))])])
    }

    /// Every definition, by Kubernetes' name, in name order.
    static func definitions(_ version: Version) -> [JSONMember] {
        var out: [JSONMember] = []
        for message in Schema.messages.values where message.name != "IntOrString" {
            var members: [JSONMember] = []
            if !message.description.isEmpty { members.append(JSONMember("description", .string(message.description))) }
            members.append(JSONMember("type", .string("object")))
            let required = message.fields.filter(\.required).map { JSONValue.string($0.name) }
            if !required.isEmpty { members.append(JSONMember("required", .array(required))) }
            members.append(JSONMember("properties", .object(message.fields.map { JSONMember($0.name, property($0, version)) })))
            if let kind = kinds[message.name] { members.append(JSONMember("x-kubernetes-group-version-kind", gvk(kind))) }
            out.append(JSONMember(message.definition, .object(members)))
        }
        // Kubernetes' special types: strings on the wire, numbers accepted for quantities and ports.
        out.append(JSONMember("\(metaV1).Time", .object([JSONMember("description", .string("RFC 3339 date and time, in UTC.")),
                                                          JSONMember("type", .string("string")), JSONMember("format", .string("date-time"))])))
        out.append(JSONMember("\(metaV1).MicroTime", .object([JSONMember("description", .string("RFC 3339 date and time with microseconds, in UTC.")),
                                                               JSONMember("type", .string("string")), JSONMember("format", .string("date-time"))])))
        let quantityText = "A fixed-point number with a suffix (100m, 1.5, 2Gi): a string, or a number."
        out.append(JSONMember(quantity, .object(version == .v2
            ? [JSONMember("description", .string(quantityText)), JSONMember("type", .string("string"))]
            : [JSONMember("description", .string(quantityText)),
               JSONMember("oneOf", .array([.object([JSONMember("type", .string("string"))]), .object([JSONMember("type", .string("number"))])]))])))
        let intOrStringText = "An integer or a string (a port number or name, a percentage)."
        out.append(JSONMember(intOrString, .object(version == .v2
            ? [JSONMember("description", .string(intOrStringText)), JSONMember("type", .string("string")), JSONMember("format", .string("int-or-string"))]
            : [JSONMember("description", .string(intOrStringText)), JSONMember("x-kubernetes-int-or-string", .bool(true))])))
        return out.sorted { $0.key < $1.key }
    }

    /// The paths of one group-version's kinds (all of them for v2): each operation carries the
    /// kind it serves (`x-kubernetes-group-version-kind`, which `kubectl explain` looks for) and
    /// its query parameters (kubectl sends `fieldValidation` only to servers that list it).
    static func paths(_ kinds: [any APIObject.Type], _ version: Version) -> [JSONMember] {
        paths(kinds.map { kind in (kind.kindInfo, definitionName(String(describing: kind)), definitionName(String(describing: kind) + "List")) }, version)
    }

    /// The same for kinds given by their KindInfo and definition names (custom resources).
    static func paths(_ kinds: [(info: KindInfo, object: String, list: String)], _ version: Version) -> [JSONMember] {
        func parameter(_ name: String, _ description: String, in location: String = "query") -> JSONValue {
            var members = [JSONMember("name", .string(name)), JSONMember("in", .string(location)), JSONMember("description", .string(description))]
            if location == "path" { members.append(JSONMember("required", .bool(true))) }
            members += version == .v2 ? [JSONMember("type", .string("string"))] : [JSONMember("schema", .object([JSONMember("type", .string("string"))]))]
            return .object(members)
        }
        let dryRun = parameter("dryRun", "When present (All), the change is checked and answered but not stored.")
        let fieldValidation = parameter("fieldValidation", "Ignore, Warn (the default: unknown fields are dropped, each named in a Warning header) or Strict (unknown fields fail the request).")
        let fieldManager = parameter("fieldManager", "The name of the actor making the change.")
        func operation(_ info: KindInfo, _ action: String, _ definition: String, _ parameters: [JSONValue]) -> JSONValue {
            let content: JSONMember = version == .v2
                ? JSONMember("schema", reference(definition, version))
                : JSONMember("content", .object([JSONMember("application/json", .object([JSONMember("schema", reference(definition, version))]))]))
            var members: [JSONMember] = [
                JSONMember("operationId", .string(action + info.kind)),
                JSONMember("parameters", .array(parameters)),
                JSONMember("responses", .object([JSONMember("200", .object([JSONMember("description", .string("OK")), content]))])),
                JSONMember("x-kubernetes-action", .string(action)),
                JSONMember("x-kubernetes-group-version-kind", .object([JSONMember("group", .string(info.group)), JSONMember("kind", .string(info.kind)),
                                                                      JSONMember("version", .string(info.version))])),
            ]
            if version == .v2 { members.insert(JSONMember("consumes", .array([.string("application/json")])), at: 0) }
            return .object(members)
        }
        var out: [JSONMember] = []
        for (info, object, list) in kinds {
            let prefix = "/" + (info.group.isEmpty ? "api/\(info.version)" : "apis/\(info.group)/\(info.version)")
            let collection = prefix + (info.namespaced ? "/namespaces/{namespace}/" : "/") + info.resource
            let namespace = info.namespaced ? [parameter("namespace", "The object's namespace.", in: "path")] : []
            let name = parameter("name", "The object's name.", in: "path")
            let changes = [dryRun, fieldValidation, fieldManager]
            out.append(JSONMember(collection, .object([
                JSONMember("get", operation(info, "list", list, namespace)),
                JSONMember("post", operation(info, "post", object, namespace + changes)),
            ])))
            var item: [JSONMember] = [
                JSONMember("get", operation(info, "get", object, namespace + [name])),
                JSONMember("put", operation(info, "put", object, namespace + [name] + changes)),
                JSONMember("delete", operation(info, "delete", "\(metaV1).Status", namespace + [name, dryRun])),
                JSONMember("patch", operation(info, "patch", object, namespace + [name] + changes)),
            ]
            // OpenAPI 2 orders an item's operations get, put, post, delete, options, head, patch.
            if version == .v3 { item.sort { $0.key < $1.key } }
            out.append(JSONMember(collection + "/{name}", .object(item)))
            if info.namespaced {
                out.append(JSONMember(prefix + "/" + info.resource, .object([JSONMember("get", operation(info, "list", list, []))])))
            }
        }
        return out.sorted { $0.key < $1.key }
    }

    static let info = JSONValue.object([JSONMember("title", .string("Kubernetes")), JSONMember("version", .string("v1.30.0+cox-\(CoxVersion.version)"))])

    /// The Swagger 2.0 document.
    static let v2: JSONValue = .object([
        JSONMember("swagger", .string("2.0")), JSONMember("info", info),
        JSONMember("paths", .object(paths(Kinds.all, .v2))),
        JSONMember("definitions", .object(definitions(.v2))),
    ])

    /// The group-versions served, as OpenAPI v3 names them (`api/v1`, `apis/apps/v1`).
    static let groupVersions: [String] = {
        var names = Set(Kinds.all.map { $0.kindInfo.group.isEmpty ? "api/\($0.kindInfo.version)" : "apis/\($0.kindInfo.group)/\($0.kindInfo.version)" })
        names.insert("api/v1")
        return names.sorted()
    }()

    /// One group-version's OpenAPI 3.0 document (every definition: the meta types are shared).
    static func v3(_ groupVersion: String) -> JSONValue {
        .object([
            JSONMember("openapi", .string("3.0.0")), JSONMember("info", info),
            JSONMember("paths", .object(paths(Kinds.all.filter { kind in
                let info = kind.kindInfo
                return (info.group.isEmpty ? "api/\(info.version)" : "apis/\(info.group)/\(info.version)") == groupVersion
            }, .v3))),
            JSONMember("components", .object([JSONMember("schemas", .object(definitions(.v3)))])),
        ])
    }
}

extension OpenAPI {
    /// The documents as served: built and encoded once, each with its hash (the ETag, and in v3
    /// the `?hash=` of its URL, so a client caches it for good).
    struct Document: Sendable {
        let bytes: [UInt8]
        let hash: String
        init(_ bytes: [UInt8]) {
            self.bytes = bytes
            // FNV-1a, 64 bits: a name for this content, not a defence against anyone.
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            self.hash = String(hash, radix: 16, uppercase: true)
        }
    }

    static let v2JSON = Document(JSONWriter.bytes(v2))
    static let v2Protobuf = Document(GnosticV2.document(v2))
    static let v3Documents: [String: Document] = Dictionary(uniqueKeysWithValues: groupVersions.map { ($0, Document(JSONWriter.bytes(v3($0)))) })
    static let v3Index = Document(JSONWriter.bytes(.object([JSONMember("paths", .object(groupVersions.map { name in
        JSONMember(name, .object([JSONMember("serverRelativeURL", .string("/openapi/v3/\(name)?hash=\(v3Documents[name]!.hash)"))]))
    }))])))
    /// The dotted form: Go's media type parser, and so kubectl, refuses the "@" of the older name.
    static let protobufV2MediaType = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
}

/// Swagger 2.0 in the protobuf form of gnostic's `openapi.v2.Document` (what kubectl asks
/// `/openapi/v2` for): the same names and field numbers, written from the JSON document. Vendor
/// extensions travel as YAML text, which their JSON form is.
enum GnosticV2 {
    static func document(_ document: JSONValue) -> [UInt8] {
        var w = ProtoWriter()
        if case .string(let swagger)? = document["swagger"] { w.string(1, swagger) }
        if let info = document["info"] {
            w.message(2) { w in
                if case .string(let title)? = info["title"] { w.string(1, title) }
                if case .string(let version)? = info["version"] { w.string(2, version) }
            }
        }
        w.message(8) { _ in }  // paths
        w.message(9) { w in
            for definition in document["definitions"]?.members ?? [] {
                w.message(1) { w in namedSchema(definition, into: &w) }
            }
        }
        return w.bytes
    }

    static func namedSchema(_ member: JSONMember, into w: inout ProtoWriter) {
        w.string(1, member.key)
        w.message(2) { w in schema(member.value, into: &w) }
    }

    static func schema(_ value: JSONValue, into w: inout ProtoWriter) {
        // Fields in number order.
        if case .string(let ref)? = value["$ref"] { w.string(1, ref) }
        if case .string(let format)? = value["format"] { w.string(2, format) }
        if case .string(let description)? = value["description"] { w.string(4, description) }
        for case .string(let name) in value["required"]?.elements ?? [] { w.string(19, name) }
        if let additional = value["additionalProperties"] {
            w.message(21) { w in w.message(1) { w in schema(additional, into: &w) } }
        }
        if case .string(let type)? = value["type"] { w.message(22) { w in w.string(1, type) } }
        if let items = value["items"] { w.message(23) { w in w.message(1) { w in schema(items, into: &w) } } }
        for part in value["allOf"]?.elements ?? [] { w.message(24) { w in schema(part, into: &w) } }
        if let properties = value["properties"]?.members {
            w.message(25) { w in
                for property in properties { w.message(1) { w in namedSchema(property, into: &w) } }
            }
        }
        for member in value.members ?? [] where member.key.hasPrefix("x-") {
            w.message(31) { w in
                w.string(1, member.key)
                w.message(2) { w in w.string(2, String(decoding: JSONWriter.bytes(member.value), as: UTF8.self) + "\n") }
            }
        }
    }
}

/// Custom resources in the OpenAPI documents: each served version of each definition as a
/// definition named as Kubernetes names it (the group reversed, the version, the kind), its
/// schema with apiVersion, kind and metadata added and its group-version-kind, so `kubectl
/// explain` finds it. The documents are rebuilt when the definitions change.
extension OpenAPI {
    static func customDefinitionName(group: String, version: String, kind: String) -> String {
        group.split(separator: ".").reversed().joined(separator: ".") + ".\(version).\(kind)"
    }

    static func groupVersionName(group: String, version: String) -> String { "apis/\(group)/\(version)" }

    static func customDefinitions(_ definitions: [CustomResourceDefinition], _ version: Version, only groupVersion: String? = nil) -> [JSONMember] {
        var out: [JSONMember] = []
        for definition in definitions where !definition.metadata.hasDeletionTimestamp {
            let group = definition.spec.group
            for served in definition.spec.versions where served.served {
                if let groupVersion, groupVersionName(group: group, version: served.name) != groupVersion { continue }
                guard let resource = CustomResource(definition, version: served.name), case .object(var members) = resource.schema else { continue }
                var properties: [JSONMember] = []
                if case .object(let given)? = resource.schema["properties"] { properties = given }
                let standard: [JSONMember] = [
                    JSONMember("apiVersion", .object([JSONMember("type", .string("string")),
                                                      JSONMember("description", .string("The versioned schema of this representation of an object."))])),
                    JSONMember("kind", .object([JSONMember("type", .string("string")),
                                                JSONMember("description", .string("The REST resource this object represents, in CamelCase."))])),
                    JSONMember("metadata", .object(reference("\(metaV1).ObjectMeta", version).members!)),
                ]
                properties = standard.filter { member in !properties.contains { $0.key == member.key } } + properties
                members.removeAll { $0.key == "properties" || $0.key == "x-kubernetes-group-version-kind" }
                members.append(JSONMember("properties", .object(properties)))
                members.append(JSONMember("x-kubernetes-group-version-kind", .array([.object([
                    JSONMember("group", .string(group)), JSONMember("kind", .string(resource.info.kind)), JSONMember("version", .string(served.name)),
                ])])))
                let name = customDefinitionName(group: group, version: served.name, kind: resource.info.kind)
                out.append(JSONMember(name, .object(members)))
                out.append(JSONMember(name + "List", .object([
                    JSONMember("type", .string("object")),
                    JSONMember("required", .array([.string("items")])),
                    JSONMember("properties", .object([
                        standard[0], standard[1],
                        JSONMember("metadata", .object(reference("\(metaV1).ListMeta", version).members!)),
                        JSONMember("items", .object([JSONMember("type", .string("array")), JSONMember("items", reference(name, version))])),
                    ])),
                    JSONMember("x-kubernetes-group-version-kind", .array([.object([
                        JSONMember("group", .string(group)), JSONMember("kind", .string(resource.info.kind + "List")), JSONMember("version", .string(served.name)),
                    ])])),
                ])))
            }
        }
        return out
    }

    /// The paths of the custom resources served at `groupVersion` (all of them when nil).
    static func customPaths(_ definitions: [CustomResourceDefinition], _ version: Version, only groupVersion: String? = nil) -> [JSONMember] {
        var kinds: [(info: KindInfo, object: String, list: String)] = []
        for definition in definitions where !definition.metadata.hasDeletionTimestamp {
            for served in definition.spec.versions where served.served {
                if let groupVersion, groupVersionName(group: definition.spec.group, version: served.name) != groupVersion { continue }
                guard let resource = CustomResource(definition, version: served.name) else { continue }
                let name = customDefinitionName(group: definition.spec.group, version: served.name, kind: resource.info.kind)
                kinds.append((resource.info, name, name + "List"))
            }
        }
        return paths(kinds, version)
    }

    /// The group-versions custom resources are served at, as OpenAPI v3 names them.
    static func customGroupVersions(_ definitions: [CustomResourceDefinition]) -> [String] {
        Array(Set(definitions.filter { !$0.metadata.hasDeletionTimestamp }.flatMap { definition in
            definition.spec.versions.filter(\.served).map { groupVersionName(group: definition.spec.group, version: $0.name) }
        })).sorted()
    }

    /// The documents with these definitions' resources in them.
    struct Custom: Sendable {
        let v2JSON: Document
        let v2Protobuf: Document
        let v3Index: Document
        let v3Documents: [String: Document]

        init(_ definitions: [CustomResourceDefinition]) {
            var v2Document = OpenAPI.v2
            if case .object(var members) = v2Document, let index = members.firstIndex(where: { $0.key == "definitions" }),
               case .object(let existing) = members[index].value {
                members[index].value = .object(existing + OpenAPI.customDefinitions(definitions, .v2))
                if let pathsIndex = members.firstIndex(where: { $0.key == "paths" }), case .object(let paths) = members[pathsIndex].value {
                    members[pathsIndex].value = .object(paths + OpenAPI.customPaths(definitions, .v2))
                }
                v2Document = .object(members)
            }
            v2JSON = Document(JSONWriter.bytes(v2Document))
            v2Protobuf = Document(GnosticV2.document(v2Document))
            var documents = OpenAPI.v3Documents
            for groupVersion in OpenAPI.customGroupVersions(definitions) where documents[groupVersion] == nil {
                let document: JSONValue = .object([
                    JSONMember("openapi", .string("3.0.0")), JSONMember("info", OpenAPI.info),
                    JSONMember("paths", .object(OpenAPI.customPaths(definitions, .v3, only: groupVersion))),
                    JSONMember("components", .object([JSONMember("schemas", .object(OpenAPI.definitions(.v3) + OpenAPI.customDefinitions(definitions, .v3, only: groupVersion)))])),
                ])
                documents[groupVersion] = Document(JSONWriter.bytes(document))
            }
            v3Documents = documents
            v3Index = Document(JSONWriter.bytes(.object([JSONMember("paths", .object(documents.keys.sorted().map { name in
                JSONMember(name, .object([JSONMember("serverRelativeURL", .string("/openapi/v3/\(name)?hash=\(documents[name]!.hash)"))]))
            }))])))
        }
    }
}
