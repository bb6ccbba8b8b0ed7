import API
import ControllerRuntime
import Foundation
import Synchronization

/// The scheduler's view of the cluster: every node with the pods placed on it, fed by the
/// informers, plus the scheduler's own decisions (assumed pods) from the moment they are made —
/// so the next decision sees them before the watch does. An assumption is confirmed when the
/// watch shows the pod bound, forgotten when its binding fails, and dropped if the watch never
/// confirms it within `assumedTTL` of a successful binding.
public final class SchedulerCache: Sendable {
    struct Assumption {
        var node: String
        /// When the binding succeeded; nil while it is in flight.
        var bound: Date?
    }

    struct State {
        /// Nodes known from the Node informer, in a stable order for sampling.
        var nodes: [NodeInfo] = []
        var index: [String: Int] = [:]
        /// Nodes that pods name but the Node informer has not shown (yet).
        var unknown: [String: NodeInfo] = [:]
        /// Where each placed pod is (confirmed or assumed).
        var placement: [String: String] = [:]
        var assumed: [String: Assumption] = [:]
        /// Where the next decision starts looking (round robin over the nodes).
        var start = 0
        var nextExpiry = Date.distantPast
    }

    let state = Mutex(State())
    let clock: any Clock
    let assumedTTL: TimeInterval

    public init(clock: any Clock = SystemClock(), assumedTTL: TimeInterval = 30) {
        self.clock = clock
        self.assumedTTL = assumedTTL
    }

    // MARK: Nodes

    /// Adds a node or takes its new version.
    public func setNode(_ node: Node) {
        let name = node.metadata.name
        state.withLock { state in
            if let i = state.index[name] {
                state.nodes[i] = NodeInfo(node: node, replacing: state.nodes[i])
            } else {
                let info = state.unknown.removeValue(forKey: name).map { NodeInfo(node: node, replacing: $0) } ?? NodeInfo(node: node)
                state.index[name] = state.nodes.count
                state.nodes.append(info)
            }
        }
    }

    /// Removes a node; pods still placed on it are kept aside until they go or it comes back.
    public func removeNode(_ name: String) {
        state.withLock { state in
            guard let i = state.index.removeValue(forKey: name) else { return }
            let info = state.nodes[i]
            let last = state.nodes.removeLast()
            if i < state.nodes.count {
                state.nodes[i] = last
                state.index[last.name] = i
            }
            if !info.pods.isEmpty { state.unknown[name] = info }
        }
    }

    // MARK: Pods

    /// A pod the watch shows on a node (not finished): placed there; confirms an assumption.
    public func addPod(_ pod: Pod) {
        let info = PodInfo(pod)
        let node = pod.spec.nodeName
        state.withLock { state in
            state.assumed[info.key] = nil
            if let previous = state.placement[info.key], previous != node { Self.node(previous, in: &state)?.remove(info.key) }
            state.placement[info.key] = node
            Self.node(node, in: &state, create: true)?.add(info)
        }
    }

    /// A pod deleted or finished: its resources are free again.
    public func removePod(key: String) {
        state.withLock { state in
            state.assumed[key] = nil
            guard let node = state.placement.removeValue(forKey: key) else { return }
            Self.node(node, in: &state)?.remove(key)
            if let orphaned = state.unknown[node], orphaned.pods.isEmpty { state.unknown[node] = nil }
        }
    }

    /// The scheduler's binding for an assumed pod succeeded: the watch should confirm it soon.
    public func finishBinding(key: String) {
        let now = clock.now
        state.withLock { $0.assumed[key]?.bound = now }
    }

    /// The binding of an assumed pod failed: undo the assumption (a pod the watch has meanwhile
    /// shown on a node stays where the watch put it).
    public func forget(key: String) {
        state.withLock { state in
            guard let assumption = state.assumed.removeValue(forKey: key) else { return }
            state.placement[key] = nil
            Self.node(assumption.node, in: &state)?.remove(key)
        }
    }

    public func isAssumed(key: String) -> Bool { state.withLock { $0.assumed[key] != nil } }
    public var assumedCount: Int { state.withLock { $0.assumed.count } }
    public var nodeCount: Int { state.withLock { $0.nodes.count } }

    /// What is placed on a node (confirmed and assumed), or nil for an unknown node.
    public func requested(on node: String) -> Resources? { usage(on: node)?.requested }

    /// What a node offers and what is placed on it, or nil for an unknown node.
    public func usage(on node: String) -> (allocatable: Resources, requested: Resources)? {
        state.withLock { state in state.index[node].map { (state.nodes[$0].allocatable, state.nodes[$0].requested) } }
    }

    // MARK: Deciding

    /// Decides where the pod goes and, when somewhere, assumes it there — in one step under the
    /// cache's lock, so no change from the watch lands between the decision and the assumption.
    public func schedule(_ pod: PodInfo, with framework: Framework, sample: Bool = true) -> Framework.Decision {
        let now = clock.now
        return state.withLock { state in
            if now >= state.nextExpiry {
                Self.expireAssumptions(&state, now: now, ttl: assumedTTL)
                state.nextExpiry = now.addingTimeInterval(1)
            }
            let count = state.nodes.count
            let start = count > 0 ? state.start % count : 0
            let decision = framework.schedule(pod, on: state.nodes, start: start,
                                              enough: sample ? Framework.feasibleNodesToFind(count) : nil)
            if count > 0 { state.start = (start + decision.examined) % count }
            if let chosen = decision.node, let i = state.index[chosen] {
                if let previous = state.placement[pod.key] { Self.node(previous, in: &state)?.remove(pod.key) }
                state.nodes[i].add(pod)
                state.placement[pod.key] = chosen
                state.assumed[pod.key] = Assumption(node: chosen, bound: nil)
            }
            return decision
        }
    }

    /// Every node's verdict for the pod (as if it were not placed anywhere), for explanations.
    public func explain(_ pod: Pod, with framework: Framework) -> Framework.Decision {
        state.withLock { state in
            let info = PodInfo(pod)
            let placed = state.placement[info.key].flatMap { Self.node($0, in: &state)?.remove(info.key) }
            defer { if let placed, let node = state.placement[info.key] { Self.node(node, in: &state)?.add(placed) } }
            let ordered = state.nodes.sorted { $0.name < $1.name }
            return framework.schedule(info, on: ordered, detailed: true)
        }
    }

    static func node(_ name: String, in state: inout State, create: Bool = false) -> NodeInfo? {
        if let i = state.index[name] { return state.nodes[i] }
        if let info = state.unknown[name] { return info }
        guard create else { return nil }
        var placeholder = Node()
        placeholder.metadata.name = name
        let info = NodeInfo(node: placeholder)
        state.unknown[name] = info
        return info
    }

    static func expireAssumptions(_ state: inout State, now: Date, ttl: TimeInterval) {
        for (key, assumption) in state.assumed {
            guard let bound = assumption.bound, now.timeIntervalSince(bound) > ttl else { continue }
            state.assumed[key] = nil
            state.placement[key] = nil
            node(assumption.node, in: &state)?.remove(key)
        }
    }
}
