import API
import Client
import Foundation
import Testing
import TestSupport

/// Init containers and sidecars with real processes: `cox server`, `cox agent` and the process
/// runtime, driven and read by kubectl and the official Python client as a user would.
@Suite("Init containers end to end", .watchdog, .serialized)
struct InitContainerEndToEndTests {
    /// The newest kubectl installed, run against the cluster.
    func kubectl(_ cluster: AgentCluster, _ arguments: [String], input: String? = nil) async throws -> Tools.Output {
        let (_, path) = try #require(Tools.kubectlRange().last)
        return try await Tools.runDetached(path, ["--kubeconfig", cluster.kubeconfig] + arguments, input: input, timeout: 60)
    }

    /// STATUS and READY of one pod as `kubectl get pod` prints them (the server's table).
    func columns(_ cluster: AgentCluster, _ name: String) async throws -> (ready: String, status: String) {
        let row = try await kubectl(cluster, ["get", "pod", name, "--no-headers"]).output.split(separator: " ", omittingEmptySubsequences: true)
        guard row.count >= 3 else { return ("", "") }
        return (String(row[1]), String(row[2]))
    }

    /// `sh -c SCRIPT MARKER` as a YAML flow list.
    func command(_ cluster: AgentCluster, _ script: String) -> String {
        #"["sh", "-c", "\#(script)", "\#(cluster.marker)"]"#
    }

    @Test func initContainersRunInOrderOnceBeforeTheContainers() async throws {
        try await AgentCluster.run { cluster in
            let order = cluster.dir.path + "/order"
            let manifest = """
                apiVersion: v1
                kind: Pod
                metadata: {name: staged}
                spec:
                  nodeName: n1
                  terminationGracePeriodSeconds: 2
                  initContainers:
                    - name: first
                      command: \(command(cluster, "echo first | tee -a \(order); sleep 3"))
                    - name: second
                      command: \(command(cluster, "echo second | tee -a \(order)"))
                  containers:
                    - name: main
                      command: \(command(cluster, "echo main >> \(order); exec sleep 300"))
                """
            let applied = try await kubectl(cluster, ["apply", "-f", "-"], input: manifest)
            #expect(applied.status == 0, "\(applied.output)")

            // While the first one runs (3 s), kubectl shows the pod initializing.
            var seen: [String] = []
            try await eventually("kubectl shows Init:0/2") {
                let now = try await columns(cluster, "staged")
                seen.append(now.status)
                return now == ("0/1", "Init:0/2")
            }
            try await eventually("staged is Running") { try await cluster.get("staged").status.phase == "Running" }
            #expect(try String(contentsOfFile: order, encoding: .utf8) == "first\nsecond\nmain\n", "in order, each once")
            let pod = try await cluster.get("staged")
            #expect(pod.status.initContainerStatuses.map(\.name) == ["first", "second"])
            #expect(pod.status.initContainerStatuses.allSatisfy {
                $0.state.terminated.exitCode == 0 && $0.state.terminated.reason == "Completed" && $0.ready && $0.containerID.hasPrefix("cox-process://")
            }, "\(pod.status.initContainerStatuses)")
            #expect(pod.status.conditions.contains { $0.type == "Initialized" && $0.status == "True" })
            let running = try await columns(cluster, "staged")
            #expect(running == ("1/1", "Running"), "\(running); seen before: \(seen)")

            // Their logs stay readable, and the events name them as the kubelet's do.
            let logs = try await kubectl(cluster, ["logs", "staged", "-c", "first"])
            #expect(logs.status == 0 && logs.output == "first\n", "\(logs.output)")
            let unnamed = try await kubectl(cluster, ["logs", "staged", "-c", "nope"])
            #expect(unnamed.status != 0 && unnamed.output.contains("container nope is not valid for pod staged"), "\(unnamed.output)")
            try await eventually("Started events for each init container") {
                let events = try await cluster.client.list(Event.self, namespace: "default", fieldSelector: "involvedObject.name=staged,reason=Started").items
                return Set(events.map(\.involvedObject.fieldPath)).isSuperset(of: ["spec.initContainers{first}", "spec.initContainers{second}", "spec.containers{main}"])
            }

            // The official Python client reads the statuses with its strict models.
            if Tools.pythonKubernetesClient() {
                let script = """
                    import os, sys
                    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
                        os.environ.pop(variable, None)
                    from kubernetes import client, config
                    config.load_kube_config(config_file=sys.argv[1])
                    pod = client.CoreV1Api().read_namespaced_pod("staged", "default")
                    print([c.name for c in pod.spec.init_containers], [(s.name, s.state.terminated.exit_code, s.ready) for s in pod.status.init_container_statuses])
                    """
                let python = try await Tools.runDetached(try #require(Tools.find("python3")), ["-c", script, cluster.kubeconfig], timeout: 60)
                #expect(python.output == "['first', 'second'] [('first', 0, True), ('second', 0, True)]\n", "\(python.output)")
            }

            // A new agent does not run them again: the pod's status says they are done.
            await cluster.killAgent()
            let restarted = Date()
            try cluster.startAgent()
            try await eventually("the new agent re-adopted the container and renewed its lease twice", timeout: 60) {
                guard cluster.log("agent").contains("re-adopted") else { return false }
                let lease = try await cluster.client.get(Lease.self, namespace: "kube-node-lease", name: "n1")
                return lease.spec.renewTime.date > restarted.addingTimeInterval(1.5)
            }
            #expect(try String(contentsOfFile: order, encoding: .utf8) == "first\nsecond\nmain\n")
            let after = try await cluster.get("staged")
            #expect(after.status.phase == "Running" && after.status.containerStatuses.first?.restartCount == 0)
            #expect(after.status.initContainerStatuses.allSatisfy { $0.state.terminated.exitCode == 0 }, "\(after.status.initContainerStatuses)")
        }
    }

    @Test func aFailingInitContainerHoldsThePodBackOrFailsIt() async throws {
        try await AgentCluster.run { cluster in
            let ran = cluster.dir.path + "/main-ran"
            func manifest(_ name: String, _ policy: String) -> String {
                """
                apiVersion: v1
                kind: Pod
                metadata: {name: \(name)}
                spec:
                  nodeName: n1
                  restartPolicy: \(policy)
                  terminationGracePeriodSeconds: 1
                  initContainers:
                    - name: check
                      command: \(command(cluster, "echo not ready >&2; exit 3"))
                  containers:
                    - name: main
                      command: \(command(cluster, "touch \(ran); exec sleep 300"))
                """
            }
            #expect(try await kubectl(cluster, ["apply", "-f", "-"], input: manifest("never", "Never")).status == 0)
            #expect(try await kubectl(cluster, ["apply", "-f", "-"], input: manifest("always", "Always")).status == 0)

            // Never: the pod fails, its container never starts.
            try await eventually("never Failed") { try await cluster.get("never").status.phase == "Failed" }
            let failed = try await cluster.get("never")
            #expect(failed.status.initContainerStatuses.first?.state.terminated.exitCode == 3)
            #expect(failed.status.containerStatuses.first?.state.waiting.reason == "PodInitializing")
            #expect(failed.status.conditions.contains { $0.type == "Initialized" && $0.status == "False" && $0.reason == "ContainersNotInitialized" })
            let cells = try await columns(cluster, "never")
            #expect(cells == ("0/1", "Init:Error"), "\(cells)")

            // Always: restarted with back-offs (Init:CrashLoopBackOff between), the container waits.
            var statuses = Set<String>()
            try await eventually("always's init container restarted twice", timeout: 30) {
                let pod = try await cluster.get("always")
                statuses.insert(Table.podSummary(pod).status)
                return (pod.status.initContainerStatuses.first?.restartCount ?? 0) >= 2
            }
            #expect(statuses.contains("Init:CrashLoopBackOff"), "\(statuses)")
            let always = try await cluster.get("always")
            #expect(always.status.phase == "Pending" && always.status.containerStatuses.first?.state.waiting.reason == "PodInitializing")
            #expect(!FileManager.default.fileExists(atPath: ran), "no container ran after a failed init container")
            let previous = try await kubectl(cluster, ["logs", "always", "-c", "check", "--previous"])
            #expect(previous.output == "not ready\n", "\(previous.output)")
        }
    }

    /// A sidecar starts before the init containers after it (they see it running), runs beside
    /// the pod's container, is restarted when it exits, and is stopped when the container is done.
    @Test func sidecarsRunBesideTheContainersAndStopWithThem() async throws {
        try await AgentCluster.run { cluster in
            let ticks = cluster.dir.path + "/ticks"
            let manifest = """
                apiVersion: v1
                kind: Pod
                metadata: {name: job}
                spec:
                  nodeName: n1
                  restartPolicy: Never
                  terminationGracePeriodSeconds: 2
                  initContainers:
                    - name: ticker
                      restartPolicy: Always
                      command: \(command(cluster, "while true; do echo tick >> \(ticks); sleep 0.2; done"))
                      startupProbe:
                        exec: {command: ["test", "-s", "\(ticks)"]}
                        periodSeconds: 1
                    - name: needs-ticker
                      command: \(command(cluster, "test -s \(ticks)"))
                  containers:
                    - name: work
                      command: \(command(cluster, "sleep 5; echo worked"))
                """
            let applied = try await kubectl(cluster, ["apply", "-f", "-"], input: manifest)
            #expect(applied.status == 0, "\(applied.output)")
            try await eventually("job runs with its sidecar: 2/2") {
                let cells = try await columns(cluster, "job")
                return cells == ("2/2", "Running")
            }
            try await eventually("job Succeeded", timeout: 30) { try await cluster.get("job").status.phase == "Succeeded" }
            let done = try await cluster.get("job")
            #expect(done.status.initContainerStatuses.first { $0.name == "needs-ticker" }?.state.terminated.exitCode == 0, "it ran after the sidecar started")
            #expect(done.status.containerStatuses.first?.state.terminated.exitCode == 0)
            try await eventually("the sidecar is stopped once the container is done", timeout: 30) {
                let sidecar = try await cluster.get("job").status.initContainerStatuses.first { $0.name == "ticker" }
                return sidecar?.state.hasTerminated == true && cluster.processes(matching: "echo tick").isEmpty
            }
            #expect(try await columns(cluster, "job").status == "Completed")

            // A sidecar that exits is restarted, whatever the pod's policy; the container runs on.
            let flaky = """
                apiVersion: v1
                kind: Pod
                metadata: {name: service}
                spec:
                  nodeName: n1
                  terminationGracePeriodSeconds: 1
                  initContainers:
                    - name: flaky
                      restartPolicy: Always
                      command: \(command(cluster, "sleep 1; exit 1"))
                  containers:
                    - name: main
                      command: \(command(cluster, "exec sleep 300"))
                """
            #expect(try await kubectl(cluster, ["apply", "-f", "-"], input: flaky).status == 0)
            try await eventually("the sidecar was restarted while the container ran on", timeout: 30) {
                let pod = try await cluster.get("service")
                return (pod.status.initContainerStatuses.first?.restartCount ?? 0) >= 1
                    && pod.status.containerStatuses.first?.state.hasRunning == true && pod.status.containerStatuses.first?.restartCount == 0
            }
            #expect(try await cluster.get("service").status.phase == "Running")
        }
    }
}
