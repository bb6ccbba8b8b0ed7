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
    @Option(help: "Container runtime: process (run pods' commands as processes) or fake (run nothing; a simulated node).") var runtime = "process"
    @Option(help: "Reported capacity instead of the host's, e.g. cpu=4,memory=8Gi,pods=110 (for simulated nodes).") var capacity: String?
    @Option(help: "A label the node registers with, KEY=VALUE (repeatable).") var label: [String] = []
    @Option(help: "A taint the node registers with, KEY[=VALUE]:EFFECT (repeatable; EFFECT is NoSchedule, PreferNoSchedule or NoExecute).") var taint: [String] = []

    func validate() throws {
        guard ["process", "fake"].contains(runtime) else { throw ValidationError("--runtime: unknown runtime \"\(runtime)\"; choose process or fake") }
        _ = try AgentFlags.capacity(capacity)
        _ = try AgentFlags.labels(label)
        _ = try AgentFlags.taints(taint)
    }

    func run() async throws {
        var config = try Kubeconfig.load(path: kubeconfig)
        if let server { config.server = server }
        var configuration = NodeAgent.Configuration(nodeName: nodeName ?? LocalNode.defaultName(), dataDirectory: dataDir)
        configuration.address = address
        configuration.logPort = port
        configuration.heartbeatInterval = .seconds(heartbeatSeconds)
        configuration.crashLoopBase = .seconds(crashBackoffSeconds)
        configuration.capacity = try AgentFlags.capacity(capacity)
        if let pods = configuration.capacity?["pods"], let count = Int(pods) { configuration.maxPods = count }
        configuration.labels = try AgentFlags.labels(label)
        configuration.taints = try AgentFlags.taints(taint)
        try await LocalNode.runAgent(configuration, kubeconfig: config, pkiDirectory: pki, stopPodsOnExit: runtime == "fake", fake: runtime == "fake")
    }
}

/// Parsing of the agent's node flags; every error names the flag and the problem.
enum AgentFlags {
    static func capacity(_ text: String?) throws -> [String: String]? {
        guard let text else { return nil }
        var result: [String: String] = [:]
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, ["cpu", "memory", "pods"].contains(parts[0]) else {
                throw ValidationError("--capacity: \"\(item)\" is not RESOURCE=QUANTITY with RESOURCE one of cpu, memory, pods")
            }
            do { _ = try Quantity(parsing: parts[1]) } catch { throw ValidationError("--capacity: \(parts[0]): \(error)") }
            if parts[0] == "pods", Int(parts[1]) == nil { throw ValidationError("--capacity: pods must be a whole number, not \"\(parts[1])\"") }
            result[parts[0]] = parts[1]
        }
        return result
    }

    static func labels(_ items: [String]) throws -> [String: String] {
        var result: [String: String] = [:]
        for item in items {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--label: \"\(item)\" is not KEY=VALUE") }
            if let problem = LabelSyntax.keyProblem(parts[0]) { throw ValidationError("--label: key \"\(parts[0])\": \(problem)") }
            if let problem = LabelSyntax.valueProblem(parts[1]) { throw ValidationError("--label: value \"\(parts[1])\": \(problem)") }
            result[parts[0]] = parts[1]
        }
        return result
    }

    static func taints(_ items: [String]) throws -> [Taint] {
        try items.map { item in
            guard let colon = item.lastIndex(of: ":") else { throw ValidationError("--taint: \"\(item)\" is not KEY[=VALUE]:EFFECT") }
            let effect = String(item[item.index(after: colon)...])
            guard PodValues.taintEffects.contains(effect) else {
                throw ValidationError("--taint: effect \"\(effect)\" must be NoSchedule, PreferNoSchedule or NoExecute")
            }
            let pair = item[..<colon].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            if let problem = LabelSyntax.keyProblem(pair[0]) { throw ValidationError("--taint: key \"\(pair[0])\": \(problem)") }
            var taint = Taint()
            taint.key = pair[0]
            taint.value = pair.count > 1 ? pair[1] : ""
            if let problem = LabelSyntax.valueProblem(taint.value) { throw ValidationError("--taint: value \"\(taint.value)\": \(problem)") }
            taint.effect = effect
            return taint
        }
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
    static func runAgent(_ configuration: NodeAgent.Configuration, kubeconfig: Kubeconfig, pkiDirectory: String, stopPodsOnExit: Bool,
                         fake: Bool = false) async throws {
        let logger = Logger(label: "cox.agent")
        let client = try APIClient(kubeconfig: kubeconfig)
        let runtime: any ContainerRuntime = fake ? FakeRuntime() : try ProcessRuntime(root: configuration.dataDirectory, logger: logger)
        let authority = try ClusterPKI.loadAuthority(directory: pkiDirectory)
        let logServer = try LogServer(runtime: runtime, authority: authority, nodeName: configuration.nodeName, address: configuration.address,
                                      port: configuration.logPort, logger: logger)
        let agent = NodeAgent(configuration: configuration, client: client, runtime: runtime, logServer: logServer, logger: logger)
        await SignalWaiter.runUntilSignalled {
            do { try await agent.run() } catch { logger.error("agent stopped", metadata: ["error": "\(error)"]) }
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

    /// Runs `work` until it ends or SIGINT/SIGTERM arrives (then it is cancelled and awaited).
    static func runUntilSignalled(_ work: @escaping @Sendable () async -> Void) async {
        let signals = SignalWaiter([SIGINT, SIGTERM])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await work() }
            group.addTask { await signals.wait() }
            await group.next()
            group.cancelAll()
        }
    }

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
