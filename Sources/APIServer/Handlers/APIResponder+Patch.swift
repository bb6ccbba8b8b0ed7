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
        if kind == .apply {
            throw APIError(415, "UnsupportedMediaType", "server-side apply (application/apply-patch+yaml) is not served yet: use a merge or strategic merge patch, or client-side kubectl apply")
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
            return try Self.prepareUpdate(patched, of: current, subresource: subresource)
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

    /// `patch` applied to `current`'s JSON, decoded back: a patch that is not what its type
    /// requires is 400, one that does not apply to this object 422, both naming the path.
    static func apply<T: APIObject>(_ patch: JSONValue, _ type: PatchType, to current: T, validation: FieldValidation, caller: Caller?) throws -> T {
        let original = current.jsonValue()
        let result: JSONValue
        do {
            switch type {
            case .json: result = try JSONPatch.apply(patch, to: original)
            case .merge: result = MergePatch.apply(patch, to: original)
            case .strategic: result = try StrategicMergePatch.apply(patch, to: original, schema: Schema.of(T.self))
            case .apply: throw APIError(415, "UnsupportedMediaType", "server-side apply is not served yet")
            }
        } catch let error as PatchError {
            switch error.kind {
            case .invalid: throw APIError.badRequest("invalid \(type.rawValue): \(error.message)")
            case .failed: throw APIError(422, "Invalid", "the patch does not apply to \(T.kindInfo.resource) \"\(current.metadata.name)\": \(error.message)")
            }
        }
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
}
