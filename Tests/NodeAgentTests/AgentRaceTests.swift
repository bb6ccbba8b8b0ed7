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
