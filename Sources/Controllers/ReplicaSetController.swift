import API
import Client
import ControllerRuntime
import Foundation
import Logging
import SwiftProtobuf

/// Keeps `spec.replicas` active pods matching each ReplicaSet's selector: creates from the
/// template, deletes the surplus (unbound, pending and unready pods first), adopts matching
/// orphans, releases owned pods whose labels stopped matching, and reports status.
public final class ReplicaSetController: Reconciler {
    let context: ControllerContext
    let replicaSets: Informer<ReplicaSet>
    let pods: Informer<Pod>
    public let expectations: Expectations
    /// Pods created (or deleted) at most this many at a time per ReplicaSet.
    static let burst = 100

    public init(context: ControllerContext) {
        self.context = context
        self.replicaSets = context.informers.informer(ReplicaSet.self)
        self.pods = context.informers.informer(Pod.self)
        self.expectations = Expectations(clock: context.clock)
    }

    /// The controller: its queue fed by ReplicaSet and Pod changes.
    public func controller(workers: Int = 2) -> Controller {
        let queue = context.queue()
        replicaSets.addHandler { event in
            Task { await queue.add(ObjectKey(event.object)) }
        }
        pods.addHandler { [expectations, replicaSets] event in
            func matching(_ pod: Pod) -> [ObjectKey] {
                replicaSets.list(namespace: pod.metadata.namespace).filter { set in
                    (try? Selector(set.spec.selector))?.matches(pod.metadata.labels) == true
                }.map { ObjectKey($0) }
            }
            var keys = expectations.observe(event, ownerKind: "ReplicaSet")
            // An orphan (or a pod whose labels changed) may concern any ReplicaSet that selects it.
            switch event {
            case .added(let pod) where keys.isEmpty:
                keys = matching(pod)
            case .updated(let old, let new) where new.metadata.controllerReference?.kind != "ReplicaSet" || old.metadata.labels != new.metadata.labels:
                keys += matching(new)
            default:
                break
            }
            if keys.isEmpty { return }
            Task { for key in Set(keys) { await queue.add(key) } }
        }
        let informers = context.informers
        return Controller(name: "replicaset", queue: queue, reconciler: self, workers: workers, logger: context.logger) {
            await informers.waitForSync()
        }
    }

    public func reconcile(_ key: ObjectKey) async throws -> ReconcileResult {
        guard let set = replicaSets.get(namespace: key.namespace, name: key.name) else {
            expectations.forget(key)
            return .done
        }
        let selector: Selector
        do { selector = try Selector(set.spec.selector) } catch {
            throw TerminalError("replicaset \(key): invalid selector: \(error)")
        }
        // Ownership first: adopt orphans that match, release owned pods that no longer do.
        var owned: [Pod] = []
        // Only the pods it owns and the orphans can concern it (indexed: a namespace with
        // thousands of other pods costs nothing here).
        let candidates = pods.byIndex(Informer<Pod>.ownerIndex, set.metadata.uid) + pods.byIndex(Informer<Pod>.orphanIndex, key.namespace)
        for pod in candidates where pod.metadata.namespace == key.namespace {
            let reference = pod.metadata.controllerReference
            let matches = !selector.isEverything && selector.matches(pod.metadata.labels)
            if reference?.uid == set.metadata.uid {
                if matches { owned.append(pod) } else { try await release(pod, from: set) }
            } else if reference == nil, matches, pod.isActive, !set.metadata.hasDeletionTimestamp {
                if let adopted = try await adopt(pod, by: set) { owned.append(adopted) }
            }
        }
        let active = owned.filter(\.isActive)
        if !set.metadata.hasDeletionTimestamp && expectations.satisfied(key) {
            try await scale(set, key: key, active: active)
        }
        return try await updateStatus(set, active: active)
    }

    /// Takes an orphan. A conflict (our cache is behind) fails the reconcile, to be retried on
    /// fresher state: counting without the pod could create one too many.
    func adopt(_ pod: Pod, by set: ReplicaSet) async throws -> Pod? {
        var pod = pod
        pod.metadata.ownerReferences.append(set.controllerReference())
        do {
            return try await context.client.update(pod)
        } catch let error as ClientError where error.code == 404 {
            return nil  // gone
        }
    }

    func release(_ pod: Pod, from set: ReplicaSet) async throws {
        var pod = pod
        pod.metadata.ownerReferences.removeAll { $0.uid == set.metadata.uid }
        do { _ = try await context.client.update(pod) } catch let error as ClientError where error.code == 404 {}
    }

    func scale(_ set: ReplicaSet, key: ObjectKey, active: [Pod]) async throws {
        let want = Int(set.spec.hasReplicas ? set.spec.replicas : 1)
        let diff = active.count - want
        if diff < 0 {
            let count = min(-diff, Self.burst)
            expectations.expect(key, adds: count)
            context.logger.debug("creating pods", metadata: ["replicaset": "\(key)", "count": "\(count)", "want": "\(want)"])
            var failures: [any Error] = []
            await withTaskGroup(of: (any Error)?.self) { group in
                for _ in 0..<count {
                    group.addTask {
                        do { _ = try await self.context.client.create(Self.pod(for: set)); return nil } catch { return error }
                    }
                }
                for await failure in group {
                    guard let failure else { continue }
                    expectations.creationObserved(key)  // it will never be seen
                    failures.append(failure)
                }
            }
            if let first = failures.first {
                context.recorder.record(set, .warning, reason: "FailedCreate", message: "Error creating: \(first)")
                throw first
            }
            context.recorder.record(set, .normal, reason: "SuccessfulCreate", message: "Created \(count) pod\(count == 1 ? "" : "s")")
        } else if diff > 0 {
            let victims = Array(Self.deletionOrder(active).prefix(min(diff, Self.burst)))
            let keys = Set(victims.map { "\($0.metadata.namespace)/\($0.metadata.name)" })
            expectations.expect(key, deletes: keys)
            var failures: [any Error] = []
            for pod in victims {
                do {
                    _ = try await context.client.delete(Pod.self, namespace: pod.metadata.namespace, name: pod.metadata.name)
                } catch let error as ClientError where error.code == 404 {
                    expectations.deletionObserved(key, pod: "\(pod.metadata.namespace)/\(pod.metadata.name)")
                } catch {
                    expectations.deletionObserved(key, pod: "\(pod.metadata.namespace)/\(pod.metadata.name)")
                    failures.append(error)
                }
            }
            if let first = failures.first { throw first }
            let names = victims.map(\.metadata.name).joined(separator: ", ")
            context.recorder.record(set, .normal, reason: "SuccessfulDelete", message: "Deleted pod\(victims.count == 1 ? "" : "s"): \(names)")
        }
    }

    /// Which pods go first when scaling down: unbound before bound, pending before running,
    /// unready before ready, then the most restarted, then the newest.
    public static func deletionOrder(_ pods: [Pod]) -> [Pod] {
        func rank(_ pod: Pod) -> (Int, Int, Int, Int, Int64) {
            let restarts = pod.status.containerStatuses.reduce(0) { $0 + Int($1.restartCount) }
            return (pod.spec.nodeName.isEmpty ? 0 : 1, pod.status.phase == "Running" ? 1 : 0, pod.isReady ? 1 : 0,
                    -restarts, -pod.metadata.creationTimestamp.seconds)
        }
        return pods.sorted { rank($0) < rank($1) }
    }

    static func pod(for set: ReplicaSet) -> Pod {
        var pod = Pod()
        pod.setTypeMeta()
        pod.metadata.namespace = set.metadata.namespace
        pod.metadata.generateName = set.metadata.name + "-"
        pod.metadata.labels = set.spec.template.metadata.labels
        pod.metadata.annotations = set.spec.template.metadata.annotations
        pod.metadata.ownerReferences = [set.controllerReference()]
        pod.spec = set.spec.template.spec
        return pod
    }

    func updateStatus(_ set: ReplicaSet, active: [Pod]) async throws -> ReconcileResult {
        let now = context.clock.now
        let templateLabels = set.spec.template.metadata.labels
        var status = set.status
        status.replicas = Int32(active.count)
        status.fullyLabeledReplicas = Int32(active.filter { pod in templateLabels.allSatisfy { pod.metadata.labels[$0.key] == $0.value } }.count)
        status.readyReplicas = Int32(active.filter(\.isReady).count)
        status.availableReplicas = Int32(active.filter { $0.isAvailable(minReadySeconds: set.spec.minReadySeconds, now: now) }.count)
        status.observedGeneration = set.metadata.generation
        if status != set.status {
            var updated = set
            updated.status = status
            do { _ = try await context.client.updateStatus(updated) } catch let error as ClientError where error.code == 404 {}
        }
        // Ready but not yet available: look again when the first of them becomes available.
        if status.readyReplicas > status.availableReplicas {
            return .requeue(after: .seconds(Int(set.spec.minReadySeconds)))
        }
        return .done
    }
}
