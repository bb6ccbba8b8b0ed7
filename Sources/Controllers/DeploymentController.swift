import API
import Client
import ControllerRuntime
import Foundation
import Logging
import SwiftProtobuf

/// Rolls Deployments out through ReplicaSets: one ReplicaSet per pod template (named by the
/// template's hash), scaled up and down by the strategy — `RollingUpdate` within maxSurge and
/// maxUnavailable, or `Recreate` (old pods gone before new ones start). Keeps revision numbers in
/// the `deployment.kubernetes.io/revision` annotation, prunes old ReplicaSets beyond
/// `revisionHistoryLimit`, and reports status and the Available and Progressing conditions.
public final class DeploymentController: Reconciler {
    public static let revisionAnnotation = "deployment.kubernetes.io/revision"
    public static let hashLabel = "pod-template-hash"

    let context: ControllerContext
    let deployments: Informer<Deployment>
    let replicaSets: Informer<ReplicaSet>
    let pods: Informer<Pod>

    public init(context: ControllerContext) {
        self.context = context
        deployments = context.informers.informer(Deployment.self)
        replicaSets = context.informers.informer(ReplicaSet.self)
        pods = context.informers.informer(Pod.self)
    }

    public func controller(workers: Int = 2) -> Controller {
        let queue = context.queue()
        deployments.addHandler { event in Task { await queue.add(ObjectKey(event.object)) } }
        replicaSets.addHandler { event in
            guard let owner = event.object.metadata.controllerReference, owner.kind == "Deployment" else { return }
            Task { await queue.add(ObjectKey(namespace: event.object.metadata.namespace, name: owner.name)) }
        }
        let informers = context.informers
        return Controller(name: "deployment", queue: queue, reconciler: self, workers: workers, logger: context.logger) {
            await informers.waitForSync()
        }
    }

    public func reconcile(_ key: ObjectKey) async throws -> ReconcileResult {
        guard let deployment = deployments.get(namespace: key.namespace, name: key.name), !deployment.metadata.hasDeletionTimestamp else { return .done }
        let owned = replicaSets.byIndex(Informer<ReplicaSet>.ownerIndex, deployment.metadata.uid)
            .filter { $0.metadata.controllerReference?.uid == deployment.metadata.uid }
        let template = deployment.spec.template
        var newSet = owned.first { Self.sameTemplate($0.spec.template, template) }
        let oldSets = owned.filter { $0.metadata.uid != newSet?.metadata.uid }
        let maxOldRevision = oldSets.map(Self.revision).max() ?? 0
        if deployment.spec.paused {
            try await updateStatus(deployment, newSet: newSet, all: owned)
            return .done
        }
        if newSet == nil {
            newSet = try await createReplicaSet(for: deployment, revision: maxOldRevision + 1)
        } else if let set = newSet, Self.revision(set) <= maxOldRevision {
            // Rolled back to an older template: its ReplicaSet becomes the newest revision.
            var bumped = set
            for (key, value) in Self.copiedAnnotations(deployment) { bumped.metadata.annotations[key] = value }
            bumped.metadata.annotations[Self.revisionAnnotation] = String(maxOldRevision + 1)
            newSet = try await context.client.update(bumped)
        }
        guard var newSet else { return .done }
        let revision = String(Self.revision(newSet))
        if deployment.metadata.annotations[Self.revisionAnnotation] != revision {
            var annotated = deployment
            annotated.metadata.annotations[Self.revisionAnnotation] = revision
            _ = try await context.client.update(annotated)
            return .done  // the update brings this deployment back with fresh state
        }

        var result = ReconcileResult.done
        let strategy = deployment.spec.strategy.type.isEmpty ? "RollingUpdate" : deployment.spec.strategy.type
        if strategy == "Recreate" {
            result = try await recreate(deployment, newSet: &newSet, oldSets: oldSets)
        } else {
            try await rollingUpdate(deployment, newSet: &newSet, oldSets: oldSets)
        }
        try await pruneHistory(deployment, oldSets: oldSets)
        let all = [newSet] + oldSets.compactMap { old in replicaSets.get(namespace: old.metadata.namespace, name: old.metadata.name) }
        try await updateStatus(deployment, newSet: newSet, all: all)
        return result
    }

    // MARK: Strategies

    static func desired(_ deployment: Deployment) -> Int32 { deployment.spec.hasReplicas ? deployment.spec.replicas : 1 }

    /// maxSurge and maxUnavailable as pod counts (percentages of the replicas: surge rounds up,
    /// unavailable down; both zero would stall, so unavailable becomes 1).
    public static func limits(_ deployment: Deployment) -> (surge: Int32, unavailable: Int32) {
        let replicas = desired(deployment)
        let rolling = deployment.spec.strategy.rollingUpdate
        func resolve(_ value: IntOrString?, default: String, roundUp: Bool) -> Int32 {
            let given = value ?? IntOrString(string: `default`)
            if let count = given.scaled(of: Int(replicas), roundUp: roundUp) { return Int32(count) }
            if case .strVal(let text)? = given.value { return Int32(text) ?? 0 }
            return 0
        }
        let surge = resolve(deployment.spec.strategy.hasRollingUpdate && rolling.hasMaxSurge ? rolling.maxSurge : nil, default: "25%", roundUp: true)
        var unavailable = resolve(deployment.spec.strategy.hasRollingUpdate && rolling.hasMaxUnavailable ? rolling.maxUnavailable : nil, default: "25%", roundUp: false)
        if surge == 0 && unavailable == 0 { unavailable = 1 }
        return (surge, unavailable)
    }

    func rollingUpdate(_ deployment: Deployment, newSet: inout ReplicaSet, oldSets: [ReplicaSet]) async throws {
        let replicas = Self.desired(deployment)
        let (surge, maxUnavailable) = Self.limits(deployment)
        // Scale the new ReplicaSet up as far as the surge allows (or down to the replicas).
        let newReplicas = newSet.spec.replicas
        if newReplicas > replicas {
            newSet = try await scale(newSet, to: replicas, for: deployment)
        } else if newReplicas < replicas {
            let current = oldSets.reduce(newReplicas) { $0 + $1.spec.replicas }
            let room = replicas + surge - current
            if room > 0 { newSet = try await scale(newSet, to: newReplicas + min(room, replicas - newReplicas), for: deployment) }
        }
        // Scale old ReplicaSets down as far as availability allows: unhealthy pods first.
        var olds = oldSets.filter { $0.spec.replicas > 0 }.sorted { Self.revision($0) < Self.revision($1) }
        guard !olds.isEmpty else { return }
        let minAvailable = replicas - maxUnavailable
        let all = olds.reduce(newSet.spec.replicas) { $0 + $1.spec.replicas }
        let newUnavailable = max(0, newSet.spec.replicas - newSet.status.availableReplicas)
        var budget = all - minAvailable - newUnavailable
        guard budget > 0 else { return }
        for index in olds.indices where budget > 0 {
            let unhealthy = olds[index].spec.replicas - olds[index].status.availableReplicas
            guard unhealthy > 0 else { continue }
            let cut = min(unhealthy, budget)
            olds[index] = try await scale(olds[index], to: olds[index].spec.replicas - cut, for: deployment)
            budget -= cut
        }
        // Then healthy ones, keeping minAvailable available.
        let available = olds.reduce(newSet.status.availableReplicas) { $0 + min($1.status.availableReplicas, $1.spec.replicas) }
        var room = min(available - minAvailable, budget)
        for index in olds.indices where room > 0 && olds[index].spec.replicas > 0 {
            let cut = min(olds[index].spec.replicas, room)
            olds[index] = try await scale(olds[index], to: olds[index].spec.replicas - cut, for: deployment)
            room -= cut
        }
    }

    /// Old ReplicaSets to zero; once none of their pods is left, the new one to the replicas.
    func recreate(_ deployment: Deployment, newSet: inout ReplicaSet, oldSets: [ReplicaSet]) async throws -> ReconcileResult {
        var scaledDown = false
        for old in oldSets where old.spec.replicas > 0 {
            _ = try await scale(old, to: 0, for: deployment)
            scaledDown = true
        }
        if scaledDown { return .requeue(after: .seconds(1)) }
        let oldUIDs = Set(oldSets.map(\.metadata.uid))
        let remaining = oldUIDs.flatMap { pods.byIndex(Informer<Pod>.ownerIndex, $0) }.filter { pod in
            pod.metadata.controllerReference.map { oldUIDs.contains($0.uid) } == true && pod.status.phase != "Succeeded" && pod.status.phase != "Failed"
        }
        if !remaining.isEmpty { return .requeue(after: .seconds(1)) }
        let replicas = Self.desired(deployment)
        if newSet.spec.replicas != replicas { newSet = try await scale(newSet, to: replicas, for: deployment) }
        return .done
    }

    func scale(_ set: ReplicaSet, to replicas: Int32, for deployment: Deployment) async throws -> ReplicaSet {
        guard set.spec.replicas != replicas else { return set }
        var updated = set
        let from = set.spec.replicas
        updated.spec.replicas = replicas
        let written = try await context.client.update(updated)
        context.recorder.record(deployment, .normal, reason: "ScalingReplicaSet",
                                      message: "Scaled \(replicas > from ? "up" : "down") replica set \(set.metadata.name) from \(from) to \(replicas)")
        return written
    }

    // MARK: ReplicaSets

    /// The template's hash: FNV-1a over its deterministic protobuf encoding, in Kubernetes'
    /// safe alphabet (no vowels, no look-alike digits). A template that cannot be encoded throws:
    /// hashing no bytes would give every such template the same ReplicaSet.
    public static func templateHash(_ template: PodTemplateSpec) throws -> String {
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        let bytes: [UInt8] = try template.serializedBytes(options: options)
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        var text = ""
        while text.count < 10 {
            text.append(alphabet[Int(hash % UInt64(alphabet.count))])
            hash /= UInt64(alphabet.count)
        }
        return text
    }

    static func sameTemplate(_ a: PodTemplateSpec, _ b: PodTemplateSpec) -> Bool {
        var a = a, b = b
        a.metadata.labels[hashLabel] = nil
        b.metadata.labels[hashLabel] = nil
        return a == b
    }

    /// The Deployment's annotations a new revision's ReplicaSet carries, as Kubernetes copies
    /// them (`kubernetes.io/change-cause` for `rollout history` among them); not kubectl's
    /// last-applied configuration nor the controller's own bookkeeping.
    static func copiedAnnotations(_ deployment: Deployment) -> [String: String] {
        let skipped: Set<String> = ["kubectl.kubernetes.io/last-applied-configuration", revisionAnnotation,
                                    "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
                                    "deployment.kubernetes.io/max-replicas"]
        return deployment.metadata.annotations.filter { !skipped.contains($0.key) }
    }

    static func revision(_ set: ReplicaSet) -> Int { Int(set.metadata.annotations[revisionAnnotation] ?? "") ?? 0 }

    func createReplicaSet(for deployment: Deployment, revision: Int) async throws -> ReplicaSet {
        let hash = try Self.templateHash(deployment.spec.template)
        var set = ReplicaSet()
        set.setTypeMeta()
        set.metadata.namespace = deployment.metadata.namespace
        set.metadata.name = "\(deployment.metadata.name)-\(hash)"
        set.metadata.labels = deployment.spec.template.metadata.labels
        set.metadata.labels[Self.hashLabel] = hash
        set.metadata.annotations = Self.copiedAnnotations(deployment)
        set.metadata.annotations[Self.revisionAnnotation] = String(revision)
        set.metadata.ownerReferences = [deployment.controllerReference()]
        set.spec.selector = deployment.spec.selector
        set.spec.selector.matchLabels[Self.hashLabel] = hash
        set.spec.template = deployment.spec.template
        set.spec.template.metadata.labels[Self.hashLabel] = hash
        set.spec.minReadySeconds = deployment.spec.minReadySeconds
        set.spec.replicas = 0
        do {
            let created = try await context.client.create(set)
            context.recorder.record(deployment, .normal, reason: "ScalingReplicaSet", message: "Created replica set \(created.metadata.name)")
            return created
        } catch let error as ClientError where error.code == 409 {
            // Our cache was behind: use it if it is ours and the same template.
            let existing = try await context.client.get(ReplicaSet.self, namespace: set.metadata.namespace, name: set.metadata.name)
            guard existing.metadata.controllerReference?.uid == deployment.metadata.uid, Self.sameTemplate(existing.spec.template, deployment.spec.template) else {
                throw TerminalError("replica set \(set.metadata.name) exists and does not belong to deployment \(deployment.metadata.name)")
            }
            return existing
        }
    }

    /// Deletes the oldest scaled-down ReplicaSets beyond `revisionHistoryLimit` (default 10).
    func pruneHistory(_ deployment: Deployment, oldSets: [ReplicaSet]) async throws {
        let limit = Int(deployment.spec.hasRevisionHistoryLimit ? deployment.spec.revisionHistoryLimit : 10)
        let idle = oldSets.filter { $0.spec.replicas == 0 && $0.status.replicas == 0 }.sorted { Self.revision($0) < Self.revision($1) }
        guard idle.count > limit else { return }
        for set in idle.prefix(idle.count - limit) {
            do { _ = try await context.client.delete(ReplicaSet.self, namespace: set.metadata.namespace, name: set.metadata.name) }
            catch let error as ClientError where error.code == 404 {}
        }
    }

    // MARK: Status

    func updateStatus(_ deployment: Deployment, newSet: ReplicaSet?, all: [ReplicaSet]) async throws {
        let replicas = Self.desired(deployment)
        let (_, maxUnavailable) = Self.limits(deployment)
        var status = deployment.status
        status.observedGeneration = deployment.metadata.generation
        status.replicas = all.reduce(0) { $0 + $1.status.replicas }
        status.updatedReplicas = newSet?.status.replicas ?? 0
        status.readyReplicas = all.reduce(0) { $0 + $1.status.readyReplicas }
        status.availableReplicas = all.reduce(0) { $0 + $1.status.availableReplicas }
        status.unavailableReplicas = max(0, replicas - status.availableReplicas)
        let now = Google_Protobuf_Timestamp(date: context.clock.now)
        let available = status.availableReplicas >= replicas - maxUnavailable
        setCondition(&status, "Available", available, reason: available ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
                     message: available ? "Deployment has minimum availability." : "Deployment does not have minimum availability.", now: now)
        let complete = status.updatedReplicas == replicas && status.replicas == replicas && status.availableReplicas == replicas
        let name = newSet?.metadata.name ?? ""
        setCondition(&status, "Progressing", true, reason: complete ? "NewReplicaSetAvailable" : "ReplicaSetUpdated",
                     message: complete ? "ReplicaSet \"\(name)\" has successfully progressed." : "ReplicaSet \"\(name)\" is progressing.", now: now)
        guard status != deployment.status else { return }
        var updated = deployment
        updated.status = status
        do { _ = try await context.client.updateStatus(updated) } catch let error as ClientError where error.code == 404 {}
    }

    func setCondition(_ status: inout DeploymentStatus, _ type: String, _ value: Bool, reason: String, message: String, now: Google_Protobuf_Timestamp) {
        var condition = status.conditions.first { $0.type == type } ?? DeploymentCondition()
        let text = value ? "True" : "False"
        if condition.type == type && condition.status == text && condition.reason == reason && condition.message == message { return }
        if condition.status != text { condition.lastTransitionTime = now }
        condition.type = type
        condition.status = text
        condition.reason = reason
        condition.message = message
        condition.lastUpdateTime = now
        status.conditions.removeAll { $0.type == type }
        status.conditions.append(condition)
        status.conditions.sort { $0.type < $1.type }
    }
}
