import API
import Client
import ControllerRuntime
import Foundation
import Logging

/// Empties namespaces being deleted: deletes every object in them (pods gracefully), and once
/// nothing is left removes the `kubernetes` finalizer, upon which the API server deletes the
/// namespace.
public final class NamespaceController: Reconciler {
    public static let finalizer = "kubernetes"
    let context: ControllerContext
    let namespaces: Informer<Namespace>

    public init(context: ControllerContext) {
        self.context = context
        namespaces = context.informers.informer(Namespace.self)
    }

    public func controller(workers: Int = 1) -> Controller {
        let queue = context.queue()
        namespaces.addHandler { event in
            guard event.object.metadata.hasDeletionTimestamp else { return }
            Task { await queue.add(ObjectKey(event.object)) }
        }
        let informers = context.informers
        return Controller(name: "namespace", queue: queue, reconciler: self, workers: workers, logger: context.logger) {
            await informers.waitForSync()
        }
    }

    public func reconcile(_ key: ObjectKey) async throws -> ReconcileResult {
        guard let namespace = namespaces.get(name: key.name), namespace.metadata.hasDeletionTimestamp else { return .done }
        // Owners first, so their dependents are not re-created while the namespace empties.
        var remaining = 0
        remaining += try await deleteAll(Deployment.self, in: key.name)
        remaining += try await deleteAll(ReplicaSet.self, in: key.name)
        remaining += try await deleteAll(Job.self, in: key.name)
        remaining += try await deleteAll(DaemonSet.self, in: key.name)
        remaining += try await deleteAll(Pod.self, in: key.name)
        remaining += try await deleteAll(Lease.self, in: key.name)
        remaining += try await deleteAll(Event.self, in: key.name)
        remaining += try await deleteAll(RoleBinding.self, in: key.name)
        remaining += try await deleteAll(Role.self, in: key.name)
        remaining += try await deleteAll(ConfigMap.self, in: key.name)
        remaining += try await deleteAll(Secret.self, in: key.name)
        remaining += try await deleteAll(ServiceAccount.self, in: key.name)
        if remaining > 0 { return .requeue(after: .seconds(1)) }
        guard namespace.spec.finalizers.contains(Self.finalizer) else { return .done }
        var finalized = namespace
        finalized.spec.finalizers.removeAll { $0 == Self.finalizer }
        do { _ = try await context.client.update(finalized) } catch let error as ClientError where error.code == 404 {}
        context.logger.info("namespace emptied and deleted", metadata: ["namespace": "\(key.name)"])
        return .done
    }

    /// Deletes every object of a kind in the namespace; returns how many were there.
    func deleteAll<T: APIObject>(_ type: T.Type, in namespace: String) async throws -> Int {
        let objects = try await context.client.list(T.self, namespace: namespace).items
        for object in objects where !object.metadata.hasDeletionTimestamp {
            do { _ = try await context.client.delete(T.self, namespace: namespace, name: object.metadata.name) }
            catch let error as ClientError where error.code == 404 {}
        }
        return objects.count
    }
}
