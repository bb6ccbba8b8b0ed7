import API
import Client
import ControllerRuntime
import Foundation
import Testing
import TestSupport

/// The controllers with real processes: `cox server` (controllers and scheduler inside), two `cox agent`s on
/// this host (n1, n2), a Deployment run through `cox apply`, `cox rollout` and `cox delete`.
@Suite("Controllers end to end", .watchdog, .serialized)
struct ControllerEndToEndTests {
    func manifest(_ cluster: AgentCluster, version: String) throws -> String {
        let path = (cluster.dir.path as NSString).appendingPathComponent("web-\(version).yaml")
        try """
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: web
            spec:
              replicas: 4
              selector:
                matchLabels: {app: web}
              strategy:
                type: RollingUpdate
                rollingUpdate: {maxSurge: 1, maxUnavailable: 1}
              template:
                metadata:
                  labels: {app: web}
                spec:
                  terminationGracePeriodSeconds: 2
                  containers:
                    - name: main
                      command: ["sh", "-c", "exec sleep 3600", "\(cluster.marker)", "\(version)"]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func webPods(_ cluster: AgentCluster) async throws -> [Pod] {
        try await cluster.client.list(Pod.self, namespace: "default", labelSelector: "app=web").items
    }

    @Test func deploymentRollsOutRollsBackSurvivesANodeLossAndIsDeleted() async throws {
        try await AgentCluster.run(serverArguments: ["--node-monitor-grace-period", "4", "--pod-eviction-timeout", "2"]) { cluster in
            try cluster.startAgent(named: "n2")
            try await eventually("n2 is Ready") {
                let node = try? await cluster.client.get(Node.self, namespace: "", name: "n2")
                return node?.status.conditions.contains { $0.type == "Ready" && $0.status == "True" } == true
            }

            #expect(try await cluster.cox("apply", "-f", try manifest(cluster, version: "v1")).status == 0)
            let first = try await cluster.cox("rollout", "status", "deployment/web", "--timeout", "60")
            #expect(first.status == 0 && first.output.contains(#"deployment "web" successfully rolled out"#), "\(first.output)")
            let v1Hash = try #require(try await webPods(cluster).first?.metadata.labels["pod-template-hash"])

            // Rolling update, watched: ready pods never drop below replicas − maxUnavailable = 3.
            let lowest = MutexBox(Int.max)
            let watcher = followPods(cluster.client, WatchRequest(namespace: "default", labelSelector: "app=web")) { pods in
                let ready = pods.values.filter { pod in
                    !pod.metadata.hasDeletionTimestamp && pod.status.conditions.contains { $0.type == "Ready" && $0.status == "True" }
                }.count
                lowest.withLock { $0 = min($0, ready) }
            }
            defer { watcher.cancel() }
            try await eventually("the watcher has listed") { lowest.withLock { $0 } != Int.max }
            #expect(try await cluster.cox("apply", "-f", try manifest(cluster, version: "v2")).status == 0)
            let second = try await cluster.cox("rollout", "status", "deployment/web", "--timeout", "60")
            #expect(second.status == 0, "\(second.output)")
            // v1's pods may still be terminating (grace period 2 s): a finished rollout counts the
            // active pods only, as Kubernetes' does.
            let v2Pods = try await webPods(cluster).filter { !$0.metadata.hasDeletionTimestamp }
            #expect(v2Pods.count == 4 && v2Pods.allSatisfy { $0.metadata.labels["pod-template-hash"] != v1Hash && $0.spec.containers[0].command.last == "v2" })
            #expect(lowest.withLock { $0 } >= 3, "ready pods fell to \(lowest.withLock { $0 }) during the rollout")
            watcher.cancel()

            let history = try await cluster.cox("rollout", "history", "deployment/web")
            #expect(history.output.contains("1         0") && history.output.contains("2         4"), "\(history.output)")

            // Undo: back to v1's ReplicaSet (now revision 3).
            let undo = try await cluster.cox("rollout", "undo", "deployment/web")
            #expect(undo.status == 0 && undo.output.contains("rolled back to revision 1"), "\(undo.output)")
            #expect(try await cluster.cox("rollout", "status", "deployment/web", "--timeout", "60").status == 0)
            try await eventually("every pod runs v1 again") {
                let pods = try await webPods(cluster)
                return pods.count == 4 && pods.allSatisfy { $0.metadata.labels["pod-template-hash"] == v1Hash && !$0.metadata.hasDeletionTimestamp }
            }

            // Lose n1: after the grace period (4 s) and the eviction timeout (2 s) its pods are
            // replaced on n2.
            let onN1 = try await webPods(cluster).filter { $0.spec.nodeName == "n1" }.map(\.metadata.name)
            #expect(!onN1.isEmpty, "the scheduler spread the ReplicaSet's pods over both nodes")
            let killedAt = Date()
            await cluster.killAgent()
            try await eventually("4 available pods, all on n2", timeout: 30) {
                let pods = try await webPods(cluster).filter { !$0.metadata.hasDeletionTimestamp }
                return pods.count == 4 && pods.allSatisfy { $0.spec.nodeName == "n2" && $0.status.conditions.contains { $0.type == "Ready" && $0.status == "True" } }
            }
            let replacedAfter = Date().timeIntervalSince(killedAt)
            #expect(replacedAfter < 4 + 2 + 10, "replaced after \(replacedAfter) s")
            let n1 = try await cluster.client.get(Node.self, namespace: "", name: "n1")
            #expect(n1.status.conditions.first { $0.type == "Ready" }?.status == "Unknown")
            #expect(n1.spec.taints.contains { $0.key == "node.kubernetes.io/unreachable" && $0.effect == "NoExecute" })

            // n1 comes back: it stops the evicted pods (their processes still ran) and is Ready and untainted again.
            try cluster.startAgent()
            try await eventually("n1's evicted pods are gone", timeout: 30) {
                let names = Set(try await webPods(cluster).map(\.metadata.name))
                return names.isDisjoint(with: onN1)
            }
            try await eventually("n1 is Ready and untainted", timeout: 30) {
                let node = try await cluster.client.get(Node.self, namespace: "", name: "n1")
                return node.spec.taints.isEmpty && node.status.conditions.contains { $0.type == "Ready" && $0.status == "True" }
            }

            // Deleting the Deployment removes its ReplicaSets and pods.
            #expect(try await cluster.cox("delete", "deployment", "web").status == 0)
            try await eventually("the ReplicaSets and pods are gone", timeout: 30) {
                let sets = try await cluster.client.list(ReplicaSet.self, namespace: "default").items
                let pods = try await webPods(cluster)
                return sets.isEmpty && pods.isEmpty
            }
            let events = try await cluster.cox("get", "events")
            #expect(events.output.contains("ScalingReplicaSet") && events.output.contains("NodeNotReady"), "\(events.output)")

            // The audit log shows who did what: the scheduler and the controllers inside `cox server`
            // act as themselves (not as the admin), with rights enough for all of the above.
            let audit = try String(contentsOfFile: (cluster.dir.path as NSString).appendingPathComponent("audit.log"), encoding: .utf8)
                .split(separator: "\n").map { try JSONParser.parse(String($0)) }
            let bindings = audit.filter { $0["resource"] == .string("pods/binding") && $0["code"] == .int(201) }
            #expect(!bindings.isEmpty && bindings.allSatisfy { $0["user"] == .string("system:kube-scheduler") })
            let replicaSets = audit.filter { $0["resource"] == .string("replicasets") && $0["verb"] == .string("create") }
            #expect(!replicaSets.isEmpty && replicaSets.allSatisfy { $0["user"] == .string("system:kube-controller-manager") })
            let denied = audit.filter { $0["code"] == .int(403) }
            #expect(denied.isEmpty, "components were denied: \(denied)")
        }
    }

    /// Two controller managers against one API server: one leads; killed, the other takes over
    /// within the lease duration; stopped gracefully, a leader releases the lease only after its
    /// controllers have stopped, and a successor starts at once.
    @Test func controllerManagersElectOneLeaderAndHandOver() async throws {
        try await AgentCluster.run(serverArguments: ["--no-controllers"]) { cluster in
            func start(_ identity: String) throws -> Child {
                try cluster.launch(["controllers", "--kubeconfig", cluster.kubeconfig, "--leader-lease-duration", "3", "--leader-identity", identity],
                                   log: "\(identity).log")
            }
            func holder() async -> String? {
                (try? await cluster.client.get(Lease.self, namespace: "kube-system", name: "cox-controller-manager"))?.spec.holderIdentity
            }
            func log(_ identity: String) -> String {
                (try? String(contentsOfFile: (cluster.dir.path as NSString).appendingPathComponent("\(identity).log"), encoding: .utf8)) ?? ""
            }
            var processes = ["c1": try start("c1"), "c2": try start("c2")]
            defer { for process in processes.values where process.isRunning { kill(process.pid, SIGKILL) } }
            try await eventually("one of them leads") { ["c1", "c2"].contains(await holder() ?? "") }
            let leader = try #require(await holder())
            let follower = leader == "c1" ? "c2" : "c1"
            #expect(log(leader).contains("became leader") && !log(follower).contains("became leader"))
            var set = ReplicaSet()
            set.metadata.name = "rs"
            set.spec.replicas = 2
            set.spec.selector.matchLabels = ["app": "rs"]
            set.spec.template.metadata.labels = ["app": "rs"]
            var container = Container()
            container.name = "main"
            container.command = ["sh", "-c", "exec sleep 3600", cluster.marker]
            set.spec.template.spec.containers = [container]
            set.applyDefaults()
            _ = try await cluster.client.create(set)
            try await eventually("the leader made 2 pods") { (try await cluster.client.list(Pod.self, namespace: "default").items.count) == 2 }

            // SIGKILL the leader: the follower takes over once the lease (3 s) runs out (how soon
            // after depends on the machine: printed, not asserted; 15 s bound it).
            let killed = processes[leader]!
            kill(killed.pid, SIGKILL)
            await killed.wait()
            let killedAt = Date()
            try await eventually("\(follower) leads", timeout: 15) { await holder() == follower }
            let takeover = Date().timeIntervalSince(killedAt)
            print("leader election: the follower took over \(String(format: "%.1f", takeover)) s after the leader was killed (lease 3 s)")
            try await cluster.modify(ReplicaSet.self, "rs") { $0.spec.replicas = 3 }
            try await eventually("the new leader reconciles: 3 pods") { (try await cluster.client.list(Pod.self, namespace: "default").items.count) == 3 }

            // A graceful hand-over: SIGTERM the leader; a third manager takes over once it released.
            processes["c3"] = try start("c3")
            try await Task.sleep(for: .seconds(1))
            #expect(await holder() == follower)
            let stopping = processes[follower]!
            kill(stopping.pid, SIGTERM)
            try await eventually("c3 leads", timeout: 15) { await holder() == "c3" }
            #expect(log(follower).contains("stopped leading; lease released"), "the old leader released only after stopping its controllers")
            await stopping.wait()
            #expect(stopping.terminationStatus == 0)
        }
    }
}
