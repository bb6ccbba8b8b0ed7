import API
import ArgumentParser
import CRI
import Client
import Foundation
import Logging
import NodeAgent
import PKI

/// `cox agent`: the node agent for this host.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agent", abstract: "Run the node agent: register this host as a node and run the pods bound to it.")

    @Option(help: "API server URL (default: the kubeconfig's).") var server: String?
    @Option(help: "Join the cluster with this bootstrap token (from `cox token create`); needs --server and --ca-cert-hash.") var token: String?
    @Option(help: "sha256:HASH of the cluster CA's public key: the agent refuses a server whose CA does not match.") var caCertHash: String?
    @Option(help: "Kubeconfig with the agent's credentials, instead of joining (default: the node's own from joining, else .cox/admin.kubeconfig).") var kubeconfig: String?
    @Option(help: "Node name (default: the host name).") var nodeName: String?
    @Option(help: "Agent data directory: container records and logs.") var dataDir = ".cox/agent"
    @Option(help: "Cluster PKI directory, for an agent beside the server that uses --kubeconfig (its CA issues the agent's serving certificate).") var pki = ".cox/pki"
    @Option(help: "The node's address, where the API server reaches its log endpoint.") var address = "127.0.0.1"
    @Option(help: "Log endpoint port (0 picks a free one).") var port = 10250
    @Option(help: "Seconds between lease renewals.") var heartbeatSeconds = 10
    @Option(help: ArgumentHelp("First crash-loop back-off in seconds (doubles per crash up to 5 minutes).", visibility: .hidden)) var crashBackoffSeconds = 10
    @Option(help: "Container runtime: process (run pods' commands as processes) or fake (run nothing; a simulated node).") var runtime = "process"
    @Option(help: "A CRI runtime's socket, e.g. unix:///run/containerd/containerd.sock (default: the process runtime, served by the agent itself).") var containerRuntimeEndpoint: String?
    @Option(help: "Where the CRI runtime reads CNI networks; the agent writes a bridge network for the node's pod range there when there is none (default: where the runtime says, else /etc/cni/net.d).") var cniConfDir: String?
    @Option(help: "A container's log file is rotated past this size (a quantity: 10Mi).") var containerLogMaxSize = "10Mi"
    @Option(help: "Log files kept per container, the current one included (at least 2).") var containerLogMaxFiles = 5
    @Option(help: ArgumentHelp("Seconds between checks of log sizes.", visibility: .hidden)) var logRotationSeconds = 10
    @Option(help: ArgumentHelp("Seconds between updates of configMap, secret, downwardAPI and projected volumes from their sources.", visibility: .hidden)) var volumeSyncSeconds = 60
    @Option(help: ArgumentHelp("Seconds between measures of emptyDir volumes against their sizeLimit.", visibility: .hidden)) var emptyDirCheckSeconds = 10
    @Option(help: "Reported capacity instead of the host's, e.g. cpu=4,memory=8Gi,pods=110 (for simulated nodes).") var capacity: String?
    @Option(help: "A label the node registers with, KEY=VALUE (repeatable).") var label: [String] = []
    @Option(help: "A taint the node registers with, KEY[=VALUE]:EFFECT (repeatable; EFFECT is NoSchedule, PreferNoSchedule or NoExecute).") var taint: [String] = []

    func validate() throws {
        if token != nil || caCertHash != nil {
            guard token != nil, caCertHash != nil, server != nil else {
                throw ValidationError("joining needs all of --server, --token and --ca-cert-hash (`cox token create --print-join-command` on the server prints them)")
            }
            guard kubeconfig == nil else { throw ValidationError("--kubeconfig and --token exclude each other: a joining node gets its own credentials") }
        }
        guard ["process", "fake"].contains(runtime) else { throw ValidationError("--runtime: unknown runtime \"\(runtime)\"; choose process or fake") }
        if let endpoint = containerRuntimeEndpoint {
            guard runtime != "fake" else { throw ValidationError("--container-runtime-endpoint and --runtime fake exclude each other") }
            do { _ = try CRIConnection.socketPath(endpoint) } catch { throw ValidationError("--container-runtime-endpoint: \(error)") }
        }
        _ = try AgentFlags.logSize(containerLogMaxSize)
        guard containerLogMaxFiles >= 2 else { throw ValidationError("--container-log-max-files must be at least 2") }
        guard logRotationSeconds >= 1 else { throw ValidationError("--log-rotation-seconds must be at least 1") }
        guard volumeSyncSeconds >= 1 else { throw ValidationError("--volume-sync-seconds must be at least 1") }
        guard emptyDirCheckSeconds >= 1 else { throw ValidationError("--empty-dir-check-seconds must be at least 1") }
        _ = try AgentFlags.capacity(capacity)
        _ = try AgentFlags.labels(label)
        _ = try AgentFlags.taints(taint)
    }

    func run() async throws {
        var configuration = NodeAgent.Configuration(nodeName: nodeName ?? LocalNode.defaultName(), dataDirectory: dataDir)
        configuration.address = address
        configuration.logPort = port
        configuration.heartbeatInterval = .seconds(heartbeatSeconds)
        configuration.crashLoopBase = .seconds(crashBackoffSeconds)
        configuration.capacity = try AgentFlags.capacity(capacity)
        if let pods = configuration.capacity?["pods"], let count = Int(pods) { configuration.maxPods = count }
        configuration.labels = try AgentFlags.labels(label)
        configuration.taints = try AgentFlags.taints(taint)
        configuration.containerRuntimeEndpoint = containerRuntimeEndpoint
        configuration.cniConfDirectory = cniConfDir
        configuration.containerLogMaxSize = try AgentFlags.logSize(containerLogMaxSize)
        configuration.containerLogMaxFiles = containerLogMaxFiles
        configuration.logRotationInterval = .seconds(logRotationSeconds)
        configuration.volumeSyncInterval = .seconds(volumeSyncSeconds)
        configuration.emptyDirCheckInterval = .seconds(emptyDirCheckSeconds)
        let fake = runtime == "fake"
        let credentials = NodeCredentials(dataDirectory: dataDir, nodeName: configuration.nodeName)
        if kubeconfig == nil && (token != nil || credentials.exist) {
            // A node of its own: joined now or before, renewing its certificates as they age.
            let logger = Logger(label: "cox.agent")
            var joined: Kubeconfig
            do {
                if credentials.exist, let loaded = try? credentials.load() {
                    joined = loaded
                    if token != nil { logger.info("this node has joined before; using its own credentials, not the token", metadata: ["kubeconfig": "\(credentials.kubeconfigPath)"]) }
                } else if let token, let caCertHash, let server {
                    joined = try await credentials.join(server: server, token: token, caCertHash: caCertHash, logger: logger)
                    print("node \(configuration.nodeName) joined \(server); credentials in \(dataDir)/pki")
                } else {
                    joined = try credentials.load()  // says why it cannot be used
                }
            } catch let error as NodeCredentials.JoinError {
                printError("error: \(error.description)")
                throw ExitCode(1)
            }
            if let server { joined.server = server }
            try await LocalNode.runJoined(configuration, credentials: credentials, kubeconfig: joined, stopPodsOnExit: fake, fake: fake)
            return
        }
        var config = try Kubeconfig.load(path: kubeconfig ?? ".cox/admin.kubeconfig")
        if let server { config.server = server }
        try await LocalNode.runAgent(configuration, kubeconfig: config, pkiDirectory: pki, stopPodsOnExit: fake, fake: fake)
    }
}

/// Parsing of the agent's node flags; every error names the flag and the problem.
enum AgentFlags {
    /// A log size cap: a quantity of bytes (`10Mi`, `512Ki`), at least 1Ki.
    static func logSize(_ text: String) throws -> Int {
        guard let quantity = try? Quantity(parsing: text), quantity.integerValue >= 1024 else {
            throw ValidationError("--container-log-max-size: \"\(text)\" is not a size of at least 1Ki (e.g. 10Mi)")
        }
        return Int(quantity.integerValue)
    }

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
        // One agent per data directory: two would adopt and stop each other's containers.
        let directoryLock = try DirectoryLock(directory: configuration.dataDirectory)
        defer { directoryLock.release() }
        let client = try APIClient(kubeconfig: kubeconfig, userAgent: "cox-agent")
        let runtime = try await makeRuntime(configuration, fake: fake, logger: logger)
        let authority = try ClusterPKI.loadAuthority(directory: pkiDirectory)
        let logServer = try LogServer(runtime: runtime, authority: authority, nodeName: configuration.nodeName, address: configuration.address,
                                      port: configuration.logPort, logger: logger)
        let agent = NodeAgent(configuration: configuration, client: client, runtime: runtime, logServer: logServer, logger: logger)
        await SignalWaiter.runUntilSignalled {
            do { try await agent.run() } catch { logger.error("agent stopped", metadata: ["error": "\(error)"]) }
        }
        // Not cut short when the agent was cancelled (cox up's server ended first): the pods'
        // grace periods are waited out in a task of its own.
        await Task { await finish(runtime, stopPods: stopPodsOnExit) }.value
        try? await client.shutdown()
    }

    /// Runs a joined node's agent until SIGINT/SIGTERM: with a serving certificate requested for
    /// its log endpoint, and both certificates renewed (new keys) once 70 % of the client
    /// certificate's life has passed — the agent then starts over with them, re-adopting its
    /// running containers.
    static func runJoined(_ configuration: NodeAgent.Configuration, credentials: NodeCredentials, kubeconfig: Kubeconfig,
                          stopPodsOnExit: Bool, fake: Bool) async throws {
        let logger = Logger(label: "cox.agent")
        let directoryLock = try DirectoryLock(directory: configuration.dataDirectory)
        defer { directoryLock.release() }
        let runtime = try await makeRuntime(configuration, fake: fake, logger: logger)
        await SignalWaiter.runUntilSignalled {
            var current = kubeconfig
            while !Task.isCancelled {
                do {
                    let client = try APIClient(kubeconfig: current, userAgent: "cox-agent")
                    // Work the stopped agent had under way (a container's start and its events, a
                    // status write) finishes with this client (its certificate is still good): it
                    // is shut down a while after the agent starts over, not under that work.
                    defer { Task { try? await Task.sleep(for: .seconds(30)); try? await client.shutdown() } }
                    let serving = try await credentials.requestServingCertificate(using: client, address: configuration.address)
                    let logServer = try LogServer(runtime: runtime, serving: serving, clientCAPEM: current.caPEM, address: configuration.address,
                                                  port: configuration.logPort, logger: logger)
                    let agent = NodeAgent(configuration: configuration, client: client, runtime: runtime, logServer: logServer, logger: logger)
                    let renewAt = try credentials.renewalDate()
                    let renewed = try await withThrowingTaskGroup(of: Kubeconfig?.self) { group in
                        group.addTask { try await agent.run(); return nil }
                        group.addTask { [current] in try await credentials.renew(using: client, current: current, at: renewAt, logger: logger) }
                        let first = try await group.next() ?? nil
                        group.cancelAll()
                        return first
                    }
                    guard let renewed else { return }
                    logger.info("node certificates renewed; the agent starts over with them", metadata: ["node": "\(configuration.nodeName)"])
                    current = renewed
                } catch {
                    if Task.isCancelled { return }
                    logger.error("agent stopped; starting over in 2 s", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(2))
                }
            }
        }
        await finish(runtime, stopPods: stopPodsOnExit)
    }

    /// The node's runtime, always reached through CRI: the runtime at the configured endpoint, or
    /// else the process runtime, which this process serves as a CRI plugin on a socket in the
    /// agent's data directory (`cox runtime process` serves the same on its own). `fake`: a
    /// simulated node that runs nothing.
    static func makeRuntime(_ configuration: NodeAgent.Configuration, fake: Bool, logger: Logger) async throws -> any ContainerRuntime {
        if fake { return FakeRuntime() }
        let data = URL(fileURLWithPath: configuration.dataDirectory).standardizedFileURL.path
        let logRoot = (data as NSString).appendingPathComponent("pods")
        var endpoint = configuration.containerRuntimeEndpoint
        if endpoint == nil {
            var socket = (data as NSString).appendingPathComponent("runtime/cri.sock")
            if socket.utf8.count > 100 {  // sun_path holds 107 bytes: a short path named by the data directory's
                let hash = data.utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 }
                socket = "/tmp/cox-cri-\(String(hash, radix: 36)).sock"
            }
            let state = try ProcessCRIState(root: (data as NSString).appendingPathComponent("runtime"), logger: Logger(label: "cox.runtime"))
            let (ready, signal) = AsyncStream<Void>.makeStream()
            let socketPath = socket
            Task {
                do {
                    try await ProcessCRIServer.serve(state: state, socketPath: socketPath, logger: Logger(label: "cox.runtime"), ready: { signal.yield() })
                } catch {
                    logger.error("the process runtime stopped serving", metadata: ["error": "\(error)"])
                }
                signal.finish()
            }
            for await _ in ready { break }
            endpoint = "unix://\(socket)"
        }
        let runtime = try CRIRuntime(endpoint: endpoint!, logRoot: logRoot, cniConfDirectory: configuration.cniConfDirectory, logger: Logger(label: "cox.cri"))
        do {
            let version = try await runtime.ping()
            logger.info("container runtime", metadata: ["endpoint": "\(endpoint!)", "runtime": "\(version.runtimeName) \(version.runtimeVersion)"])
        } catch {
            logger.warning("the container runtime does not answer yet; retrying as pods need it", metadata: ["endpoint": "\(endpoint!)", "error": "\(error)"])
        }
        return runtime
    }

    static func finish(_ runtime: any ContainerRuntime, stopPods stopPodsOnExit: Bool) async {
        if stopPodsOnExit {
            let running = await runtime.list().filter(\.isRunning)
            if !running.isEmpty { print("stopping \(running.count) container(s)…") }
            await withTaskGroup(of: Void.self) { group in
                for container in running { group.addTask { await runtime.stop(id: container.id, grace: .seconds(10)) } }
            }
        }
        // And their sandboxes (network namespaces, pause containers on containerd): the pods
        // start anew, in new sandboxes, with the next agent.
        if stopPodsOnExit, let cri = runtime as? CRIRuntime { await cri.stopSandboxes() }
        runtime.shutdown()
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
