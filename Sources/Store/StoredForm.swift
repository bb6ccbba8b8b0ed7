import API

/// The form in which the store writes an object, and the checks it makes of an update's expected
/// revision: shared with the API server's dry runs, which answer what a write would store
/// without writing.
extension APIObject {
    /// The object as a create stores it: its kind and apiVersion, a new uid, the creation time,
    /// generation 1, and no resourceVersion yet.
    public func asCreated() -> Self {
        var created = self
        created.setTypeMeta()
        created.metadata.uid = UID.random()
        created.uidAssigned()
        created.metadata.creationTimestamp = Timestamp.nowSeconds()
        created.metadata.generation = 1
        created.metadata.resourceVersion = ""
        return created
    }

    /// The object as an update of `existing` stores it: the identity (uid, creation time) is the
    /// existing one's, and the generation moves when the spec does; the resourceVersion is still
    /// the existing one's (the write gives the new one).
    public func asUpdate(of existing: Self) -> Self {
        var stored = self
        stored.setTypeMeta()
        stored.metadata.uid = existing.metadata.uid
        stored.metadata.creationTimestamp = existing.metadata.creationTimestamp
        stored.metadata.generation = existing.metadata.generation + (stored.specDiffers(from: existing) ? 1 : 0)
        stored.metadata.resourceVersion = existing.metadata.resourceVersion
        return stored
    }

    /// What every store needs of an object to write it: a name, and a namespace when its kind
    /// is namespaced.
    public func checkStoreKey() throws {
        if metadata.name.isEmpty { throw StoreError(.invalid, "metadata.name: Required value") }
        if Self.kindInfo.namespaced && metadata.namespace.isEmpty { throw StoreError(.invalid, "metadata.namespace: Required value") }
    }

    /// The revision an update expects to replace: none when `resourceVersion` is empty.
    public func expectedRevision() throws -> Int64? {
        let text = metadata.resourceVersion
        if text.isEmpty { return nil }
        guard let revision = Int64(text) else {
            throw StoreError(.invalid, "metadata.resourceVersion: Invalid value: \"\(text)\": must be a revision number")
        }
        return revision
    }
}

extension StoreError {
    /// A write that expected another revision than the object's current one, in Kubernetes' words.
    public static func modified(_ kind: KindInfo, _ name: String, current: Int64? = nil) -> StoreError {
        modified(groupResource: kind.groupResource, name, current: current)
    }

    /// The same, from a key's resource (the writer thread does not know a custom resource's kind).
    public static func modified(groupResource: String, _ name: String, current: Int64? = nil) -> StoreError {
        StoreError(.conflict, "Operation cannot be fulfilled on \(groupResource) \"\(name)\": the object has been modified; please apply your changes to the latest version and try again",
                   revision: current)
    }
}
