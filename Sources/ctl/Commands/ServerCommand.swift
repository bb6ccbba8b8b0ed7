import API
import APIServer
import ArgumentParser
import Client
import PKI
import Etcd
import Foundation
import Logging
import NodeAgent
import Controllers
import Scheduler
import Store

/// `cox server`: the API server, with the controller manager and the scheduler unless
/// `--no-controllers` / `--no-scheduler`.
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server", abstract: "Run the API server (TLS; data, PKI and admin kubeconfig in --data-dir) and the controllers.", aliases: ["apiserver"])

    @Option(help: "Data directory: the store, the cluster PKI and admin.kubeconfig.") var dataDir = ".cox"
    @Option(help: "Address to listen on.") var listen = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one).") var port = 6443
    @Option(help: "Extra name or address for the serving certificate (repeatable).") var advertiseAddress: [String] = []
    @Option(help: "Longest lifetime of a node certificate signed for a joining node (agents renew at 70 %), e.g. 720h.") var nodeCertLifetime = "8760h"
    @OptionGroup var storage: StorageOptions
    @Flag(help: "Run the API server without the controller manager (run `cox controllers` elsewhere).") var noControllers = false
    @Flag(help: "Run the API server without the scheduler (run `cox scheduler` elsewhere).") var noScheduler = false
    @OptionGroup var controllers: ControllerOptions

    func validate() throws {
        guard try TokenTTL.seconds(nodeCertLifetime, flag: "--node-cert-lifetime") >= 10 else {
            throw ValidationError("--node-cert-lifetime: at least 10s")
        }
    }

    func run() async throws {
        var configuration = APIServer.Configuration(dataDirectory: dataDir)
        configuration.host = listen
        configuration.port = port
        configuration.extraNames = advertiseAddress
        configuration.nodeCertificateLifetime = .seconds(try TokenTTL.seconds(nodeCertLifetime, flag: "--node-cert-lifetime"))
        try storage.apply(to: &configuration)
        let managerOptions = noControllers ? nil : try controllers.managerOptions()
        let listen = self.listen
        let scheduler = noScheduler ? nil : controllers.schedulerOptions()
        try await ServerWithControllers.run(APIServer(configuration: configuration), controllers: managerOptions, scheduler: scheduler) { port, kubeconfig in
            print("cox API server listening on https://\(listen):\(port)")
            print("admin kubeconfig: \(kubeconfig)")
            fflush(nil)
        }
    }
}

/// The API server and, once it listens, the controller manager and the scheduler (talking to it
/// over its own TLS API, as any client). On SIGINT/SIGTERM the components stop first — releasing
/// their leader leases while the server still answers — and then the server drains and stops.
/// A server that ends by itself ends them.
enum ServerWithControllers {
    static func run(_ server: APIServer, controllers: ControllerManager.Options?, scheduler: Scheduler.Options?,
                    onReady: @escaping @Sendable (Int, String) async -> Void) async throws {
        var configuration = server.configuration
        configuration.handlesSignals = false
        let server = APIServer(configuration: configuration, logger: server.logger)
        let (ready, readyContinuation) = AsyncStream<(Int, String)>.makeStream()
        let (ended, endedContinuation) = AsyncStream<Void>.makeStream()
        let serving = Task {
            defer {
                readyContinuation.finish()
                endedContinuation.finish()
            }
            try await server.run { port, kubeconfig in
                readyContinuation.yield((port, kubeconfig))
                await onReady(port, kubeconfig)
            }
        }
        let components = Task {
            guard controllers != nil || scheduler != nil else { return }
            var iterator = ready.makeAsyncIterator()
            guard let (_, path) = await iterator.next() else { return }
            // Each component acts as itself, with only its role's rights, not as the admin.
            let admin = try Kubeconfig.load(path: path)
            let pki = (server.configuration.dataDirectory as NSString).appendingPathComponent("pki")
            let controllerIdentity = try ComponentIdentity.kubeconfig(admin: admin, pkiDirectory: pki, user: BootstrapPolicy.controllerManagerUser)
            let schedulerIdentity = try ComponentIdentity.kubeconfig(admin: admin, pkiDirectory: pki, user: BootstrapPolicy.schedulerUser)
            try await withThrowingTaskGroup(of: Void.self) { parts in
                if let controllers { parts.addTask { try await LocalControllers.run(kubeconfig: controllerIdentity, options: controllers) } }
                if let scheduler { parts.addTask { try await LocalScheduler.run(kubeconfig: schedulerIdentity, options: scheduler) } }
                try await parts.waitForAll()
            }
        }
        // Until a signal, or the server's end (an error: the port is taken, the store is locked).
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for await _ in ended {} }
            group.addTask { await SignalWaiter([SIGINT, SIGTERM]).wait() }
            await group.next()
            group.cancelAll()
        }
        components.cancel()
        let componentsResult = await components.result
        serving.cancel()
        try await serving.value
        try componentsResult.get()
    }
}

/// `cox up`: a local cluster with its data in ./.cox: the API server, the controllers, the
/// scheduler and one node agent for this host (node name: the host name). Ctrl-C stops the pods' processes and the cluster; a second `cox up`
/// keeps every object and starts the pods again.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "Start a local cluster with data in ./.cox (Ctrl-C stops it; a second `cox up` keeps every object).")

    @Option(help: "Data directory.") var dataDir = ".cox"
    @Option(help: "Address to listen on (0.0.0.0 lets other hosts join).") var listen = "127.0.0.1"
    @Option(help: "Port to listen on.") var port = 6443
    @Option(help: "The name or address other hosts reach this one by (in the serving certificate and the join command; repeatable).") var advertiseAddress: [String] = []
    @Option(name: .shortAndLong, help: "Manifests to apply once the cluster is up (a file or directory; repeatable).") var filename: [String] = []
    @Option(help: "Node name of the local agent (default: the host name).") var nodeName: String?
    @Option(help: "The local agent's CRI runtime, e.g. unix:///run/containerd/containerd.sock (default: the process runtime).") var containerRuntimeEndpoint: String?
    @Option(help: "Where that runtime reads CNI networks (default: where it says, else /etc/cni/net.d); the agent writes one for the node's pod range when there is none.") var cniConfDir: String?
    @OptionGroup var storage: StorageOptions
    @Flag(help: "Run the API server only, without a local agent.") var noAgent = false
    @Flag(help: "Run without the controller manager.") var noControllers = false
    @Flag(help: "Run without the scheduler.") var noScheduler = false
    @OptionGroup var controllers: ControllerOptions

    func run() async throws {
        // Read the manifests first: a typo should stop `cox up` before anything starts.
        let manifests = try filename.flatMap { try Manifests.load(path: $0) }
        var configuration = APIServer.Configuration(dataDirectory: dataDir)
        configuration.host = listen
        configuration.port = port
        configuration.extraNames = advertiseAddress
        try storage.apply(to: &configuration)
        let joinHost = JoinHint.host(listen: listen, advertised: advertiseAddress)
        let node = nodeName ?? LocalNode.defaultName()
        let (ready, readyContinuation) = AsyncStream<String>.makeStream()
        let dataDir = self.dataDir
        let noAgent = self.noAgent
        let runtimeEndpoint = containerRuntimeEndpoint
        let cniConfDir = self.cniConfDir
        let server = APIServer(configuration: configuration)
        // One local cluster per data directory: a stable identity lets a `cox up` that was killed
        // take its own lease back at once instead of waiting for it to expire.
        var options = noControllers ? nil : try controllers.managerOptions()
        var schedulerOptions = noScheduler ? nil : controllers.schedulerOptions()
        if controllers.leaderIdentity == nil {
            options?.identity = "cox-up-\(node)"
            schedulerOptions?.identity = "cox-up-\(node)"
        }
        let managerOptions = options
        let scheduler = schedulerOptions
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { readyContinuation.finish() }
                try await ServerWithControllers.run(server, controllers: managerOptions, scheduler: scheduler) { port, kubeconfig in
                    print("""
                        Coxswain is up: API server on https://127.0.0.1:\(port), data in \(dataDir)/\(noAgent ? "" : ", node \(node)")
                          kubeconfig:  \(kubeconfig)
                          try:         cox get nodes    cox get pods    cox logs POD
                                       kubectl --kubeconfig \(kubeconfig) get --raw /api/v1/namespaces/default/pods
                        """)
                    await JoinHint.print(kubeconfig: kubeconfig, host: joinHost, port: port, loopbackOnly: joinHost == nil)
                    print("Ctrl-C stops it.")
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
                    let kubeconfig = try ComponentIdentity.kubeconfig(admin: try Kubeconfig.load(path: kubeconfigPath),
                                                                      pkiDirectory: (dataDir as NSString).appendingPathComponent("pki"),
                                                                      user: "cox:node:\(node)", groups: [BootstrapPolicy.nodesGroup])
                    var agent = NodeAgent.Configuration(nodeName: node, dataDirectory: (dataDir as NSString).appendingPathComponent("agent"))
                    agent.logPort = 0
                    agent.containerRuntimeEndpoint = runtimeEndpoint
                    agent.cniConfDirectory = cniConfDir
                    do {
                        try await LocalNode.runAgent(agent, kubeconfig: kubeconfig, pkiDirectory: (dataDir as NSString).appendingPathComponent("pki"), stopPodsOnExit: true)
                    } catch where Task.isCancelled {
                        // Cancelled while it started (the server ended first): nothing of it runs.
                    }
                }
            }
            // The server ends on Ctrl-C (after draining). The agent stops its pods on the same
            // signal — unless the signal came while it was still starting, before it listened
            // (seen under load: the agent then ran on for good, retrying a server that was gone,
            // and cox up never exited). So once the server has ended the agent is cancelled too;
            // it still stops its pods (that part is not cut short by the cancellation).
            try await group.next()
            group.cancelAll()
            try await group.waitForAll()
        }
    }
}

/// How long the server keeps history and Events, and how much it serves at once (`cox server`
/// and `cox up`).
struct StorageOptions: ParsableArguments {
    @Option(help: "Requests served at once (watches apart); more get 429 with Retry-After (kube-apiserver's flag, same default).")
    var maxRequestsInflight = 400
    @Option(help: "Bytes of request bodies the server holds at once, across connections; a body past it gets 429.")
    var maxBufferedRequestBytes = 256 * 1024 * 1024
    @Option(help: "Connections one source address may hold open at once (0: no limit).")
    var maxConnectionsPerAddress = 1_000
    @Option(help: "Compact history older than this (a watch from before it gets 410 Gone and re-lists); 0 never compacts.")
    var compactionInterval = "5m"
    @Option(help: "Delete Events this long after their last write.") var eventTtl = "1h"
    @Option(help: "Keep the cluster's state in etcd instead of the embedded store: the members' client URLs, comma-separated (https://host:2379,…).")
    var etcdServers: String?
    @Option(help: "CA certificate that signed the etcd members' certificates (with --etcd-servers over https).") var etcdCafile: String?
    @Option(help: "Client certificate for etcd.") var etcdCertfile: String?
    @Option(help: "Client certificate's key for etcd.") var etcdKeyfile: String?
    @Option(help: "Every key this cluster stores in etcd is under this prefix.") var etcdPrefix = "/registry"

    func validate() throws {
        if etcdServers == nil, etcdCafile != nil || etcdCertfile != nil || etcdKeyfile != nil {
            throw ValidationError("--etcd-cafile, --etcd-certfile and --etcd-keyfile go with --etcd-servers")
        }
        if let etcdServers {
            let urls = etcdServers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if urls.isEmpty || urls.contains(where: { !$0.hasPrefix("https://") && !$0.hasPrefix("http://") }) {
                throw ValidationError("--etcd-servers: expected https://HOST:PORT[,https://HOST:PORT…], got \"\(etcdServers)\"")
            }
            let files = [etcdCafile, etcdCertfile, etcdKeyfile]
            if urls.contains(where: { $0.hasPrefix("https://") }) && files.contains(where: { $0 == nil }) {
                throw ValidationError("--etcd-servers over https needs --etcd-cafile, --etcd-certfile and --etcd-keyfile (etcd members check client certificates)")
            }
            for file in files.compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: file) {
                throw ValidationError("cannot read \(file)")
            }
            if !etcdPrefix.hasPrefix("/") { throw ValidationError("--etcd-prefix: must start with /") }
        }
        _ = try TokenTTL.seconds(compactionInterval, flag: "--compaction-interval")
        if try TokenTTL.seconds(eventTtl, flag: "--event-ttl") == 0 { throw ValidationError("--event-ttl: must be more than 0") }
        if maxConnectionsPerAddress < 0 { throw ValidationError("--max-connections-per-address: 0 (no limit) or more") }
        if maxRequestsInflight < 1 { throw ValidationError("--max-requests-inflight: at least 1") }
        if maxBufferedRequestBytes < 4 * 1024 * 1024 { throw ValidationError("--max-buffered-request-bytes: at least 4194304 (one request body of 3 MiB must fit)") }
    }

    func apply(to configuration: inout APIServer.Configuration) throws {
        let compaction = try TokenTTL.seconds(compactionInterval, flag: "--compaction-interval")
        configuration.compactionInterval = compaction == 0 ? nil : .seconds(compaction)
        configuration.eventTTL = .seconds(try TokenTTL.seconds(eventTtl, flag: "--event-ttl"))
        configuration.limits.maxInflightRequests = maxRequestsInflight
        configuration.limits.maxBufferedBodyBytes = maxBufferedRequestBytes
        configuration.limits.maxConnectionsPerAddress = maxConnectionsPerAddress
        if let etcdServers {
            let urls = etcdServers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            var tls: EtcdConnection.TLSFiles?
            if let etcdCafile, let etcdCertfile, let etcdKeyfile {
                tls = EtcdConnection.TLSFiles(caFile: etcdCafile, certFile: etcdCertfile, keyFile: etcdKeyfile)
            }
            var etcd = EtcdStore.Options(endpoints: urls, tls: tls)
            etcd.prefix = etcdPrefix
            configuration.etcd = etcd
        }
    }
}

/// Kubeconfigs for the built-in components: a client certificate for the component's user (and
/// groups), issued by the cluster CA when it starts and kept in memory only.
enum ComponentIdentity {
    static func kubeconfig(admin: Kubeconfig, pkiDirectory: String, user: String, groups: [String] = []) throws -> Kubeconfig {
        let identity = try ClusterPKI.loadAuthority(directory: pkiDirectory).issue(commonName: user, organizations: groups, usage: .client)
        return Kubeconfig(server: admin.server, caPEM: admin.caPEM, user: user,
                          clientCertificatePEM: identity.certificatePEM, clientKeyPEM: identity.privateKeyPEM)
    }
}

/// The command that joins another host to the cluster `cox up` started, with a fresh bootstrap
/// token (valid 24 h).
enum JoinHint {
    /// Where other hosts reach this server; nil when it listens on loopback only.
    static func host(listen: String, advertised: [String]) -> String? {
        if let first = advertised.first { return first }
        if ["127.0.0.1", "::1", "localhost"].contains(listen) { return nil }
        if ["0.0.0.0", "::"].contains(listen) { return LocalNode.defaultName() }
        return listen
    }

    static func print(kubeconfig: String, host: String?, port: Int, loopbackOnly: Bool) async {
        do {
            let admin = try Kubeconfig.load(path: kubeconfig)
            let client = try APIClient(kubeconfig: admin)
            defer { Task { try? await client.shutdown() } }
            let token = try await Tokens.create(client, user: nil, groups: [], ttlSeconds: 24 * 3600, comment: "printed by cox up")
            let urlHost = (host ?? "127.0.0.1").contains(":") ? "[\(host ?? "::1")]" : (host ?? "127.0.0.1")
            let command = try Tokens.joinCommand(server: "https://\(urlHost):\(port)", token: token, caPEM: admin.caPEM)
            Swift.print("  join a host: \(command)")
            if loopbackOnly {
                Swift.print("               (this server listens on 127.0.0.1 only: start with --listen 0.0.0.0 --advertise-address ADDRESS for other hosts)")
            }
        } catch {
            printError("cannot make a join token: \(error)")
        }
    }
}
