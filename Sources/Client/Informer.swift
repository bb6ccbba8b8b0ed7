import API
import Foundation
import Synchronization

/// A change an informer applied to its cache; handlers receive these and should only enqueue keys.
public enum InformerEvent<T: APIObject>: Sendable {
    case added(T)
    case updated(old: T, new: T)
    case deleted(T)

    /// The object as it is now (or was last, for a deletion).
    public var object: T {
        switch self {
        case .added(let object), .deleted(let object): object
        case .updated(_, let new): new
        }
    }
}

/// The part of an informer that does not depend on its kind: running it and waiting for it.
public protocol AnyInformer: Sendable {
    var hasSynced: Bool { get }
    func run() async
    func waitForSync() async
}

/// A list + watch cache of one kind: lists once, then follows the watch from the list's revision
/// (resuming after dropped connections, re-listing when the revision is compacted), keeps every
/// object in memory with indexes, and tells handlers what changed. Readers (listers) never call
/// the API server. `hasSynced` turns true after the first complete list.
public final class Informer<T: APIObject>: AnyInformer, Sendable {
    public typealias Handler = @Sendable (InformerEvent<T>) -> Void
    public typealias IndexFunction = @Sendable (T) -> [String]

    /// Built-in indexes: every informer has `namespace`, `owner` (the uids of its owner
    /// references) and `orphan`; pod informers also have `node` (`spec.nodeName`).
    public static var namespaceIndex: String { "namespace" }
    public static var ownerIndex: String { "owner" }
    public static var nodeIndex: String { "node" }
    /// Objects without a managing controller (no owner reference with `controller: true`), by namespace.
    public static var orphanIndex: String { "orphan" }

    struct State {
        var objects: [String: T] = [:]
        var indexes: [String: [String: Set<String>]] = [:]
        var synced = false
        var syncWaiters: [UUID: CheckedContinuation<Void, Never>] = [:]
        var handlers: [Handler] = []
        var revision = ""
    }

    let client: APIClient
    let request: WatchRequest
    let indexers: [String: IndexFunction]
    let state = Mutex(State())

    /// The custom resource this informer follows (objects of a kind known only at run time, as
    /// `CustomObject`): its list and watch run with it as `CustomResources.current`.
    let scope: CustomResource?

    public init(client: APIClient, request: WatchRequest = WatchRequest(), indexers: [String: IndexFunction] = [:], scope: CustomResource? = nil) {
        self.client = client
        self.request = request
        self.scope = scope
        var all = indexers
        all[Self.namespaceIndex] = { [$0.metadata.namespace] }
        all[Self.ownerIndex] = { $0.metadata.ownerReferences.map(\.uid) }
        all[Self.orphanIndex] = { $0.metadata.ownerReferences.contains { $0.controller } ? [] : [$0.metadata.namespace] }
        if T.self == Pod.self { all[Self.nodeIndex] = { [($0 as! Pod).spec.nodeName] } }
        self.indexers = all
    }

    static func key(namespace: String, name: String) -> String { namespace.isEmpty ? name : "\(namespace)/\(name)" }

    /// Adds a handler. Handlers added after the first list get an `added` for every cached object.
    public func addHandler(_ handler: @escaping Handler) {
        let existing: [T] = state.withLock { state in
            state.handlers.append(handler)
            return state.synced ? Array(state.objects.values) : []
        }
        for object in existing { handler(.added(object)) }
    }

    public var hasSynced: Bool { state.withLock { $0.synced } }
    /// The revision the cache reflects.
    public var revision: String { state.withLock { $0.revision } }

    /// Returns once the first list is in the cache, or when the task is cancelled.
    public func waitForSync() async {
        let id = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state in
                    if state.synced || Task.isCancelled { return true }
                    state.syncWaiters[id] = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.syncWaiters.removeValue(forKey: id) }?.resume()
        }
    }

    // MARK: Listers

    public func get(namespace: String = "", name: String) -> T? {
        state.withLock { $0.objects[Self.key(namespace: namespace, name: name)] }
    }

    /// Every cached object, or those in one namespace.
    public func list(namespace: String? = nil) -> [T] {
        guard let namespace else { return state.withLock { Array($0.objects.values) } }
        return byIndex(Self.namespaceIndex, namespace)
    }

    /// The cached objects whose index function returned `value`.
    public func byIndex(_ index: String, _ value: String) -> [T] {
        state.withLock { state in
            (state.indexes[index]?[value] ?? []).compactMap { state.objects[$0] }
        }
    }

    public var count: Int { state.withLock { $0.objects.count } }

    // MARK: Running

    /// Lists and watches until the task is cancelled.
    public func run() async {
        if let scope, CustomResources.current == nil {
            await CustomResources.$current.withValue(scope) { await run() }
            return
        }
        while !Task.isCancelled {
            do {
                for try await event in client.watch(T.self, request) { apply(event) }
            } catch {
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// Applies one watch event to the cache and tells the handlers (outside the lock, in order).
    public func apply(_ event: ObjectEvent<T>) {
        var events: [InformerEvent<T>] = []
        let (handlers, waiters): ([Handler], [CheckedContinuation<Void, Never>]) = state.withLock { state in
            switch event {
            case .added(let object), .modified(let object):
                let key = Self.key(namespace: object.metadata.namespace, name: object.metadata.name)
                let old = store(object, key: key, in: &state)
                events.append(old.map { .updated(old: $0, new: object) } ?? .added(object))
                state.revision = object.metadata.resourceVersion
            case .deleted(let object):
                let key = Self.key(namespace: object.metadata.namespace, name: object.metadata.name)
                let old = remove(key, from: &state)
                events.append(.deleted(old ?? object))
                state.revision = object.metadata.resourceVersion
            case .bookmark(let revision):
                state.revision = revision
            case .relisted(let objects, let revision):
                var fresh: Set<String> = []
                for object in objects {
                    let key = Self.key(namespace: object.metadata.namespace, name: object.metadata.name)
                    fresh.insert(key)
                    let old = store(object, key: key, in: &state)
                    if let old {
                        if old.metadata.resourceVersion != object.metadata.resourceVersion { events.append(.updated(old: old, new: object)) }
                    } else {
                        events.append(.added(object))
                    }
                }
                for key in state.objects.keys where !fresh.contains(key) {
                    if let old = remove(key, from: &state) { events.append(.deleted(old)) }
                }
                state.revision = revision
                if !state.synced {
                    state.synced = true
                    let waiters = Array(state.syncWaiters.values)
                    state.syncWaiters = [:]
                    return (state.handlers, waiters)
                }
            }
            return (state.handlers, [])
        }
        for event in events { for handler in handlers { handler(event) } }
        for waiter in waiters { waiter.resume() }
    }

    func store(_ object: T, key: String, in state: inout State) -> T? {
        let old = state.objects.updateValue(object, forKey: key)
        for (name, function) in indexers {
            if let old { for value in function(old) { state.indexes[name]?[value]?.remove(key) } }
            for value in function(object) { state.indexes[name, default: [:]][value, default: []].insert(key) }
        }
        return old
    }

    func remove(_ key: String, from state: inout State) -> T? {
        guard let old = state.objects.removeValue(forKey: key) else { return nil }
        for (name, function) in indexers {
            for value in function(old) {
                state.indexes[name]?[value]?.remove(key)
                if state.indexes[name]?[value]?.isEmpty == true { state.indexes[name]?[value] = nil }
            }
        }
        return old
    }
}

/// One informer per kind, shared by every controller that asks for it. Ask for informers first,
/// then `run` them all; `waitForSync` returns once every one has listed.
public final class InformerFactory: Sendable {
    public let client: APIClient
    let informers = Mutex<[ObjectIdentifier: any AnyInformer]>([:])

    public init(client: APIClient) { self.client = client }

    public func informer<T: APIObject>(_ type: T.Type) -> Informer<T> {
        informers.withLock { informers in
            if let existing = informers[ObjectIdentifier(T.self)] as? Informer<T> { return existing }
            let informer = Informer<T>(client: client)
            informers[ObjectIdentifier(T.self)] = informer
            return informer
        }
    }

    public var hasSynced: Bool { informers.withLock { $0.values.allSatisfy(\.hasSynced) } }

    /// Runs every informer asked for so far until the task is cancelled.
    public func run() async {
        let all = informers.withLock { Array($0.values) }
        await withTaskGroup(of: Void.self) { group in
            for informer in all { group.addTask { await informer.run() } }
        }
    }

    public func waitForSync() async {
        let all = informers.withLock { Array($0.values) }
        for informer in all { await informer.waitForSync() }
    }
}
