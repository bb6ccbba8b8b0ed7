import API
import Client
import Foundation
import Testing
import TestSupport

/// DaemonSets with real processes: `cox server` (its DaemonSet controller and scheduler) and two
/// agents, driven by kubectl as a user would.
@Suite("DaemonSets end to end", .watchdog, .serialized)
struct DaemonSetEndToEndTests {
    @Test func aPodPerNodeRolledOutAndDeletedWithKubectl() async throws {
        let (_, kubectlPath) = try #require(Tools.kubectlRange().last)
        try await AgentCluster.run { cluster in
            func kubectl(_ arguments: [String], input: String? = nil) async throws -> Tools.Output {
                try await Tools.runDetached(kubectlPath, ["--kubeconfig", cluster.kubeconfig] + arguments, input: input, timeout: 90)
            }
            try cluster.startAgent(named: "n2")
            try await eventually("n2 is Ready") {
                let node = try? await cluster.client.get(Node.self, namespace: "", name: "n2")
                return node?.status.conditions.contains { $0.type == "Ready" && $0.status == "True" } == true
            }
            func manifest(_ version: String) -> String {
                """
                apiVersion: apps/v1
                kind: DaemonSet
                metadata: {name: node-logger}
                spec:
                  selector: {matchLabels: {app: node-logger}}
                  template:
                    metadata: {labels: {app: node-logger}}
                    spec:
                      terminationGracePeriodSeconds: 1
                      containers:
                        - name: logger
                          command: ["sh", "-c", "echo \(version) on $NODE; exec sleep 3600", "\(cluster.marker)"]
                          env:
                            - name: NODE
                              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
                """
            }
            let applied = try await kubectl(["apply", "-f", "-"], input: manifest("v1"))
            #expect(applied.status == 0 && applied.output.contains("daemonset.apps/node-logger created"), "\(applied.output)")
            let rollout = try await kubectl(["rollout", "status", "daemonset/node-logger", "--timeout=60s"])
            #expect(rollout.status == 0 && rollout.output.contains("daemon set \"node-logger\" successfully rolled out"), "\(rollout.output)")
            func pods() async throws -> [Pod] {
                try await cluster.client.list(Pod.self, namespace: "default", labelSelector: "app=node-logger").items.filter { !$0.metadata.hasDeletionTimestamp }
            }
            let first = try await pods()
            #expect(first.map(\.spec.nodeName).sorted() == ["n1", "n2"], "one pod on each node, bound by the scheduler: \(first.map(\.spec.nodeName))")
            let row = try await kubectl(["get", "ds", "node-logger", "--no-headers"]).output.split(separator: " ", omittingEmptySubsequences: true)
            #expect(row.count >= 6 && row[1...5] == ["2", "2", "2", "2", "2"], "DESIRED CURRENT READY UP-TO-DATE AVAILABLE: \(row)")
            for pod in first {
                let log = try await kubectl(["logs", pod.metadata.name])
                #expect(log.output == "v1 on \(pod.spec.nodeName)\n", "\(log.output)")
            }

            // A new template rolls out node by node; `kubectl rollout status` follows it.
            #expect(try await kubectl(["apply", "-f", "-"], input: manifest("v2")).status == 0)
            let second = try await kubectl(["rollout", "status", "daemonset/node-logger", "--timeout=60s"])
            #expect(second.status == 0, "\(second.output)")
            let coxStatus = try await cluster.cox("rollout", "status", "daemonset/node-logger", "--timeout", "60")
            #expect(coxStatus.status == 0 && coxStatus.output.hasSuffix("daemon set \"node-logger\" successfully rolled out\n"), "\(coxStatus.output)")
            try await eventually("v2 on both nodes, the v1 pods gone") {
                let now = try await pods()
                return now.count == 2 && Set(now.map(\.metadata.name)).isDisjoint(with: first.map(\.metadata.name))
                    && now.allSatisfy { $0.spec.containers[0].command[2].contains("v2") && $0.status.phase == "Running" }
            }

            let deleted = try await kubectl(["delete", "daemonset", "node-logger"])
            #expect(deleted.status == 0, "\(deleted.output)")
            try await eventually("its pods go with it") { try await cluster.client.list(Pod.self, namespace: "default", labelSelector: "app=node-logger").items.isEmpty }
        }
    }
}
