import API
import Client
import Foundation
import PKI
import Testing
import TestSupport

/// The node agent and the process runtime, end to end: real `cox server` and `cox agent`
/// processes, real container processes, the `cox` CLI as a user runs it.
@Suite("Node agent end to end", .watchdog, .serialized)
struct AgentEndToEndTests {
    @Test func podRunsLogsAndIsDeletedWithItsProcess() async throws {
        try await AgentCluster.run { cluster in
            _ = try await cluster.client.create(cluster.pod("web", "echo hello from $HOSTNAME; exec sleep 300"))
            var running = Pod()
            try await eventually("web is Running") {
                running = try await cluster.get("web")
                return running.status.phase == "Running"
            }
            let pid = try #require(cluster.pid(running))
            #expect(kill(pid, 0) == 0, "the reported PID is alive")
            #expect(running.status.conditions.contains { $0.type == "Ready" && $0.status == "True" })
            #expect(running.status.hostIp == "127.0.0.1" && running.status.hasStartTime)

            try await eventually("the log has the output") { (try? await cluster.cox("logs", "web"))?.output == "hello from web\n" }
            let table = try await cluster.cox("get", "pods")
            #expect(table.output.contains("web    1/1     Running   0"), "\(table.output)")

            // `cox delete` waits until the agent has stopped the process and finalized the deletion.
            let deleted = try await cluster.cox("delete", "pod", "web")
            #expect(deleted.status == 0 && deleted.output.contains(#"pod "web" deleted"#))
            #expect(kill(pid, 0) != 0, "the process is gone once delete returns")
            await #expect(throws: ClientError.self) { _ = try await cluster.get("web") }
        }
    }

    @Test func sigtermIsIgnoredThenSigkillAfterTheGracePeriod() async throws {
        try await AgentCluster.run { cluster in
            _ = try await cluster.client.create(cluster.pod("stubborn", "trap '' TERM; while true; do sleep 1; done", grace: 1))
            try await eventually("stubborn is Running") { try await cluster.get("stubborn").status.phase == "Running" }
            let deleted = try await cluster.cox("delete", "pod", "stubborn")
            #expect(deleted.status == 0)
            #expect(cluster.processes(matching: cluster.marker).isEmpty, "SIGKILL after the grace period ended the process group")
        }
    }

    @Test func exitCodesRestartPoliciesAndCrashLoopBackOff() async throws {
        try await AgentCluster.run { cluster in
            _ = try await cluster.client.create(cluster.pod("once", "echo done; exit 3", restartPolicy: "Never"))
            _ = try await cluster.client.create(cluster.pod("ok", "exit 0", restartPolicy: "OnFailure"))
            _ = try await cluster.client.create(cluster.pod("crash", "echo boom; exit 1"))
            try await eventually("once Failed with exit code 3") {
                let pod = try await cluster.get("once")
                return pod.status.phase == "Failed" && pod.status.containerStatuses.first?.state.terminated.exitCode == 3
            }
            try await eventually("ok Succeeded") { try await cluster.get("ok").status.phase == "Succeeded" }
            #expect(try await cluster.get("ok").status.containerStatuses.first?.restartCount == 0)

            // Restarts come with growing back-offs (1 s, 2 s, 4 s … here), CrashLoopBackOff in
            // between: what the agent says it waits, read from the status, not timed from here
            // (a loaded machine stretches what a poller sees).
            var backOffs: [Int32: String] = [:]
            try await eventually("crash restarted three times", timeout: 30) {
                let pod = try await cluster.get("crash")
                guard let status = pod.status.containerStatuses.first else { return false }  // not reported yet
                if status.state.waiting.reason == "CrashLoopBackOff" { backOffs[status.restartCount] = status.state.waiting.message }
                return status.restartCount >= 3
            }
            #expect(!backOffs.isEmpty, "CrashLoopBackOff was shown between restarts")
            let waits = backOffs.sorted { $0.key < $1.key }.compactMap { entry in
                entry.value.split(separator: " ").dropFirst().first.flatMap { Double($0.dropLast()) }
            }
            #expect(waits == waits.sorted() && waits.count == Set(waits).count && (waits.last ?? 0) >= 2, "back-offs grow: \(backOffs)")
            let table = try await cluster.cox("get", "pods")
            #expect(table.output.contains("crash"), "\(table.output)")
            let previous = try await cluster.cox("logs", "crash", "-p")
            #expect(previous.output == "boom\n", "\(previous.output)")

            // What happened is on record as the kubelet records it, found the way `kubectl
            // describe` asks (a field selector on the involved object).
            let crash = try await cluster.get("crash")
            try await eventually("the agent's events about the crashing container") {
                let events = try await cluster.client.list(Event.self, namespace: "default",
                                                           fieldSelector: "involvedObject.kind=Pod,involvedObject.name=crash,involvedObject.uid=\(crash.metadata.uid)").items
                let reasons = Set(events.filter { $0.involvedObject.fieldPath == "spec.containers{main}" }.map(\.reason))
                return reasons.isSuperset(of: ["Created", "Started", "BackOff"])
                    && events.contains { $0.reason == "BackOff" && $0.type == "Warning" && $0.message.hasPrefix("Back-off restarting failed container main in pod crash_default(") }
            }
            let others = try await cluster.client.list(Event.self, namespace: "default", fieldSelector: "involvedObject.name=crash,reason=Scheduled").items
            #expect(others.allSatisfy { $0.involvedObject.name == "crash" && $0.reason == "Scheduled" })
        }
    }

    /// activeDeadlineSeconds: past it, the agent stops the pod and leaves it Failed, DeadlineExceeded.
    @Test func aPodPastItsActiveDeadlineIsStoppedAndFailed() async throws {
        try await AgentCluster.run { cluster in
            var pod = cluster.pod("bounded", "exec sleep 300", grace: 1)
            pod.spec.activeDeadlineSeconds = 2
            _ = try await cluster.client.create(pod)
            try await eventually("bounded Failed: DeadlineExceeded", timeout: 30) {
                let status = try await cluster.get("bounded").status
                return status.phase == "Failed" && status.reason == "DeadlineExceeded"
            }
            let failed = try await cluster.get("bounded")
            #expect(failed.status.message == "Pod was active on the node longer than the specified deadline")
            #expect(failed.status.containerStatuses.first?.state.hasTerminated == true)
            #expect(cluster.processes(matching: cluster.marker).isEmpty, "its process was stopped")
        }
    }

    @Test func agentCrashKeepsPodsRunningAndTheNextAgentReadoptsThem() async throws {
        try await AgentCluster.run { cluster in
            _ = try await cluster.client.create(cluster.pod("steady", "sleep 300; true"))
            var before = Pod()
            try await eventually("steady is Running") {
                before = try await cluster.get("steady")
                return before.status.phase == "Running"
            }
            let pid = try #require(cluster.pid(before))
            await cluster.killAgent()
            #expect(kill(pid, 0) == 0, "the container outlives its agent")
            let restarted = Date()
            try cluster.startAgent()
            // The new agent reports the same container: no restart, no duplicate. It has found the
            // record and been at work for two heartbeats (its pod sync runs before the first).
            try await eventually("the new agent re-adopted the container and renewed its lease twice", timeout: 60) {
                let log = (try? String(contentsOfFile: cluster.dir.path + "/agent.log", encoding: .utf8)) ?? ""
                guard log.contains("re-adopted containers") else { return false }
                let lease = try await cluster.client.get(Lease.self, namespace: "kube-node-lease", name: "n1")
                return lease.spec.renewTime.date > restarted.addingTimeInterval(1.5)
            }
            let after = try await cluster.get("steady")
            #expect(cluster.pid(after) == pid && after.status.containerStatuses.first?.restartCount == 0)
            #expect(cluster.processes(matching: cluster.marker) == [pid], "exactly one process for the pod (the shell; its sleep is its child)")
        }
    }

    @Test func podsKeepRunningWhileTheServerIsDownAndStatusCatchesUp() async throws {
        try await AgentCluster.run { cluster in
            _ = try await cluster.client.create(cluster.pod("survivor", "exec sleep 300"))
            _ = try await cluster.client.create(cluster.pod("finisher", "sleep 3; exit 0", restartPolicy: "Never"))
            var survivor = Pod()
            try await eventually("both Running") {
                survivor = try await cluster.get("survivor")
                let finisher = try await cluster.get("finisher")
                return survivor.status.phase == "Running" && finisher.status.phase == "Running"
            }
            let pid = try #require(cluster.pid(survivor))
            let finisher = try #require(cluster.pid(try await cluster.get("finisher")))
            await cluster.stopServer()
            // Without a server the finisher exits (its agent reaps it) and the survivor runs on.
            try await eventually("the finisher exits while the server is down", timeout: 60) { kill(finisher, 0) != 0 }
            #expect(kill(pid, 0) == 0, "pods keep running without the server")
            try await cluster.startServer()
            try await eventually("the agent reports what happened meanwhile", timeout: 30) {
                (try? await cluster.get("finisher"))?.status.phase == "Succeeded"
            }
            #expect(cluster.pid(try await cluster.get("survivor")) == pid)
        }
    }

    @Test func readinessFlipsReadyAndLivenessFailureRestarts() async throws {
        try await AgentCluster.run { cluster in
            let flag = cluster.dir.path + "/ready"
            let alive = cluster.dir.path + "/alive"
            var probed = cluster.pod("probed", "touch \(alive); sleep 300")
            var readiness = Probe()
            readiness.exec.command = ["test", "-f", flag]
            readiness.periodSeconds = 1
            readiness.failureThreshold = 1
            var liveness = Probe()
            liveness.exec.command = ["test", "-f", alive]
            liveness.periodSeconds = 1
            liveness.failureThreshold = 2
            probed.spec.containers[0].readinessProbe = readiness
            probed.spec.containers[0].livenessProbe = liveness
            _ = try await cluster.client.create(probed)

            func ready() async throws -> Bool {
                try await cluster.get("probed").status.conditions.first { $0.type == "Ready" }?.status == "True"
            }
            try await eventually("probed is Running") { try await cluster.get("probed").status.phase == "Running" }
            try await Task.sleep(for: .seconds(2))
            #expect(try await ready() == false, "not ready while the readiness probe fails")
            FileManager.default.createFile(atPath: flag, contents: nil)
            try await eventually("Ready once the probe passes") { try await ready() }
            try FileManager.default.removeItem(atPath: flag)
            try await eventually("not Ready again when it fails") { try await !ready() }

            // The liveness probe fails twice: the container is restarted (and re-creates its file).
            try FileManager.default.removeItem(atPath: alive)
            try await eventually("restarted by its liveness probe", timeout: 30) {
                (try await cluster.get("probed")).status.containerStatuses.first?.restartCount == 1
            }
            #expect(FileManager.default.fileExists(atPath: alive))

            // An httpGet readiness probe against a real server.
            let port = try freeLoopbackPort()
            var web = cluster.pod("web", "python3 -m http.server \(port) --bind 127.0.0.1")
            var http = Probe()
            http.httpGet.path = "/"
            http.httpGet.port = IntOrString(int: Int32(port))
            http.periodSeconds = 1
            web.spec.containers[0].readinessProbe = http
            _ = try await cluster.client.create(web)
            try await eventually("the web server is Ready by its httpGet probe") {
                try await cluster.get("web").status.conditions.first { $0.type == "Ready" }?.status == "True"
            }
        }
    }

    @Test func aPodOverItsMemoryLimitIsOOMKilled() async throws {
        try await AgentCluster.run { cluster in
            let node = try await cluster.client.get(Node.self, namespace: "", name: "n1")
            let limits = try #require(node.status.conditions.first { $0.type == "ResourceLimitsEnforced" }, "the node says whether limits are enforced")
            guard limits.status == "True" else {
                print("cgroups are not usable here (\(limits.message)): skipping the memory-limit kill")
                return
            }
            var hog = cluster.pod("hog", "python3 -c 'import time; x = bytearray(256 * 1024 * 1024); time.sleep(60)'", restartPolicy: "Never")
            hog.spec.containers[0].resources.limits = ["memory": "32Mi"]
            _ = try await cluster.client.create(hog)
            try await eventually("hog is OOMKilled", timeout: 30) {
                let pod = try await cluster.get("hog")
                return pod.status.containerStatuses.first?.state.terminated.reason == "OOMKilled"
            }
            let pod = try await cluster.get("hog")
            #expect(pod.status.phase == "Failed" && pod.status.containerStatuses.first?.state.terminated.exitCode == 137)
        }
    }

    @Test func logsTailFollowAndTheAgentEndpointNeedsAClusterCertificate() async throws {
        try await AgentCluster.run { cluster in
            _ = try await cluster.client.create(cluster.pod("talker", "for i in 1 2 3 4 5; do echo line $i; done; while true; do echo tick; sleep 0.2; done"))
            try await eventually("talker has written its first lines") { (try? await cluster.cox("logs", "talker"))?.output.contains("line 5") == true }
            let tail = try await cluster.cox("logs", "talker", "--tail", "1")
            #expect(tail.output.split(separator: "\n").count == 1, "\(tail.output)")

            // -f keeps streaming new lines.
            let follower = try Child(cluster.binary, ["logs", "talker", "-f", "--kubeconfig", cluster.kubeconfig], stdout: .pipe)
            let handle = try #require(follower.output)
            let text = try await Tools.read(handle, timeout: 15) { $0.components(separatedBy: "tick").count >= 20 }
            kill(follower.pid, SIGTERM)
            await follower.wait()
            #expect(text.hasPrefix("line 1\n") && text.components(separatedBy: "tick").count >= 20, "\(text.suffix(200))")

            // The agent's endpoint: refused without a certificate from the cluster CA.
            let node = try await cluster.client.get(Node.self, namespace: "", name: "n1")
            let port = node.status.daemonEndpoints.kubeletEndpoint.port
            #expect(port > 0)
            let anonymous = try await Tools.runDetached("/usr/bin/curl", ["-sS", "--cacert", "\(cluster.dir.path)/pki/ca.crt", "-o", "/dev/null", "-w", "%{http_code}",
                                                            "https://127.0.0.1:\(port)/containerLogs/default/talker/main"])
            #expect(anonymous.status != 0 || anonymous.output.hasSuffix("000"), "no client certificate, no logs: \(anonymous.output)")
            let admin = try await Tools.runDetached("/usr/bin/curl", ["-sS", "--cacert", "\(cluster.dir.path)/pki/ca.crt", "--cert", "\(cluster.dir.path)/pki/admin.crt",
                                                        "--key", "\(cluster.dir.path)/pki/admin.key", "https://127.0.0.1:\(port)/containerLogs/default/talker/main?tailLines=1"])
            #expect(admin.status == 0 && admin.output.hasPrefix("tick"), "\(admin.output)")
            // Another identity of the cluster (a node, a viewer) is let in by TLS, but not to the logs.
            let other = try ClusterPKI.loadAuthority(directory: "\(cluster.dir.path)/pki").issue(commonName: "cox:node:n9", organizations: ["cox:nodes"], usage: .client)
            try other.certificatePEM.write(toFile: "\(cluster.dir.path)/n9.crt", atomically: true, encoding: .utf8)
            try other.privateKeyPEM.write(toFile: "\(cluster.dir.path)/n9.key", atomically: true, encoding: .utf8)
            let node9 = try await Tools.runDetached("/usr/bin/curl", ["-sS", "--cacert", "\(cluster.dir.path)/pki/ca.crt", "--cert", "\(cluster.dir.path)/n9.crt",
                                                        "--key", "\(cluster.dir.path)/n9.key", "-w", "\n%{http_code}", "https://127.0.0.1:\(port)/containerLogs/default/talker/main"])
            #expect(node9.output.hasSuffix("403") && !node9.output.contains("tick"), "\(node9.output)")
        }
    }
}
