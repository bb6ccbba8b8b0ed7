import API
import Client
import ControllerRuntime
import Foundation
import Logging

/// Deletes what nobody owns any more, as Kubernetes' garbage collector does:
/// - **background** (the default): once every owner of an object is gone, the object is deleted;
/// - **foreground**: an owner deleted with `propagationPolicy=Foreground` keeps a
///   `foregroundDeletion` finalizer until its dependents are gone (they are deleted in the
///   foreground too), then the finalizer is removed and the owner goes;
/// - **orphan**: an owner deleted with `propagationPolicy=Orphan` keeps an `orphan` finalizer until
///   its dependents no longer reference it.
/// Owners missing from the cache are confirmed with a live read (by uid) before anything is deleted.
public final class GarbageCollector: Reconciler {
    public static let foregroundFinalizer = "foregroundDeletion"
    public static let orphanFinalizer = "orphan"

    let context: ControllerContext
    let pods: Informer<Pod>
    let replicaSets: Informer<ReplicaSet>
    let deployments: Informer<Deployment>

    public init(context: ControllerContext) {
        self.context = context
        pods = context.informers.informer(Pod.self)
        replicaSets = context.informers.informer(ReplicaSet.self)
        deployments = context.informers.informer(Deployment.self)
    }

    public func controller(workers: Int = 2) -> Controller {
        let queue = context.queue()
        addHandlers(pods, queue)
        addHandlers(replicaSets, queue)
        addHandlers(deployments, queue)
        let informers = context.informers
        let interval = customOwnerResync
        return Controller(name: "garbage-collector", queue: queue, reconciler: self, workers: workers, logger: context.logger) { [weak self] in
            await informers.waitForSync()
            // Owners of custom kinds are not watched here: objects that have one are looked at
            // again now and then, so a deleted owner's dependents go.
            Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    guard let self, await !queue.isShuttingDown else { return }
                    for key in self.customOwned() { await queue.add(key) }
                }
            }
        }
    }

    /// How often objects with an owner of a custom kind are looked at again.
    public let customOwnerResync: Duration = .seconds(5)

    /// Keys of the cached objects that name an owner of a kind that is not built in.
    func customOwned() -> [ObjectKey] {
        func of<T: APIObject>(_ informer: Informer<T>) -> [ObjectKey] {
            informer.list().filter { object in
                object.metadata.ownerReferences.contains { Kinds.lookup(apiVersion: $0.apiVersion, kind: $0.kind) == nil }
            }.map { ObjectKey($0, withKind: true) }
        }
        return of(pods) + of(replicaSets) + of(deployments)
    }

    func addHandlers<T: APIObject>(_ informer: Informer<T>, _ queue: WorkQueue<ObjectKey>) {
        informer.addHandler { [self] event in
            var keys = [ObjectKey(event.object, withKind: true)]
            switch event {
            case .added, .updated:
                // An owner on its way out (or gone) has dependents to look at, and an owner
                // waiting for its dependents wants to hear about them.
                if event.object.metadata.hasDeletionTimestamp { keys += dependents(of: event.object.metadata.uid).map(\.key) }
                keys += owners(of: event.object)
            case .deleted(let object):
                keys = dependents(of: object.metadata.uid).map(\.key) + owners(of: object)
            }
            Task { for key in keys { await queue.add(key) } }
        }
    }

    /// Keys of the owners of an object (they may be waiting for it to go).
    func owners<T: APIObject>(of object: T) -> [ObjectKey] {
        object.metadata.ownerReferences.compactMap { reference in
            guard let type = Kinds.lookup(apiVersion: reference.apiVersion, kind: reference.kind) else { return nil }
            return ObjectKey(kind: type.kindInfo.groupResource, namespace: type.kindInfo.namespaced ? object.metadata.namespace : "", name: reference.name)
        }
    }

    /// Every cached object that names `uid` among its owners.
    func dependents(of uid: String) -> [(key: ObjectKey, deleting: Bool)] {
        func of<T: APIObject>(_ informer: Informer<T>) -> [(key: ObjectKey, deleting: Bool)] {
            informer.byIndex(Informer<T>.ownerIndex, uid).map { (ObjectKey($0, withKind: true), $0.metadata.hasDeletionTimestamp) }
        }
        return of(pods) + of(replicaSets) + of(deployments)
    }

    public func reconcile(_ key: ObjectKey) async throws -> ReconcileResult {
        switch key.kind {
        case Pod.kindInfo.groupResource: try await process(pods, key)
        case ReplicaSet.kindInfo.groupResource: try await process(replicaSets, key)
        case Deployment.kindInfo.groupResource: try await process(deployments, key)
        default: .done
        }
    }

    func process<T: APIObject>(_ informer: Informer<T>, _ key: ObjectKey) async throws -> ReconcileResult {
        guard let object = informer.get(namespace: key.namespace, name: key.name) else { return .done }
        if object.metadata.hasDeletionTimestamp {
            if object.metadata.finalizers.contains(Self.orphanFinalizer) { return try await orphanDependents(of: object) }
            if object.metadata.finalizers.contains(Self.foregroundFinalizer) { return try await deleteDependents(of: object) }
        }
        return try await collect(object)
    }

    /// Deletes the object when every owner is gone; drops references to owners that are gone when
    /// some remain; deletes it in the foreground when a remaining owner is being deleted so.
    func collect<T: APIObject>(_ object: T) async throws -> ReconcileResult {
        guard !object.metadata.ownerReferences.isEmpty else { return .done }
        var gone: Set<String> = []
        var foregroundOwner = false
        for reference in object.metadata.ownerReferences {
            switch try await ownerState(reference, namespace: object.metadata.namespace) {
            case .gone: gone.insert(reference.uid)
            case .deletingInForeground: foregroundOwner = foregroundOwner || reference.blockOwnerDeletion
            case .present: break
            }
        }
        let key = ObjectKey(object, withKind: true)
        if gone.count == object.metadata.ownerReferences.count {
            context.logger.info("deleting an object whose owners are gone", metadata: ["object": "\(key)"])
            try await delete(T.self, object, propagation: nil)
        } else if foregroundOwner, !object.metadata.hasDeletionTimestamp {
            try await delete(T.self, object, propagation: "Foreground")
        } else if !gone.isEmpty {
            var updated = object
            updated.metadata.ownerReferences.removeAll { gone.contains($0.uid) }
            do { _ = try await context.client.update(updated) } catch let error as ClientError where error.code == 404 {}
        }
        return .done
    }

    enum OwnerState { case present, deletingInForeground, gone }

    func ownerState(_ reference: OwnerReference, namespace: String) async throws -> OwnerState {
        guard let type = Kinds.lookup(apiVersion: reference.apiVersion, kind: reference.kind) else {
            return try await customOwnerState(reference, namespace: namespace)
        }
        let ownerNamespace = type.kindInfo.namespaced ? namespace : ""
        if let meta = cachedMeta(type, namespace: ownerNamespace, name: reference.name), meta.uid == reference.uid {
            return meta.hasDeletionTimestamp && meta.finalizers.contains(Self.foregroundFinalizer) ? .deletingInForeground : .present
        }
        // Not in the cache (or another incarnation): the cache may lag, so ask the server.
        do {
            let meta = try await liveMeta(type, namespace: ownerNamespace, name: reference.name)
            guard meta.uid == reference.uid else { return .gone }
            return meta.hasDeletionTimestamp && meta.finalizers.contains(Self.foregroundFinalizer) ? .deletingInForeground : .present
        } catch let error as ClientError where error.code == 404 {
            return .gone
        }
    }

    /// An owner of a custom kind, read live: its resource from the server's discovery of its
    /// group/version, then the object. A kind the server does not serve (no such group/version,
    /// or no such kind in it) is never collected on account of: it is taken as present.
    func customOwnerState(_ reference: OwnerReference, namespace: String) async throws -> OwnerState {
        guard reference.apiVersion.contains("/") else { return .present }
        let resources: JSONValue
        do {
            resources = try JSONParser.parse(try await context.client.getText("/apis/\(reference.apiVersion)"))
        } catch let error as ClientError where error.code == 404 {
            return .present
        }
        guard case .array(let entries)? = resources["resources"],
              let entry = entries.first(where: { $0["kind"] == .string(reference.kind) && ($0["name"].map { if case .string(let n) = $0 { !n.contains("/") } else { false } } ?? false) }),
              case .string(let plural)? = entry["name"] else { return .present }
        let namespaced = entry["namespaced"] == .bool(true)
        let path = "/apis/\(reference.apiVersion)/" + (namespaced ? "namespaces/\(namespace)/" : "") + "\(plural)/\(reference.name)"
        let object: JSONValue
        do {
            object = try JSONParser.parse(try await context.client.getText(path))
        } catch let error as ClientError where error.code == 404 {
            return .gone
        }
        guard object["metadata"]?["uid"] == .string(reference.uid) else { return .gone }
        let deleting = object["metadata"]?["deletionTimestamp"] != nil && object["metadata"]?["deletionTimestamp"] != .null
        let foreground: Bool = {
            if case .array(let finalizers)? = object["metadata"]?["finalizers"] { return finalizers.contains(.string(Self.foregroundFinalizer)) }
            return false
        }()
        return deleting && foreground ? .deletingInForeground : .present
    }

    func cachedMeta(_ type: any APIObject.Type, namespace: String, name: String) -> ObjectMeta? {
        switch type {
        case is Pod.Type: pods.get(namespace: namespace, name: name)?.metadata
        case is ReplicaSet.Type: replicaSets.get(namespace: namespace, name: name)?.metadata
        case is Deployment.Type: deployments.get(namespace: namespace, name: name)?.metadata
        default: nil
        }
    }

    func liveMeta<T: APIObject>(_ type: T.Type, namespace: String, name: String) async throws -> ObjectMeta {
        try await context.client.get(T.self, namespace: namespace, name: name).metadata
    }

    func delete<T: APIObject>(_ type: T.Type, _ object: T, propagation: String?) async throws {
        do {
            _ = try await context.client.delete(T.self, namespace: object.metadata.namespace, name: object.metadata.name,
                                                propagationPolicy: propagation)
        } catch let error as ClientError where error.code == 404 {}
    }

    /// Foreground: delete every dependent (in the foreground too); once none is left, let the owner go.
    func deleteDependents<T: APIObject>(of owner: T) async throws -> ReconcileResult {
        let dependents = dependents(of: owner.metadata.uid)
        for dependent in dependents where !dependent.deleting {
            switch dependent.key.kind {
            case Pod.kindInfo.groupResource:
                if let pod = pods.get(namespace: dependent.key.namespace, name: dependent.key.name) { try await delete(Pod.self, pod, propagation: "Foreground") }
            case ReplicaSet.kindInfo.groupResource:
                if let set = replicaSets.get(namespace: dependent.key.namespace, name: dependent.key.name) { try await delete(ReplicaSet.self, set, propagation: "Foreground") }
            case Deployment.kindInfo.groupResource:
                if let deployment = deployments.get(namespace: dependent.key.namespace, name: dependent.key.name) { try await delete(Deployment.self, deployment, propagation: "Foreground") }
            default: break
            }
        }
        if !dependents.isEmpty { return .done }  // their deletions bring this owner back
        try await removeFinalizer(Self.foregroundFinalizer, from: owner)
        return .done
    }

    /// Orphan: remove the owner from every dependent's references, then let the owner go.
    func orphanDependents<T: APIObject>(of owner: T) async throws -> ReconcileResult {
        let uid = owner.metadata.uid
        for dependent in pods.byIndex(Informer<Pod>.ownerIndex, uid) { try await dropOwner(uid, from: dependent) }
        for dependent in replicaSets.byIndex(Informer<ReplicaSet>.ownerIndex, uid) { try await dropOwner(uid, from: dependent) }
        for dependent in deployments.byIndex(Informer<Deployment>.ownerIndex, uid) { try await dropOwner(uid, from: dependent) }
        try await removeFinalizer(Self.orphanFinalizer, from: owner)
        return .done
    }

    func dropOwner<T: APIObject>(_ uid: String, from object: T) async throws {
        var updated = object
        updated.metadata.ownerReferences.removeAll { $0.uid == uid }
        do { _ = try await context.client.update(updated) } catch let error as ClientError where error.code == 404 {}
    }

    func removeFinalizer<T: APIObject>(_ finalizer: String, from object: T) async throws {
        var updated = object
        updated.metadata.finalizers.removeAll { $0 == finalizer }
        do { _ = try await context.client.update(updated) } catch let error as ClientError where error.code == 404 {}
    }
}
