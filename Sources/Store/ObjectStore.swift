import API

/// Where an object lives: its kind's group-resource, namespace ("" when cluster-scoped) and name.
public struct ObjectKey: Hashable, Sendable, CustomStringConvertible {
    public let resource: String
    public let namespace: String
    public let name: String

    public init(resource: String, namespace: String, name: String) {
        self.resource = resource
        self.namespace = namespace
        self.name = name
    }

    public init<T: APIObject>(_ type: T.Type, namespace: String, name: String) {
        self.init(resource: T.kindInfo.groupResource, namespace: T.kindInfo.namespaced ? namespace : "", name: name)
    }

    /// The plural alone (`deployments` of `deployments.apps`), for messages.
    public var resourceName: String { String(resource.prefix { $0 != "." }) }

    public init<T: APIObject>(of object: T) {
        self.init(T.self, namespace: object.metadata.namespace, name: object.metadata.name)
    }

    public var description: String { namespace.isEmpty ? "\(resource)/\(name)" : "\(resource)/\(namespace)/\(name)" }
}

public struct ListOptions: Sendable {
    /// Only this namespace; nil lists all namespaces.
    public var namespace: String?
    public var labelSelector: Selector
    /// Extra server-side filter (field selectors), applied with the label selector.
    public var predicate: (@Sendable (any APIObject) -> Bool)?
    /// At most this many items; 0 means no limit.
    public var limit: Int
    /// The token from the previous page's `continue`.
    public var continueToken: String?
    /// Read at exactly this revision (`resourceVersionMatch=Exact`) instead of the newest; one
    /// older than the compaction point is `compacted`, one not reached yet `invalid`.
    public var revision: Int64?

    public init(namespace: String? = nil, labelSelector: Selector = .everything,
                predicate: (@Sendable (any APIObject) -> Bool)? = nil, limit: Int = 0, continueToken: String? = nil) {
        self.namespace = namespace
        self.labelSelector = labelSelector
        self.predicate = predicate
        self.limit = limit
        self.continueToken = continueToken
    }
}

public struct ListResult<T: APIObject>: Sendable {
    public var items: [T]
    /// The revision every item was read at; a watch from here misses nothing.
    public var revision: Int64
    /// Set when more items remain; pass it back to get the next page at the same revision.
    public var continueToken: String?
}

public struct WatchOptions: Sendable {
    /// Only changes to this group-resource (`pods`, `deployments.apps`); nil for every kind.
    public var resource: String?
    public var namespace: String?
    public var labelSelector: Selector
    public var predicate: (@Sendable (any APIObject) -> Bool)?
    /// Only pods bound to this node (`spec.nodeName`, "" for unbound pods): such a watch is
    /// served from the hub's node index, woken only by that node's pods.
    public var nodeName: String?

    public init(resource: String? = nil, namespace: String? = nil, labelSelector: Selector = .everything,
                predicate: (@Sendable (any APIObject) -> Bool)? = nil, nodeName: String? = nil) {
        self.resource = resource
        self.namespace = namespace
        self.labelSelector = labelSelector
        self.predicate = predicate
        self.nodeName = nodeName
    }

    public static func of<T: APIObject>(_ type: T.Type, namespace: String? = nil, labelSelector: Selector = .everything) -> WatchOptions {
        WatchOptions(resource: T.kindInfo.groupResource, namespace: namespace, labelSelector: labelSelector)
    }

    /// Whether the watch selects objects by their content (labels, fields, node), not only by kind
    /// and namespace.
    var selectsByContent: Bool { !labelSelector.isEverything || predicate != nil || nodeName != nil }

    private func selects(_ object: any APIObject, nodeName: String?) -> Bool {
        if !labelSelector.isEverything && !labelSelector.matches(object.metadata.labels) { return false }
        if let predicate, !predicate(object) { return false }
        if let selected = self.nodeName, nodeName != selected { return false }
        return true
    }

    /// The event as this watch sees it, or nil when it does not concern the watch. With a selector,
    /// as Kubernetes' watch cache does: a modification that brings an object into the selection is
    /// ADDED, one inside it MODIFIED, one that takes it out DELETED (with the object as it was
    /// selected). A deletion carries the object's last state, so it is seen by whoever selected it.
    func view(_ event: StoreEvent) -> StoreEvent? {
        if let resource, event.key.resource != resource { return nil }
        if let namespace, event.key.namespace != namespace { return nil }
        let now = selects(event.object, nodeName: event.nodeName)
        guard selectsByContent, event.type == .modified, let previous = event.previous else { return now ? event : nil }
        switch (selects(previous.object, nodeName: event.previousNodeName), now) {
        case (true, true): return event
        case (false, true): return event.entering
        case (true, false): return event.leaving
        case (false, false): return nil
        }
    }
}

/// The revisioned object store. One global revision per committed write (as etcd does); every
/// object's `resourceVersion` is the revision of its last write. Writes are acknowledged only once
/// durable. Implementations: `SQLiteStore` (embedded), `EtcdStore` (an etcd cluster).
public protocol ObjectStore: Sendable {
    /// The revision of the last committed write.
    var currentRevision: Int64 { get }

    /// The revision up to which history has been compacted (a watch from before it is `compacted`).
    var compactedRevision: Int64 { get }

    /// The backend's own lines for `/metrics` (Prometheus text format: HELP, TYPE, samples).
    func renderMetrics(into lines: inout [String])

    /// Creates the object; sets uid, creationTimestamp, generation 1 and resourceVersion.
    /// Fails with `alreadyExists` when a live object has the key.
    func create<T: APIObject>(_ object: T) async throws -> T

    func get<T: APIObject>(_ type: T.Type, namespace: String, name: String) async throws -> T

    /// Replaces the object. A non-empty `metadata.resourceVersion` is a precondition (stale →
    /// `conflict`). uid and creationTimestamp are kept; generation bumps when the spec changes.
    /// An update that changes nothing returns the stored object without a new revision.
    func update<T: APIObject>(_ object: T) async throws -> T

    /// Read-modify-write without a conflict to retry: `change` gets the current object and edits
    /// it inside the store's writer, where no other write can come between the read and the
    /// write (Kubernetes' GuaranteedUpdate). `change` must be quick and must not block; what it
    /// throws fails the call and writes nothing. Returns the stored object (unchanged when `change`
    /// changed nothing). Fails with `notFound` when there is no such object.
    func update<T: APIObject>(_ type: T.Type, namespace: String, name: String,
                              _ change: @escaping @Sendable (inout T) throws -> Void) async throws -> T

    /// Deletes the object, if `resourceVersion` is given only when it is still current.
    /// Returns the object's last state, its resourceVersion the revision of the deletion.
    func delete<T: APIObject>(_ type: T.Type, namespace: String, name: String, resourceVersion: Int64?) async throws -> T

    /// Lists objects of one kind at one consistent revision, in namespace/name order.
    func list<T: APIObject>(_ type: T.Type, options: ListOptions) async throws -> ListResult<T>

    /// Every change after `revision`, in order, exactly once. Fails with `compacted` when that
    /// history is gone, and with `watcherTooSlow` when the consumer falls too far behind.
    func watch(from revision: Int64, options: WatchOptions) throws -> StoreWatch

    /// Why the store cannot serve now (for `/readyz`), nil when it can.
    func unreadyReason() async -> String?

    /// The revision of the last committed write as the backend has it now (with several servers
    /// on one etcd, `currentRevision` is only what this one has seen).
    func latestRevision() async throws -> Int64

    /// Stops the store: ends every watch and lets go of its files or connections.
    func close()
}

extension ObjectStore {
    public func unreadyReason() async -> String? { nil }
    public func latestRevision() async throws -> Int64 { currentRevision }
}
