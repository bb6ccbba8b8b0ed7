import API
import Foundation

/// Objects of a kind known only at run time (a custom resource), as JSON (`CustomObject`): the
/// same calls, watch resumption, back-off and informers the built-in kinds have. Each call runs
/// with the resource as `CustomResources.current`, which is where `CustomObject` takes its kind.
///
///     let tasks = DynamicResource(client: client, group: "example.cox.io", version: "v1",
///                                 kind: "CronTask", plural: "crontasks", namespaced: true)
///     let all = try await tasks.list(namespace: "default").items
public struct DynamicResource: Sendable {
    public let client: APIClient
    public let resource: CustomResource

    public init(client: APIClient, group: String, version: String, kind: String, plural: String, namespaced: Bool) {
        self.client = client
        resource = CustomResource(KindInfo(group: group, version: version, kind: kind, resource: plural,
                                           singular: kind.lowercased(), namespaced: namespaced))
    }

    func scoped<R: Sendable>(_ body: () async throws -> R) async throws -> R {
        try await CustomResources.$current.withValue(resource) { try await body() }
    }

    /// A new object of this kind (apiVersion and kind set).
    public func object(namespace: String = "", name: String, content: [JSONMember] = []) -> CustomObject {
        var object = CustomObject()
        object.apiVersion = resource.info.apiVersion
        object.kind = resource.info.kind
        object.metadata.name = name
        object.metadata.namespace = namespace
        object.content = content
        return object
    }

    public func get(namespace: String = "", name: String) async throws -> CustomObject {
        try await scoped { try await client.get(CustomObject.self, namespace: namespace, name: name) }
    }

    public func list(namespace: String? = nil, labelSelector: String? = nil) async throws -> (items: [CustomObject], resourceVersion: String) {
        try await scoped { try await client.list(CustomObject.self, namespace: namespace, labelSelector: labelSelector) }
    }

    public func create(_ object: CustomObject) async throws -> CustomObject {
        try await scoped { try await client.create(object) }
    }

    public func update(_ object: CustomObject) async throws -> CustomObject {
        try await scoped { try await client.update(object) }
    }

    /// Writes the status alone (the definition must have the status subresource).
    public func updateStatus(_ object: CustomObject) async throws -> CustomObject {
        try await scoped { try await client.updateStatus(object) }
    }

    /// A JSON merge patch (RFC 7386).
    public func mergePatch(namespace: String = "", name: String, _ patch: JSONValue) async throws -> CustomObject {
        var writer = JSONWriter()
        writer.value(patch)
        let body = writer.bytes
        return try await scoped {
            try await client.patch(CustomObject.self, namespace: namespace, name: name, body: body, contentType: "application/merge-patch+json")
        }
    }

    @discardableResult
    public func delete(namespace: String = "", name: String, propagationPolicy: String? = nil) async throws -> CustomObject {
        try await scoped { try await client.delete(CustomObject.self, namespace: namespace, name: name, propagationPolicy: propagationPolicy) }
    }

    /// A resuming watch (see `APIClient.watch`).
    public func watch(_ request: WatchRequest = WatchRequest()) -> WatchEvents<CustomObject> {
        CustomResources.$current.withValue(resource) { client.watch(CustomObject.self, request) }
    }

    /// A list+watch cache of this kind's objects, for controllers (run it like any informer).
    public func informer(_ request: WatchRequest = WatchRequest(), indexers: [String: Informer<CustomObject>.IndexFunction] = [:]) -> Informer<CustomObject> {
        Informer(client: client, request: request, indexers: indexers, scope: resource)
    }
}

/// A custom resource's objects as a plugin's own types: `spec` and `status` decoded with
/// Foundation's `Codable` from the object's JSON, `metadata` as every object has it.
public struct TypedObject<Spec: Codable & Sendable, Status: Codable & Sendable>: Sendable {
    public var metadata: ObjectMeta
    public var spec: Spec
    public var status: Status?

    public init(metadata: ObjectMeta, spec: Spec, status: Status? = nil) {
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
}

/// `DynamicResource` with the objects as `TypedObject<Spec, Status>`: what a controller plugin
/// written in Swift uses for its own kind.
public struct TypedResource<Spec: Codable & Sendable, Status: Codable & Sendable>: Sendable {
    public typealias Object = TypedObject<Spec, Status>
    public let dynamic: DynamicResource

    public init(_ dynamic: DynamicResource) { self.dynamic = dynamic }

    public struct DecodeError: Error, CustomStringConvertible {
        public let description: String
    }

    public func decode(_ object: CustomObject) throws -> Object {
        func value<T: Decodable>(_ type: T.Type, _ member: String) throws -> T? {
            guard let json = object[member], json != .null else { return nil }
            var writer = JSONWriter()
            writer.value(json)
            do {
                return try JSONDecoder().decode(T.self, from: Data(writer.bytes))
            } catch {
                throw DecodeError(description: "\(dynamic.resource.info.kind) \"\(object.metadata.name)\": \(member): \(error)")
            }
        }
        guard let spec = try value(Spec.self, "spec") else {
            throw DecodeError(description: "\(dynamic.resource.info.kind) \"\(object.metadata.name)\" has no spec")
        }
        return Object(metadata: object.metadata, spec: spec, status: try value(Status.self, "status"))
    }

    public func encode(_ typed: Object) throws -> CustomObject {
        func json<T: Encodable>(_ value: T) throws -> JSONValue {
            try JSONParser.parse(bytes: Array(try JSONEncoder().encode(value)))
        }
        var object = dynamic.object(namespace: typed.metadata.namespace, name: typed.metadata.name)
        object.metadata = typed.metadata
        object["spec"] = try json(typed.spec)
        if let status = typed.status { object["status"] = try json(status) }
        return object
    }

    public func get(namespace: String = "", name: String) async throws -> Object {
        try decode(try await dynamic.get(namespace: namespace, name: name))
    }

    public func list(namespace: String? = nil, labelSelector: String? = nil) async throws -> [Object] {
        try await dynamic.list(namespace: namespace, labelSelector: labelSelector).items.map(decode)
    }

    public func create(_ object: Object) async throws -> Object {
        try decode(try await dynamic.create(try encode(object)))
    }

    public func update(_ object: Object) async throws -> Object {
        try decode(try await dynamic.update(try encode(object)))
    }

    public func updateStatus(_ object: Object) async throws -> Object {
        try decode(try await dynamic.updateStatus(try encode(object)))
    }

    @discardableResult
    public func delete(namespace: String = "", name: String) async throws -> Object {
        try decode(try await dynamic.delete(namespace: namespace, name: name))
    }
}
