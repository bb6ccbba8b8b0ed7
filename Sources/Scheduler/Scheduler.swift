import API
import Client
import ControllerRuntime
import Foundation
import Logging
import Synchronization

/// How a decision becomes a binding. The default posts `pods/NAME/binding`; tests put a hook in.
public protocol Binder: Sendable {
    func bind(_ pod: Pod, to node: String) async throws
}

public struct APIBinder: Binder {
    let client: APIClient
    public init(client: APIClient) { self.client = client }
    public func bind(_ pod: Pod, to node: String) async throws {
        try await client.bind(namespace: pod.metadata.namespace, pod: pod.metadata.name, node: node)
    }
}

/// Counters of a scheduler's life (all terms).
public struct SchedulerStats: Sendable, Equatable {
    public var attempts = 0
    public var bound = 0
    public var unschedulable = 0
    /// Bindings refused because the pod was already on a node (another scheduler won).
    public var bindConflicts = 0
    public var bindErrors = 0
}

/// Places pods that have no node. Under leader election on `kube-system/cox-scheduler`, only one
/// of several schedulers decides; each term starts with fresh informers, cache and queue.
///
/// One decision at a time (so each sees the ones before it), bindings in the background (up to
/// `bindConcurrency` at once). Informers feed the cache (nodes, placed pods) and the queue
/// (unplaced pods); the queue parks pods that fit nowhere until a node or a placed pod changes.
public final class Scheduler: Sendable {
    public struct Options: Sendable {
        public var identity: String
        /// Pods whose `spec.schedulerName` is this (or empty) are ours.
        public var schedulerName = "default-scheduler"
        public var leaseDuration: Duration = .seconds(15)
        public var renewDeadline: Duration = .seconds(10)
        public var retryPeriod: Duration = .seconds(2)
        public var bindConcurrency = 64
        public var initialBackoff: Duration = .seconds(1)
        public var maxBackoff: Duration = .seconds(10)
        /// Look at every node for every pod instead of stopping at enough feasible ones.
        public var examineAllNodes = false
        /// Write a `Scheduled` Event per placed pod, as Kubernetes does.
        public var scheduledEvents = true

        public init(identity: String = "\(ProcessInfo.processInfo.hostName)_\(UUID().uuidString.prefix(8).lowercased())") {
            self.identity = identity
        }
    }

    public static let leaseName = "cox-scheduler"
    public static let component = "default-scheduler"

    let client: APIClient
    let options: Options
    let framework: Framework
    let binder: any Binder
    let clock: any Clock
    let logger: Logger
    let counters = Mutex(SchedulerStats())
    /// The current term's cache and queue (for tests and explanations).
    let current = Mutex<(cache: SchedulerCache, queue: SchedulingQueue)?>(nil)

    public init(client: APIClient, options: Options, framework: Framework = .standard, binder: (any Binder)? = nil,
                clock: any Clock = SystemClock(), logger: Logger = Logger(label: "cox.scheduler")) {
        self.client = client
        self.options = options
        self.framework = framework
        self.binder = binder ?? APIBinder(client: client)
        self.clock = clock
        self.logger = logger
    }

    public var stats: SchedulerStats { counters.withLock { $0 } }
    public var cache: SchedulerCache? { current.withLock { $0?.cache } }
    public var queue: SchedulingQueue? { current.withLock { $0?.queue } }

    /// Campaigns for the lease and schedules while leading, until cancelled.
    public func run() async {
        let election = LeaderElector.Configuration(name: Self.leaseName, identity: options.identity, leaseDuration: options.leaseDuration,
                                                   renewDeadline: options.renewDeadline, retryPeriod: options.retryPeriod)
        let elector = LeaderElector(configuration: election, client: client, clock: clock, logger: logger)
        await elector.run { await self.term() }
    }

    /// Schedules without leader election until cancelled (tests; a single scheduler).
    public func term() async {
        let informers = InformerFactory(client: client)
        let pods = informers.informer(Pod.self)
        let nodes = informers.informer(Node.self)
        let cache = SchedulerCache(clock: clock)
        let queue = SchedulingQueue(clock: clock, initialBackoff: options.initialBackoff, maxBackoff: options.maxBackoff)
        let recorder = EventRecorder(client: client, component: Self.component, clock: clock, logger: logger)
        current.withLock { $0 = (cache, queue) }
        let name = options.schedulerName

        nodes.addHandler { event in
            switch event {
            case .added(let node):
                cache.setNode(node)
                queue.moveAllParked()
            case .updated(let old, let node):
                cache.setNode(node)
                if Self.mayHelp(old, node) { queue.moveAllParked() }
            case .deleted(let node):
                cache.removeNode(node.metadata.name)
            }
        }
        pods.addHandler { event in
            let pod = event.object
            let key = ObjectKey(pod)
            let cacheKey = "\(pod.metadata.namespace)/\(pod.metadata.name)"
            if case .deleted = event {
                cache.removePod(key: cacheKey)
                queue.forget(key)
                if !pod.spec.nodeName.isEmpty { queue.moveAllParked() }
                return
            }
            if !pod.spec.nodeName.isEmpty {
                if pod.isFinished {
                    cache.removePod(key: cacheKey)
                    queue.moveAllParked()
                } else {
                    cache.addPod(pod)
                    queue.forget(key)
                }
                return
            }
            guard !pod.metadata.hasDeletionTimestamp, pod.spec.schedulerName.isEmpty || pod.spec.schedulerName == name else { return }
            if case .updated(let old, _) = event, old.spec == pod.spec, old.metadata.labels == pod.metadata.labels { return }
            queue.add(key)
        }

        logger.info("scheduler starting", metadata: ["scheduler": "\(name)"])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await informers.run() }
            group.addTask {
                await withTaskCancellationHandler {
                    await informers.waitForSync()
                    await self.loop(pods: pods, cache: cache, queue: queue, recorder: recorder)
                } onCancel: {
                    Task { await queue.shutDown() }
                }
            }
            await group.next()
            group.cancelAll()
        }
        current.withLock { $0 = nil }
        logger.info("scheduler stopped")
    }

    /// Decides one pod at a time; bindings and status writes run beside, a bounded number at once.
    func loop(pods: Informer<Pod>, cache: SchedulerCache, queue: SchedulingQueue, recorder: EventRecorder) async {
        await withTaskGroup(of: Void.self) { background in
            var inFlight = 0
            while !Task.isCancelled, let key = await queue.pop() {
                let work = decide(key, pods: pods, cache: cache, queue: queue, recorder: recorder)
                await queue.done(key)
                guard let work else { continue }
                if inFlight >= options.bindConcurrency {
                    await background.next()
                    inFlight -= 1
                }
                background.addTask(operation: work)
                inFlight += 1
            }
            await background.waitForAll()
        }
    }

    /// One decision; returns the background work it leads to (a binding, or recording why not).
    func decide(_ key: ObjectKey, pods: Informer<Pod>, cache: SchedulerCache, queue: SchedulingQueue,
                recorder: EventRecorder) -> (@Sendable () async -> Void)? {
        guard let pod = pods.get(namespace: key.namespace, name: key.name), pod.spec.nodeName.isEmpty,
              !pod.metadata.hasDeletionTimestamp else {
            queue.forget(key)
            return nil
        }
        let info = PodInfo(pod)
        if cache.isAssumed(key: info.key) { return nil }  // its binding is in flight
        let cycle = queue.moveCycle
        let decision = cache.schedule(info, with: framework, sample: !options.examineAllNodes)
        counters.withLock { $0.attempts += 1 }
        guard let node = decision.node else {
            queue.unschedulable(key, cycle: cycle)
            counters.withLock { $0.unschedulable += 1 }
            logger.debug("pod fits nowhere", metadata: ["pod": "\(key)", "why": "\(decision.message)"])
            return { await self.recordUnschedulable(pod, message: decision.message, recorder: recorder) }
        }
        return { await self.bind(pod, key: key, to: node, cache: cache, queue: queue, recorder: recorder) }
    }

    func bind(_ pod: Pod, key: ObjectKey, to node: String, cache: SchedulerCache, queue: SchedulingQueue, recorder: EventRecorder) async {
        let cacheKey = "\(key.namespace)/\(key.name)"
        do {
            try await binder.bind(pod, to: node)
            cache.finishBinding(key: cacheKey)
            queue.forget(key)
            counters.withLock { $0.bound += 1 }
            if options.scheduledEvents {
                recorder.record(pod, .normal, reason: "Scheduled", message: "Successfully assigned \(cacheKey) to \(node)")
            }
        } catch {
            cache.forget(key: cacheKey)
            let code = (error as? ClientError)?.code
            if code == 409 || code == 404 {
                // Placed by someone else, being deleted, or gone: the watch will tell.
                counters.withLock { $0.bindConflicts += 1 }
                logger.debug("binding refused", metadata: ["pod": "\(key)", "node": "\(node)", "error": "\(error)"])
            } else {
                counters.withLock { $0.bindErrors += 1 }
                logger.warning("binding failed; will retry", metadata: ["pod": "\(key)", "node": "\(node)", "error": "\(error)"])
            }
            queue.failed(key)
        }
    }

    /// `PodScheduled=False, reason Unschedulable` with the message (written only when it changes),
    /// and a `FailedScheduling` Event.
    func recordUnschedulable(_ pod: Pod, message: String, recorder: EventRecorder) async {
        let existing = pod.status.conditions.first { $0.type == "PodScheduled" }
        if existing?.status != "False" || existing?.reason != "Unschedulable" || existing?.message != message {
            var updated = pod
            var condition = PodCondition()
            condition.type = "PodScheduled"
            condition.status = "False"
            condition.reason = "Unschedulable"
            condition.message = message
            condition.lastProbeTime = .init(date: clock.now)
            condition.lastTransitionTime = existing?.status == "False" ? existing!.lastTransitionTime : .init(date: clock.now)
            updated.status.conditions.removeAll { $0.type == "PodScheduled" }
            updated.status.conditions.append(condition)
            if updated.status.phase.isEmpty { updated.status.phase = "Pending" }
            do {
                _ = try await client.updateStatus(updated)
            } catch {
                logger.debug("cannot write the pod's PodScheduled condition", metadata: ["pod": "\(pod.metadata.namespace)/\(pod.metadata.name)", "error": "\(error)"])
            }
        }
        recorder.record(pod, .warning, reason: "FailedScheduling", message: message)
    }

    /// Whether a node's change may let a parked pod fit (not a heartbeat).
    static func mayHelp(_ old: Node, _ new: Node) -> Bool {
        func ready(_ node: Node) -> Bool { node.status.conditions.contains { $0.type == "Ready" && $0.status == "True" } }
        return old.spec != new.spec || old.metadata.labels != new.metadata.labels
            || old.status.allocatable != new.status.allocatable || old.status.capacity != new.status.capacity || ready(old) != ready(new)
    }
}

extension Pod {
    /// Succeeded or Failed: it no longer uses its node's resources.
    public var isFinished: Bool { status.phase == "Succeeded" || status.phase == "Failed" }
}
