import API
import Hummingbird
import Store

extension APIResponder {
    /// The patch types Kubernetes serves, by Content-Type.
    enum PatchType: String {
        case json = "application/json-patch+json"
        case merge = "application/merge-patch+json"
        case strategic = "application/strategic-merge-patch+json"
        case apply = "application/apply-patch+yaml"
    }

    static func patchType(_ request: Request) throws -> PatchType {
        let mediaType = request.headers[.contentType]?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard let mediaType, let type = PatchType(rawValue: mediaType) else {
            throw APIError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: "
                           + "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json")
        }
        return type
    }

    /// PATCH of an object or its status: the patch is applied to the stored object inside the
    /// store's guarded update (no other write comes between the read and the write, so no update
    /// is lost), then the result is checked as a PUT of it would be. A `metadata.resourceVersion`
    /// in the result that is not the stored one is a precondition that failed (409).
    func patch<T: APIObject>(_ type: T.Type, _ path: ResourcePath, name: String, subresource: String?,
                             _ request: inout Request, dryRun: Bool) async throws -> T {
        let kind = try Self.patchType(request)
        if kind == .strategic && T.self == CustomObject.self {
            // As Kubernetes: custom resources have no patch strategies to merge by.
            throw APIError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: "
                           + "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
        }
        if kind == .apply {
            return try await serverSideApply(T.self, path, name: name, subresource: subresource, &request, dryRun: dryRun).object
        }
        let bytes = try await body(&request)
        let patch: JSONValue
        do {
            patch = try JSONParser.parse(bytes: bytes)
        } catch {
            throw APIError.badRequest("the patch is not valid JSON: \(error)")
        }
        let validation = try Self.fieldValidation(Self.query(request))
        let caller = Self.caller
        let manager = try Self.fieldManager(request, Self.query(request))
        let change: @Sendable (T) throws -> T = { current in
            let patched = try Self.apply(patch, kind, to: current, validation: validation, caller: caller)
            if !patched.metadata.resourceVersion.isEmpty && patched.metadata.resourceVersion != current.metadata.resourceVersion {
                throw StoreError.modified(T.kindInfo, name)
            }
            guard patched.metadata.name == name else {
                throw APIError.badRequest("the name of the object (\(patched.metadata.name)) does not match the name on the URL (\(name))")
            }
            if T.kindInfo.namespaced && patched.metadata.namespace != current.metadata.namespace {
                throw APIError.badRequest("the namespace of the object (\(patched.metadata.namespace)) does not match the namespace on the URL (\(current.metadata.namespace))")
            }
            var prepared = try Self.prepareUpdate(patched, of: current, subresource: subresource)
            Self.recordManager(&prepared, old: current, manager: manager, subresource: subresource)
            return prepared
        }
        let namespace = path.namespace ?? ""
        if dryRun {
            let current = try await store.get(T.self, namespace: namespace, name: name)
            return try Self.dryRunUpdate(try change(current), of: current)
        }
        return try await finishUpdate(try await store.update(T.self, namespace: namespace, name: name) { object in
            object = try change(object)
        })
    }

    /// A JSON document with a merge, JSON or strategic merge patch applied: a patch that is not
    /// what its type requires is 400, one that does not apply to `target` 422, both naming the path.
    static func patched(_ original: JSONValue, with patch: JSONValue, _ type: PatchType, schema: MessageSchema?, target: String) throws -> JSONValue {
        do {
            switch type {
            case .json: return try JSONPatch.apply(patch, to: original)
            case .merge: return MergePatch.apply(patch, to: original)
            case .strategic: return try StrategicMergePatch.apply(patch, to: original, schema: schema)
            case .apply: throw APIError(415, "UnsupportedMediaType", "a server-side apply is not a patch of a document")
            }
        } catch let error as PatchError {
            switch error.kind {
            case .invalid: throw APIError.badRequest("invalid \(type.rawValue): \(error.message)")
            case .failed: throw APIError(422, "Invalid", "the patch does not apply to \(target): \(error.message)")
            }
        }
    }

    /// `patch` applied to `current`'s JSON, decoded back: a patch that is not what its type
    /// requires is 400, one that does not apply to this object 422, both naming the path.
    static func apply<T: APIObject>(_ patch: JSONValue, _ type: PatchType, to current: T, validation: FieldValidation, caller: Caller?) throws -> T {
        let result = try patched(current.jsonValue(), with: patch, type, schema: Schema.of(T.self),
                                 target: "\(T.kindInfo.resource) \"\(current.metadata.name)\"")
        let object: T
        do {
            object = try Self.decodeJSON(T.self, result, validation: validation, caller: caller)
        } catch let error as JSONDecodeError {
            throw APIError(422, "Invalid", "\(T.kindInfo.kind) \"\(current.metadata.name)\" is invalid after the patch: \(error)")
        }
        let info = T.kindInfo
        if (!object.kind.isEmpty && object.kind != info.kind) || (!object.apiVersion.isEmpty && object.apiVersion != info.apiVersion) {
            throw APIError.badRequest("a patch may not change the object's apiVersion or kind (\(object.apiVersion)/\(object.kind), the object is \(info.apiVersion)/\(info.kind))")
        }
        return object
    }

    /// Server-side apply (`application/apply-patch+yaml`): the body is the manager's whole
    /// intent for the fields it names; see `ManagedFields.apply`. Creates the object when it
    /// does not exist. Conflicts are 409 naming each manager and field (`force=true` takes them).
    /// On `/status` the manager applies the status alone (what else the body holds is not its
    /// to set there, as Kubernetes resets it), recorded as its own entry with `subresource: status`;
    /// the object must exist.
    /// `created`: the apply made the object (answered 201, as Kubernetes does).
    func serverSideApply<T: APIObject>(_ type: T.Type, _ path: ResourcePath, name: String, subresource: String? = nil,
                                       _ request: inout Request, dryRun: Bool) async throws -> (object: T, created: Bool) {
        let query = Self.query(request)
        guard let manager = query["fieldManager"], !manager.isEmpty else {
            throw APIError(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
        }
        _ = try Self.fieldManager(request, query)  // its length
        let force = query["force"] == "true"
        let text = String(decoding: try await body(&request), as: UTF8.self)
        var document: JSONValue
        do { document = try Manifests.singleDocument(text) } catch { throw APIError.badRequest("error decoding YAML: \(error)") }
        if subresource == "status", case .object(let members) = document {
            document = .object(members.filter { ["apiVersion", "kind", "status"].contains($0.key) })
        }
        let applied = document
        let info = T.kindInfo
        guard case .string(let apiVersion)? = applied["apiVersion"], case .string(let kind)? = applied["kind"] else {
            throw APIError.badRequest("apiVersion and kind are required in an apply patch")
        }
        guard apiVersion == info.apiVersion && kind == info.kind else {
            throw APIError.badRequest("the body is a \(apiVersion)/\(kind), but the request is for \(info.apiVersion)/\(info.kind)")
        }
        if case .string(let sentName)? = applied["metadata"]?["name"], sentName != name {
            throw APIError.badRequest("the name of the object (\(sentName)) does not match the name on the URL (\(name))")
        }
        let namespace = path.namespace ?? ""
        let validation = try Self.fieldValidation(query)
        let caller = Self.caller
        let schema = Schema.of(T.self)
        @Sendable func applying(to current: T?) throws -> T {
            let result: (object: JSONValue, entries: [ManagedFieldsEntry])
            do {
                result = try ManagedFields.apply(applied, to: current?.jsonValue(), entries: current?.metadata.managedFields ?? [], manager: manager,
                                                 force: force, apiVersion: info.apiVersion, schema: schema, subresource: subresource ?? "")
            } catch let conflicts as ManagedFields.Conflicts {
                var error = APIError(409, "Conflict", conflicts.description)
                error.causes = conflicts.conflicts.map { conflict in
                    var cause = StatusCause()
                    cause.reason = "FieldManagerConflict"
                    cause.message = "conflict with \"\(conflict.manager)\" using \(conflict.apiVersion)"
                    cause.field = conflict.field
                    return cause
                }
                throw error
            } catch let error as PatchError {
                throw APIError.badRequest("invalid apply patch: \(error.message)")
            }
            var object = try Self.decodeJSON(T.self, result.object, validation: validation, caller: caller)
            object.metadata.managedFields = result.entries
            guard let current else { return object }
            var prepared = try Self.prepareUpdate(object, of: current, subresource: subresource)
            prepared.metadata.managedFields = result.entries
            return prepared
        }
        func create() async throws -> T {
            if subresource != nil { throw StoreError(.notFound, "\(info.groupResource) \"\(name)\" not found") }
            var object = try applying(to: nil)
            object.metadata.name = name
            if info.namespaced { object.metadata.namespace = namespace }
            object.applyDefaults()
            Self.admitServiceAccount(&object)
            if info.namespaced { try await admitIntoNamespace(object) }
            return try await self.create(object, dryRun: dryRun)
        }
        guard let current = try? await store.get(T.self, namespace: namespace, name: name) else { return (try await create(), true) }
        if dryRun { return (try Self.dryRunUpdate(try applying(to: current), of: current), false) }
        do {
            return (try await finishUpdate(try await store.update(T.self, namespace: namespace, name: name) { object in
                object = try applying(to: object)
            }), false)
        } catch let error as StoreError where error.code == .notFound {
            return (try await create(), true)  // deleted meanwhile
        }
    }
}
