import API
import APIServer
import Client
import Foundation
import Logging
import NIOCore
import PKI
import Testing

/// A real API server in this process, on a free loopback port with real TLS and a temporary data
/// directory, and a typed client for it (the admin's). For controller and scheduler tests.
public final class InProcessAPI: Sendable {
    public let dir: TemporaryDirectory
    public let port: Int
    public let client: APIClient
    let task: Task<Void, any Error>

    public var kubeconfigPath: String { (dir.path as NSString).appendingPathComponent("admin.kubeconfig") }

    /// The tests' clients' deadline per call. Generous: on this two-core machine a full run has
    /// shown whole seconds (up to 10) in which in-process servers answered nothing while the
    /// event loops and the concurrency pool were free (the watchdog says when it sees one); a test
    /// asserts behaviour, not latency.
    public static let deadline: TimeAmount = .seconds(30)

    public static func start() async throws -> InProcessAPI {
        let dir = TemporaryDirectory()
        var configuration = APIServer.Configuration(dataDirectory: dir.path)
        configuration.port = 0
        var logger = Logger(label: "cox.apiserver.test")
        logger.logLevel = .warning
        let server = APIServer(configuration: configuration, logger: logger)
        let (stream, continuation) = AsyncStream<Int>.makeStream()
        let task = Task { try await server.run { port, _ in continuation.yield(port) } }
        var iterator = stream.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        let kubeconfig = try Kubeconfig.load(path: (dir.path as NSString).appendingPathComponent("admin.kubeconfig"))
        let client = try APIClient(kubeconfig: kubeconfig, timeout: Self.deadline)
        return InProcessAPI(dir: dir, port: port, client: client, task: task)
    }

    init(dir: TemporaryDirectory, port: Int, client: APIClient, task: Task<Void, any Error>) {
        self.dir = dir
        self.port = port
        self.client = client
        self.task = task
    }

    /// Another client of the same server (its own connections).
    public func newClient() throws -> APIClient {
        try APIClient(kubeconfig: try Kubeconfig.load(path: kubeconfigPath), timeout: Self.deadline)
    }

    public func stop() async {
        try? await client.shutdown()
        task.cancel()
        _ = try? await task.value
    }

    /// Runs `body` against a fresh server and always stops it.
    public static func with(_ body: (InProcessAPI) async throws -> Void) async throws {
        let api = try await start()
        do {
            try await body(api)
        } catch {
            await api.stop()
            throw error
        }
        await api.stop()
    }
}

/// Polls `condition` (every 50 ms, in real time) until it holds; records an issue and throws after `timeout` seconds
/// (a bound on waiting, not a measure: generous, because the first minute of a full run loads
/// this 2-core machine to 7 and a default of 20 s timed out there).
public func waitUntil(_ what: String, timeout: Double = 60, sourceLocation: SourceLocation = #_sourceLocation,
                      _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("timed out after \(timeout) s waiting until \(what)", sourceLocation: sourceLocation)
    throw CancellationError()
}

/// Follows a watch of pods and hands the current set (by name) to `onChange` after every event:
/// for tests that check an invariant at every moment, such as availability during a rollout.
public func followPods(_ client: APIClient, _ request: WatchRequest, onChange: @escaping @Sendable ([String: Pod]) -> Void) -> Task<Void, any Error> {
    Task {
        var pods: [String: Pod] = [:]
        for try await event in client.watch(Pod.self, request) {
            switch event {
            case .relisted(let all, _): pods = Dictionary(all.map { ($0.metadata.name, $0) }, uniquingKeysWith: { $1 })
            case .added(let pod), .modified(let pod): pods[pod.metadata.name] = pod
            case .deleted(let pod): pods[pod.metadata.name] = nil
            case .bookmark: continue
            }
            onChange(pods)
        }
    }
}
