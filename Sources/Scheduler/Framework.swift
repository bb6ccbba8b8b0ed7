import API
import Foundation

/// Filters then scores: the scheduling decision for one pod, with what is needed to explain it.
public struct Framework: Sendable {
    public let filters: [any FilterPlugin]
    public let scores: [any ScorePlugin]

    public static let standard = Framework(
        filters: [NodeReadyFilter(), NodeSelectorFilter(), TaintTolerationFilter(), ResourcesFitFilter()],
        scores: [LeastAllocatedScore(), SpreadScore(), PreferNoScheduleScore()])

    /// The filters as closures over their concrete types, made once: calling a plugin through
    /// `any FilterPlugin` projected the existential on every call, for every node of every pod
    /// (15 % of the decision loop).
    let checks: [@Sendable (PodInfo, NodeInfo) -> Unfit?]

    public init(filters: [any FilterPlugin], scores: [any ScorePlugin]) {
        self.filters = filters
        self.scores = scores
        checks = filters.map { Self.check($0) }
    }

    private static func check<F: FilterPlugin>(_ filter: F) -> @Sendable (PodInfo, NodeInfo) -> Unfit? {
        { filter.filter($0, $1) }
    }

    /// One node's verdict, for explanations: the filter that rejected it, or its scores.
    public struct Verdict: Sendable {
        public let node: String
        /// The first filter that failed (plugin name, reason); nil when every filter passed.
        public let failure: (plugin: String, unfit: Unfit)?
        /// Per score plugin, in the framework's order (empty when a filter failed).
        public let scores: [(plugin: String, score: Int, weight: Int)]
        public var total: Int { scores.reduce(0) { $0 + $1.score * $1.weight } }
    }

    public struct Decision: Sendable {
        /// The chosen node; nil when none fits.
        public let node: String?
        /// Nodes in the cluster, and how many of them were looked at (a large cluster is sampled
        /// once enough feasible nodes are found).
        public let nodeCount: Int
        public let examined: Int
        public let feasible: Int
        /// How many examined nodes failed for each reason.
        public let unfit: [Unfit: Int]
        /// Every examined node's verdict, when asked for (`detailed`).
        public let verdicts: [Verdict]

        /// Kubernetes' wording: `0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}.`
        public var message: String {
            if nodeCount == 0 { return "no nodes available to schedule pods" }
            let reasons = unfit.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key.reason < $1.key.reason }
                .map { "\($0.value) \($0.key.reason)" }.joined(separator: ", ")
            return "\(feasible)/\(nodeCount) nodes are available" + (reasons.isEmpty ? "." : ": \(reasons).")
        }
    }

    /// How many feasible nodes are enough in a cluster of `count` (Kubernetes' adaptive default):
    /// all below 100 nodes; else a share falling from 50 % by 1 % per 125 nodes to at least 5 %,
    /// and never fewer than 100.
    public static func feasibleNodesToFind(_ count: Int) -> Int {
        if count < 100 { return count }
        let percent = max(5, 50 - count / 125)
        return max(100, count * percent / 100)
    }

    /// Runs the filters over the nodes, starting at `start` and wrapping around, until `enough`
    /// feasible ones are found (or all were looked at); scores the feasible ones and picks the best
    /// (ties go to the node first in name order, so a decision is reproducible).
    public func schedule(_ pod: PodInfo, on nodes: [NodeInfo], start: Int = 0, enough: Int? = nil, detailed: Bool = false) -> Decision {
        let count = nodes.count
        let wanted = enough ?? count
        var unfit: [Unfit: Int] = [:]
        var feasible: [NodeInfo] = []
        var verdicts: [Verdict] = []
        var examined = 0
        feasible.reserveCapacity(min(wanted, count))
        let active = filters.indices.filter { filters[$0].applies(to: pod) }.map { (index: $0, check: checks[$0]) }
        var position = count > 0 ? start % count : 0
        while examined < count && feasible.count < wanted {
            let node = nodes[position]
            position += 1
            if position == count { position = 0 }
            examined += 1
            var failed = false
            for (index, check) in active {
                if let reason = check(pod, node) {
                    unfit[reason, default: 0] += 1
                    if detailed { verdicts.append(Verdict(node: node.name, failure: (filters[index].name, reason), scores: [])) }
                    failed = true
                    break
                }
            }
            if !failed { feasible.append(node) }
        }
        var totals = Array(repeating: 0, count: feasible.count)
        var byPlugin: [[Int]] = []
        for plugin in scores {
            let values = plugin.score(pod, feasible)
            let weight = plugin.weight  // once, not per node: a witness call through the existential
            for i in totals.indices { totals[i] += max(0, min(100, values[i])) * weight }
            if detailed { byPlugin.append(values.map { max(0, min(100, $0)) }) }
        }
        var best: Int?
        for i in totals.indices {
            guard let current = best else { best = i; continue }
            if totals[i] > totals[current] || (totals[i] == totals[current] && feasible[i].name < feasible[current].name) { best = i }
        }
        if detailed {
            for (i, node) in feasible.enumerated() {
                let scored = scores.enumerated().map { (plugin: $0.element.name, score: byPlugin[$0.offset][i], weight: $0.element.weight) }
                verdicts.append(Verdict(node: node.name, failure: nil, scores: scored))
            }
        }
        return Decision(node: best.map { feasible[$0].name }, nodeCount: count, examined: examined, feasible: feasible.count,
                        unfit: unfit, verdicts: verdicts)
    }
}
