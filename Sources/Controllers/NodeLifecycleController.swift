import API
import Client
import ControllerRuntime
import Foundation
import Logging
import SwiftProtobuf

/// Watches node heartbeats (their Leases in `kube-node-lease`). A node whose lease has not been
/// renewed within `gracePeriod` — timed on this controller's own clock from when it last saw the
/// lease change, so clock skew between hosts does not matter — becomes Ready=Unknown and gets the
/// `node.kubernetes.io/unreachable` taints (NoSchedule, NoExecute). Its pods are evicted once the
/// NoExecute taint is older than their toleration (`tolerationSeconds` of a matching toleration,
/// else `evictionTimeout`), so their owners replace them on healthy nodes. A node whose lease is
/// renewed again loses the taints (its agent reports Ready itself).
public final class NodeLifecycleController: Reconciler {
    public static let unreachableTaint = "node.kubernetes.io/unreachable"
    public static let leaseNamespace = "kube-node-lease"

    public struct Options: Sendable {
        public var gracePeriod: Duration = .seconds(40)
        public var evictionTimeout: Duration = .seconds(300)
        public init() {}
    }

    let context: ControllerContext
    let options: Options
    let nodes: Informer<Node>
    let leases: Informer<Lease>
    let pods: Informer<Pod>
    /// Node name → (lease resourceVersion, when this controller saw it change).
    let heartbeats = MutexBox<[String: (version: String, seen: Date)]>([:])

    public init(context: ControllerContext, options: Options = Options()) {
        self.context = context
        self.options = options
        nodes = context.informers.informer(Node.self)
        leases = context.informers.informer(Lease.self)
        pods = context.informers.informer(Pod.self)
    }

    public func controller(workers: Int = 1) -> Controller {
        let queue = context.queue()
        nodes.addHandler { event in
            guard case .deleted = event else { Task { await queue.add(ObjectKey(event.object)) }; return }
        }
        leases.addHandler { [heartbeats, clock = context.clock] event in
            let lease = event.object
            guard lease.metadata.namespace == Self.leaseNamespace else { return }
            if case .deleted = event { return }
            heartbeats.withLock { beats in
                if beats[lease.metadata.name]?.version != lease.metadata.resourceVersion {
                    beats[lease.metadata.name] = (lease.metadata.resourceVersion, clock.now)
                }
            }
            Task { await queue.add(ObjectKey(name: lease.metadata.name)) }
        }
        let informers = context.informers
        return Controller(name: "node-lifecycle", queue: queue, reconciler: self, workers: workers, logger: context.logger) {
            await informers.waitForSync()
        }
    }

    /// When this controller last saw the node's heartbeat; a node never seen beating counts from
    /// the first look (a restarted controller gives every node a full grace period).
    func lastHeartbeat(_ node: String) -> Date {
        let now = context.clock.now
        return heartbeats.withLock { beats in
            if let beat = beats[node] { return beat.seen }
            beats[node] = ("", now)
            return now
        }
    }

    /// When this controller saw the node's lease last change (nil before it saw the lease).
    public func heartbeatSeen(_ node: String) -> Date? {
        heartbeats.withLock { beats in beats[node].flatMap { $0.version.isEmpty ? nil : $0.seen } }
    }

    public func reconcile(_ key: ObjectKey) async throws -> ReconcileResult {
        guard var node = nodes.get(name: key.name) else { return .done }
        let now = context.clock.now
        let expires = lastHeartbeat(node.metadata.name).adding(options.gracePeriod)
        if now < expires {
            if node.spec.taints.contains(where: { $0.key == Self.unreachableTaint }) {
                node.spec.taints.removeAll { $0.key == Self.unreachableTaint }
                _ = try await context.client.update(node)
                context.logger.info("node is reachable again; taints removed", metadata: ["node": "\(node.metadata.name)"])
                context.recorder.record(node, .normal, reason: "NodeReady", message: "Node \(node.metadata.name) status is now: NodeReady")
            }
            return .requeue(after: .seconds(double: expires.timeIntervalSince(now)) + .milliseconds(100))
        }
        node = try await markUnreachable(node, now: now)
        return try await evictPods(from: node, now: now)
    }

    func markUnreachable(_ node: Node, now: Date) async throws -> Node {
        var node = node
        let stamp = Google_Protobuf_Timestamp(date: now)
        if let index = node.status.conditions.firstIndex(where: { $0.type == "Ready" }), node.status.conditions[index].status != "Unknown" {
            node.status.conditions[index].status = "Unknown"
            node.status.conditions[index].reason = "NodeStatusUnknown"
            node.status.conditions[index].message = "The node agent stopped posting node status (no lease renewal for \(Int(options.gracePeriod.seconds)) s)."
            node.status.conditions[index].lastTransitionTime = stamp
            node = try await context.client.updateStatus(node)
            context.logger.warning("node stopped renewing its lease; marked NotReady", metadata: ["node": "\(node.metadata.name)"])
            context.recorder.record(node, .normal, reason: "NodeNotReady", message: "Node \(node.metadata.name) status is now: NodeNotReady")
        }
        var taints = node.spec.taints
        for effect in ["NoSchedule", "NoExecute"] where !taints.contains(where: { $0.key == Self.unreachableTaint && $0.effect == effect }) {
            var taint = Taint()
            taint.key = Self.unreachableTaint
            taint.effect = effect
            taint.timeAdded = stamp
            taints.append(taint)
        }
        if taints != node.spec.taints {
            node.spec.taints = taints
            node = try await context.client.update(node)
        }
        return node
    }

    /// Deletes (gracefully) every pod on the node whose toleration of the unreachable NoExecute
    /// taint has run out; comes back when the next one's will.
    func evictPods(from node: Node, now: Date) async throws -> ReconcileResult {
        guard let taint = node.spec.taints.first(where: { $0.key == Self.unreachableTaint && $0.effect == "NoExecute" }) else { return .done }
        let tainted = taint.hasTimeAdded ? taint.timeAdded.date : now
        var next: Date?
        for pod in pods.byIndex(Informer<Pod>.nodeIndex, node.metadata.name) where pod.isActive {
            guard let tolerated = toleration(of: pod) else { continue }  // tolerates it forever
            let deadline = tainted.adding(tolerated)
            if deadline > now {
                next = min(next ?? deadline, deadline)
                continue
            }
            do {
                _ = try await context.client.delete(Pod.self, namespace: pod.metadata.namespace, name: pod.metadata.name)
                context.logger.info("evicted a pod from an unreachable node", metadata: ["pod": "\(pod.metadata.namespace)/\(pod.metadata.name)", "node": "\(node.metadata.name)"])
                context.recorder.record(pod, .normal, reason: "TaintManagerEviction", message: "Marking for deletion Pod \(pod.metadata.namespace)/\(pod.metadata.name): node \(node.metadata.name) is unreachable")
            } catch let error as ClientError where error.code == 404 {}
        }
        if let next { return .requeue(after: .seconds(double: next.timeIntervalSince(now)) + .milliseconds(100)) }
        return .requeue(after: options.gracePeriod)
    }

    /// How long the pod stays on an unreachable node: its matching NoExecute toleration's
    /// seconds, nil when it tolerates the taint forever, else the controller's eviction timeout.
    func toleration(of pod: Pod) -> Duration? {
        for toleration in pod.spec.tolerations {
            let keyMatches = toleration.key == Self.unreachableTaint || (toleration.key.isEmpty && toleration.operator == "Exists")
            let effectMatches = toleration.effect.isEmpty || toleration.effect == "NoExecute"
            guard keyMatches, effectMatches else { continue }
            return toleration.hasTolerationSeconds ? .seconds(Int(max(0, toleration.tolerationSeconds))) : nil
        }
        return options.evictionTimeout
    }
}
