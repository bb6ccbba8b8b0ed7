import API
import Foundation
import Synchronization

/// A pod as the scheduler sees it: what the plugins look at, taken out of the Pod once per
/// attempt rather than once per node (a protobuf accessor copies the whole sub-message).
public struct PodInfo: Sendable {
    public let pod: Pod
    /// `namespace/name`.
    public let key: String
    public let requests: Resources
    /// The uid of the managing controller (a ReplicaSet, say), for spreading.
    public let owner: String?
    public let nodeSelector: [String: String]
    /// Required node affinity terms (any one must hold); empty when there is no such affinity.
    public let requiredTerms: [NodeSelectorTerm]
    public let tolerations: [Toleration]

    public init(_ pod: Pod) {
        self.pod = pod
        let spec = pod.spec
        let metadata = pod.metadata
        key = "\(metadata.namespace)/\(metadata.name)"
        requests = Resources.requests(of: pod)
        owner = metadata.ownerReferences.first { $0.controller }?.uid
        nodeSelector = spec.nodeSelector
        requiredTerms = spec.hasAffinity ? spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms : []
        tolerations = spec.tolerations
    }
}

/// A node as the scheduler sees it: the Node, and what is placed there (the pods the cache knows
/// of plus the scheduler's own assumptions), with the sums kept as pods come and go so a filter
/// never re-adds them. A reference type: the cache mutates these only under its lock, and every
/// scheduling decision runs under that lock too. What comes from the Node is fixed (`let`, so
/// reading it costs no exclusivity check in the hot loop); a new version of the Node makes a new
/// NodeInfo that takes the pods over.
public final class NodeInfo: @unchecked Sendable {
    public let node: Node
    public let name: String
    public let labels: [String: String]
    /// Cordoned (`spec.unschedulable`).
    public let unschedulable: Bool
    /// What the node offers: allocatable, or capacity when allocatable is not reported.
    public let allocatable: Resources
    /// Ready=True in its conditions.
    public let ready: Bool
    /// NoSchedule and NoExecute taints (filtered), PreferNoSchedule taints (scored).
    public let hardTaints: [Taint]
    public let softTaints: [Taint]
    /// The sum of the requests of the pods placed here (one pod slot each). The decision loop
    /// reads these for every node and pod; the scheduler's cache is their only writer, under its
    /// lock, so the run-time exclusivity checks (3 % of the loop) are skipped for them alone.
    @exclusivity(unchecked) public private(set) var requested = Resources()
    @exclusivity(unchecked) public private(set) var pods: [String: PodInfo] = [:]
    @exclusivity(unchecked) private var owners: [String: Int] = [:]

    public convenience init(node: Node, pods: [Pod] = []) {
        self.init(node: node, placed: pods.map(PodInfo.init))
    }

    /// A new version of a node, with the pods placed on its previous version.
    public convenience init(node: Node, replacing previous: NodeInfo) {
        self.init(node: node, placed: Array(previous.pods.values))
    }

    init(node: Node, placed: [PodInfo]) {
        self.node = node
        let metadata = node.metadata
        let spec = node.spec
        let status = node.status
        name = metadata.name
        labels = metadata.labels
        unschedulable = spec.unschedulable
        let source = status.allocatable.isEmpty ? status.capacity : status.allocatable
        allocatable = Resources(milliCPU: Resources.quantity(source["cpu"], milli: true),
                                memory: Resources.quantity(source["memory"], milli: false),
                                pods: Resources.quantity(source["pods"], milli: false))
        ready = status.conditions.contains { $0.type == "Ready" && $0.status == "True" }
        hardTaints = spec.taints.filter { $0.effect == "NoSchedule" || $0.effect == "NoExecute" }
        softTaints = spec.taints.filter { $0.effect == "PreferNoSchedule" }
        for pod in placed { add(pod) }
    }

    /// Places a pod here (replacing an earlier version of it).
    public func add(_ pod: PodInfo) {
        remove(pod.key)
        pods[pod.key] = pod
        requested = requested + pod.requests
        if let owner = pod.owner { owners[owner, default: 0] += 1 }
    }

    @discardableResult
    public func remove(_ key: String) -> PodInfo? {
        guard let pod = pods.removeValue(forKey: key) else { return nil }
        requested = requested - pod.requests
        if let owner = pod.owner {
            let left = owners[owner, default: 1] - 1
            owners[owner] = left > 0 ? left : nil
        }
        return pod
    }

    /// Pods here managed by the controller with this uid.
    public func siblings(owner: String) -> Int { owners[owner, default: 0] }
}

/// CPU (milli-cores), memory (bytes) and a pod count.
public struct Resources: Sendable, Equatable, CustomStringConvertible {
    public var milliCPU: Int64 = 0
    public var memory: Int64 = 0
    public var pods: Int64 = 0

    public init(milliCPU: Int64 = 0, memory: Int64 = 0, pods: Int64 = 0) {
        self.milliCPU = milliCPU
        self.memory = memory
        self.pods = pods
    }

    public static func + (a: Resources, b: Resources) -> Resources {
        Resources(milliCPU: a.milliCPU + b.milliCPU, memory: a.memory + b.memory, pods: a.pods + b.pods)
    }

    /// The larger of each amount.
    public func max(_ other: Resources) -> Resources {
        Resources(milliCPU: Swift.max(milliCPU, other.milliCPU), memory: Swift.max(memory, other.memory), pods: Swift.max(pods, other.pods))
    }

    public static func - (a: Resources, b: Resources) -> Resources {
        Resources(milliCPU: a.milliCPU - b.milliCPU, memory: a.memory - b.memory, pods: a.pods - b.pods)
    }

    public var description: String { "cpu \(milliCPU)m, memory \(memory), pods \(pods)" }

    /// A pod's requests (one pod slot), as Kubernetes counts them: its containers' and sidecars'
    /// sum, or more when an init container asks more while it runs (beside the sidecars started
    /// before it).
    public static func requests(of pod: Pod) -> Resources {
        func own(_ container: Container) -> Resources {
            Resources(milliCPU: quantity(container.resources.requests["cpu"], milli: true),
                      memory: quantity(container.resources.requests["memory"], milli: false), pods: 0)
        }
        var total = Resources(pods: 1)
        var sidecars = Resources(pods: 0)
        var initPeak = Resources(pods: 0)
        for container in pod.spec.initContainers {
            if container.isSidecar {
                sidecars = sidecars + own(container)
                initPeak = initPeak.max(sidecars)
            } else {
                initPeak = initPeak.max(sidecars + own(container))
            }
        }
        for container in pod.spec.containers { total = total + own(container) }
        total = total + sidecars
        return total.max(initPeak + Resources(pods: 1))
    }

    static func quantity(_ text: String?, milli: Bool) -> Int64 {
        guard let text else { return 0 }
        if let known = parsed.withLock({ $0[text] }) { return milli ? known.milli : known.whole }
        guard let value = try? Quantity(parsing: text) else { return 0 }
        let entry = (milli: value.milliValue, whole: value.integerValue)
        parsed.withLock { cache in
            if cache.count >= 4096 { cache.removeAll(keepingCapacity: true) }
            cache[text] = entry
        }
        return milli ? entry.milli : entry.whole
    }

    /// Quantities already parsed: pods repeat a handful of texts (`100m`, `128Mi`), and parsing
    /// one exactly (a Decimal) costs more than the rest of a pod's filters.
    static let parsed = Mutex<[String: (milli: Int64, whole: Int64)]>([:])
}

/// Why a node cannot take a pod; equal reasons are counted together in the pod's message.
public struct Unfit: Sendable, Hashable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// A yes/no rule for one pod on one node. A new rule is a new type conforming to this.
public protocol FilterPlugin: Sendable {
    var name: String { get }
    /// Whether the rule can reject any node for this pod; false skips it for every node (as a
    /// Kubernetes PreFilter that returns Skip). A pod without a node selector, say, needs no
    /// node-affinity check on each of 500 nodes.
    func applies(to pod: PodInfo) -> Bool
    /// nil when the node can take the pod, else why not.
    func filter(_ pod: PodInfo, _ node: NodeInfo) -> Unfit?
}

extension FilterPlugin {
    public func applies(to pod: PodInfo) -> Bool { true }
}

/// A preference among the nodes that passed every filter: 0 (worst) to 100 (best) for each, weighted.
public protocol ScorePlugin: Sendable {
    var name: String { get }
    var weight: Int { get }
    /// One score per node of `nodes`, in order (all of them passed the filters).
    func score(_ pod: PodInfo, _ nodes: [NodeInfo]) -> [Int]
}

extension FilterPlugin {
    /// Convenience for tests and explanations: the verdict for a plain Pod.
    public func filter(_ pod: Pod, _ node: NodeInfo) -> Unfit? { filter(PodInfo(pod), node) }
}
