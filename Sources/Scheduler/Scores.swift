import API
import Foundation

/// Prefers emptier nodes (the mean free fraction of cpu and memory after placing the pod) that
/// stay balanced (cpu and memory used in similar proportion).
public struct LeastAllocatedScore: ScorePlugin {
    public init(weight: Int = 1) { self.weight = weight }
    public let weight: Int
    public var name: String { "NodeResourcesLeastAllocated" }
    public func score(_ pod: PodInfo, _ nodes: [NodeInfo]) -> [Int] {
        nodes.map { node in
            let after = node.requested + pod.requests
            let offered = node.allocatable
            func used(_ want: Int64, _ have: Int64) -> Double { have > 0 ? min(1, Double(want) / Double(have)) : 1 }
            let cpu = used(after.milliCPU, offered.milliCPU)
            let memory = used(after.memory, offered.memory)
            let free = ((1 - cpu) + (1 - memory)) / 2
            let balance = 1 - abs(cpu - memory)
            return Int((free * 0.5 + balance * 0.5) * 100)
        }
    }
}

/// Spreads the pods of one owner: the fewer of its siblings a node has (relative to the node
/// with the most), the better.
public struct SpreadScore: ScorePlugin {
    public init(weight: Int = 2) { self.weight = weight }
    public let weight: Int
    public var name: String { "OwnerSpread" }
    public func score(_ pod: PodInfo, _ nodes: [NodeInfo]) -> [Int] {
        guard let owner = pod.owner else { return Array(repeating: 100, count: nodes.count) }
        let counts = nodes.map { $0.siblings(owner: owner) }
        let most = counts.max() ?? 0
        guard most > 0 else { return Array(repeating: 100, count: nodes.count) }
        return counts.map { Int(Double(most - $0) / Double(most) * 100) }
    }
}

/// PreferNoSchedule taints the pod does not tolerate lower a node's score.
public struct PreferNoScheduleScore: ScorePlugin {
    public init(weight: Int = 1) { self.weight = weight }
    public let weight: Int
    public var name: String { "TaintTolerationPreference" }
    public func score(_ pod: PodInfo, _ nodes: [NodeInfo]) -> [Int] {
        nodes.map { node in
            let taints = node.softTaints
            if taints.isEmpty { return 100 }
            var untolerated = 0
            for taint in taints where !TaintTolerationFilter.tolerates(pod.tolerations, taint) { untolerated += 1 }
            return max(0, 100 - 50 * untolerated)
        }
    }
}
