import API
import Client
import ControllerRuntime
import Foundation
import Logging

/// Hands each node a range of pod addresses (`spec.podCIDR`, `spec.podCIDRs`) from the cluster's
/// (`--cluster-cidr`, one `--node-cidr-mask-size` range per node), as kube-controller-manager's
/// range allocator does with `--allocate-node-cidrs`. A node's agent writes its CNI network for
/// that range. Which ranges are taken is read from the nodes themselves, so a restarted controller
/// (or a new leader) hands out nothing twice; a deleted node's range is free again. A full cluster
/// range leaves the node without one and says so: a `CIDRNotAvailable` event on the node.
public final class NodeIPAMController: Reconciler {
    public struct Options: Sendable {
        public var clusterCIDR: CIDR
        public var nodeMaskSize: Int
        public init(clusterCIDR: CIDR, nodeMaskSize: Int = 24) {
            self.clusterCIDR = clusterCIDR
            self.nodeMaskSize = nodeMaskSize
        }
    }

    let context: ControllerContext
    let options: Options
    let nodes: Informer<Node>
    /// Ranges handed out whose node the informer has not shown with them yet (node → index).
    let pending = MutexBox<[String: Int]>([:])

    public init(context: ControllerContext, options: Options) {
        self.context = context
        self.options = options
        nodes = context.informers.informer(Node.self)
    }

    /// One worker: two nodes are never given the same free range at once.
    public func controller() -> Controller {
        let queue = context.queue()
        nodes.addHandler { [pending] event in
            if case .deleted = event {
                pending.withLock { _ = $0.removeValue(forKey: event.object.metadata.name) }
                return
            }
            Task { await queue.add(ObjectKey(event.object)) }
        }
        let informers = context.informers
        return Controller(name: "node-ipam", queue: queue, reconciler: self, workers: 1, logger: context.logger) {
            await informers.waitForSync()
        }
    }

    /// The index of the node's range in the cluster range (nil: none, or one from elsewhere).
    func index(of node: Node) -> Int? {
        guard let first = node.spec.podCidrs.first ?? (node.spec.podCidr.isEmpty ? nil : node.spec.podCidr), let cidr = CIDR(first) else { return nil }
        return options.clusterCIDR.index(of: cidr, prefix: options.nodeMaskSize)
    }

    public func reconcile(_ key: ObjectKey) async throws -> ReconcileResult {
        guard var node = nodes.get(name: key.name) else { return .done }
        if !node.spec.podCidr.isEmpty || !node.spec.podCidrs.isEmpty {
            pending.withLock { _ = $0.removeValue(forKey: node.metadata.name) }
            return .done
        }
        let all = nodes.list()
        let taken = pending.withLock { pending in
            Set(all.compactMap { index(of: $0) }).union(pending.filter { $0.key != node.metadata.name }.values)
        }
        let count = options.clusterCIDR.subnetCount(prefix: options.nodeMaskSize)
        let chosen = pending.withLock { $0[node.metadata.name] } ?? (0..<count).first { !taken.contains($0) }
        guard let chosen, let range = options.clusterCIDR.subnet(chosen, prefix: options.nodeMaskSize) else {
            context.logger.warning("no pod range left for a node", metadata: ["node": "\(node.metadata.name)", "clusterCIDR": "\(options.clusterCIDR)"])
            context.recorder.record(node, .normal, reason: "CIDRNotAvailable", message: "Node \(node.metadata.name) status is now: CIDRNotAvailable")
            return .requeue(after: .seconds(30))
        }
        pending.withLock { $0[node.metadata.name] = chosen }
        node.spec.podCidr = range.description
        node.spec.podCidrs = [range.description]
        _ = try await context.client.update(node)
        context.logger.info("node given a pod range", metadata: ["node": "\(node.metadata.name)", "podCIDR": "\(range)"])
        return .done
    }
}
