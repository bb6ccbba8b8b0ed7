import API
import ArgumentParser
import Client
import Foundation
import Scheduler

/// `cox explain pod NAME`: why a pod is (or would be) where it is — each node's filter verdict
/// with its reason, and the scores of the nodes that passed, computed from the cluster as it is
/// now with the scheduler's own plugins.
struct ExplainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain", abstract: "Explain a pod's placement: every node's filter verdict and the scores of the nodes that passed.")

    @Argument(help: "pod NAME (or pod/NAME).") var target: [String]
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @OptionGroup var client: ClientOptions

    func run() async throws {
        var words = target
        if words.count == 1, let slash = words[0].firstIndex(of: "/") {
            words = [String(words[0][..<slash]), String(words[0][words[0].index(after: slash)...])]
        }
        guard words.count == 2 else { throw ValidationError("name the pod to explain, e.g. `cox explain pod web`") }
        guard try kind(named: words[0]) == Pod.self else { throw ValidationError("only pods can be explained (their placement), not \(words[0])") }
        let name = words[1]
        let namespace = self.namespace
        let text = try await withClient(client) { client in
            let pod = try await client.get(Pod.self, namespace: namespace, name: name)
            let nodes = try await client.list(Node.self, namespace: nil).items
            let pods = try await client.list(Pod.self, namespace: nil).items
            return Self.explain(pod, nodes: nodes, pods: pods)
        }
        print(text, terminator: "")
    }

    static func explain(_ pod: Pod, nodes: [Node], pods: [Pod]) -> String {
        let cache = SchedulerCache()
        for node in nodes { cache.setNode(node) }
        for other in pods where !other.spec.nodeName.isEmpty && !other.isFinished {
            cache.addPod(other)
        }
        let framework = Framework.standard
        let decision = cache.explain(pod, with: framework)
        let key = "\(pod.metadata.namespace)/\(pod.metadata.name)"
        let requests = PodInfo(pod).requests
        var out = ""
        if pod.spec.nodeName.isEmpty {
            out += "Pod \(key) is Pending: not placed on a node.\n"
            if let condition = pod.status.conditions.first(where: { $0.type == "PodScheduled" && $0.status == "False" }) {
                out += "The scheduler said (\(condition.reason)): \(condition.message)\n"
            }
        } else {
            out += "Pod \(key) is on node \(pod.spec.nodeName).\n"
        }
        out += "Requests: cpu \(requests.milliCPU)m, memory \(bytes(requests.memory)); "
            + "\(decision.message) (judged now, as if the pod were not placed)\n\n"

        let free: (String) -> [String] = { name in
            guard let usage = cache.usage(on: name) else { return ["-", "-", "-"] }
            let left = usage.allocatable - usage.requested + (name == pod.spec.nodeName ? requests : Resources())
            return ["\(left.milliCPU)m", bytes(left.memory), "\(left.pods)"]
        }
        let failed = decision.verdicts.filter { $0.failure != nil }.sorted { $0.node < $1.node }
        let passed = decision.verdicts.filter { $0.failure == nil }.sorted { $0.total != $1.total ? $0.total > $1.total : $0.node < $1.node }
        if !failed.isEmpty {
            out += "Filtered out:\n"
            out += Table.align(header: ["NODE", "CPU FREE", "MEMORY FREE", "PODS FREE", "FILTER", "REASON"],
                               rows: failed.map { [$0.node] + free($0.node) + [$0.failure!.plugin, $0.failure!.unfit.reason] })
        }
        if !passed.isEmpty {
            if !failed.isEmpty { out += "\n" }
            out += "Passed every filter (best first; score = Σ weight × plugin score):\n"
            let plugins = framework.scores.map { "\($0.name)×\($0.weight)" }
            out += Table.align(header: ["NODE", "CPU FREE", "MEMORY FREE", "PODS FREE", "SCORE"] + plugins,
                               rows: passed.map { verdict in
                                   [verdict.node] + free(verdict.node) + ["\(verdict.total)"] + verdict.scores.map { "\($0.score)" }
                               })
            if let best = decision.node {
                out += pod.spec.nodeName.isEmpty || pod.spec.nodeName == best
                    ? "\nBest node now: \(best).\n"
                    : "\nBest node now: \(best) (it was placed on \(pod.spec.nodeName) when the cluster was different).\n"
            }
        }
        return out
    }

    /// Memory the way manifests write it: `8Gi`, `512Mi`, or plain bytes.
    static func bytes(_ value: Int64) -> String {
        for (suffix, unit) in [("Gi", Int64(1) << 30), ("Mi", Int64(1) << 20), ("Ki", Int64(1) << 10)] where value != 0 && value % unit == 0 {
            return "\(value / unit)\(suffix)"
        }
        return "\(value)"
    }
}
