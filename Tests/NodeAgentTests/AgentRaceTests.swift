import API
import Client
import Foundation
import Logging
@testable import NodeAgent
import PKI
import Synchronization
import Testing
import TestSupport

/// A runtime whose containers exit with code 3 the moment they start — and report that exit
/// before `start` has returned, as a real process that ends at once can on a busy host.
final class InstantExitRuntime: ContainerRuntime {
    var name: String { "instant-exit" }
    let cgroups = Cgroups.unavailable("runs nothing")
    let feed = ExitFeed()
    var exits: AsyncStream<String> { feed.listen() }
    let containers = Mutex<[String: RuntimeContainer]>([:])
    let sequence = Atomic<Int>(0)

    func start(_ launch: ContainerLaunch) async throws -> RuntimeContainer {
        let id = "instant://\(sequence.add(1, ordering: .relaxed).newValue)"
        let started = RuntimeContainer(id: id, launch: launch, startedAt: Date(), state: .running, logPath: "/dev/null")
        containers.withLock {
            $0[id] = started
            $0[id]?.state = .exited(exitCode: 3, signal: 0, reason: "Error", finishedAt: Date())
        }
        feed.send(id)
        // The agent handles the exit while this start is still on its way back.
        try await Task.sleep(for: .milliseconds(300))
        return started
    }

    func stop(id: String, grace: Duration) async {}
    func status(id: String) async -> RuntimeContainer? { containers.withLock { $0[id] } }
    func list() async -> [RuntimeContainer] { containers.withLock { Array($0.values) } }
    func remove(id: String) async { containers.withLock { _ = $0.removeValue(forKey: id) } }
    func cleanup(podUID: String) async { containers.withLock { $0 = $0.filter { $0.value.launch.podUID != podUID } } }
    func logPath(podUID: String, container: String, previous: Bool) -> String { "/dev/null" }
    func shutdown() { feed.finish() }
}

@Suite(.watchdog) struct AgentRaceTests {
    /// A container whose exit arrives before its start has returned still ends its pod: Failed,
    /// with the exit code (the exit used to be dropped, leaving the pod Running for good).
    @Test func anExitBeforeTheStartReturnsIsNotLost() async throws {
        try await InProcessAPI.with { api in
            let runtime = InstantExitRuntime()
            let data = TemporaryDirectory()
            var configuration = NodeAgent.Configuration(nodeName: "race", dataDirectory: data.path)
            configuration.heartbeatInterval = .seconds(1)
            var logger = Logger(label: "test")
            logger.logLevel = .error
            let logServer = try LogServer(runtime: runtime, authority: try ClusterPKI.loadAuthority(directory: api.dir.path + "/pki"),
                                          nodeName: "race", address: "127.0.0.1", port: 0, logger: logger)
            let agent = NodeAgent(configuration: configuration, client: api.client, runtime: runtime, logServer: logServer, logger: logger)
            let running = Task { try await agent.run() }
            defer { running.cancel() }
            var pod = TestObjects.pod("quick", command: ["sh", "-c", "exit 3"])
            pod.spec.restartPolicy = "Never"
            pod.spec.nodeName = "race"
            _ = try await api.client.create(pod)
            try await waitUntil("the pod is Failed with exit code 3", timeout: 30) {
                let status = try await api.client.get(Pod.self, namespace: "default", name: "quick").status
                return status.phase == "Failed" && status.containerStatuses.first?.state.terminated.exitCode == 3
            }
            running.cancel()
            _ = await running.result
        }
    }
}

/// The CRI relist's decision, case by case. A hungry container started while a list was being
/// taken and was OOM-killed 0.2 s later: the list had not shown it, the relist forgot it, and its
/// exit was never reported (a CI failure: the pod stayed Running).
@Suite("CRI relist")
struct RelistTests {
    static func container(_ id: String, running: Bool) -> RuntimeContainer {
        RuntimeContainer(id: id, launch: ContainerLaunch(podUID: "u", namespace: "default", podName: "p", container: id, command: []),
                         startedAt: Date(timeIntervalSince1970: 1),
                         state: running ? .running : .exited(exitCode: 137, signal: 9, reason: "OOMKilled", finishedAt: Date(timeIntervalSince1970: 2)),
                         logPath: "")
    }

    @Test func exitsAreReportedOnceAndStartsDuringTheListAreKept() {
        let running = Self.container("a", running: true)
        let dead = Self.container("a", running: false)
        // Started during the list, which did not show it: kept, no exit.
        var decision = CRIRuntime.reconcile(seen: ["a": running], runningBefore: [], listed: [])
        #expect(decision.exited.isEmpty && decision.seen["a"] == running)
        // The next list shows it exited: reported once, then known as exited.
        decision = CRIRuntime.reconcile(seen: decision.seen, runningBefore: ["a"], listed: [(dead, true)])
        #expect(decision.exited == ["a"] && decision.seen["a"] == dead)
        decision = CRIRuntime.reconcile(seen: decision.seen, runningBefore: [], listed: [(dead, true)])
        #expect(decision.exited.isEmpty)
        // Started during the list and shown exited by it (it ended at once): an exit.
        decision = CRIRuntime.reconcile(seen: ["a": running], runningBefore: [], listed: [(dead, true)])
        #expect(decision.exited == ["a"])
        // Shown only created (its start came after the list): kept as running.
        decision = CRIRuntime.reconcile(seen: ["a": running], runningBefore: [], listed: [(dead, false)])
        #expect(decision.exited.isEmpty && decision.seen["a"] == running)
        // Running before the list and gone from it: exited (removed behind the agent's back).
        decision = CRIRuntime.reconcile(seen: ["a": running], runningBefore: ["a"], listed: [])
        #expect(decision.exited == ["a"] && decision.seen["a"] == nil)
        // Still running: nothing to say; a container the agent never saw is learnt.
        decision = CRIRuntime.reconcile(seen: ["a": running], runningBefore: ["a"], listed: [(running, true), (Self.container("b", running: true), true)])
        #expect(decision.exited.isEmpty && decision.seen.count == 2)
    }
}
