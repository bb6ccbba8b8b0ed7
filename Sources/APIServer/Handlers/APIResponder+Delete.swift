import API
import Foundation
import Hummingbird
import Store
import SwiftProtobuf

extension APIResponder {
    static let propagationPolicies = ["Background", "Foreground", "Orphan"]

    /// A DELETE's body, when it has one, is a `DeleteOptions` (kubectl sends its `--dry-run`,
    /// `--grace-period` and `--cascade` there, not in the query): its fields become the request's
    /// parameters, over the query's. A field that cannot be honoured is refused, never ignored.
    static func readDeleteOptions(_ body: [UInt8], into query: inout QueryParameters) throws {
        guard body.contains(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) else { return }
        let options: JSONValue
        do { options = try JSONParser.parse(bytes: body) } catch {
            throw APIError.badRequest("the body of a DELETE must be a JSON DeleteOptions: \(error)")
        }
        guard case .object(let members) = options else { throw APIError.badRequest("the body of a DELETE must be a JSON DeleteOptions object") }
        for member in members {
            switch (member.key, member.value) {
            case ("kind", .string(let kind)) where kind == "DeleteOptions": break
            case ("apiVersion", .string): break
            case ("dryRun", .array(let values)):
                for value in values {
                    guard case .string(let text) = value else { throw APIError.badRequest("dryRun: must be a list of strings") }
                    query["dryRun"] = text  // each is checked: only "All" is accepted
                    _ = try dryRun(query)
                }
            case ("gracePeriodSeconds", .int(let seconds)): query["gracePeriodSeconds"] = String(seconds)
            case ("gracePeriodSeconds", .null), ("propagationPolicy", .null), ("preconditions", .null), ("orphanDependents", .null): break
            case ("propagationPolicy", .string(let policy)): query["propagationPolicy"] = policy
            case ("orphanDependents", .bool(let orphan)): query["propagationPolicy"] = orphan ? "Orphan" : "Background"
            case ("preconditions", .object(let preconditions)):
                for precondition in preconditions {
                    switch (precondition.key, precondition.value) {
                    case ("resourceVersion", .string(let version)): query["resourceVersion"] = version
                    case ("uid", .string(let uid)): query[Self.uidPrecondition] = uid
                    case (_, .null): break
                    default: throw APIError.badRequest("preconditions.\(precondition.key) is not supported here; nothing was deleted")
                    }
                }
            default:
                throw APIError.badRequest("DeleteOptions: unknown or malformed field \"\(member.key)\"; nothing was deleted")
            }
        }
    }

    /// What must happen before an object being deleted may go: its finalizers, and for a
    /// namespace also `spec.finalizers` (the namespace controller's, emptied once it is empty).
    static func pendingFinalizers<T: APIObject>(_ object: T) -> [String] {
        var pending = object.metadata.finalizers
        if let namespace = object as? Namespace { pending += namespace.spec.finalizers }
        return pending
    }

    /// Deletes an object as Kubernetes does: at once when nothing holds it; otherwise it is marked
    /// (deletionTimestamp) and goes when its last finalizer is removed. `propagationPolicy`
    /// `Foreground` and `Orphan` add the garbage collector's finalizers; a namespace always waits
    /// for the namespace controller to empty it.
    /// With `?dryRun=All`, everything is decided and checked the same way and the answer is the
    /// object as the deletion would leave it (or as it was, when it would go at once); nothing is written.
    /// Where DeleteOptions' `preconditions.uid` is kept among the query's parameters.
    static let uidPrecondition = "preconditions.uid"

    /// A deletion for one incarnation of a name finds another: 409, in Kubernetes' words.
    static func checkUIDPrecondition<T: APIObject>(_ uid: String?, _ object: T) throws {
        guard let uid, uid != object.metadata.uid else { return }
        var error = APIError(409, "Conflict", "Precondition failed: UID in precondition: \(uid), UID in object meta: \(object.metadata.uid)")
        error.kind = T.kindInfo.resource
        error.name = object.metadata.name
        throw error
    }

    func deleteObject<T: APIObject>(_ type: T.Type, namespace: String, name: String, query: QueryParameters) async throws -> T {
        let dryRun = try Self.dryRun(query)
        let precondition = query["resourceVersion"].flatMap { Int64($0) }
        let uidPrecondition = query[Self.uidPrecondition]
        // batch/v1 Jobs keep their pods unless told otherwise, as in Kubernetes (kubectl asks for
        // Background itself), with Kubernetes' warning.
        var policy = query["propagationPolicy"] ?? "Background"
        if T.self == Job.self && query["propagationPolicy"] == nil {
            policy = "Orphan"
            Self.caller?.warnings.withLock {
                $0.append("child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress this warning")
            }
        }
        guard Self.propagationPolicies.contains(policy) else {
            throw APIError(422, "Invalid", "propagationPolicy: Unsupported value: \"\(policy)\": supported values: \"Background\", \"Foreground\", \"Orphan\"")
        }
        if T.self == Namespace.self && Namespaces.undeletable.contains(name) {
            var error = APIError(403, "Forbidden", "namespaces \"\(name)\" is forbidden: this namespace may not be deleted")
            error.kind = "namespaces"
            error.name = name
            throw error
        }
        for _ in 0..<5 {
            var object = try await store.get(T.self, namespace: namespace, name: name)
            if let precondition, String(precondition) != object.metadata.resourceVersion {
                throw StoreError.modified(T.kindInfo, name)
            }
            try Self.checkUIDPrecondition(uidPrecondition, object)
            let wasDeleting = object.metadata.hasDeletionTimestamp
            if policy == "Foreground" && !object.metadata.finalizers.contains("foregroundDeletion") { object.metadata.finalizers.append("foregroundDeletion") }
            if policy == "Orphan" && !object.metadata.finalizers.contains("orphan") { object.metadata.finalizers.append("orphan") }
            if var namespaceObject = object as? Namespace, !wasDeleting {
                if !namespaceObject.spec.finalizers.contains("kubernetes") { namespaceObject.spec.finalizers.append("kubernetes") }
                namespaceObject.status.phase = "Terminating"
                object = namespaceObject as! T
            }
            if var definition = object as? CustomResourceDefinition, !wasDeleting, try await hasCustomObjects(definition) {
                // Its objects go first (each as its own deletion: their finalizers hold them),
                // then it stops being served: until then it keeps a finalizer and says so.
                if !definition.metadata.finalizers.contains(Self.customResourceCleanup) { definition.metadata.finalizers.append(Self.customResourceCleanup) }
                definition.status.conditions.removeAll { $0.type == "Terminating" }
                definition.status.conditions.append(CustomResourceDefinition.condition("Terminating", "True", "InstanceDeletionInProgress",
                                                                                       "CustomResource deletion is in progress"))
                object = definition as! T
            }
            if Self.pendingFinalizers(object).isEmpty {
                if dryRun { return object }
                if let definition = object as? CustomResourceDefinition {
                    // Created since it was looked at: they go with it.
                    try await deleteCustomObjects(of: definition)
                }
                // Deleted as read: a write in between (a controller's status) means deciding again.
                do {
                    defer { if T.self == CustomResourceDefinition.self { customResources.forget(name) } }
                    return try await store.delete(T.self, namespace: namespace, name: name, resourceVersion: Int64(object.metadata.resourceVersion))
                } catch let error as StoreError where error.code == .conflict {
                    continue
                }
            }
            if !wasDeleting {
                let now = Date()
                object.metadata.deletionTimestamp = Google_Protobuf_Timestamp(seconds: Int64(now.timeIntervalSince1970), nanos: 0)
                object.metadata.deletionGracePeriodSeconds = 0
            }
            if dryRun { return object }
            do {
                let updated = try await store.update(object)
                if let definition = updated as? CustomResourceDefinition { customResources.note(definition) }
                return updated
            } catch let error as StoreError where error.code == .conflict {
                continue
            }
        }
        throw APIError(409, "Conflict", "\(T.kindInfo.groupResource) \"\(name)\" kept changing while being deleted; try again")
    }
}

extension APIResponder {
    /// The finalizer a definition keeps while its objects are being deleted (Kubernetes' name).
    static let customResourceCleanup = "customresourcecleanup.apiextensions.k8s.io"

    func hasCustomObjects(_ definition: CustomResourceDefinition) async throws -> Bool {
        guard let version = definition.storageVersion, let resource = CustomResource(definition, version: version) else { return false }
        return try await CustomResources.$current.withValue(resource) {
            try await !store.list(CustomObject.self, options: ListOptions(limit: 1)).items.isEmpty
        }
    }

    /// Finishes the deletion of definitions being deleted (until cancelled, every `interval`):
    /// each object of theirs is deleted as a client's deletion would (finalizers and propagation
    /// honoured, so it may stay a while), and once none is left the definition's cleanup
    /// finalizer goes and so does the definition. Runs after a restart too: the state is stored.
    /// Also takes another look at definitions whose names were taken: once the other definition
    /// is gone, their names are accepted and they are served (as Kubernetes' naming controller).
    func finishDefinitionDeletions(every interval: Duration) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            for definition in customResources.all where definition.status.conditions.contains(where: {
                $0.type == "NamesAccepted" && $0.status == "False" && ($0.reason == "KindConflict" || $0.reason == "ShortNamesConflict")
            }) && !definition.metadata.hasDeletionTimestamp {
                var candidate = definition
                candidate.status.conditions.removeAll { $0.type == "NamesAccepted" || $0.type == "Established" }
                customResources.markConflicts(&candidate)
                guard candidate.status.conditions.contains(where: { $0.type == "Established" && $0.status == "True" }) else { continue }
                do {
                    let updated = try await store.update(candidate)
                    customResources.note(updated)
                    logger.info("a custom resource definition's names are free now; serving it", metadata: ["definition": "\(definition.metadata.name)"])
                } catch {
                    logger.debug("cannot accept a definition's names yet", metadata: ["definition": "\(definition.metadata.name)", "error": "\(error)"])
                }
            }
            for definition in customResources.all where definition.metadata.hasDeletionTimestamp
                && definition.metadata.finalizers.contains(Self.customResourceCleanup) {
                do {
                    try await finishDeletion(of: definition)
                } catch {
                    logger.warning("cannot finish deleting a custom resource definition; trying again",
                                   metadata: ["definition": "\(definition.metadata.name)", "error": "\(error)"])
                }
            }
        }
    }

    func finishDeletion(of definition: CustomResourceDefinition) async throws {
        guard let version = definition.storageVersion, let resource = CustomResource(definition, version: version) else { return }
        let remaining = try await CustomResources.$current.withValue(resource) { () -> Int in
            let all = try await store.list(CustomObject.self, options: ListOptions())
            for object in all.items where !object.metadata.hasDeletionTimestamp {
                do {
                    _ = try await deleteObject(CustomObject.self, namespace: object.metadata.namespace, name: object.metadata.name, query: QueryParameters())
                } catch let error as StoreError where error.code == .notFound {}
            }
            return all.items.count
        }
        guard remaining == 0 else { return }
        var current = try await store.get(CustomResourceDefinition.self, namespace: "", name: definition.metadata.name)
        guard current.metadata.uid == definition.metadata.uid else { return }
        current.metadata.finalizers.removeAll { $0 == Self.customResourceCleanup }
        let updated = try await store.update(current)
        logger.info("custom resource definition's objects are gone; deleting it", metadata: ["definition": "\(definition.metadata.name)"])
        _ = try await finishUpdate(updated)
        if updated.metadata.finalizers.isEmpty { customResources.forget(definition.metadata.name) }
    }

    /// Deletes every object of a custom resource (in every namespace), as a definition's deletion
    /// does before the definition goes.
    func deleteCustomObjects(of definition: CustomResourceDefinition) async throws {
        guard let version = definition.storageVersion, let resource = CustomResource(definition, version: version) else { return }
        try await CustomResources.$current.withValue(resource) {
            let all = try await store.list(CustomObject.self, options: ListOptions())
            for object in all.items {
                do {
                    _ = try await store.delete(CustomObject.self, namespace: object.metadata.namespace, name: object.metadata.name, resourceVersion: nil)
                } catch let error as StoreError where error.code == .notFound {
                    continue
                }
            }
        }
    }
}
