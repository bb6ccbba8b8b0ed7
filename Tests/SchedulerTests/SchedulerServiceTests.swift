import API
import Client
import ControllerRuntime
import Foundation
import Logging
import Scheduler
import Synchronization
import Testing
import TestSupport

/// The scheduler against a real in-process API server (TLS on loopback): bindings, conflicts,
/// failures, and pods that fit nowhere.
@Suite(.serialized, .watchdog) struct SchedulerServiceTests {
    static var logger: Logger {
        var logger = Logger(label: "cox.scheduler.test")
        logger.logLevel = ProcessInfo.processInfo.environment["COX_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        return logger
    }

    /// A Ready node with the given capacity, labels and taints.
    static func register(_ client: APIClient, _ name: String, cpu: String, memory: String = "8Gi",
                         labels: [String: String] = [:], taints: [(String, String, String)] = []) async throws {
        var node = FrameworkTests.node(name, cpu: cpu, memory: memory, labels: labels, taints: taints).node
        let status = node.status
        node = try await client.create(node)
        node.status = status
        _ = try await client.updateStatus(node)
    }

    static func options(_ identity: String) -> Scheduler.Options {
        var options = Scheduler.Options(identity: identity)
        options.initialBackoff = .milliseconds(200)
        options.maxBackoff = .seconds(1)
        return options
    }

    /// Runs schedulers, each with a client of its own, for the body; always stops them and shuts
    /// their clients down, also when the body fails (a client dropped without shutdown ends a
    /// debug process).
    static func running(_ api: InProcessAPI, count: Int = 1, _ make: (Int, APIClient) -> Scheduler,
                        _ body: ([Scheduler]) async throws -> Void) async throws {
        let clients = try (0..<count).map { _ in try api.newClient() }
        let schedulers = clients.enumerated().map { make($0.offset, $0.element) }
        let tasks = schedulers.map { scheduler in Task { await scheduler.term() } }
        func stop() async {
            for task in tasks { task.cancel() }
            for task in tasks { await task.value }
            for client in clients { try? await client.shutdown() }
        }
        do {
            try await body(schedulers)
        } catch {
            await stop()
            throw error
        }
        await stop()
    }

    static func boundPods(_ client: APIClient) async throws -> [String: String] {
        Dictionary(uniqueKeysWithValues: try await client.list(Pod.self, namespace: "default").items
            .filter { !$0.spec.nodeName.isEmpty }.map { ($0.metadata.name, $0.spec.nodeName) })
    }

    /// Holds each pod's first binding until the second scheduler has decided on the same pod, then
    /// lets both go: every pod is raced by both, whatever the timing (no deadline to give up at —
    /// a scheduler that never decides fails the test's own wait).
    final class Rendezvous: Sendable {
        struct Arrivals {
            var count: [String: Int] = [:]
            var waiting: [String: CheckedContinuation<Void, Never>] = [:]
        }
        let arrivals = Mutex(Arrivals())

        /// The first two arrivals for a pod meet; a later one (a scheduler retrying after a failed
        /// binding, under load) goes straight on: nobody would ever come to meet it.
        func meet(_ pod: String) async {
            enum Arrival { case first, second(CheckedContinuation<Void, Never>), later }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let arrival: Arrival = arrivals.withLock { state in
                    state.count[pod, default: 0] += 1
                    if let first = state.waiting.removeValue(forKey: pod) { return .second(first) }
                    if state.count[pod]! > 2 { return .later }
                    state.waiting[pod] = continuation
                    return .first
                }
                switch arrival {
                case .first: break
                case .second(let first):
                    first.resume()
                    continuation.resume()
                case .later: continuation.resume()
                }
            }
        }

        var everyPodRacedByBoth: Bool { arrivals.withLock { $0.count.values.allSatisfy { $0 >= 2 } && $0.waiting.isEmpty } }
    }

    final class RendezvousBinder: Binder {
        let client: APIClient
        let rendezvous: Rendezvous
        init(client: APIClient, rendezvous: Rendezvous) { self.client = client; self.rendezvous = rendezvous }
        func bind(_ pod: Pod, to node: String) async throws {
            await rendezvous.meet(pod.metadata.name)
            try await client.bind(namespace: pod.metadata.namespace, pod: pod.metadata.name, node: node)
        }
    }

    @Test func twoSchedulersRacingOnOnePodBindItExactlyOnce() async throws {
        try await InProcessAPI.with { api in
            for name in ["a", "b", "c"] { try await Self.register(api.client, name, cpu: "4") }
            let rendezvous = Rendezvous()
            // Every node name each pod was ever seen on, from the watch.
            let seen = Mutex<[String: Set<String>]>([:])
            let follower = followPods(api.client, WatchRequest()) { pods in
                seen.withLock { seen in for (name, pod) in pods where !pod.spec.nodeName.isEmpty { seen[name, default: []].insert(pod.spec.nodeName) } }
            }
            defer { follower.cancel() }
            try await Self.running(api, count: 2, { i, client in
                Scheduler(client: client, options: Self.options("s\(i)"), binder: RendezvousBinder(client: client, rendezvous: rendezvous), logger: Self.logger)
            }) { schedulers in
                // Both have listed the nodes before any pod exists, so both decide every pod.
                try await waitUntil("both schedulers see the nodes") { schedulers.allSatisfy { $0.cache?.nodeCount == 3 } }
                for i in 0..<5 { _ = try await api.client.create(FrameworkTests.pod("p\(i)", cpu: "100m")) }
                try await waitUntil("all five pods are bound", timeout: 90) { try await Self.boundPods(api.client).count == 5 }
                // Each of the ten decisions ends bound, refused (409), or — on a loaded machine — in
                // an error the scheduler retries (or drops once its watch shows the pod bound).
                func total(_ stat: (SchedulerStats) -> Int) -> Int { schedulers.map { stat($0.stats) }.reduce(0, +) }
                try await waitUntil("both schedulers have heard back about every binding", timeout: 60) {
                    total(\.bound) + total(\.bindConflicts) + total(\.bindErrors) >= 10
                }
                #expect(rendezvous.everyPodRacedByBoth, "both schedulers tried every pod: \(rendezvous.arrivals.withLock { $0.count })")
                #expect(total(\.bound) == 5, "exactly one binding per pod won")
                #expect(total(\.bindConflicts) + total(\.bindErrors) >= 5, "the other got 409 (or an error before it could)")
                #expect(seen.withLock { $0.values.allSatisfy { $0.count == 1 } }, "no pod ever moved: \(seen.withLock { $0 })")
            }
        }
    }

    /// Fails the first binding with a server error, then binds for real.
    final class FailingOnce: Binder {
        let client: APIClient
        let calls = Atomic<Int>(0)
        init(client: APIClient) { self.client = client }
        func bind(_ pod: Pod, to node: String) async throws {
            if calls.add(1, ordering: .relaxed).newValue == 1 {
                throw ClientError(code: 500, reason: "InternalError", message: "injected binding failure")
            }
            try await client.bind(namespace: pod.metadata.namespace, pod: pod.metadata.name, node: node)
        }
    }

    @Test func aFailedBindingIsForgottenAndRetried() async throws {
        try await InProcessAPI.with { api in
            try await Self.register(api.client, "only", cpu: "1")
            let calls = MutexBox<FailingOnce?>(nil)
            try await Self.running(api, { _, client in
                let binder = FailingOnce(client: client)
                calls.withLock { $0 = binder }
                return Scheduler(client: client, options: Self.options("s"), binder: binder, logger: Self.logger)
            }) { schedulers in
                let scheduler = schedulers[0]
                let binder = try #require(calls.withLock { $0 })
                _ = try await api.client.create(FrameworkTests.pod("p", cpu: "800m"))
                try await waitUntil("the pod is bound after one failed binding") { try await Self.boundPods(api.client)["p"] == "only" }
                try await waitUntil("the watch confirmed the placement") { scheduler.cache?.assumedCount == 0 }
                // The binding's answer may come after the watch has shown the placement.
                try await waitUntil("the binding is counted") { scheduler.stats.bound == 1 }
                #expect(binder.calls.load(ordering: .relaxed) == 2)
                #expect(scheduler.stats.bindErrors == 1 && scheduler.stats.bound == 1)
                // Counted once: the failed assumption left nothing behind.
                #expect(scheduler.cache?.requested(on: "only") == Resources(milliCPU: 800, memory: 0, pods: 1))
            }
        }
    }

    @Test func aPodThatFitsNowhereSaysWhyAndIsPlacedWhenANodeJoins() async throws {
        try await InProcessAPI.with { api in
            try await Self.register(api.client, "small", cpu: "1")
            try await Self.register(api.client, "gpu", cpu: "16", taints: [("dedicated", "gpu", "NoSchedule")])
            try await Self.running(api, { _, client in Scheduler(client: client, options: Self.options("s"), logger: Self.logger) }) { schedulers in
                let scheduler = schedulers[0]
                _ = try await api.client.create(FrameworkTests.pod("big", cpu: "2"))
                let expected = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
                try await waitUntil("the pod says why it is pending") {
                    let pod = try await api.client.get(Pod.self, namespace: "default", name: "big")
                    let condition = pod.status.conditions.first { $0.type == "PodScheduled" }
                    return condition?.status == "False" && condition?.reason == "Unschedulable" && condition?.message == expected
                }
                try await waitUntil("a FailedScheduling event is recorded") {
                    try await api.client.list(Event.self, namespace: "default").items.contains {
                        $0.reason == "FailedScheduling" && $0.type == "Warning" && $0.involvedObject.name == "big" && $0.message == expected
                    }
                }
                #expect(try await Self.boundPods(api.client).isEmpty)
                // Parked with no retry pending: only a cluster change brings it back (that time
                // alone does not is CacheTests.parkedPodsReturnOnAClusterChangeAfterTheirBackoff, on
                // a fake clock; the scheduler's own status write is no change to the pod's spec).
                let queue = try #require(scheduler.queue)
                try await waitUntil("the pod is parked with no retry pending") {
                    let pending = await queue.pendingCount()
                    return queue.parkedCount == 1 && pending == 0
                }
                #expect(scheduler.stats.attempts == 1, "decided once")
                try await Self.register(api.client, "roomy", cpu: "4")
                try await waitUntil("the pod is placed on the node that joined") { try await Self.boundPods(api.client)["big"] == "roomy" }
                let pod = try await api.client.get(Pod.self, namespace: "default", name: "big")
                #expect(pod.status.conditions.first { $0.type == "PodScheduled" }?.status == "True")
                try await waitUntil("a Scheduled event is recorded") {
                    try await api.client.list(Event.self, namespace: "default").items.contains {
                        $0.reason == "Scheduled" && $0.message == "Successfully assigned default/big to roomy"
                    }
                }
            }
        }
    }
}
