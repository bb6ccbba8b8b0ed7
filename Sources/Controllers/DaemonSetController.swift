import API
import Client
import ControllerRuntime
import Foundation
import Logging
import SwiftProtobuf

/// Keeps one pod of each DaemonSet on every eligible node, as Kubernetes' daemon set controller
/// does: a node is eligible when the template's nodeSelector and required node affinity match it
/// and its NoSchedule and NoExecute taints are tolerated (with the tolerations every daemon pod
/// gets: not-ready, unreachable, pressure, unschedulable). Pods are pinned to their node by a
/// required node affinity on its name, and placed by the scheduler. A changed template is rolled
/// out node by node within `maxUnavailable` (RollingUpdate) or when pods are deleted (OnDelete).
public final class DaemonSetController: Reconciler {
    let context: ControllerContext
    let sets: Informer<DaemonSet>
    let pods: Informer<Pod>
    let nodes: Informer<Node>
    public let expectations: Expectations
    var podControl: PodControl { PodControl(context: context, expectations: expectations) }
    /// Pods created or deleted at most this many at a time per DaemonSet.
    static let burst = 100

    public init(context: ControllerContext) {
        self.context = context
        self.sets = context.informers.informer(DaemonSet.self)
        self.pods = context.informers.informer(Pod.self)
        self.nodes = context.informers.informer(Node.self)
        self.expectations = Expectations(clock: context.clock)
    }

    public func controller(workers: Int = 2) -> Controller {
        let queue = context.queue()
        sets.addHandler { event in
            Task { await queue.add(ObjectKey(event.object)) }
        }
        pods.addHandler { [expectations] event in
            let keys = expectations.observe(event, ownerKind: "DaemonSet")
            if keys.isEmpty { return }
            Task { for key in Set(keys) { await queue.add(key) } }
        }
        // A node that comes, goes or changes (labels, taints, cordon) may change where every
        // DaemonSet runs.
        nodes.addHandler { [sets] event in
            if case .updated(let old, let new) = event, old.metadata.labels == new.metadata.labels, old.spec == new.spec { return }
            let keys = sets.list().map { ObjectKey($0) }
            Task { for key in keys { await queue.add(key) } }
        }
        let informers = context.informers
        return Controller(name: "daemonset", queue: queue, reconciler: self, workers: workers, logger: context.logger) {
            await informers.waitForSync()
        }
    }

    /// The tolerations every daemon pod gets, so it runs (or stays) where other pods may not.
    public static let automaticTolerations: [Toleration] = {
        func toleration(_ key: String, _ effect: String) -> Toleration {
            var toleration = Toleration()
            toleration.key = "node.kubernetes.io/\(key)"
            toleration.operator = "Exists"
            toleration.effect = effect
            return toleration
        }
        return [toleration("not-ready", "NoExecute"), toleration("unreachable", "NoExecute"), toleration("disk-pressure", "NoSchedule"),
                toleration("memory-pressure", "NoSchedule"), toleration("pid-pressure", "NoSchedule"), toleration("unschedulable", "NoSchedule")]
    }()

    static func tolerations(of set: DaemonSet) -> [Toleration] {
        var tolerations = set.spec.template.spec.tolerations
        var automatic = automaticTolerations
        if set.spec.template.spec.hostNetwork {
            var network = Toleration()
            network.key = "node.kubernetes.io/network-unavailable"
            network.operator = "Exists"
            network.effect = "NoSchedule"
            automatic.append(network)
        }
        for toleration in automatic where !tolerations.contains(where: { $0.key == toleration.key && $0.effect == toleration.effect }) {
            tolerations.append(toleration)
        }
        return tolerations
    }

    /// Whether a daemon pod should run on the node, and whether one there may stay (a NoSchedule
    /// taint it does not tolerate keeps new pods off, not running ones).
    static func eligibility(_ set: DaemonSet, on node: Node, tolerations: [Toleration]) -> (shouldRun: Bool, mayStay: Bool) {
        let spec = set.spec.template.spec
        if !spec.nodeName.isEmpty && spec.nodeName != node.metadata.name { return (false, false) }
        for (key, value) in spec.nodeSelector where node.metadata.labels[key] != value { return (false, false) }
        if spec.hasAffinity && spec.affinity.hasNodeAffinity && spec.affinity.nodeAffinity.hasRequiredDuringSchedulingIgnoredDuringExecution {
            let terms = spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms
            if !terms.contains(where: { $0.matches(labels: node.metadata.labels, nodeName: node.metadata.name) }) { return (false, false) }
        }
        var shouldRun = true, mayStay = true
        for taint in node.spec.taints where taint.effect == "NoSchedule" || taint.effect == "NoExecute" {
            if !tolerations.contains(where: { $0.tolerates(taint) }) {
                shouldRun = false
                if taint.effect == "NoExecute" { mayStay = false }
            }
        }
        return (shouldRun, mayStay)
    }

    /// The node a daemon pod is for: its binding, or the node its affinity pins it to.
    static func node(of pod: Pod) -> String? {
        if !pod.spec.nodeName.isEmpty { return pod.spec.nodeName }
        let terms = pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms
        return terms.lazy.flatMap(\.matchFields).first { $0.key == DaemonSetDefaults.nodeNameField && $0.operator == "In" }?.values.first
    }

    public func reconcile(_ key: ObjectKey) async throws -> ReconcileResult {
        guard let set = sets.get(namespace: key.namespace, name: key.name) else {
            expectations.forget(key)
            return .done
        }
        if set.metadata.hasDeletionTimestamp { return .done }
        let now = context.clock.now
        let hash = try DeploymentController.templateHash(set.spec.template)
        let tolerations = Self.tolerations(of: set)
        let owned = pods.byIndex(Informer<Pod>.ownerIndex, set.metadata.uid).filter { $0.metadata.namespace == key.namespace && !$0.metadata.hasDeletionTimestamp }
        var byNode: [String: [Pod]] = [:]
        for pod in owned { if let node = Self.node(of: pod) { byNode[node, default: []].append(pod) } }

        var create: [String] = []
        var delete: [Pod] = []
        var eligible: [(node: String, pod: Pod?)] = []
        var misscheduled = 0
        for node in nodes.list().sorted(by: { $0.metadata.name < $1.metadata.name }) {
            let name = node.metadata.name
            let (shouldRun, mayStay) = Self.eligibility(set, on: node, tolerations: tolerations)
            let here = (byNode.removeValue(forKey: name) ?? []).sorted { $0.metadata.creationTimestamp.seconds < $1.metadata.creationTimestamp.seconds }
            // A failed daemon pod is replaced.
            let failed = here.filter { $0.status.phase == "Failed" }
            let running = here.filter { $0.status.phase != "Failed" }
            delete += failed
            if shouldRun {
                eligible.append((name, running.first))
                if running.isEmpty { create.append(name) }
                delete += running.dropFirst()  // one per node: the oldest stays
            } else if !running.isEmpty {
                misscheduled += 1
                if !mayStay { delete += running }
            }
        }
        // Pods for nodes that are gone.
        delete += byNode.values.flatMap { $0 }

        let minReady = set.spec.minReadySeconds
        func available(_ pod: Pod?) -> Bool { pod.map { $0.status.phase == "Running" && $0.isAvailable(minReadySeconds: minReady, now: now) } ?? false }
        if set.spec.updateStrategy.type == "RollingUpdate" {
            let maxUnavailable = max(1, set.spec.updateStrategy.rollingUpdate.maxUnavailable.scaled(of: eligible.count, roundUp: true) ?? 1)
            var unavailable = eligible.filter { !available($0.pod) }.count
            for (_, pod) in eligible {
                guard let pod, pod.metadata.labels[DaemonSetDefaults.revisionLabel] != hash, !delete.contains(where: { $0.metadata.uid == pod.metadata.uid }) else { continue }
                if !available(pod) {
                    delete.append(pod)  // not serving anyway: replaced at once
                } else if unavailable < maxUnavailable {
                    delete.append(pod)
                    unavailable += 1
                }
            }
        }

        if expectations.satisfied(key) {
            try await podControl.create(create.prefix(Self.burst).map { Self.pod(for: set, node: $0, hash: hash) }, for: set, key: key)
            try await podControl.delete(Array(delete.prefix(Self.burst)), of: set, key: key)
        }

        var status = set.status
        status.desiredNumberScheduled = Int32(eligible.count)
        status.currentNumberScheduled = Int32(eligible.filter { $0.pod != nil }.count)
        status.numberMisscheduled = Int32(misscheduled)
        status.numberReady = Int32(eligible.filter { $0.pod?.isReady == true }.count)
        status.updatedNumberScheduled = Int32(eligible.filter { $0.pod?.metadata.labels[DaemonSetDefaults.revisionLabel] == hash }.count)
        status.numberAvailable = Int32(eligible.filter { available($0.pod) }.count)
        status.numberUnavailable = status.desiredNumberScheduled - status.numberAvailable
        status.observedGeneration = set.metadata.generation
        if status != set.status {
            var updated = set
            updated.status = status
            do { _ = try await context.client.updateStatus(updated) } catch let error as ClientError where error.code == 404 {}
        }
        // Ready but not yet available: look again when they become available.
        if minReady > 0 && status.numberReady > status.numberAvailable { return .requeue(after: .seconds(Int64(minReady))) }
        return .done
    }

    /// A daemon pod for `node`: the template with the revision labels, the automatic
    /// tolerations, and a required node affinity on the node's name in place of the template's
    /// (the controller has matched the node already).
    static func pod(for set: DaemonSet, node: String, hash: String) -> Pod {
        var pod = Pod()
        pod.setTypeMeta()
        pod.metadata.namespace = set.metadata.namespace
        pod.metadata.generateName = set.metadata.name + "-"
        pod.metadata.labels = set.spec.template.metadata.labels
        pod.metadata.labels[DaemonSetDefaults.revisionLabel] = hash
        pod.metadata.labels["pod-template-generation"] = String(set.metadata.generation)
        pod.metadata.annotations = set.spec.template.metadata.annotations
        pod.metadata.ownerReferences = [set.controllerReference()]
        pod.spec = set.spec.template.spec
        pod.spec.tolerations = tolerations(of: set)
        var requirement = NodeSelectorRequirement()
        requirement.key = DaemonSetDefaults.nodeNameField
        requirement.operator = "In"
        requirement.values = [node]
        var term = NodeSelectorTerm()
        term.matchFields = [requirement]
        pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms = [term]
        return pod
    }
}
