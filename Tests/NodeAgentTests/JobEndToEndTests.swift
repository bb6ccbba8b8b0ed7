import API
import Client
import Foundation
import Testing
import TestSupport

/// Jobs with real processes: `cox server` (its Job controller, scheduler and garbage collector)
/// and `cox agent`, driven by kubectl (the oldest and newest here: JSON and Kubernetes' protobuf
/// bodies) and read by the official Python client.
@Suite("Jobs end to end", .watchdog, .serialized)
struct JobEndToEndTests {
    func kubectl(_ path: String, _ cluster: AgentCluster, _ arguments: [String], input: String? = nil, timeout: Double = 90) async throws -> Tools.Output {
        try await Tools.runDetached(path, ["--kubeconfig", cluster.kubeconfig] + arguments, input: input, timeout: timeout)
    }

    @Test func kubectlCreatesWaitsForReadsAndDeletesJobs() async throws {
        try await AgentCluster.run { cluster in
            for (version, path) in Tools.kubectlRange() {
                let name = "hello-\(version.replacingOccurrences(of: ".", with: "-"))"
                let created = try await kubectl(path, cluster, ["create", "job", name, "--image=busybox", "--", "sh", "-c", "echo hi from \(version)", cluster.marker])
                #expect(created.status == 0 && created.output.contains("job.batch/\(name) created"), "kubectl \(version): \(created.output)")
                let waited = try await kubectl(path, cluster, ["wait", "--for=condition=complete", "job/\(name)", "--timeout=60s"])
                #expect(waited.status == 0 && waited.output.contains("condition met"), "kubectl \(version) wait: \(waited.output)")
                let logs = try await kubectl(path, cluster, ["logs", "job/\(name)"])
                #expect(logs.output == "hi from \(version)\n", "kubectl \(version) logs: \(logs.output)")
                let row = try await kubectl(path, cluster, ["get", "job", name, "--no-headers"]).output.split(separator: " ", omittingEmptySubsequences: true)
                #expect(row.count >= 3 && row[1] == "Complete" && row[2] == "1/1", "kubectl \(version) get job: \(row)")
                let deleted = try await kubectl(path, cluster, ["delete", "job", name])
                #expect(deleted.status == 0, "\(deleted.output)")
                try await eventually("\(name)'s pod goes with it") {
                    try await cluster.client.list(Pod.self, namespace: "default", labelSelector: "job-name=\(name)").items.isEmpty
                }
            }

            // Work in parallel: 4 completions, 2 at a time; then one that fails at once (no retry).
            let (_, newest) = try #require(Tools.kubectlRange().last)
            let manifest = """
                apiVersion: batch/v1
                kind: Job
                metadata: {name: parallel}
                spec:
                  completions: 4
                  parallelism: 2
                  template:
                    spec:
                      restartPolicy: Never
                      terminationGracePeriodSeconds: 1
                      containers:
                        - name: work
                          command: ["sh", "-c", "echo working; sleep 1", "\(cluster.marker)"]
                ---
                apiVersion: batch/v1
                kind: Job
                metadata: {name: doomed}
                spec:
                  backoffLimit: 0
                  ttlSecondsAfterFinished: 3
                  template:
                    spec:
                      restartPolicy: Never
                      containers:
                        - name: work
                          command: ["sh", "-c", "echo giving up; exit 2", "\(cluster.marker)"]
                """
            let applied = try await kubectl(newest, cluster, ["apply", "-f", "-"], input: manifest)
            #expect(applied.status == 0 && applied.output.contains("job.batch/parallel created"), "\(applied.output)")
            let failed = try await kubectl(newest, cluster, ["wait", "--for=condition=failed", "job/doomed", "--timeout=60s"])
            #expect(failed.status == 0, "\(failed.output)")
            let doomed = try await cluster.client.get(Job.self, namespace: "default", name: "doomed")
            #expect(doomed.status.failed == 1 && doomed.status.conditions.contains { $0.type == "Failed" && $0.reason == "BackoffLimitExceeded" })
            try await eventually("a finished Job with ttlSecondsAfterFinished is deleted, its pod with it", timeout: 30) {
                let jobs = try await cluster.client.list(Job.self, namespace: "default").items
                let pods = try await cluster.client.list(Pod.self, namespace: "default", labelSelector: "job-name=doomed").items
                return !jobs.contains { $0.metadata.name == "doomed" } && pods.isEmpty
            }
            let complete = try await kubectl(newest, cluster, ["wait", "--for=condition=complete", "job/parallel", "--timeout=60s"])
            #expect(complete.status == 0, "\(complete.output)")
            let parallel = try await cluster.client.get(Job.self, namespace: "default", name: "parallel")
            let pods = try await cluster.client.list(Pod.self, namespace: "default", labelSelector: "job-name=parallel").items
            #expect(parallel.status.succeeded == 4 && pods.count == 4 && pods.allSatisfy { $0.status.phase == "Succeeded" }, "\(parallel.status)")

            // The official Python client reads Jobs with its strict models.
            if Tools.pythonKubernetesClient() {
                let script = """
                    import os, sys
                    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
                        os.environ.pop(variable, None)
                    from kubernetes import client, config
                    config.load_kube_config(config_file=sys.argv[1])
                    batch = client.BatchV1Api()
                    job = batch.read_namespaced_job("parallel", "default")
                    listed = batch.list_namespaced_job("default")
                    print(job.status.succeeded, job.spec.completions, [c.type for c in job.status.conditions], len(listed.items))
                    # Deleted without a propagation policy, a Job leaves its pods (as in Kubernetes).
                    batch.delete_namespaced_job("parallel", "default")
                    """
                let python = try await Tools.runDetached(try #require(Tools.find("python3")), ["-c", script, cluster.kubeconfig], timeout: 60)
                #expect(python.output.hasPrefix("4 4 ['SuccessCriteriaMet', 'Complete'] 1\n"), "\(python.output)")
                try await eventually("the Job is gone and its pods stay, orphaned") {
                    let jobs = try await cluster.client.list(Job.self, namespace: "default").items
                    let pods = try await cluster.client.list(Pod.self, namespace: "default", labelSelector: "job-name=parallel").items
                    return jobs.isEmpty && pods.count == 4 && pods.allSatisfy { $0.metadata.ownerReferences.isEmpty }
                }
            }
        }
    }

    /// A Job whose pod has a sidecar completes when its container does; the sidecar is stopped.
    @Test func aJobWithASidecarCompletes() async throws {
        try await AgentCluster.run { cluster in
            let (_, newest) = try #require(Tools.kubectlRange().last)
            let manifest = """
                apiVersion: batch/v1
                kind: Job
                metadata: {name: with-sidecar}
                spec:
                  template:
                    spec:
                      restartPolicy: Never
                      terminationGracePeriodSeconds: 2
                      initContainers:
                        - name: logger
                          restartPolicy: Always
                          command: ["sh", "-c", "while true; do sleep 0.5; done", "\(cluster.marker)"]
                      containers:
                        - name: work
                          command: ["sh", "-c", "sleep 1; echo done", "\(cluster.marker)"]
                """
            #expect(try await kubectl(newest, cluster, ["apply", "-f", "-"], input: manifest).status == 0)
            let waited = try await kubectl(newest, cluster, ["wait", "--for=condition=complete", "job/with-sidecar", "--timeout=60s"])
            #expect(waited.status == 0, "\(waited.output)")
            try await eventually("the sidecar is stopped", timeout: 30) {
                let pods = try await cluster.client.list(Pod.self, namespace: "default", labelSelector: "job-name=with-sidecar").items
                return pods.count == 1 && pods[0].status.phase == "Succeeded" && pods[0].status.initContainerStatuses.first?.state.hasTerminated == true
                    && cluster.processes(matching: "while true; do sleep 0.5").isEmpty
            }
        }
    }
}
