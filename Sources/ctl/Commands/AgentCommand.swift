import API
import ArgumentParser
import Client
import Foundation
import Logging
import NodeAgent
import PKI

/// `cox agent`: the node agent for this host.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agent", abstract: "Run the node agent: register this host as a node and run the pods bound to it.")

    @Option(help: "API server URL (default: the kubeconfig's).") var server: String?
    @Option(help: "Kubeconfig with the agent's credentials.") var kubeconfig = ".cox/admin.kubeconfig"
    @Option(help: "Node name (default: the host name).") var nodeName: String?
    @Option(help: "Agent data directory: container records and logs.") var dataDir = ".cox/agent"
    @Option(help: "Cluster PKI directory (its CA issues the agent's serving certificate).") var pki = ".cox/pki"
    @Option(help: "The node's address, where the API server reaches its log endpoint.") var address = "127.0.0.1"
    @Option(help: "Log endpoint port (0 picks a free one).") var port = 10250
    @Option(help: "Seconds between lease renewals.") var heartbeatSeconds = 10
    @Option(help: ArgumentHelp("First crash-loop back-off in seconds (doubles per crash up to 5 minutes).", visibility: .hidden)) var crashBackoffSeconds = 10

    func run() async throws {
        var config = try Kubeconfig.load(path: kubeconfig)
        if let server { config.server = server }
        var configuration = NodeAgent.Configuration(nodeName: nodeName ?? LocalNode.defaultName(), dataDirectory: dataDir)
        configuration.address = address
        configuration.logPort = port
        configuration.heartbeatInterval = .seconds(heartbeatSeconds)
        configuration.crashLoopBase = .seconds(crashBackoffSeconds)
        try await LocalNode.runAgent(configuration, kubeconfig: config, pkiDirectory: pki, stopPodsOnExit: false)
    }
}

enum LocalNode {
    /// The host name as a valid node name (DNS-1123: lower case, digits, '-' and '.').
    static func defaultName() -> String {
        let raw = ProcessInfo.processInfo.hostName.lowercased()
        let mapped = String(raw.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "-" })
        let trimmed = mapped.trimmingCharacters(in: CharacterSet(charactersIn: "-."))
        return trimmed.isEmpty ? "local" : String(trimmed.prefix(63))
    }

    /// Runs an agent until cancelled (SIGINT/SIGTERM end it). With `stopPodsOnExit` its containers
    /// are stopped on the way out (`cox up`); otherwise they keep running for the next agent.
    static func runAgent(_ configuration: NodeAgent.Configuration, kubeconfig: Kubeconfig, pkiDirectory: String, stopPodsOnExit: Bool) async throws {
        let logger = Logger(label: "cox.agent")
        let client = try APIClient(kubeconfig: kubeconfig)
        let runtime = try ProcessRuntime(root: configuration.dataDirectory, logger: logger)
        let authority = try ClusterPKI.loadAuthority(directory: pkiDirectory)
        let logServer = try LogServer(runtime: runtime, authority: authority, nodeName: configuration.nodeName, address: configuration.address,
                                      port: configuration.logPort, logger: logger)
        let agent = NodeAgent(configuration: configuration, client: client, runtime: runtime, logServer: logServer, logger: logger)
        let signals = SignalWaiter([SIGINT, SIGTERM])
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do { try await agent.run() } catch { logger.error("agent stopped", metadata: ["error": "\(error)"]) }
            }
            group.addTask { await signals.wait() }
            await group.next()
            group.cancelAll()
        }
        if stopPodsOnExit {
            let running = await runtime.list().filter(\.isRunning)
            if !running.isEmpty { print("stopping \(running.count) container(s)…") }
            await withTaskGroup(of: Void.self) { group in
                for container in running { group.addTask { await runtime.stop(id: container.id, grace: .seconds(10)) } }
            }
        }
        runtime.shutdown()
        try? await client.shutdown()
    }
}

/// Waits for one of the given signals. Installing a signal source must not undo another one's:
/// libdispatch catches a signal with its own handler, and setting SIG_IGN after that (as a naive
/// second waiter would) silently drops the signal for everyone — the API server's shutdown included.
/// So the default action is replaced only while it is still the default.
final class SignalWaiter: Sendable {
    let signals: [Int32]
    init(_ signals: [Int32]) { self.signals = signals }

    func wait() async {
        let (stream, continuation) = AsyncStream<Void>.makeStream()
        let sources = signals.map { number -> DispatchSourceSignal in
            var current = sigaction()
            sigaction(number, nil, &current)
            if current.__sigaction_handler.sa_handler == nil {  // SIG_DFL
                signal(number, SIG_IGN)
            }
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield() }
            source.resume()
            return source
        }
        await withTaskCancellationHandler {
            for await _ in stream { break }
        } onCancel: {
            continuation.finish()
        }
        sources.forEach { $0.cancel() }
    }
}
