import Foundation
import Synchronization

/// A runtime that starts nothing: every container is "running" from the moment it is started
/// until it is stopped (then it exits with code 0). For simulated ("hollow") nodes: the agent
/// registers the node, renews its lease and reports its pods Running, so scheduling and the
/// controllers can be tested at scale on one machine.
public final class FakeRuntime: ContainerRuntime {
    public var name: String { "fake" }
    public let cgroups = Cgroups.unavailable("the fake runtime runs nothing, so there is nothing to limit")
    public var exits: AsyncStream<String> { exitFeed.listen() }
    let exitFeed = ExitFeed()
    let containers = Mutex<[String: RuntimeContainer]>([:])
    let sequence = Atomic<Int>(0)

    public init() {
    }

    public func start(_ launch: ContainerLaunch) async throws -> RuntimeContainer {
        let id = "fake://\(sequence.add(1, ordering: .relaxed).newValue)"
        let container = RuntimeContainer(id: id, launch: launch, startedAt: Date(), state: .running, logPath: "/dev/null")
        containers.withLock { $0[id] = container }
        return container
    }

    public func stop(id: String, grace: Duration) async {
        let stopped = containers.withLock { containers -> Bool in
            guard containers[id]?.isRunning == true else { return false }
            containers[id]?.state = .exited(exitCode: 0, signal: 0, reason: "Completed", finishedAt: Date())
            return true
        }
        if stopped { exitFeed.send(id) }
    }

    public func status(id: String) async -> RuntimeContainer? { containers.withLock { $0[id] } }
    public func list() async -> [RuntimeContainer] { containers.withLock { Array($0.values) } }
    public func remove(id: String) async { containers.withLock { _ = $0.removeValue(forKey: id) } }
    public func cleanup(podUID: String) async {
        containers.withLock { containers in containers = containers.filter { $0.value.launch.podUID != podUID } }
    }
    public func logPath(podUID: String, container: String, previous: Bool) -> String { "/dev/null" }
    /// Nothing runs: every command succeeds, silently (exec probes pass).
    public func execSync(id: String, command: [String], timeout: Duration) async throws -> (exitCode: Int32, stdout: Data, stderr: Data) {
        (0, Data(), Data())
    }
    public func shutdown() { exitFeed.finish() }
}
