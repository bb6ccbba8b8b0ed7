import API
import Foundation

/// The node is Ready and not cordoned (`spec.unschedulable`).
public struct NodeReadyFilter: FilterPlugin {
    public init() {}
    public var name: String { "NodeReady" }
    public func filter(_ pod: PodInfo, _ node: NodeInfo) -> Unfit? {
        // A cordoned node takes pods that tolerate its taint (a DaemonSet's do).
        if node.unschedulable && !TaintTolerationFilter.tolerates(pod.tolerations, Self.unschedulableTaint) { return Unfit("node(s) were unschedulable") }
        return node.ready ? nil : Unfit("node(s) were not ready")
    }

    /// The taint Kubernetes puts on a cordoned node.
    public static let unschedulableTaint: Taint = {
        var taint = Taint()
        taint.key = "node.kubernetes.io/unschedulable"
        taint.effect = "NoSchedule"
        return taint
    }()
}

/// The pod's requests fit in what the node offers minus what is already placed there.
public struct ResourcesFitFilter: FilterPlugin {
    public init() {}
    public var name: String { "NodeResourcesFit" }
    public func filter(_ pod: PodInfo, _ node: NodeInfo) -> Unfit? {
        let want = pod.requests
        let used = node.requested
        let offered = node.allocatable
        if offered.pods > 0 && used.pods + 1 > offered.pods { return Unfit("Too many pods") }
        if want.milliCPU > 0 && used.milliCPU + want.milliCPU > offered.milliCPU { return Unfit("Insufficient cpu") }
        if want.memory > 0 && used.memory + want.memory > offered.memory { return Unfit("Insufficient memory") }
        return nil
    }
}

/// Every `spec.nodeSelector` label is on the node, and the required node affinity holds (any one
/// term, all of its expressions: In, NotIn, Exists, DoesNotExist, Gt, Lt; and its fields: the
/// node's name, In or NotIn).
public struct NodeSelectorFilter: FilterPlugin {
    public init() {}
    public var name: String { "NodeAffinity" }
    public func applies(to pod: PodInfo) -> Bool { !pod.nodeSelector.isEmpty || !pod.requiredTerms.isEmpty }
    public func filter(_ pod: PodInfo, _ node: NodeInfo) -> Unfit? {
        if pod.nodeSelector.isEmpty && pod.requiredTerms.isEmpty { return nil }
        let labels = node.labels
        for (key, value) in pod.nodeSelector where labels[key] != value {
            return Unfit("node(s) didn't match Pod's node affinity/selector")
        }
        guard !pod.requiredTerms.isEmpty else { return nil }
        let fits = pod.requiredTerms.contains { $0.matches(labels: labels, nodeName: node.name) }
        return fits ? nil : Unfit("node(s) didn't match Pod's node affinity/selector")
    }
}

/// Taints with NoSchedule or NoExecute the pod does not tolerate keep it off the node.
public struct TaintTolerationFilter: FilterPlugin {
    public init() {}
    public var name: String { "TaintToleration" }
    public func filter(_ pod: PodInfo, _ node: NodeInfo) -> Unfit? {
        for taint in node.hardTaints {
            if !Self.tolerates(pod.tolerations, taint) {
                return Unfit("node(s) had untolerated taint {\(taint.key): \(taint.value)}")
            }
        }
        return nil
    }

    /// Kubernetes' matching: an empty key with Exists tolerates everything; Equal (the default)
    /// needs the value; an empty effect matches every effect.
    public static func tolerates(_ pod: Pod, _ taint: Taint) -> Bool { tolerates(pod.spec.tolerations, taint) }

    public static func tolerates(_ tolerations: [Toleration], _ taint: Taint) -> Bool {
        tolerations.contains { $0.tolerates(taint) }
    }
}
