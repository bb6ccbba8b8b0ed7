import API
import Foundation

/// What `apply` did.
public enum ApplyOutcome: String, Sendable {
    case created, configured, unchanged
}

extension APIClient {
    /// Makes the stored object match `desired` (by kind, namespace and name), as `kubectl apply`
    /// would: created when missing, updated when different, left alone when the same.
    ///
    /// Safe to repeat, and safe when the network is not: a create whose answer was lost (the
    /// connection reset after the request left) is not repeated blindly — the object is read
    /// again, and a 409 AlreadyExists means it is there (maybe our own create); an update that
    /// lost a race (409 Conflict) is merged again on fresh state. So an apply that eventually
    /// returns has taken effect exactly once.
    @discardableResult
    public func apply<T: APIObject>(_ desired: T, attempts: Int = 8) async throws -> ApplyOutcome {
        var created = false
        var lastError: (any Error)?
        for attempt in 1...max(1, attempts) {
            if attempt > 1 { try await Task.sleep(for: .milliseconds(min(1000, 50 << min(attempt, 5)))) }
            let existing: T
            do {
                existing = try await get(T.self, namespace: desired.metadata.namespace, name: desired.metadata.name)
            } catch let error as ClientError where error.code == 404 {
                do {
                    _ = try await create(desired)
                    return .created
                } catch let error as ClientError where error.code == 409 || error.code == 0 || error.code >= 500 {
                    // Already there (perhaps from our own create whose answer was lost), or
                    // unknown whether it arrived: read again.
                    created = created || error.code != 409
                    lastError = error
                    continue
                }
            }
            let merged = Self.merge(desired, into: existing)
            // Compared as users see them: the JSON forms (map keys sorted, defaults applied on both sides).
            if merged.jsonBytes() == existing.jsonBytes() { return created ? .created : .unchanged }
            do {
                _ = try await update(merged)
                return .configured
            } catch let error as ClientError where error.code == 409 || error.code == 0 || error.code >= 500 {
                lastError = error  // a controller (or another user) wrote it meanwhile, or the answer was lost: merge again
                continue
            }
        }
        throw lastError ?? ClientError(code: 0, reason: "ApplyFailed", message: "\(T.kindInfo.singular)/\(desired.metadata.name) could not be applied")
    }

    /// The manifest over the stored object, keeping what the cluster manages: identity and
    /// revision, status, owner references and finalizers, a pod's node and service account, and annotations in
    /// system domains (`*.kubernetes.io/…`, `cox.io/…`) that the manifest does not set — such as
    /// a Deployment's revision.
    public static func merge<T: APIObject>(_ desired: T, into existing: T) -> T {
        var merged = desired
        merged.metadata.uid = existing.metadata.uid
        merged.metadata.creationTimestamp = existing.metadata.creationTimestamp
        merged.metadata.resourceVersion = existing.metadata.resourceVersion
        merged.metadata.generation = existing.metadata.generation
        merged.metadata.managedFields = existing.metadata.managedFields
        if merged.metadata.ownerReferences.isEmpty { merged.metadata.ownerReferences = existing.metadata.ownerReferences }
        if merged.metadata.finalizers.isEmpty { merged.metadata.finalizers = existing.metadata.finalizers }
        for (key, value) in existing.metadata.annotations where merged.metadata.annotations[key] == nil {
            let domain = key.split(separator: "/").first.map(String.init) ?? ""
            if key.contains("/") && (domain.hasSuffix("kubernetes.io") || domain.hasSuffix("cox.io")) { merged.metadata.annotations[key] = value }
        }
        merged.copyStatus(from: existing)
        // A pod's node is chosen by the cluster (binding), not by its manifest; its service
        // account, when the manifest names none, by admission (`default`).
        if var pod = merged as? Pod, let current = existing as? Pod {
            if pod.spec.nodeName.isEmpty { pod.spec.nodeName = current.spec.nodeName }
            if pod.spec.serviceAccountName.isEmpty { pod.spec.serviceAccountName = current.spec.serviceAccountName }
            merged = pod as! T
        }
        return merged
    }
}
