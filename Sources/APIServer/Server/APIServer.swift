import API
import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import PKI
import ServiceLifecycle
import Store

/// The API server: TLS only (client certificates verified against the cluster CA when presented;
/// requests without one get 401 except `/livez` and `/readyz`), Kubernetes-shaped REST and watch
/// over the embedded store. PKI is bootstrapped in the data directory on first start.
public struct APIServer: Sendable {
    public struct Limits: Sendable {
        /// Request bodies above this get 413 (Kubernetes' default is 3 MiB).
        public var maxBodyBytes = 3 * 1024 * 1024
        /// Requests served at once; more get 429 with Retry-After.
        public var maxInflightRequests = 400
        /// Bytes of request bodies held by the whole server at once (over HTTP/2: buffered on
        /// connections and in requests being served); a body that would pass it gets 429.
        public var maxBufferedBodyBytes = 256 * 1024 * 1024
        /// Longest a watch stays open; clients re-watch from their last revision.
        public var maxWatchSeconds = 1_800
        /// A watch with nothing to send sends a BOOKMARK this often: clients learn the current
        /// revision, and a vanished client is noticed (the write fails) instead of lingering.
        public var bookmarkInterval: Duration = .seconds(5)
        /// Longest any request but a watch may take before it is answered 504 Timeout
        /// (Kubernetes' `--request-timeout` default). Over HTTP/2 also the longest a request's
        /// body may take to arrive (408 after it).
        public var requestTimeout: Duration = .seconds(60)
        /// A connection whose TLS handshake has not finished by then is closed.
        public var handshakeTimeout: Duration = .seconds(10)
        /// A connection with no request in progress (HTTP/1.1: also one whose request head is
        /// still arriving; HTTP/2: with no open stream) is closed after this long (Go's and so
        /// kube-apiserver's HTTP/2 idle timeout is 90 s).
        public var idleTimeout: Duration = .seconds(90)
        /// Connections one source address may hold open at once; past it new ones are closed at
        /// once. 0: no limit.
        public var maxConnectionsPerAddress = 1_000
        public init() {}
    }

    public struct Configuration: Sendable {
        public var dataDirectory: String
        public var host = "127.0.0.1"
        /// 0 picks a free port (tests).
        public var port = 6443
        /// Extra names and addresses for the serving certificate (`--advertise-address`).
        public var extraNames: [String] = []
        public var limits = Limits()
        public var store = SQLiteStore.Options()
        /// Keep the state in an etcd cluster instead of the embedded store (several servers may
        /// then serve the same cluster). The data directory still holds the PKI, the Secrets key
        /// and the audit log.
        public var etcd: EtcdStore.Options?
        /// Where the admin kubeconfig is written; nil for `DATA/admin.kubeconfig`.
        public var kubeconfigPath: String?
        /// The audit log (DATA/audit.log) is rotated when it would grow past this.
        public var auditMaxBytes = 100 * 1024 * 1024
        /// Whether SIGINT/SIGTERM shut the server down by themselves; off when the caller orders
        /// the shutdown (components that use the server stop first) by cancelling `run`.
        public var handlesSignals = true
        /// Longest lifetime of a node certificate signed on request (agents renew at 70 % of it).
        public var nodeCertificateLifetime: Duration = .seconds(365 * 24 * 3600)
        /// History older than this is compacted away (and its pages returned to the file system);
        /// a watch from before it gets 410 Gone. nil: never (kube-apiserver's
        /// `--etcd-compaction-interval 0`).
        public var compactionInterval: Duration? = .seconds(5 * 60)
        /// Events are deleted this long after their last write (`--event-ttl`).
        public var eventTTL: Duration = .seconds(3600)

        public init(dataDirectory: String) {
            self.dataDirectory = dataDirectory
        }
    }

    public let configuration: Configuration
    public let logger: Logger

    public init(configuration: Configuration, logger: Logger = Logger(label: "cox.apiserver")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs until cancelled or until SIGINT/SIGTERM; either way gracefully (in-flight requests
    /// finish, watches end; at most 20 s).
    /// `onRunning` gets the bound port and the kubeconfig path once the server accepts connections.
    public func run(onRunning: @escaping @Sendable (_ port: Int, _ kubeconfig: String) async -> Void = { _, _ in }) async throws {
        let pki = try ClusterPKI.bootstrap(dataDirectory: configuration.dataDirectory, extraNames: configuration.extraNames + [configuration.host])
        // Secrets are encrypted at rest with the data directory's key (made at the first start;
        // every server of one cluster on etcd needs the same one).
        let secretsKey = try SecretsKey.loadOrCreate(dataDirectory: configuration.dataDirectory)
        let store: any ObjectStore
        let compactor: @Sendable (Duration) async -> Void
        if var etcdOptions = configuration.etcd {
            etcdOptions.secretsKey = secretsKey
            let etcd = try await EtcdStore(options: etcdOptions, logger: logger)
            store = etcd
            compactor = { window in await etcd.runCompactor(window: window, tick: Self.sweepInterval(ttl: window)) }
        } else {
            var storeOptions = configuration.store
            storeOptions.secretsKey = secretsKey
            let sqlite = try SQLiteStore(directory: configuration.dataDirectory, options: storeOptions, logger: logger)
            store = sqlite
            compactor = { window in await sqlite.runCompactor(window: window, tick: Self.sweepInterval(ttl: window)) }
        }
        defer { store.close() }

        var tls = TLSConfiguration.makeServerConfiguration(
            // The chain ends with the cluster CA: a joining agent pins it by its hash
            // (`--ca-cert-hash`) before it sends anything.
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array((pki.serving.certificatePEM + "\n" + pki.authority.certificatePEM).utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(pki.serving.privateKeyPEM.utf8), format: .pem)))
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pki.authority.certificatePEM.utf8)))
        tls.certificateVerification = .optionalVerification
        tls.minimumTLSVersion = .tlsv12
        // TLS 1.2 with forward secrecy and AEAD only (the key is ECDSA); TLS 1.3's suites are all modern.
        tls.cipherSuiteValues = [.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, .TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                                 .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]
        // Closing a connection sends close_notify and waits for the client's; a client that went
        // away without one (its process or its side closed) held every SIGTERM'd server with a
        // node agent attached for NIOSSL's default 5 s.
        tls.shutdownTimeout = .milliseconds(500)

        // RBAC: the built-in roles and bindings exist before the first request is answered, and
        // the authorizer holds every role and binding from then on.
        try await BootstrapPolicy.ensure(in: store, logger: logger)
        try await Namespaces.ensureSystem(in: store, logger: logger)
        try await Namespaces.ensureDefaultServiceAccounts(in: store, logger: logger)
        let namespaces = Namespaces()
        let namespacesRevision = try await namespaces.reload(from: store)
        let customResources = CustomResourceRegistry()
        let customRevision = try await customResources.reload(from: store)
        let authorizer = Authorizer()
        let policyRevision = try await authorizer.reload(from: store)
        let drain = WatchDrain()
        let (agents, agentStreams) = try Self.agentClient(pki)
        let audit = try AuditLog(path: (configuration.dataDirectory as NSString).appendingPathComponent("audit.log"),
                                 maxBytes: configuration.auditMaxBytes, logger: logger)
        var responder = APIResponder(store: store, limits: configuration.limits, inflight: InflightCounter(),
                                     metrics: RequestMetrics(), drain: drain, agents: agents, logger: logger, authorizer: authorizer, audit: audit)
        responder.namespaces = namespaces
        responder.customResources = customResources
        responder.agentStreams = agentStreams
        responder.bodyBudget = BodyBudget(limit: configuration.limits.maxBufferedBodyBytes)
        responder.signer = CertificateSigner(clusterCA: pki.authority, nodeServingCA: pki.nodeServing,
                                             maxLifetime: TimeInterval(configuration.nodeCertificateLifetime.components.seconds))
        let kubeconfigPath = configuration.kubeconfigPath ?? (configuration.dataDirectory as NSString).appendingPathComponent("admin.kubeconfig")
        let host = configuration.host
        let urlHost = host.contains(":") ? "[\(host)]" : host
        // Hummingbird waits for onServerRunning before it serves, so the caller's callback (which
        // may well call this server) runs in a sibling task, once the port is known.
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        let app = Application(
            responder: responder,
            // HTTP/2 served as frames (HTTP2Streams.swift), HTTP/1.1 by Hummingbird.
            server: HTTPServerBuilder { [responder, logger, tls] hummingbird in
                try APIServerChannel(tls: tls, hummingbird: hummingbird, api: responder, logger: logger)
            },
            configuration: .init(address: .hostname(host, port: configuration.port), serverName: "cox"),
            onServerRunning: { [logger] channel in
                let port = channel.localAddress?.port ?? 0
                do {
                    try pki.writeAdminKubeconfig(to: kubeconfigPath, serverURL: "https://\(urlHost):\(port)")
                } catch {
                    logger.error("cannot write the admin kubeconfig", metadata: ["path": "\(kubeconfigPath)", "error": "\(error)"])
                }
                logger.info("serving", metadata: ["address": "https://\(urlHost):\(port)", "kubeconfig": "\(kubeconfigPath)"])
                portContinuation.yield(port)
                portContinuation.finish()
            },
            logger: logger)
        let following = Task { [logger] in await authorizer.follow(store, from: policyRevision, logger: logger) }
        let cleaning = Task { [logger] in await TokenCleaner.run(store, every: .seconds(60), logger: logger) }
        let followingNamespaces = Task { [logger] in await namespaces.follow(store, from: namespacesRevision, logger: logger) }
        let followingDefinitions = Task { [logger] in await customResources.follow(store, from: customRevision, logger: logger) }
        let finishingDefinitions = Task { await responder.finishDefinitionDeletions(every: .seconds(1)) }
        let eventTTL = configuration.eventTTL
        let expiring = Task { [logger] in
            await EventExpiry.run(store, ttl: eventTTL, every: Self.sweepInterval(ttl: eventTTL), logger: logger)
        }
        let compacting = Task { [compactionInterval = configuration.compactionInterval] in
            guard let compactionInterval else { return }
            await compactor(compactionInterval)
        }
        func stopBackground() async {
            let tasks = [following, cleaning, followingNamespaces, followingDefinitions, finishingDefinitions, expiring, compacting]
            for task in tasks { task.cancel() }
            for task in tasks { await task.value }
            try? await agents.shutdown()
        }
        do {
            try await serve(app, drain: drain, ports: ports, portContinuation: portContinuation, onRunning: onRunning)
        } catch {
            await stopBackground()
            throw error
        }
        await stopBackground()
    }

    func serve(_ app: some Service, drain: WatchDrain, ports: AsyncStream<Int>, portContinuation: AsyncStream<Int>.Continuation,
               onRunning: @escaping @Sendable (_ port: Int, _ kubeconfig: String) async -> Void) async throws {
        let logger = self.logger
        let kubeconfigPath = configuration.kubeconfigPath ?? (configuration.dataDirectory as NSString).appendingPathComponent("admin.kubeconfig")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { portContinuation.finish() }
                // Shut down in reverse order: first end the watches, then let the HTTP server
                // finish the requests in flight and close.
                var configuration = ServiceGroupConfiguration(
                    services: [.init(service: app), .init(service: WatchDrainService(drain: drain, logger: logger))],
                    gracefulShutdownSignals: configuration.handlesSignals ? [.sigterm, .sigint] : [],
                    logger: logger)
                configuration.maximumGracefulShutdownDuration = .seconds(20)
                let services = ServiceGroup(configuration: configuration)
                // Cancelling `run` shuts down gracefully too, as SIGTERM does: a hard stop would cut
                // the requests in flight (and, when HTTP/2 went through swift-nio-http2's stream
                // channels, a stream opened meanwhile trapped in NIO). So the group runs in a task
                // of its own that the caller's cancellation does not reach, and cancellation
                // becomes a graceful shutdown request.
                let running = Task { try await services.run() }
                try await withTaskCancellationHandler {
                    try await running.value
                } onCancel: {
                    Task { await services.triggerGracefulShutdown() }
                }
            }
            group.addTask {
                for await port in ports { await onRunning(port, kubeconfigPath) }
            }
            try await group.waitForAll()
        }
    }

    /// How often a sweep runs that removes what is older than `ttl`: a tenth of it, between 1 s
    /// and a minute, so nothing outlives its time by more than a tenth (or a minute).
    static func sweepInterval(ttl: Duration) -> Duration {
        min(.seconds(60), max(.seconds(1), ttl / 10))
    }

    /// The client the server uses to reach node agents: trusts the cluster CA, presents a client
    /// certificate for `cox:apiserver` issued at start (never written to disk).
    /// The same TLS, as a context for the connections exec, attach and port-forward are proxied over.
    static func agentClient(_ pki: ClusterPKI) throws -> (HTTPClient, NIOSSLContext) {
        let identity = try pki.authority.issue(commonName: "cox:apiserver", organizations: ["system:masters"], usage: .client)
        var tls = TLSConfiguration.makeClientConfiguration()
        // Agents serve with a certificate from the cluster CA (run beside the server, holding its
        // key) or from the node-serving CA (joined by request).
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array((pki.authority.certificatePEM + "\n" + pki.nodeServing.certificatePEM).utf8)))
        tls.minimumTLSVersion = .tlsv12
        tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(identity.certificatePEM.utf8)).map { .certificate($0) }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(identity.privateKeyPEM.utf8), format: .pem))
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout.connect = .seconds(5)
        // Agents' certificates name their node's address; a proxied stream dials that address
        // and checks both the chain (cluster or node-serving CA) and that the certificate names
        // the address: a node cannot answer for another node's address with its own certificate.
        return (HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration), try NIOSSLContext(configuration: tls))
    }
}
