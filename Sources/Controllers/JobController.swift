import API
import Client
import ControllerRuntime
import Foundation
import Logging
import SwiftProtobuf

/// Runs each Job's pods to completion, as Kubernetes' job controller does for NonIndexed Jobs:
/// up to `parallelism` pods at once until `completions` have succeeded (a work queue without
/// completions: until one has and none runs); failed pods are replaced after an exponential
/// back-off (10 s, 20 s, … 6 min) until more than `backoffLimit` failures (restarts under
/// OnFailure count) fail the Job, as does running longer than `activeDeadlineSeconds`; a
/// suspended Job runs nothing; a finished one is deleted `ttlSecondsAfterFinished` later.
/// Conditions, counts and events in Kubernetes' words.
public final class JobController: Reconciler {
    public struct Options: Sendable {
        /// The wait before replacing a failed pod, doubled per failure up to `maxBackoff`.
        public var backoff: Duration = .seconds(10)
        public var maxBackoff: Duration = .seconds(360)
        public init() {}
    }

    let context: ControllerContext
    let options: Options
    let jobs: Informer<Job>
    let pods: Informer<Pod>
    public let expectations: Expectations
    var podControl: PodControl { PodControl(context: context, expectations: expectations) }
    /// Pods created or deleted at most this many at a time per Job.
    static let burst = 100

    public init(context: ControllerContext, options: Options = Options()) {
        self.context = context
        self.options = options
        self.jobs = context.informers.informer(Job.self)
        self.pods = context.informers.informer(Pod.self)
        self.expectations = Expectations(clock: context.clock)
    }

    public func controller(workers: Int = 2) -> Controller {
        let queue = context.queue()
        jobs.addHandler { event in
            Task { await queue.add(ObjectKey(event.object)) }
        }
        pods.addHandler { [expectations] event in
            let keys = expectations.observe(event, ownerKind: "Job")
            if keys.isEmpty { return }
            Task { for key in Set(keys) { await queue.add(key) } }
        }
        let informers = context.informers
        return Controller(name: "job", queue: queue, reconciler: self, workers: workers, logger: context.logger) {
            await informers.waitForSync()
        }
    }

    public func reconcile(_ key: ObjectKey) async throws -> ReconcileResult {
        guard let job = jobs.get(namespace: key.namespace, name: key.name) else {
            expectations.forget(key)
            return .done
        }
        if job.metadata.hasDeletionTimestamp { return .done }
        let now = context.clock.now
        let owned = pods.byIndex(Informer<Pod>.ownerIndex, job.metadata.uid).filter { $0.metadata.namespace == key.namespace }
        let active = owned.filter(\.isActive)
        if Self.finished(job) {
            try await podControl.delete(active, of: job, key: key)
            return try await expireIfDue(job, now: now)
        }
        var status = job.status
        status.succeeded = max(status.succeeded, Int32(owned.filter { $0.status.phase == "Succeeded" }.count))
        status.failed = max(status.failed, Int32(owned.filter { $0.status.phase == "Failed" }.count))
        // Under OnFailure the agent restarts failed containers in place: their restarts (init
        // containers' and sidecars' included) count, and reaching the limit fails the Job.
        let restarts = job.spec.template.spec.restartPolicy != "OnFailure" ? 0 : active.reduce(Int32(0)) { sum, pod in
            sum + (pod.status.containerStatuses + pod.status.initContainerStatuses).reduce(0) { $0 + $1.restartCount }
        }
        let restartsExceed = job.spec.backoffLimit == 0 ? restarts > 0 : restarts >= job.spec.backoffLimit
        let suspended = job.spec.suspend
        if !status.hasStartTime && !suspended { status.startTime = Timestamp(wholeSecondsOf: now) }

        var ending: (type: String, target: String, reason: String, message: String)?
        if status.failed > job.spec.backoffLimit || restartsExceed {
            ending = ("Failed", "FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        } else if job.spec.hasActiveDeadlineSeconds, status.hasStartTime, !suspended,
                  now.timeIntervalSince(status.startTime.date) >= Double(job.spec.activeDeadlineSeconds) {
            ending = ("Failed", "FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline")
        } else if job.spec.hasCompletions ? status.succeeded >= job.spec.completions : status.succeeded > 0 && active.isEmpty {
            ending = ("Complete", "SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods")
        }

        var result = ReconcileResult.done
        if let ending {
            try await podControl.delete(active, of: job, key: key)
            Self.set(&status, ending.target, true, reason: ending.reason, message: ending.message, now: now)
            Self.set(&status, ending.type, true, reason: ending.reason, message: ending.message, now: now)
            if ending.type == "Complete" {
                status.completionTime = Timestamp(wholeSecondsOf: now)
                context.recorder.record(job, .normal, reason: "Completed", message: "Job completed")
            } else {
                context.recorder.record(job, .warning, reason: ending.reason, message: ending.message)
            }
            status.active = 0
            status.ready = 0
        } else if suspended {
            try await podControl.delete(active, of: job, key: key)
            if !Self.isTrue(job.status, "Suspended") {
                Self.set(&status, "Suspended", true, reason: "JobSuspended", message: "Job suspended", now: now)
                context.recorder.record(job, .normal, reason: "Suspended", message: "Job suspended")
            }
            status.active = 0
            status.ready = 0
        } else {
            if Self.isTrue(job.status, "Suspended") {
                Self.set(&status, "Suspended", false, reason: "JobResumed", message: "Job resumed", now: now)
                status.startTime = Timestamp(wholeSecondsOf: now)
                context.recorder.record(job, .normal, reason: "Resumed", message: "Job resumed")
            }
            let remaining = job.spec.hasCompletions ? job.spec.completions - status.succeeded : (status.succeeded > 0 ? 0 : job.spec.parallelism)
            let want = Int(max(0, min(job.spec.parallelism, remaining)))
            var running = active.count
            if want > running, expectations.satisfied(key) {
                // After failures, a replacement waits: 10 s, 20 s, 40 s … from the newest failure.
                let wait = Self.backoff(failures: Int(status.failed), since: Self.lastFailure(owned), now: now, options: options)
                if wait > .zero {
                    result = .requeue(after: wait)
                } else {
                    let pods = (0..<min(want - running, Self.burst)).map { _ in Self.pod(for: job) }
                    running += try await podControl.create(pods, for: job, key: key)
                }
            } else if want < running, expectations.satisfied(key) {
                let surplus = Array(ReplicaSetController.deletionOrder(active).prefix(min(running - want, Self.burst)))
                try await podControl.delete(surplus, of: job, key: key)
                running -= surplus.count
            }
            status.active = Int32(running)
            status.ready = Int32(active.filter(\.isReady).count)
            if job.spec.hasActiveDeadlineSeconds, status.hasStartTime {
                // Looked at again when the deadline passes.
                let left = max(0, Double(job.spec.activeDeadlineSeconds) - now.timeIntervalSince(status.startTime.date))
                let wait = Duration.milliseconds(Int64(left * 1000) + 100)
                if case .requeue(let sooner) = result { result = .requeue(after: min(sooner, wait)) } else { result = .requeue(after: wait) }
            }
        }
        if status != job.status {
            var updated = job
            updated.status = status
            do { _ = try await context.client.updateStatus(updated) } catch let error as ClientError where error.code == 404 {}
        }
        if Self.finished(updated: status), job.spec.hasTtlSecondsAfterFinished {
            return .requeue(after: .seconds(Int64(job.spec.ttlSecondsAfterFinished)))
        }
        return result
    }

    static func isTrue(_ status: JobStatus, _ type: String) -> Bool {
        status.conditions.contains { $0.type == type && $0.status == "True" }
    }

    static func finished(_ job: Job) -> Bool { finished(updated: job.status) }

    static func finished(updated status: JobStatus) -> Bool { isTrue(status, "Complete") || isTrue(status, "Failed") }

    /// Sets a condition, keeping its transition time when its status stays.
    static func set(_ status: inout JobStatus, _ type: String, _ value: Bool, reason: String, message: String, now: Date) {
        var condition = JobCondition()
        condition.type = type
        condition.status = value ? "True" : "False"
        condition.reason = reason
        condition.message = message
        condition.lastProbeTime = Timestamp(wholeSecondsOf: now)
        if let index = status.conditions.firstIndex(where: { $0.type == type }) {
            let before = status.conditions[index]
            condition.lastTransitionTime = before.status == condition.status ? before.lastTransitionTime : Timestamp(wholeSecondsOf: now)
            status.conditions[index] = condition
        } else {
            condition.lastTransitionTime = Timestamp(wholeSecondsOf: now)
            status.conditions.append(condition)
        }
    }

    /// When the newest failed pod (or failed container) of the Job ended.
    static func lastFailure(_ pods: [Pod]) -> Date? {
        var last: Date?
        for pod in pods {
            for status in pod.status.containerStatuses + pod.status.initContainerStatuses {
                for state in [status.state, status.lastState] where state.hasTerminated && state.terminated.exitCode != 0 {
                    let finished = state.terminated.finishedAt.date
                    if last.map({ finished > $0 }) ?? true { last = finished }
                }
            }
        }
        return last
    }

    /// How long a replacement still waits after `failures` failures, the newest at `since`.
    static func backoff(failures: Int, since: Date?, now: Date, options: Options) -> Duration {
        guard failures > 0, let since else { return .zero }
        var delay = options.backoff
        for _ in 1..<failures where delay < options.maxBackoff { delay *= 2 }
        delay = min(delay, options.maxBackoff)
        let elapsed = now.timeIntervalSince(since)
        let left = Double(delay.components.seconds) - elapsed
        return left > 0 ? .milliseconds(Int64(left * 1000)) : .zero
    }

    /// A finished Job with `ttlSecondsAfterFinished` is deleted (its pods with it) once due.
    func expireIfDue(_ job: Job, now: Date) async throws -> ReconcileResult {
        guard job.spec.hasTtlSecondsAfterFinished,
              let finishedAt = job.status.conditions.first(where: { ($0.type == "Complete" || $0.type == "Failed") && $0.status == "True" })?.lastTransitionTime.date
        else { return .done }
        let left = finishedAt.addingTimeInterval(Double(job.spec.ttlSecondsAfterFinished)).timeIntervalSince(now)
        if left > 0 { return .requeue(after: .milliseconds(Int64(left * 1000) + 100)) }
        do {
            _ = try await context.client.delete(Job.self, namespace: job.metadata.namespace, name: job.metadata.name, propagationPolicy: "Background")
        } catch let error as ClientError where error.code == 404 {}
        return .done
    }

    static func pod(for job: Job) -> Pod {
        var pod = Pod()
        pod.setTypeMeta()
        pod.metadata.namespace = job.metadata.namespace
        pod.metadata.generateName = job.metadata.name + "-"
        pod.metadata.labels = job.spec.template.metadata.labels
        pod.metadata.annotations = job.spec.template.metadata.annotations
        pod.metadata.ownerReferences = [job.controllerReference()]
        pod.spec = job.spec.template.spec
        return pod
    }
}
