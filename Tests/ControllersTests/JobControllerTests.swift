import API
import Client
import ControllerRuntime
import Controllers
import Foundation
import Testing
import TestSupport

/// The Job controller against a real in-process API server, on a fake clock: pods are driven
/// to Succeeded or Failed by the test (as an agent would report them).
@Suite(.watchdog) struct JobControllerTests {
    static func job(_ name: String, completions: Int32? = 1, parallelism: Int32? = nil, backoffLimit: Int32? = nil, policy: String = "Never") -> Job {
        var job = Job()
        job.metadata.name = name
        job.metadata.namespace = "default"
        if let completions { job.spec.completions = completions }
        if let parallelism { job.spec.parallelism = parallelism }
        if let backoffLimit { job.spec.backoffLimit = backoffLimit }
        var container = Container()
        container.name = "work"
        container.command = ["sh", "-c", "true"]
        job.spec.template.spec.containers = [container]
        job.spec.template.spec.restartPolicy = policy
        return job
    }

    /// Reports a pod finished, with its container's exit code, at `at`.
    static func finish(_ pod: Pod, exitCode: Int32, at: Date, client: APIClient) async throws {
        var pod = pod
        pod.status.phase = exitCode == 0 ? "Succeeded" : "Failed"
        var status = ContainerStatus()
        status.name = "work"
        status.state.terminated.exitCode = exitCode
        status.state.terminated.reason = exitCode == 0 ? "Completed" : "Error"
        status.state.terminated.finishedAt = Timestamp(wholeSecondsOf: at)
        pod.status.containerStatuses = [status]
        _ = try await client.updateStatus(pod)
    }

    func active(_ harness: ControllerHarness, _ job: String) async throws -> [Pod] {
        try await harness.pods("job-name=\(job)").filter { $0.status.phase != "Succeeded" && $0.status.phase != "Failed" && !$0.metadata.hasDeletionTimestamp }
    }

    @Test func podsRunInParallelUntilEnoughSucceed() async throws {
        let clock = FakeClock()
        try await ControllerHarness.run(clock: clock, { [JobController(context: $0).controller()] }) { harness, _ in
            let job = try await harness.client.create(Self.job("batch", completions: 3, parallelism: 2))
            // The selector and pod labels come from the Job's uid, as Kubernetes generates them.
            #expect(job.spec.selector.matchLabels == ["batch.kubernetes.io/controller-uid": job.metadata.uid])
            #expect(job.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "batch" && job.spec.template.metadata.labels["controller-uid"] == job.metadata.uid)

            try await waitUntil("two pods run at once") { try await active(harness, "batch").count == 2 }
            let first = try await active(harness, "batch")
            #expect(first.allSatisfy { $0.metadata.controllerReference?.uid == job.metadata.uid && $0.metadata.name.hasPrefix("batch-") && $0.spec.restartPolicy == "Never" })
            try await Self.finish(first[0], exitCode: 0, at: clock.now, client: harness.client)
            try await waitUntil("a third pod replaces the one that succeeded (3 completions)") {
                let active = try await active(harness, "batch").count
                let all = try await harness.pods("job-name=batch").count
                return active == 2 && all == 3
            }
            for pod in try await active(harness, "batch") { try await Self.finish(pod, exitCode: 0, at: clock.now, client: harness.client) }
            try await waitUntil("the Job is Complete") {
                let status = try await harness.client.get(Job.self, namespace: "default", name: "batch").status
                return status.conditions.contains { $0.type == "Complete" && $0.status == "True" }
            }
            let done = try await harness.client.get(Job.self, namespace: "default", name: "batch")
            #expect(done.status.succeeded == 3 && done.status.active == 0 && done.status.failed == 0 && done.status.hasCompletionTime)
            #expect(done.status.conditions.map(\.type) == ["SuccessCriteriaMet", "Complete"] && done.status.conditions.allSatisfy { $0.reason == "CompletionsReached" })
            #expect(Table.jobStatus(done) == "Complete" && Table.jobCompletions(done) == "3/3")
            #expect(try await harness.pods("job-name=batch").count == 3, "no more pods once complete")
        }
    }

    @Test func failedPodsAreReplacedAfterABackOffUntilTheLimit() async throws {
        let clock = FakeClock()
        try await ControllerHarness.run(clock: clock, { [JobController(context: $0).controller()] }) { harness, controllers in
            _ = try await harness.client.create(Self.job("flaky", backoffLimit: 2))
            try await waitUntil("a pod runs") { try await active(harness, "flaky").count == 1 }
            for (failures, wait) in [(1, 10), (2, 20)] {
                try await Self.finish(try await active(harness, "flaky")[0], exitCode: 1, at: clock.now, client: harness.client)
                // No replacement before the back-off (10 s, then 20 s) has passed.
                try await waitUntil("the failure is counted and a retry scheduled") {
                    let status = try await harness.client.get(Job.self, namespace: "default", name: "flaky").status
                    let delayed = await controllers[0].queue.delayedCount
                    return status.failed == Int32(failures) && status.active == 0 && delayed == 1
                }
                #expect(try await active(harness, "flaky").isEmpty)
                clock.advance(by: .seconds(wait - 1))
                #expect(try await active(harness, "flaky").isEmpty, "still backing off after \(wait - 1) s")
                clock.advance(by: .seconds(2))
                try await waitUntil("a replacement after \(wait) s") { try await active(harness, "flaky").count == 1 }
            }
            try await Self.finish(try await active(harness, "flaky")[0], exitCode: 1, at: clock.now, client: harness.client)
            try await waitUntil("the Job Failed: BackoffLimitExceeded") {
                let job = try await harness.client.get(Job.self, namespace: "default", name: "flaky")
                return job.status.conditions.contains { $0.type == "Failed" && $0.status == "True" && $0.reason == "BackoffLimitExceeded" }
            }
            let failed = try await harness.client.get(Job.self, namespace: "default", name: "flaky")
            #expect(failed.status.failed == 3 && Table.jobStatus(failed) == "Failed")
            #expect(failed.status.conditions.first { $0.type == "Failed" }?.message == "Job has reached the specified backoff limit")
            clock.advance(by: .seconds(600))
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await harness.pods("job-name=flaky").count == 3, "no pod after the Job failed")
            let events = try await harness.client.list(Event.self, namespace: "default", fieldSelector: "involvedObject.name=flaky").items
            #expect(events.contains { $0.reason == "BackoffLimitExceeded" && $0.type == "Warning" })
        }
    }

    /// Under OnFailure the pod's containers restart in place: reaching backoffLimit restarts fails the Job.
    @Test func containerRestartsCountUnderOnFailure() async throws {
        let clock = FakeClock()
        try await ControllerHarness.run(clock: clock, { [JobController(context: $0).controller()] }) { harness, _ in
            _ = try await harness.client.create(Self.job("retrying", backoffLimit: 2, policy: "OnFailure"))
            try await waitUntil("a pod runs") { try await active(harness, "retrying").count == 1 }
            for restarts in [1, 2] {
                var pod = try await active(harness, "retrying")[0]
                pod.status.phase = "Running"
                var status = ContainerStatus()
                status.name = "work"
                status.restartCount = Int32(restarts)
                status.state.running.startedAt = Timestamp(wholeSecondsOf: clock.now)
                pod.status.containerStatuses = [status]
                _ = try await harness.client.updateStatus(pod)
                if restarts == 1 {
                    try await waitUntil("one restart is within the limit") {
                        try await harness.client.get(Job.self, namespace: "default", name: "retrying").status.active == 1
                    }
                    #expect(try await harness.client.get(Job.self, namespace: "default", name: "retrying").status.conditions.isEmpty)
                }
            }
            try await waitUntil("two restarts reach backoffLimit 2: Failed, the pod deleted") {
                let job = try await harness.client.get(Job.self, namespace: "default", name: "retrying")
                let running = try await active(harness, "retrying")
                return job.status.conditions.contains { $0.type == "Failed" && $0.reason == "BackoffLimitExceeded" } && running.isEmpty
            }
        }
    }

    @Test func aDeadlineFailsTheJobAndSuspendingStopsItsPods() async throws {
        let clock = FakeClock()
        try await ControllerHarness.run(clock: clock, { [JobController(context: $0).controller()] }) { harness, controllers in
            var slow = Self.job("slow")
            slow.spec.activeDeadlineSeconds = 30
            _ = try await harness.client.create(slow)
            try await waitUntil("a pod runs and the deadline is scheduled") {
                let delayed = await controllers[0].queue.delayedCount
                return try await active(harness, "slow").count == 1 && delayed == 1
            }
            clock.advance(by: .seconds(31))
            try await waitUntil("the Job Failed: DeadlineExceeded, its pod deleted") {
                let job = try await harness.client.get(Job.self, namespace: "default", name: "slow")
                let running = try await active(harness, "slow")
                return job.status.conditions.contains { $0.type == "Failed" && $0.reason == "DeadlineExceeded" } && running.isEmpty
            }

            var paused = Self.job("paused")
            paused.spec.suspend = true
            _ = try await harness.client.create(paused)
            try await waitUntil("a suspended Job says so and runs nothing") {
                let job = try await harness.client.get(Job.self, namespace: "default", name: "paused")
                return job.status.conditions.contains { $0.type == "Suspended" && $0.status == "True" && $0.reason == "JobSuspended" }
            }
            #expect(try await harness.pods("job-name=paused").isEmpty)
            #expect(Table.jobStatus(try await harness.client.get(Job.self, namespace: "default", name: "paused")) == "Suspended")
            try await harness.modify(Job.self, "paused") { $0.spec.suspend = false }
            try await waitUntil("resumed: a pod runs") {
                let job = try await harness.client.get(Job.self, namespace: "default", name: "paused")
                let running = try await active(harness, "paused")
                return running.count == 1
                    && job.status.conditions.contains { $0.type == "Suspended" && $0.status == "False" && $0.reason == "JobResumed" }
            }
            try await harness.modify(Job.self, "paused") { $0.spec.suspend = true }
            try await waitUntil("suspended again: its pod is deleted") { try await active(harness, "paused").isEmpty }
        }
    }
}
