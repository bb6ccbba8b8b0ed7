import API
import Foundation

/// Filters then scores: the scheduling decision for one pod, with everything needed to explain it.
public struct Framework: Sendable {
    public let filters: [any FilterPlugin]
    public let scores: [any ScorePlugin]

    public static let standard = Framework(
        filters: [NodeReadyFilter(), NodeSelectorFilter(), TaintTolerationFilter(), ResourcesFitFilter()],
        scores: [LeastAllocatedScore(), SpreadScore(), PreferNoScheduleScore()])

    public init(filters: [any FilterPlugin], scores: [any ScorePlugin]) {
        self.filters = filters
        self.scores = scores
    }

    public struct Decision: Sendable {
        /// The chosen node; nil when none fits.
        public let node: String?
        /// Each node that failed a filter, with the first failure.
        public let unfit: [String: Unfit]
        /// Each node that passed every filter, with its weighted total and per-plugin scores.
        public let scores: [String: (total: Int, byPlugin: [String: Int])]
        public let nodeCount: Int

        /// Kubernetes' wording: `0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}.`
        public var message: String {
            let counts = Dictionary(grouping: unfit.values, by: { $0 }).map { ($0.key.reason, $0.value.count) }
                .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
            let reasons = counts.map { "\($0.1) \($0.0)" }.joined(separator: ", ")
            return "\(scores.count)/\(nodeCount) nodes are available" + (reasons.isEmpty ? "." : ": \(reasons).")
        }
    }

    /// Runs every filter on every node, scores the survivors, and picks the best (ties go to the
    /// node name first in order, so a decision is reproducible).
    public func schedule(_ pod: Pod, on nodes: [NodeInfo]) -> Decision {
        var unfit: [String: Unfit] = [:]
        var feasible: [NodeInfo] = []
        for node in nodes {
            if let failure = filters.lazy.compactMap({ $0.filter(pod, node) }).first {
                unfit[node.name] = failure
            } else {
                feasible.append(node)
            }
        }
        var scored: [String: (total: Int, byPlugin: [String: Int])] = [:]
        for node in feasible {
            var byPlugin: [String: Int] = [:]
            var total = 0
            for plugin in scores {
                let value = max(0, min(100, plugin.score(pod, node, among: feasible)))
                byPlugin[plugin.name] = value
                total += value * plugin.weight
            }
            scored[node.name] = (total, byPlugin)
        }
        let best = scored.max { a, b in a.value.total != b.value.total ? a.value.total < b.value.total : a.key > b.key }?.key
        return Decision(node: best, unfit: unfit, scores: scored, nodeCount: nodes.count)
    }
}
