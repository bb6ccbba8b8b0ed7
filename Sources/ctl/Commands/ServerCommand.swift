import API
import APIServer
import ArgumentParser
import Client
import PKI
import Foundation
import Logging
import NodeAgent

/// `cox server`: the API server alone (the scheduler and controllers join it in later issues).
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server", abstract: "Run the API server (TLS; data, PKI and admin kubeconfig in --data-dir).", aliases: ["apiserver"])

    @Option(help: "Data directory: the store, the cluster PKI and admin.kubeconfig.") var dataDir = ".cox"
    @Option(help: "Address to listen on.") var listen = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one).") var port = 6443
    @Option(help: "Extra name or address for the serving certificate (repeatable).") var advertiseAddress: [String] = []

    func run() async throws {
        var configuration = APIServer.Configuration(dataDirectory: dataDir)
        configuration.host = listen
        configuration.port = port
        configuration.extraNames = advertiseAddress
        try await APIServer(configuration: configuration).run { port, kubeconfig in
            print("cox API server listening on https://\(listen):\(port)")
            print("admin kubeconfig: \(kubeconfig)")
            fflush(nil)
        }
    }
}

/// `cox up`: a local cluster with its data in ./.cox: the API server, one node agent for this host
/// (node name: the host name), and — until the scheduler exists — a binder that puts every
/// unbound pod on that node. Ctrl-C stops the pods' processes and the cluster; a second `cox up`
/// keeps every object and starts the pods again.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "Start a local cluster with data in ./.cox (Ctrl-C stops it; a second `cox up` keeps every object).")

    @Option(help: "Data directory.") var dataDir = ".cox"
    @Option(help: "Port to listen on.") var port = 6443
    @Option(name: .shortAndLong, help: "Manifests to apply once the cluster is up (a file or directory; repeatable).") var filename: [String] = []
    @Option(help: "Node name of the local agent (default: the host name).") var nodeName: String?
    @Flag(help: "Run the API server only, without a local agent.") var noAgent = false

    func run() async throws {
        // Read the manifests first: a typo should stop `cox up` before anything starts.
        let manifests = try filename.flatMap { try Manifests.load(path: $0) }
        var configuration = APIServer.Configuration(dataDirectory: dataDir)
        configuration.port = port
        let node = nodeName ?? LocalNode.defaultName()
        let (ready, readyContinuation) = AsyncStream<String>.makeStream()
        let dataDir = self.dataDir
        let noAgent = self.noAgent
        let server = APIServer(configuration: configuration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { readyContinuation.finish() }
                try await server.run { port, kubeconfig in
                    print("""
                        Coxswain is up: API server on https://127.0.0.1:\(port), data in \(dataDir)/\(noAgent ? "" : ", node \(node)")
                          kubeconfig:  \(kubeconfig)
                          try:         cox get nodes    cox get pods    cox logs POD
                                       kubectl --kubeconfig \(kubeconfig) get --raw /api/v1/namespaces/default/pods
                        Ctrl-C stops it.
                        """)
                    fflush(nil)
                    readyContinuation.yield(kubeconfig)
                    guard !manifests.isEmpty else { return }
                    // Applied through the public API, as any other client would.
                    do {
                        let client = try APIClient(kubeconfig: try Kubeconfig.load(path: kubeconfig))
                        if await ApplyCommand.apply(manifests.map(\.object), with: client) { printError("some manifests were not applied (see above)") }
                        try? await client.shutdown()
                    } catch {
                        printError("error: cannot apply the manifests: \(error)")
                    }
                    fflush(nil)
                }
            }
            if !noAgent {
                group.addTask {
                    var iterator = ready.makeAsyncIterator()
                    guard let kubeconfigPath = await iterator.next() else { return }
                    let kubeconfig = try Kubeconfig.load(path: kubeconfigPath)
                    var agent = NodeAgent.Configuration(nodeName: node, dataDirectory: (dataDir as NSString).appendingPathComponent("agent"))
                    agent.logPort = 0
                    async let binder: Void = LocalBinder.run(kubeconfig: kubeconfig, node: node)
                    try await LocalNode.runAgent(agent, kubeconfig: kubeconfig, pkiDirectory: (dataDir as NSString).appendingPathComponent("pki"), stopPodsOnExit: true)
                    await binder
                }
            }
            // The server ends on Ctrl-C (after draining); the agent has stopped its pods by then.
            try await group.next()
            try await group.waitForAll()
        }
    }
}

/// Until the scheduler exists, `cox up` binds every unbound pod to its one node.
enum LocalBinder {
    static func run(kubeconfig: Kubeconfig, node: String) async {
        guard let client = try? APIClient(kubeconfig: kubeconfig) else { return }
        let signals = SignalWaiter([SIGINT, SIGTERM])
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do { for try await event in client.watch(Pod.self, WatchRequest(fieldSelector: "spec.nodeName=")) {
                    var pods: [Pod] = []
                    switch event {
                    case .added(let pod), .modified(let pod): pods = [pod]
                    case .relisted(let all, _): pods = all
                    default: continue
                    }
                    for pod in pods where pod.spec.nodeName.isEmpty && !pod.metadata.hasDeletionTimestamp {
                        try? await client.bind(namespace: pod.metadata.namespace, pod: pod.metadata.name, node: node)
                    }
                } } catch {}
            }
            group.addTask { await signals.wait() }
            await group.next()
            group.cancelAll()
        }
        try? await client.shutdown()
    }
}
