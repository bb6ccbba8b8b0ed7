import API
import Foundation
import Hummingbird
import Store
import SwiftProtobuf

extension APIResponder {
    static let propagationPolicies = ["Background", "Foreground", "Orphan"]

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
    func deleteObject<T: APIObject>(_ type: T.Type, namespace: String, name: String, query: QueryParameters) async throws -> T {
        let precondition = query["resourceVersion"].flatMap { Int64($0) }
        let policy = query["propagationPolicy"] ?? "Background"
        guard Self.propagationPolicies.contains(policy) else {
            throw APIError(422, "Invalid", "propagationPolicy: Unsupported value: \"\(policy)\": supported values: \"Background\", \"Foreground\", \"Orphan\"")
        }
        for _ in 0..<5 {
            var object = try await store.get(T.self, namespace: namespace, name: name)
            if let precondition, String(precondition) != object.metadata.resourceVersion {
                throw APIError(409, "Conflict", "Operation cannot be fulfilled on \(T.kindInfo.groupResource) \"\(name)\": the object has been modified; please apply your changes to the latest version and try again")
            }
            let wasDeleting = object.metadata.hasDeletionTimestamp
            if policy == "Foreground" && !object.metadata.finalizers.contains("foregroundDeletion") { object.metadata.finalizers.append("foregroundDeletion") }
            if policy == "Orphan" && !object.metadata.finalizers.contains("orphan") { object.metadata.finalizers.append("orphan") }
            if var namespaceObject = object as? Namespace, !wasDeleting {
                if !namespaceObject.spec.finalizers.contains("kubernetes") { namespaceObject.spec.finalizers.append("kubernetes") }
                namespaceObject.status.phase = "Terminating"
                object = namespaceObject as! T
            }
            if Self.pendingFinalizers(object).isEmpty {
                // Deleted as read: a write in between (a controller's status) means deciding again.
                do {
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
            do {
                return try await store.update(object)
            } catch let error as StoreError where error.code == .conflict {
                continue
            }
        }
        throw APIError(409, "Conflict", "\(T.kindInfo.groupResource) \"\(name)\" kept changing while being deleted; try again")
    }
}
