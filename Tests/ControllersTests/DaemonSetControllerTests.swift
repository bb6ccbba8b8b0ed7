import API
import Client
import ControllerRuntime
import Controllers
import Foundation
import Testing
import TestSupport

/// The DaemonSet controller against a real in-process API server: nodes come, change and go;
/// pods are made Running and Ready by a stand-in for the agents.
@Suite(.watchdog) struct DaemonSetControllerTests {
    static func daemonSet(_ name: String, nodeSelector: [String: String] = [:], command: String = "a") -> DaemonSet {
        var set = DaemonSet()
        set.metadata.name = name
        set.metadata.namespace = "default"
        set.spec.selector.matchLabels = ["app": name]
        set.spec.template.metadata.labels = ["app": name]
        set.spec.template.spec.nodeSelector = nodeSelector
        var container = Container()
        container.name = "agent"
        container.command = ["sh", "-c", command]
        set.spec.template.spec.containers = [container]
        return set
    }

    /// Which node each of the DaemonSet's live pods is pinned to.
    func placement(_ harness: ControllerHarness, _ name: String) async throws -> [String] {
        try await harness.pods("app=\(name)").filter { !$0.metadata.hasDeletionTimestamp }.compactMap { pod in
            pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms.first?.matchFields.first?.values.first
        }.sorted()
    }

    @Test func onePodPerEligibleNodeFollowingNodesAndTemplates() async throws {
        try await ControllerHarness.run({ [DaemonSetController(context: $0).controller()] }) { harness, _ in
            let kubelet = harness.fakeKubelet()
            defer { kubelet.cancel() }
            var tainted = TestObjects.node("b", labels: ["role": "worker"])
            var taint = Taint()
            taint.key = "dedicated"
            taint.value = "gpu"
            taint.effect = "NoSchedule"
            tainted.spec.taints = [taint]
            for node in [TestObjects.node("a", labels: ["role": "worker"]), tainted, TestObjects.node("c", labels: ["role": "db"])] {
                _ = try await harness.client.create(node)
            }
            let created = try await harness.client.create(Self.daemonSet("logs", nodeSelector: ["role": "worker"]))
            try await waitUntil("a pod on a only (b's taint is not tolerated, c is not a worker)") { try await placement(harness, "logs") == ["a"] }
            let pod = try #require(try await harness.pods("app=logs").first)
            #expect(pod.metadata.controllerReference?.uid == created.metadata.uid && pod.metadata.labels["controller-revision-hash"]?.isEmpty == false)
            #expect(pod.spec.tolerations.contains { $0.key == "node.kubernetes.io/unreachable" && $0.effect == "NoExecute" && $0.operator == "Exists" })
            #expect(pod.spec.nodeName.isEmpty, "placed by the scheduler, pinned by affinity")
            try await waitUntil("status: 1 desired, 1 available") {
                let status = try await harness.client.get(DaemonSet.self, namespace: "default", name: "logs").status
                return status.desiredNumberScheduled == 1 && status.numberAvailable == 1 && status.updatedNumberScheduled == 1
            }

            // c becomes a worker: it gets a pod. A new template with b's toleration: rolled out,
            // one node at a time, and b gets one.
            try await harness.modify(Node.self, "c", namespace: "") { $0.metadata.labels["role"] = "worker" }
            try await waitUntil("c gets a pod") { try await placement(harness, "logs") == ["a", "c"] }
            let before = Set(try await harness.pods("app=logs").map(\.metadata.name))
            try await harness.modify(DaemonSet.self, "logs") { set in
                var toleration = Toleration()
                toleration.key = "dedicated"
                toleration.operator = "Exists"
                set.spec.template.spec.tolerations = [toleration]
            }
            try await waitUntil("every worker runs a pod of the new template") {
                let pods = try await harness.pods("app=logs").filter { !$0.metadata.hasDeletionTimestamp }
                let set = try await harness.client.get(DaemonSet.self, namespace: "default", name: "logs")
                return try await placement(harness, "logs") == ["a", "b", "c"] && pods.allSatisfy { !before.contains($0.metadata.name) }
                    && set.status.updatedNumberScheduled == 3 && set.status.numberAvailable == 3
            }
            let events = try await harness.client.list(Event.self, namespace: "default", fieldSelector: "involvedObject.name=logs,reason=SuccessfulDelete").items
            #expect(events.count >= 2, "the old pods were deleted by the rollout")

            // a stops being a worker: its pod goes. A node that goes takes its pod with it.
            try await harness.modify(Node.self, "a", namespace: "") { $0.metadata.labels["role"] = "web" }
            try await waitUntil("a's pod is deleted") { try await placement(harness, "logs") == ["b", "c"] }
            _ = try await harness.client.delete(Node.self, namespace: "", name: "c")
            try await waitUntil("c's pod is deleted with c") { try await placement(harness, "logs") == ["b"] }
            try await waitUntil("status follows") {
                let status = try await harness.client.get(DaemonSet.self, namespace: "default", name: "logs").status
                return status.desiredNumberScheduled == 1 && status.currentNumberScheduled == 1
            }
        }
    }
}
