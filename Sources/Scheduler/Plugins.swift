import API
import Foundation

/// A node as the scheduler sees it: the Node, and what is already placed on it (the pods the
/// cache knows of plus the scheduler's own assumptions).
public struct NodeInfo: Sendable {
    public var node: Node
    public var pods: [Pod]

    public init(node: Node, pods: [Pod] = []) {
        self.node = node
        self.pods = pods
    }

    public var name: String { node.metadata.name }

    /// Requested milli-CPU, memory bytes and pod count of what is placed here.
    public var requested: Resources { pods.reduce(Resources()) { $0 + Resources.requests(of: $1) } }

    /// What the node offers: allocatable, or capacity when allocatable is not reported.
    public var allocatable: Resources {
        let source = node.status.allocatable.isEmpty ? node.status.capacity : node.status.allocatable
        return Resources(milliCPU: Resources.quantity(source["cpu"], milli: true),
                         memory: Resources.quantity(source["memory"], milli: false),
                         pods: Resources.quantity(source["pods"], milli: false))
    }
}

/// CPU (milli-cores), memory (bytes) and a pod count.
public struct Resources: Sendable, Equatable {
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

    /// A pod's requests: the sum over its containers (one pod slot).
    public static func requests(of pod: Pod) -> Resources {
        var total = Resources(pods: 1)
        for container in pod.spec.containers {
            total.milliCPU += quantity(container.resources.requests["cpu"], milli: true)
            total.memory += quantity(container.resources.requests["memory"], milli: false)
        }
        return total
    }

    static func quantity(_ text: String?, milli: Bool) -> Int64 {
        guard let text, let value = try? Quantity(parsing: text) else { return 0 }
        return milli ? value.milliValue : value.integerValue
    }
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
    /// nil when the node can take the pod, else why not.
    func filter(_ pod: Pod, _ node: NodeInfo) -> Unfit?
}

/// A preference among the nodes that passed every filter: 0 (worst) to 100 (best), weighted.
public protocol ScorePlugin: Sendable {
    var name: String { get }
    var weight: Int { get }
    func score(_ pod: Pod, _ node: NodeInfo, among nodes: [NodeInfo]) -> Int
}
