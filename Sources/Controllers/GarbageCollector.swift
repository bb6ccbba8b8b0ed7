import API
import Client
import ControllerRuntime
import Foundation
import Logging
import Synchronization

/// Deletes what nobody owns any more, as Kubernetes' garbage collector does:
/// - **background** (the default): once every owner of an object is gone, the object is deleted;
/// - **foreground**: an owner deleted with `propagationPolicy=Foreground` keeps a
///   `foregroundDeletion` finalizer until its dependents are gone (they are deleted in the
///   foreground too), then the finalizer is removed and the owner goes;
/// - **orphan**: an owner deleted with `propagationPolicy=Orphan` keeps an `orphan` finalizer until
///   its dependents no longer reference it.
/// Owners missing from the cache are confirmed with a live read (by uid) before anything is deleted.
///
/// It follows (lists and watches) every kind that owners and dependents are made of: the
/// built-in kinds an object of a user or a controller may own, and every custom resource as its
/// definition is established (its storage version, as JSON), so dependents and owners of any of
/// those kinds are collected. An owner of a kind it does not follow (a Node, a definition not yet
/// established) is read live, through discovery, and its dependents looked at again every few
/// seconds.
public final class GarbageCollector: Reconciler {
    public static let foregroundFinalizer = "foregroundDeletion"
    public static let orphanFinalizer = "orphan"

    let context: ControllerContext
    let queue: WorkQueue<ObjectKey>
    let definitions: Informer<CustomResourceDefinition>
    /// The kinds followed, by group resource (`pods`, `replicasets.apps`, `crontasks.example.com`).
    let followed = Mutex<[String: any FollowedKind]>([:])
    /// The custom resources' informers, by group resource, with the definition's uid.
    let customInformers = Mutex<[String: (uid: String, task: Task<Void, Never>)]>([:])
    let stopped = Mutex(false)

    public init(context: ControllerContext) {
        self.context = context
        queue = context.queue()
        definitions = context.informers.informer(CustomResourceDefinition.self)
        follow(context.informers.informer(Pod.self))
        follow(context.informers.informer(ReplicaSet.self))
        follow(context.informers.informer(Deployment.self))
        follow(context.informers.informer(Job.self))
        follow(context.informers.informer(DaemonSet.self))
        follow(context.informers.informer(ConfigMap.self))
        follow(context.informers.informer(Secret.self))
        follow(context.informers.informer(ServiceAccount.self))
        follow(context.informers.informer(Role.self))
        follow(context.informers.informer(RoleBinding.self))
        follow(context.informers.informer(ClusterRole.self))
        follow(context.informers.informer(ClusterRoleBinding.self))
        follow(context.informers.informer(Lease.self))
        definitions.addHandler { [self] event in
            switch event {
            case .added(let definition), .updated(_, let definition):
                if definition.status.conditions.contains(where: { $0.type == "Established" && $0.status == "True" }) { followCustom(definition) }
            case .deleted(let definition):
                unfollowCustom(definition)
            }
        }
    }

    public func controller(workers: Int = 2) -> Controller {
        let queue = self.queue
        let informers = context.informers
        let interval = unfollowedOwnerResync
        return Controller(name: "garbage-collector", queue: queue, reconciler: self, workers: workers, logger: context.logger) { [weak self] in
            // Owners of kinds not followed are not watched: objects that have one are looked at
            // again now and then, so a deleted owner's dependents go. The custom resources'
            // informers end with the controller.
            Task { [weak self] in
                var slept = Duration.zero
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    slept += .seconds(1)
                    guard let self else { return }
                    guard await !queue.isShuttingDown else {
                        self.stop()
                        return
                    }
                    guard slept >= interval, informers.hasSynced else { continue }
                    slept = .zero
                    for key in self.ownedByUnfollowed() { await queue.add(key) }
                }
            }
            await informers.waitForSync()
        }
    }

    /// How often objects with an owner of a kind not followed are looked at again.
    public let unfollowedOwnerResync: Duration = .seconds(5)

    /// The group resources followed now (built-in and custom).
    public var followedResources: [String] { followed.withLock { Array($0.keys) }.sorted() }

    func stop() {
        stopped.withLock { $0 = true }
        let tasks = customInformers.withLock { informers -> [Task<Void, Never>] in
            let all = informers.values.map(\.task)
            informers = [:]
            return all
        }
        for task in tasks { task.cancel() }
    }

    // MARK: Following kinds

    func follow<T: APIObject>(_ informer: Informer<T>, info: KindInfo = T.kindInfo, scope: CustomResource? = nil) {
        let kind = Followed(informer: informer, client: context.client, info: info, scope: scope)
        followed.withLock { $0[kind.groupResource] = kind }
        informer.addHandler { [self] event in
            switch event {
            case .added(let object), .updated(_, let object): changed(object.metadata, of: kind, deleted: false)
            case .deleted(let object): changed(object.metadata, of: kind, deleted: true)
            }
        }
    }

    /// Follows a custom resource's objects (its storage version) once its definition is established.
    func followCustom(_ definition: CustomResourceDefinition) {
        let names = definition.status.acceptedNames.plural.isEmpty ? definition.spec.names : definition.status.acceptedNames
        guard let version = definition.spec.versions.first(where: { $0.storage && $0.served }) ?? definition.spec.versions.first(where: \.served),
              !names.plural.isEmpty, !stopped.withLock({ $0 }) else { return }
        let groupResource = "\(names.plural).\(definition.spec.group)"
        let uid = definition.metadata.uid
        let starts = customInformers.withLock { informers -> Bool in
            if let existing = informers[groupResource], existing.uid == uid { return false }
            informers[groupResource]?.task.cancel()
            informers[groupResource] = (uid, Task {})
            return true
        }
        guard starts else { return }
        let dynamic = DynamicResource(client: context.client, group: definition.spec.group, version: version.name, kind: names.kind,
                                      plural: names.plural, namespaced: definition.spec.scope == "Namespaced")
        let informer = dynamic.informer()
        follow(informer, info: dynamic.resource.info, scope: dynamic.resource)
        let task = Task { await informer.run() }
        customInformers.withLock { $0[groupResource] = (uid, task) }
        context.logger.debug("following a custom resource", metadata: ["resource": "\(groupResource)", "version": "\(version.name)"])
    }

    func unfollowCustom(_ definition: CustomResourceDefinition) {
        let names = definition.status.acceptedNames.plural.isEmpty ? definition.spec.names : definition.status.acceptedNames
        let groupResource = "\(names.plural).\(definition.spec.group)"
        let removed = customInformers.withLock { informers -> Task<Void, Never>? in
            guard let entry = informers[groupResource], entry.uid == definition.metadata.uid else { return nil }
            informers[groupResource] = nil
            return entry.task
        }
        guard let removed else { return }
        removed.cancel()
        followed.withLock { $0[groupResource] = nil }
    }

    func kind(_ groupResource: String) -> (any FollowedKind)? { followed.withLock { $0[groupResource] } }

    /// The followed kind an owner reference names (its group and kind: any version of it).
    func kind(apiVersion: String, kind: String) -> (any FollowedKind)? {
        let group = apiVersion.contains("/") ? String(apiVersion.split(separator: "/")[0]) : ""
        return followed.withLock { all in all.values.first { $0.info.group == group && $0.info.kind == kind } }
    }

    // MARK: Events

    func changed(_ meta: ObjectMeta, of kind: any FollowedKind, deleted: Bool) {
        var keys = deleted ? [] : [kind.key(meta)]
        // An owner on its way out (or gone) has dependents to look at, and an owner waiting for
        // its dependents wants to hear about them.
        if deleted || meta.hasDeletionTimestamp { keys += dependents(of: meta.uid).map(\.key) }
        keys += owners(of: meta)
        guard !keys.isEmpty else { return }
        let queue = queue
        Task { for key in keys { await queue.add(key) } }
    }

    /// Keys of the owners of an object (they may be waiting for it to go).
    func owners(of meta: ObjectMeta) -> [ObjectKey] {
        meta.ownerReferences.compactMap { reference in
            guard let owner = kind(apiVersion: reference.apiVersion, kind: reference.kind) else { return nil }
            return ObjectKey(kind: owner.groupResource, namespace: owner.info.namespaced ? meta.namespace : "", name: reference.name)
        }
    }

    /// Every cached object of any followed kind that names `uid` among its owners.
    func dependents(of uid: String) -> [(key: ObjectKey, kind: any FollowedKind, meta: ObjectMeta)] {
        followed.withLock { Array($0.values) }.flatMap { kind in
            kind.dependents(of: uid).map { (kind.key($0), kind, $0) }
        }
    }

    /// Keys of the cached objects that name an owner of a kind not followed.
    func ownedByUnfollowed() -> [ObjectKey] {
        followed.withLock { Array($0.values) }.flatMap { kind in
            kind.owned().filter { meta in
                meta.ownerReferences.contains { self.kind(apiVersion: $0.apiVersion, kind: $0.kind) == nil }
            }.map { kind.key($0) }
        }
    }

    // MARK: Reconciling

    public func reconcile(_ key: ObjectKey) async throws -> ReconcileResult {
        guard let kind = kind(key.kind), let meta = kind.meta(namespace: key.namespace, name: key.name) else { return .done }
        if meta.hasDeletionTimestamp {
            if meta.finalizers.contains(Self.orphanFinalizer) { return try await orphanDependents(of: meta, kind) }
            if meta.finalizers.contains(Self.foregroundFinalizer) { return try await deleteDependents(of: meta, kind) }
        }
        return try await collect(meta, kind)
    }

    /// Deletes the object when every owner is gone; drops references to owners that are gone when
    /// some remain; deletes it in the foreground when a remaining owner is being deleted so.
    func collect(_ meta: ObjectMeta, _ kind: any FollowedKind) async throws -> ReconcileResult {
        guard !meta.ownerReferences.isEmpty else { return .done }
        var gone: Set<String> = []
        var foregroundOwner = false
        for reference in meta.ownerReferences {
            switch try await ownerState(reference, namespace: meta.namespace) {
            case .gone: gone.insert(reference.uid)
            case .deletingInForeground: foregroundOwner = foregroundOwner || reference.blockOwnerDeletion
            case .present: break
            }
        }
        if gone.count == meta.ownerReferences.count {
            context.logger.info("deleting an object whose owners are gone", metadata: ["object": "\(kind.key(meta))"])
            try await kind.delete(meta, propagation: nil)
        } else if foregroundOwner, !meta.hasDeletionTimestamp {
            try await kind.delete(meta, propagation: "Foreground")
        } else if !gone.isEmpty {
            let goneOwners = gone
            try await kind.updateMetadata(meta) { $0.ownerReferences.removeAll { goneOwners.contains($0.uid) } }
        }
        return .done
    }

    enum OwnerState { case present, deletingInForeground, gone }

    func ownerState(_ reference: OwnerReference, namespace: String) async throws -> OwnerState {
        guard let owner = kind(apiVersion: reference.apiVersion, kind: reference.kind) else {
            return try await unfollowedOwnerState(reference, namespace: namespace)
        }
        let ownerNamespace = owner.info.namespaced ? namespace : ""
        func state(_ meta: ObjectMeta) -> OwnerState {
            meta.hasDeletionTimestamp && meta.finalizers.contains(Self.foregroundFinalizer) ? .deletingInForeground : .present
        }
        if let meta = owner.meta(namespace: ownerNamespace, name: reference.name), meta.uid == reference.uid { return state(meta) }
        // Not in the cache (or another incarnation): the cache may lag, so ask the server.
        do {
            let meta = try await owner.liveMeta(namespace: ownerNamespace, name: reference.name)
            return meta.uid == reference.uid ? state(meta) : .gone
        } catch let error as ClientError where error.code == 404 {
            return .gone
        }
    }

    /// An owner of a kind not followed, read live: its resource from the server's discovery of
    /// its group/version, then the object. A kind the server does not serve (no such
    /// group/version, or no such kind in it) is never collected on account of: it is taken as
    /// present.
    func unfollowedOwnerState(_ reference: OwnerReference, namespace: String) async throws -> OwnerState {
        let base = reference.apiVersion.contains("/") ? "/apis/\(reference.apiVersion)" : "/api/\(reference.apiVersion)"
        let resources: JSONValue
        do {
            resources = try JSONParser.parse(try await context.client.getText(base))
        } catch let error as ClientError where error.code == 404 {
            return .present
        }
        guard case .array(let entries)? = resources["resources"],
              let entry = entries.first(where: { $0["kind"] == .string(reference.kind) && ($0["name"].map { if case .string(let n) = $0 { !n.contains("/") } else { false } } ?? false) }),
              case .string(let plural)? = entry["name"] else { return .present }
        let namespaced = entry["namespaced"] == .bool(true)
        let path = base + "/" + (namespaced ? "namespaces/\(namespace)/" : "") + "\(plural)/\(reference.name)"
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

    /// Foreground: delete every dependent (in the foreground too); once none is left, let the owner go.
    func deleteDependents(of owner: ObjectMeta, _ ownerKind: any FollowedKind) async throws -> ReconcileResult {
        let dependents = dependents(of: owner.uid)
        for dependent in dependents where !dependent.meta.hasDeletionTimestamp {
            try await dependent.kind.delete(dependent.meta, propagation: "Foreground")
        }
        if !dependents.isEmpty { return .done }  // their deletions bring this owner back
        try await ownerKind.updateMetadata(owner) { $0.finalizers.removeAll { $0 == Self.foregroundFinalizer } }
        return .done
    }

    /// Orphan: remove the owner from every dependent's references, then let the owner go.
    func orphanDependents(of owner: ObjectMeta, _ ownerKind: any FollowedKind) async throws -> ReconcileResult {
        let uid = owner.uid
        for dependent in dependents(of: uid) {
            try await dependent.kind.updateMetadata(dependent.meta) { $0.ownerReferences.removeAll { $0.uid == uid } }
        }
        try await ownerKind.updateMetadata(owner) { $0.finalizers.removeAll { $0 == Self.orphanFinalizer } }
        return .done
    }
}

/// A kind the garbage collector follows: its cache and the calls it makes on its objects.
protocol FollowedKind: Sendable {
    var info: KindInfo { get }
    var groupResource: String { get }
    func meta(namespace: String, name: String) -> ObjectMeta?
    /// Cached objects naming `uid` as an owner.
    func dependents(of uid: String) -> [ObjectMeta]
    /// Cached objects with at least one owner.
    func owned() -> [ObjectMeta]
    func liveMeta(namespace: String, name: String) async throws -> ObjectMeta
    /// Deletes the object (this incarnation: a precondition on its uid); gone already is fine.
    func delete(_ meta: ObjectMeta, propagation: String?) async throws
    /// Changes the cached object's metadata and writes it (at its resource version); gone is fine.
    func updateMetadata(_ meta: ObjectMeta, _ change: @Sendable (inout ObjectMeta) -> Void) async throws
}

extension FollowedKind {
    func key(_ meta: ObjectMeta) -> ObjectKey { ObjectKey(kind: groupResource, namespace: meta.namespace, name: meta.name) }
}

/// A followed kind over an informer: a built-in kind's typed objects, or a custom resource's
/// `CustomObject`s (every call then runs with the resource as `CustomResources.current`).
final class Followed<T: APIObject>: FollowedKind {
    let informer: Informer<T>
    let client: APIClient
    let info: KindInfo
    let scope: CustomResource?

    init(informer: Informer<T>, client: APIClient, info: KindInfo, scope: CustomResource?) {
        self.informer = informer
        self.client = client
        self.info = info
        self.scope = scope
    }

    var groupResource: String { info.groupResource }

    func scoped<R: Sendable>(_ body: () async throws -> R) async throws -> R {
        guard let scope else { return try await body() }
        return try await CustomResources.$current.withValue(scope) { try await body() }
    }

    func meta(namespace: String, name: String) -> ObjectMeta? {
        informer.get(namespace: info.namespaced ? namespace : "", name: name)?.metadata
    }

    func dependents(of uid: String) -> [ObjectMeta] { informer.byIndex(Informer<T>.ownerIndex, uid).map(\.metadata) }

    func owned() -> [ObjectMeta] { informer.list().lazy.map(\.metadata).filter { !$0.ownerReferences.isEmpty } }

    func liveMeta(namespace: String, name: String) async throws -> ObjectMeta {
        try await scoped { try await client.get(T.self, namespace: namespace, name: name).metadata }
    }

    func delete(_ meta: ObjectMeta, propagation: String?) async throws {
        do {
            _ = try await scoped {
                try await client.delete(T.self, namespace: meta.namespace, name: meta.name, propagationPolicy: propagation, preconditionUID: meta.uid)
            }
        } catch let error as ClientError where error.code == 404 || error.code == 409 {}
    }

    func updateMetadata(_ meta: ObjectMeta, _ change: @Sendable (inout ObjectMeta) -> Void) async throws {
        guard var object = informer.get(namespace: meta.namespace, name: meta.name), object.metadata.uid == meta.uid else { return }
        change(&object.metadata)
        let updated = object
        do {
            _ = try await scoped { try await client.update(updated) }
        } catch let error as ClientError where error.code == 404 {}
    }
}
