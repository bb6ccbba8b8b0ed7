import API
import Client
import Foundation
import Testing
import TestSupport

/// The scheduler with real processes: `cox server --no-scheduler`, two `cox scheduler`s (one
/// leads), and simulated nodes (`cox agent --runtime fake`) with different capacity, labels and
/// taints. Pods land where the rules say; one that fits nowhere stays Pending with Kubernetes'
/// message until a node that fits joins — and is placed by the second scheduler after the first
/// was killed.
@Suite("Scheduler end to end", .watchdog, .serialized)
struct SchedulerEndToEndTests {
    static let manifest = """
        apiVersion: v1
        kind: Pod
        metadata: {name: ssd}
        spec:
          nodeSelector: {disk: ssd}
          containers: [{name: main, command: [sleep, "3600"], resources: {requests: {cpu: 500m}}}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: trainer}
        spec:
          tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]
          containers: [{name: main, command: [sleep, "3600"], resources: {requests: {cpu: "10"}}}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: hdd}
        spec:
          affinity:
            nodeAffinity:
              requiredDuringSchedulingIgnoredDuringExecution:
                nodeSelectorTerms: [{matchExpressions: [{key: disk, operator: NotIn, values: [ssd]}]}]
          containers: [{name: main, command: [sleep, "3600"]}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: anywhere}
        spec:
          containers: [{name: main, command: [sleep, "3600"], resources: {requests: {cpu: 100m, memory: 64Mi}}}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: huge}
        spec:
          containers: [{name: main, command: [sleep, "3600"], resources: {requests: {cpu: "12"}}}]
        """

    @Test func podsLandWhereTheRulesSayAndAPendingPodIsPlacedWhenANodeJoins() async throws {
        try await AgentCluster.run(serverArguments: ["--no-scheduler"], firstAgent: false) { cluster in
            var schedulers: [String: Child] = [:]
            for identity in ["sched-a", "sched-b"] {
                schedulers[identity] = try cluster.launch(["scheduler", "--kubeconfig", cluster.kubeconfig, "--leader-lease-duration", "3",
                                                           "--leader-identity", identity], log: "\(identity).log")
            }
            defer { for process in schedulers.values { kill(process.pid, SIGKILL) } }
            try cluster.startSimulatedAgent(named: "small", "--capacity", "cpu=1,memory=2Gi,pods=10", "--label", "disk=hdd")
            try cluster.startSimulatedAgent(named: "large", "--capacity", "cpu=8,memory=16Gi,pods=10", "--label", "disk=ssd", "--label", "zone=a")
            try cluster.startSimulatedAgent(named: "gpu", "--capacity", "cpu=16,memory=64Gi,pods=10", "--label", "disk=ssd",
                                            "--taint", "dedicated=gpu:NoSchedule")
            try await eventually("three Ready nodes") {
                let nodes = try await cluster.client.list(Node.self, namespace: nil).items
                return nodes.count == 3 && nodes.allSatisfy { $0.status.conditions.contains { $0.type == "Ready" && $0.status == "True" } }
            }
            let gpu = try await cluster.client.get(Node.self, namespace: "", name: "gpu")
            #expect(gpu.spec.taints.map { "\($0.key)=\($0.value):\($0.effect)" } == ["dedicated=gpu:NoSchedule"])
            #expect(gpu.status.capacity["cpu"] == "16" && gpu.status.capacity["memory"] == "64Gi")

            let path = (cluster.dir.path as NSString).appendingPathComponent("pods.yaml")
            try Self.manifest.write(toFile: path, atomically: true, encoding: .utf8)
            #expect(try await cluster.cox("apply", "-f", path).status == 0)

            func placement() async throws -> [String: String] {
                Dictionary(uniqueKeysWithValues: try await cluster.client.list(Pod.self, namespace: "default").items.map { ($0.metadata.name, $0.spec.nodeName) })
            }
            try await eventually("four pods are Running") {
                try await cluster.client.list(Pod.self, namespace: "default").items.filter { $0.status.phase == "Running" }.count == 4
            }
            let placed = try await placement()
            #expect(placed["ssd"] == "large", "nodeSelector disk=ssd, and gpu is tainted")
            #expect(placed["trainer"] == "gpu", "tolerates the taint; only gpu has 10 cpus")
            #expect(placed["hdd"] == "small", "affinity disk NotIn [ssd]")
            #expect(placed["anywhere"] == "small" || placed["anywhere"] == "large", "not the tainted node: \(placed)")

            let expected = "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
            try await eventually("the huge pod says why it is pending") {
                let pod = try await cluster.get("huge")
                let condition = pod.status.conditions.first { $0.type == "PodScheduled" }
                return pod.spec.nodeName.isEmpty && condition?.reason == "Unschedulable" && condition?.message == expected
            }
            let explained = try await cluster.cox("explain", "pod", "huge")
            #expect(explained.status == 0, "\(explained.output)")
            let lines = explained.output.split(separator: "\n")
            #expect(lines.contains { $0.hasPrefix("gpu ") && $0.contains("TaintToleration") && $0.contains("untolerated taint {dedicated: gpu}") }, "\(explained.output)")
            #expect(lines.contains { $0.hasPrefix("large ") && $0.contains("NodeResourcesFit") && $0.contains("Insufficient cpu") }, "\(explained.output)")
            #expect(lines.contains { $0.hasPrefix("small ") && $0.contains("NodeResourcesFit") && $0.contains("Insufficient cpu") }, "\(explained.output)")
            let placedExplained = try await cluster.cox("explain", "pod", "ssd")
            #expect(placedExplained.output.contains("Pod default/ssd is on node large.") && placedExplained.output.contains("Best node now: large."),
                    "\(placedExplained.output)")

            // One scheduler leads; kill it. A node that fits joins: the other takes over and places the pod.
            let leader = try #require(try await cluster.client.get(Lease.self, namespace: "kube-system", name: "cox-scheduler").spec.holderIdentity)
            let follower = leader == "sched-a" ? "sched-b" : "sched-a"
            #expect(!cluster.log(follower).contains("became leader"), "only one scheduler leads")
            kill(schedulers[leader]!.pid, SIGKILL)
            try cluster.startSimulatedAgent(named: "xl", "--capacity", "cpu=32,memory=64Gi,pods=10")
            try await eventually("the huge pod is placed on xl once the follower leads", timeout: 30) {
                let pod = try await cluster.get("huge")
                return pod.spec.nodeName == "xl" && pod.status.phase == "Running"
            }
            #expect(cluster.log(follower).contains("became leader"))
            #expect(try await placement()["huge"] == "xl")
        }
    }
}
