import API
import Client
import ControllerRuntime
import Foundation
import Logging
import Synchronization

/// Runs one node: registers its Node, renews its Lease, runs the pods bound to it through a
/// ContainerRuntime, reports their status, and serves their logs. Survives losing the API server:
/// pods keep running, calls are retried with backoff, the watch resumes when the server is back.
public final class NodeAgent: Sendable {
    public struct Configuration: Sendable {
        public var nodeName: String
        public var dataDirectory: String
        /// The node's InternalIP (where its log endpoint is reached).
        public var address = "127.0.0.1"
        public var heartbeatInterval: Duration = .seconds(10)
        public var leaseDurationSeconds: Int32 = 40
        public var maxPods = 110
        /// Log endpoint port; 0 picks a free one (reported in the Node's daemonEndpoints).
        public var logPort = 10250
        /// First crash-loop delay; doubles per crash up to `crashLoopMax`; reset after 10 minutes of running.
        public var crashLoopBase: Duration = .seconds(10)
        public var crashLoopMax: Duration = .seconds(300)
        public var labels: [String: String] = [:]
        /// Taints the node registers with (as kubelet's `--register-with-taints`; later changes
        /// are the administrator's).
        public var taints: [Taint] = []
        /// Reported capacity (`cpu`, `memory`, `pods`) instead of the host's: for simulated nodes.
        public var capacity: [String: String]? = nil
        /// A CRI runtime's `unix://` socket; nil: the process runtime, served by the agent itself.
        public var containerRuntimeEndpoint: String?
        /// Where a CNI runtime reads its networks (nil: where the runtime says, else /etc/cni/net.d).
        public var cniConfDirectory: String?
        /// A container's log is rotated past this many bytes (the kubelet's containerLogMaxSize).
        public var containerLogMaxSize = 10 * 1024 * 1024
        /// Log files kept per container, the current one included (containerLogMaxFiles).
        public var containerLogMaxFiles = 5
        /// How often logs are checked against `containerLogMaxSize`.
        public var logRotationInterval: Duration = .seconds(10)
        /// Container starts the agent asks of its runtime at once (the rest wait their turn).
        public var maxParallelStarts = 4
        /// How often sandboxes of pods the agent no longer has are looked for and removed.
        public var orphanSweepInterval: Duration = .seconds(30)
        /// How often the runtime's health (Status) is asked; a change is reported at once.
        public var runtimeCheckInterval: Duration = .seconds(2)
        /// How often configMap, secret, downwardAPI and projected volumes are brought up to date
        /// with their sources (the kubelet's sync period is a minute too).
        public var volumeSyncInterval: Duration = .seconds(60)
        /// How often emptyDir volumes with a sizeLimit are measured (the pod is evicted past it).
        public var emptyDirCheckInterval: Duration = .seconds(10)

        public init(nodeName: String, dataDirectory: String) {
            self.nodeName = nodeName
            self.dataDirectory = dataDirectory
        }
    }

    public let configuration: Configuration
    let client: APIClient
    let runtime: any ContainerRuntime
    let logServer: LogServer
    let logger: Logger
    let recorder: EventRecorder
    /// The runtime's health as last reported in the node's Ready condition.
    let health = Mutex(RuntimeHealth())
    /// The node's pod range once the node IPAM controller has given one ("" before).
    let podCIDR = Mutex("")
    let logPort = Mutex(0)

    public init(configuration: Configuration, client: APIClient, runtime: any ContainerRuntime, logServer: LogServer, logger: Logger = Logger(label: "cox.agent")) {
        self.configuration = configuration
        self.client = client
        self.runtime = runtime
        self.logServer = logServer
        self.logger = logger
        recorder = EventRecorder(client: client, component: "cox-agent", host: configuration.nodeName, logger: logger)
    }

    /// Runs until cancelled. Pods keep running when the agent stops; the next agent re-adopts them.
    public func run() async throws {
        let manager = PodManager(configuration: configuration, client: client, runtime: runtime, logger: logger, recorder: recorder)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.logServer.run() }
            let port = await logServer.port()
            logPort.withLock { $0 = port }
            let initial = await runtime.health()
            health.withLock { $0 = initial }
            group.addTask { await self.heartbeat(logPort: port) }
            group.addTask { await self.monitorRuntime() }
            if let cri = runtime as? CRIRuntime {
                let (size, files, every) = (configuration.containerLogMaxSize, configuration.containerLogMaxFiles, configuration.logRotationInterval)
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: every)
                        await cri.rotateLogs(maxSize: size, maxFiles: files)
                    }
                }
            }
            group.addTask { await manager.runStatusWriter() }
            group.addTask { await manager.runTicker() }
            group.addTask {
                for await id in self.runtime.exits { await manager.containerExited(id: id) }
            }
            group.addTask { await self.syncPods(manager) }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Watches the pods bound to this node (and only those) and hands each change to the manager.
    func syncPods(_ manager: PodManager) async {
        var request = WatchRequest(fieldSelector: "spec.nodeName=\(configuration.nodeName)")
        request.timeoutSeconds = 300
        while !Task.isCancelled {
            do {
                for try await event in client.watch(Pod.self, request) {
                    switch event {
                    case .added(let pod), .modified(let pod): await manager.upsert(pod, background: true)
                    case .deleted(let pod): await manager.deleted(pod)
                    case .relisted(let pods, _): await manager.relisted(pods)
                    case .bookmark: break
                    }
                }
            } catch {
                logger.warning("pod watch failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    // MARK: - Node and lease

    func heartbeat(logPort: Int) async {
        var registered = false
        var backoff = Backoff(base: .milliseconds(500), cap: .seconds(30))
        var beats = 0
        while !Task.isCancelled {
            do {
                // The full node status on registration and every sixth beat; the Lease every beat.
                if !registered || beats % 6 == 0 {
                    try await registerNode(logPort: logPort)
                    if !registered { logger.info("node registered", metadata: ["node": "\(configuration.nodeName)"]) }
                    registered = true
                }
                try await renewLease()
                beats += 1
                backoff.reset()
                try? await Task.sleep(for: configuration.heartbeatInterval)
            } catch {
                registered = false
                let pause = backoff.next()
                logger.warning("cannot reach the API server; keeping pods running and retrying", metadata: ["error": "\(error)", "retryIn": "\(pause)"])
                try? await Task.sleep(for: pause)
            }
        }
    }

    func registerNode(logPort: Int) async throws {
        var node: Node
        var exists = true
        do {
            node = try await client.get(Node.self, namespace: "", name: configuration.nodeName)
        } catch let error as ClientError where error.code == 404 {
            node = Node()
            node.metadata.name = configuration.nodeName
            exists = false
        }
        let fetchedLabels = node.metadata.labels
        for (key, value) in Host.labels(nodeName: configuration.nodeName).merging(configuration.labels, uniquingKeysWith: { _, new in new }) {
            node.metadata.labels[key] = value
        }
        if !exists {
            node.spec.taints = configuration.taints
            node = try await client.create(node)
        } else if node.metadata.labels != fetchedLabels {
            node = try await client.update(node)
        }
        podCIDR.withLock { $0 = node.spec.podCidr }
        node.status = Host.nodeStatus(previous: node.status, address: configuration.address, maxPods: configuration.maxPods,
                                      runtime: runtime.name, logPort: logPort, cgroups: runtime.cgroups,
                                      capacity: configuration.capacity, health: health.withLock { $0 },
                                      runtimeVersion: (runtime as? CRIRuntime)?.version ?? "")
        node.metadata.resourceVersion = ""
        _ = try await client.updateStatus(node)
    }

    /// Asks the runtime how it is every `runtimeCheckInterval`. A change (the runtime went down,
    /// came back, its network became ready) goes into the node's Ready condition at once, with an
    /// event and a log line; calls to a runtime that is down are retried by its connection with
    /// back-off, and pods keep running. While the pod network is not ready and the node has a pod
    /// range, the runtime is given a network for it.
    func monitorRuntime() async {
        while !Task.isCancelled {
            var now = await runtime.health()
            if !now.networkReady, now.runtimeReady {
                var range = podCIDR.withLock { $0 }
                if range.isEmpty, let node = try? await client.get(Node.self, namespace: "", name: configuration.nodeName) {
                    range = node.spec.podCidr
                    podCIDR.withLock { $0 = range }
                }
                if !range.isEmpty {
                    do {
                        if let done = try await runtime.configureNetwork(podCIDR: range) {
                            logger.info("pod network configured", metadata: ["detail": "\(done)"])
                            now = await runtime.health()
                        }
                    } catch {
                        logger.warning("cannot configure the pod network", metadata: ["podCIDR": "\(range)", "error": "\(error)"])
                    }
                }
            }
            let before = health.withLock { previous in
                defer { previous = now }
                return previous
            }
            if before != now {
                if now.isReady {
                    logger.info("container runtime ready", metadata: ["runtime": "\(runtime.name)"])
                } else {
                    logger.warning("container runtime not ready; pods keep running, calls are retried", metadata: ["runtime": "\(runtime.name)", "reason": "\(now.message)"])
                }
                if before.isReady != now.isReady {
                    var node = Node()
                    node.metadata.name = configuration.nodeName
                    node.metadata.uid = configuration.nodeName
                    recorder.record(node, now.isReady ? .normal : .warning, reason: now.isReady ? "NodeReady" : "NodeNotReady",
                                    message: now.isReady ? "Node \(configuration.nodeName) status is now: NodeReady" : "Node \(configuration.nodeName) status is now: NodeNotReady (\(now.message))")
                }
                do {
                    try await registerNode(logPort: logPort.withLock { $0 })
                } catch {
                    logger.warning("cannot report the runtime's health; the next heartbeat will", metadata: ["error": "\(error)"])
                }
            }
            try? await Task.sleep(for: configuration.runtimeCheckInterval)
        }
    }

    func renewLease() async throws {
        let now = Timestamp(date: Date())
        do {
            var lease = try await client.get(Lease.self, namespace: "kube-node-lease", name: configuration.nodeName)
            lease.spec.renewTime = now
            lease.spec.holderIdentity = configuration.nodeName
            _ = try await client.update(lease)
        } catch let error as ClientError where error.code == 404 {
            var lease = Lease()
            lease.metadata.name = configuration.nodeName
            lease.metadata.namespace = "kube-node-lease"
            lease.spec.holderIdentity = configuration.nodeName
            lease.spec.leaseDurationSeconds = configuration.leaseDurationSeconds
            lease.spec.acquireTime = now
            lease.spec.renewTime = now
            _ = try await client.create(lease)
        }
    }
}

extension Timestamp {
    /// `metav1.MicroTime` and finer (lease renewals).
    init(date: Date) {
        let seconds = date.timeIntervalSince1970
        self.init(seconds: Int64(seconds.rounded(.down)), nanos: Int32((seconds - seconds.rounded(.down)) * 1e9))
    }
}
