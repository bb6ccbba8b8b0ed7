import API
import Foundation

/// The node is Ready and not cordoned (`spec.unschedulable`).
public struct NodeReadyFilter: FilterPlugin {
    public init() {}
    public var name: String { "NodeReady" }
    public func filter(_ pod: PodInfo, _ node: NodeInfo) -> Unfit? {
        if node.unschedulable { return Unfit("node(s) were unschedulable") }
        return node.ready ? nil : Unfit("node(s) were not ready")
    }
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
/// term, all of its expressions: In, NotIn, Exists, DoesNotExist, Gt, Lt).
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
        let fits = pod.requiredTerms.contains { term in term.matchExpressions.allSatisfy { Self.matches($0, labels) } }
        return fits ? nil : Unfit("node(s) didn't match Pod's node affinity/selector")
    }

    static func matches(_ requirement: NodeSelectorRequirement, _ labels: [String: String]) -> Bool {
        let value = labels[requirement.key]
        switch requirement.operator {
        case "In": return value.map { requirement.values.contains($0) } ?? false
        case "NotIn": return value.map { !requirement.values.contains($0) } ?? true
        case "Exists": return value != nil
        case "DoesNotExist": return value == nil
        case "Gt", "Lt":
            guard let value, let number = Int64(value), let bound = requirement.values.first.flatMap({ Int64($0) }) else { return false }
            return requirement.operator == "Gt" ? number > bound : number < bound
        default: return false
        }
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
        tolerations.contains { toleration in
            let effectMatches = toleration.effect.isEmpty || toleration.effect == taint.effect
            guard effectMatches else { return false }
            if toleration.key.isEmpty { return toleration.operator == "Exists" }
            guard toleration.key == taint.key else { return false }
            return toleration.operator == "Exists" || toleration.value == taint.value
        }
    }
}
