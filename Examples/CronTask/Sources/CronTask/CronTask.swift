import API
import Client
import ControllerRuntime
import Foundation
import Logging

/// The CronTask kind's spec and status, as this plugin's own Codable types (crontask.yaml holds
/// its CustomResourceDefinition).
public struct CronTaskSpec: Codable, Sendable, Equatable {
    public var schedule: String
    public var historyLimit: Int?
    public var suspend: Bool?
    public var template: Template

    public init(schedule: String, historyLimit: Int? = nil, suspend: Bool? = nil, template: Template) {
        self.schedule = schedule
        self.historyLimit = historyLimit
        self.suspend = suspend
        self.template = template
    }

    public struct Template: Codable, Sendable, Equatable {
        public var containers: [ContainerTemplate]
        public init(containers: [ContainerTemplate]) { self.containers = containers }
    }

    public struct ContainerTemplate: Codable, Sendable, Equatable {
        public var name: String
        public var image: String?
        public var command: [String]?
        public var args: [String]?

        public init(name: String, image: String? = nil, command: [String]? = nil, args: [String]? = nil) {
            self.name = name
            self.image = image
            self.command = command
            self.args = args
        }
    }
}

public struct CronTaskStatus: Codable, Sendable, Equatable {
    public var lastScheduleTime: String?
    public var active: [String]?
    public var activeCount: Int?
}

public enum CronTasks {
    public static let group = "examples.cox.io"

    public static func resource(_ client: APIClient) -> TypedResource<CronTaskSpec, CronTaskStatus> {
        TypedResource(DynamicResource(client: client, group: group, version: "v1", kind: "CronTask", plural: "crontasks", namespaced: true))
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}

/// What one reconcile of a CronTask does, decided from its spec, status, pods and the time alone
/// (so it is tested without a server or a clock).
public struct Plan: Equatable, Sendable {
    /// The scheduled time of a run to start now (the latest one missed; older ones are skipped).
    public var run: Date?
    /// Finished Pods beyond the history limit, oldest first.
    public var delete: [String]
    /// Pods still running.
    public var active: [String]
    /// When to look again: the next run, or sooner (at most 10 s) to follow the Pods.
    public var requeue: Duration

    public struct PodState: Sendable {
        public var name: String
        public var created: Date
        public var finished: Bool

        public init(name: String, created: Date, finished: Bool) {
            self.name = name
            self.created = created
            self.finished = finished
        }
    }

    public init(spec: CronTaskSpec, lastScheduleTime: Date?, created: Date, pods: [PodState], now: Date) throws {
        let schedule = try Schedule(spec.schedule)
        let last = lastScheduleTime ?? created
        var run: Date?
        if spec.suspend != true {
            var candidate = schedule.next(after: last)
            while let due = candidate, due <= now {
                run = due
                candidate = schedule.next(after: due)
            }
        }
        self.run = run
        let finished = pods.filter(\.finished).sorted { $0.created < $1.created }
        delete = Array(finished.dropLast(max(0, spec.historyLimit ?? 3)).map(\.name))
        active = pods.filter { !$0.finished }.map(\.name).sorted()
        let next = schedule.next(after: max(run ?? last, now))
        let seconds = next.map { max(1, min(10, $0.timeIntervalSince(now))) } ?? 10
        requeue = .milliseconds(Int64(seconds * 1000))
    }
}

/// Reconciles one CronTask: starts the run that is due as a Pod it owns (named after the task and
/// the scheduled minute, so a run is never started twice), deletes finished Pods past the
/// history limit, and reports the last schedule time and the active Pods in its status.
public final class CronTaskReconciler: Reconciler {
    let client: APIClient
    let tasks: TypedResource<CronTaskSpec, CronTaskStatus>
    let now: @Sendable () -> Date
    let logger: Logger

    public init(client: APIClient, now: @escaping @Sendable () -> Date = { Date() }, logger: Logger) {
        self.client = client
        tasks = CronTasks.resource(client)
        self.now = now
        self.logger = logger
    }

    public func reconcile(_ key: ObjectKey) async throws -> ReconcileResult {
        let task: TypedObject<CronTaskSpec, CronTaskStatus>
        do {
            task = try await tasks.get(namespace: key.namespace, name: key.name)
        } catch let error as ClientError where error.code == 404 {
            return .done  // its Pods go with it (the garbage collector)
        }
        if task.metadata.hasDeletionTimestamp { return .done }
        let pods = try await client.list(Pod.self, namespace: key.namespace, labelSelector: "crontask=\(key.name)").items
        let states = pods.map { pod in
            Plan.PodState(name: pod.metadata.name, created: Date(timeIntervalSince1970: TimeInterval(pod.metadata.creationTimestamp.seconds)),
                          finished: pod.status.phase == "Succeeded" || pod.status.phase == "Failed")
        }
        let last = task.status?.lastScheduleTime.flatMap { ISO8601DateFormatter().date(from: $0) }
        let plan = try Plan(spec: task.spec, lastScheduleTime: last, created: Date(timeIntervalSince1970: TimeInterval(task.metadata.creationTimestamp.seconds)),
                            pods: states, now: now())
        var active = plan.active
        if let run = plan.run {
            let name = "\(key.name)-\(Int(run.timeIntervalSince1970 / 60))"
            do {
                _ = try await client.create(pod(name, for: task))
                logger.info("started a run", metadata: ["crontask": "\(key)", "pod": "\(name)", "scheduled": "\(CronTasks.timestamp(run))"])
            } catch let error as ClientError where error.code == 409 {}  // started already
            if !active.contains(name) { active = (active + [name]).sorted() }
        }
        for name in plan.delete {
            do { _ = try await client.delete(Pod.self, namespace: key.namespace, name: name) } catch let error as ClientError where error.code == 404 {}
        }
        var status = task.status ?? CronTaskStatus()
        if let run = plan.run { status.lastScheduleTime = CronTasks.timestamp(run) }
        status.active = active
        status.activeCount = active.count
        if status != task.status {
            var updated = task
            updated.status = status
            _ = try await tasks.updateStatus(updated)
        }
        return .requeue(after: plan.requeue)
    }

    /// The run's Pod: the template's containers, never restarted, owned by the task.
    func pod(_ name: String, for task: TypedObject<CronTaskSpec, CronTaskStatus>) -> Pod {
        var pod = Pod()
        pod.metadata.name = name
        pod.metadata.namespace = task.metadata.namespace
        pod.metadata.labels = ["crontask": task.metadata.name]
        var owner = OwnerReference()
        owner.apiVersion = "\(CronTasks.group)/v1"
        owner.kind = "CronTask"
        owner.name = task.metadata.name
        owner.uid = task.metadata.uid
        owner.controller = true
        owner.blockOwnerDeletion = true
        pod.metadata.ownerReferences = [owner]
        pod.spec.restartPolicy = "Never"
        pod.spec.containers = task.spec.template.containers.map { template in
            var container = Container()
            container.name = template.name
            container.image = template.image ?? ""
            container.command = template.command ?? []
            container.args = template.args ?? []
            return container
        }
        return pod
    }
}
