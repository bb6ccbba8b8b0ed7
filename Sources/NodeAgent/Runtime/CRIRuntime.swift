import API
import CRI
import Foundation
import GRPCCore
import Logging
import Synchronization

/// The agent's runtime when it speaks CRI: pods become sandboxes, containers are created and
/// started in them, and everything the agent knows about them it learns back from the runtime
/// (ListPodSandbox, ListContainers, ContainerStatus), so an agent that restarts re-adopts what runs.
/// Exits are found by re-listing (as the kubelet's PLEG does): CRI v1 has no exit feed that every
/// runtime implements.
///
/// Containers carry the kubelet's labels (`io.kubernetes.pod.uid`, `.pod.name`, `.pod.namespace`,
/// `io.kubernetes.container.name`), logs go where the kubelet puts them
/// (`LOGROOT/NAMESPACE_NAME_UID/CONTAINER/ATTEMPT.log`, written by the runtime in the CRI format).
public final class CRIRuntime: ContainerRuntime, @unchecked Sendable {
    public static let podUIDLabel = "io.kubernetes.pod.uid"
    public static let podNameLabel = "io.kubernetes.pod.name"
    public static let podNamespaceLabel = "io.kubernetes.pod.namespace"
    public static let containerNameLabel = "io.kubernetes.container.name"

    public let connection: CRIConnection
    public let logRoot: String
    let logger: Logger
    let callTimeout: Duration
    let relistInterval: Duration
    private let runtimeName = Mutex<String>("cri")
    private let runtimeVersion = Mutex<String>("")
    /// Where the runtime reads CNI networks from (nil: as the runtime says, else /etc/cni/net.d).
    public let cniConfDirectory: String?
    private let exitFeed = ExitFeed()
    /// What the last relist saw, by container id (exits are what changed since).
    private let seen = Mutex<[String: RuntimeContainer]>([:])
    /// Pod uid → its ready sandbox, and the starts of sandboxes in flight (one per pod).
    private let sandboxes = Mutex<[String: String]>([:])
    private let starting = Mutex<[String: Task<String, any Error>]>([:])
    private let relister = Mutex<Task<Void, Never>?>(nil)
    /// Relists that failed in a row (the first is logged, and the first success after).
    private let relistFailures = Mutex(0)

    public var name: String { runtimeName.withLock { $0 } }
    public var exits: AsyncStream<String> { exitFeed.listen() }
    public let cgroups = Cgroups.enforcedByRuntime

    /// Connects to `endpoint` (`unix:///...`). Does not wait for the runtime: calls fail until it
    /// answers, and `ping()` says whether it does.
    public init(endpoint: String, logRoot: String, callTimeout: Duration = .seconds(30), relistInterval: Duration = .milliseconds(500),
                cniConfDirectory: String? = nil, logger: Logger = Logger(label: "cox.cri")) throws {
        self.connection = try CRIConnection(endpoint: endpoint)
        self.cniConfDirectory = cniConfDirectory
        self.logRoot = logRoot
        self.logger = logger
        self.callTimeout = callTimeout
        self.relistInterval = relistInterval
        try FileManager.default.createDirectory(atPath: logRoot, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let task = Task.detached { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                await self.relist()
                try? await Task.sleep(for: self.relistInterval)
            }
        }
        relister.withLock { $0 = task }
    }

    deinit {
        relister.withLock { $0?.cancel() }
        exitFeed.finish()
        connection.close()
    }

    public func shutdown() {
        relister.withLock { $0?.cancel() }
        exitFeed.finish()
        connection.close()
    }

    var options: CallOptions { CRIConnection.options(timeout: callTimeout) }

    /// The runtime's name and version (Version), or the error that says why it does not answer.
    @discardableResult
    public func ping(timeout: Duration = .seconds(5)) async throws -> Runtime_V1_VersionResponse {
        var request = Runtime_V1_VersionRequest()
        request.version = "v1"
        let version = try await connection.runtime.version(request, options: CRIConnection.options(timeout: timeout))
        runtimeName.withLock { $0 = version.runtimeName }
        runtimeVersion.withLock { $0 = version.runtimeVersion }
        return version
    }

    /// The runtime's version as it last reported it ("" before it answered).
    public var version: String { runtimeVersion.withLock { $0 } }

    /// RuntimeReady and NetworkReady, as the runtime reports them.
    public func conditions() async throws -> [Runtime_V1_RuntimeCondition] {
        try await connection.runtime.status(Runtime_V1_StatusRequest(), options: options).status.conditions
    }

    /// Status, asked with a short deadline: a runtime that does not answer within it is down.
    public func health() async -> RuntimeHealth {
        let conditions: [Runtime_V1_RuntimeCondition]
        do {
            conditions = try await connection.runtime.status(Runtime_V1_StatusRequest(), options: CRIConnection.options(timeout: .seconds(10))).status.conditions
            if version.isEmpty { _ = try? await ping() }
        } catch let error as RPCError {
            return RuntimeHealth(runtimeReady: false, networkReady: false, message: "container runtime is down: \(error.message)")
        } catch {
            return RuntimeHealth(runtimeReady: false, networkReady: false, message: "container runtime is down: \(error)")
        }
        func describe(_ condition: Runtime_V1_RuntimeCondition?, _ type: String) -> String {
            "\(type)=false reason:\(condition?.reason ?? "") message:\(condition?.message ?? "")"
        }
        let runtime = conditions.first { $0.type == "RuntimeReady" }
        let network = conditions.first { $0.type == "NetworkReady" }
        var health = RuntimeHealth(runtimeReady: runtime?.status ?? false, networkReady: network?.status ?? false)
        if !health.runtimeReady {
            health.message = "container runtime not ready: " + describe(runtime, "RuntimeReady")
        } else if !health.networkReady {
            health.message = "container runtime network not ready: " + describe(network, "NetworkReady")
        }
        return health
    }

    /// Writes the bridge network for the node's range where the runtime reads CNI networks (the
    /// directory given, else the one containerd reports in its verbose Status, else
    /// /etc/cni/net.d) — unless a network is there already, or the runtime's is ready.
    public func configureNetwork(podCIDR: String) async throws -> String? {
        guard !(await health()).networkReady else { return nil }
        var directory = cniConfDirectory
        if directory == nil {
            var request = Runtime_V1_StatusRequest()
            request.verbose = true
            let info = (try? await connection.runtime.status(request, options: options).info) ?? [:]
            directory = Self.cniConfDirectory(statusInfo: info)
        }
        guard let path = try CNIConfig.ensure(directory: directory ?? "/etc/cni/net.d", podCIDR: podCIDR) else { return nil }
        return "wrote the pod network \(podCIDR) to \(path)"
    }

    /// The CNI configuration directory in a verbose Status' `config` (containerd's CRI plugin
    /// configuration, as JSON: `{"cni": {"confDir": …}}`).
    static func cniConfDirectory(statusInfo: [String: String]) -> String? {
        guard let text = statusInfo["config"], let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let cni = object["cni"] as? [String: Any], let directory = cni["confDir"] as? String, !directory.isEmpty else { return nil }
        return directory
    }

    // MARK: - Sandboxes

    static func sandboxLabels(_ launch: ContainerLaunch) -> [String: String] {
        [podUIDLabel: launch.podUID, podNameLabel: launch.podName, podNamespaceLabel: launch.namespace]
    }

    public func logDirectory(namespace: String, podName: String, podUID: String) -> String {
        (logRoot as NSString).appendingPathComponent("\(namespace)_\(podName)_\(podUID)")
    }

    func sandboxConfig(_ launch: ContainerLaunch) -> Runtime_V1_PodSandboxConfig {
        var config = Runtime_V1_PodSandboxConfig()
        config.metadata.name = launch.podName
        config.metadata.uid = launch.podUID
        config.metadata.namespace = launch.namespace
        config.metadata.attempt = 0
        config.hostname = launch.hostNetwork ? "" : launch.podName
        config.logDirectory = logDirectory(namespace: launch.namespace, podName: launch.podName, podUID: launch.podUID)
        config.labels = Self.sandboxLabels(launch)
        var namespaces = Runtime_V1_NamespaceOption()
        namespaces.network = launch.hostNetwork ? .node : .pod
        namespaces.pid = .container
        namespaces.ipc = .pod
        config.linux.securityContext.namespaceOptions = namespaces
        return config
    }

    /// The pod's ready sandbox, run if there is none (one RunPodSandbox per pod however many of
    /// its containers start at once).
    func sandbox(for launch: ContainerLaunch) async throws -> String {
        if let id = sandboxes.withLock({ $0[launch.podUID] }) { return id }
        let task = starting.withLock { starting -> Task<String, any Error> in
            if let task = starting[launch.podUID] { return task }
            let task = Task { try await self.findOrRunSandbox(launch) }
            starting[launch.podUID] = task
            return task
        }
        defer { _ = starting.withLock { $0.removeValue(forKey: launch.podUID) } }
        let id = try await task.value
        sandboxes.withLock { $0[launch.podUID] = id }
        return id
    }

    /// The pod's ready sandbox, or a new one. Sandboxes of the pod that are no longer ready (stopped
    /// by `cox up` on its way out, or their pause process died) are removed, and the new one counts
    /// one attempt past them: a runtime reserves each name-and-attempt once.
    func findOrRunSandbox(_ launch: ContainerLaunch) async throws -> String {
        var filter = Runtime_V1_ListPodSandboxRequest()
        filter.filter.labelSelector = [Self.podUIDLabel: launch.podUID]
        let found: [Runtime_V1_PodSandbox]
        do {
            found = try await connection.runtime.listPodSandbox(filter, options: options).items
        } catch let error as RPCError {
            throw RuntimeError("cannot list the pod's sandboxes: \(error.message)", reason: "FailedCreatePodSandBox")
        }
        if let ready = found.first(where: { $0.state == .sandboxReady }) { return ready.id }
        for stale in found {
            var remove = Runtime_V1_RemovePodSandboxRequest()
            remove.podSandboxID = stale.id
            do {
                _ = try await connection.runtime.removePodSandbox(remove, options: options)
                logger.info("removed a sandbox that was no longer ready", metadata: ["pod": "\(launch.namespace)/\(launch.podName)", "sandbox": "\(stale.id.prefix(12))"])
            } catch {
                logger.warning("cannot remove a sandbox that is no longer ready", metadata: ["sandbox": "\(stale.id.prefix(12))", "error": "\(error)"])
            }
        }
        try FileManager.default.createDirectory(atPath: logDirectory(namespace: launch.namespace, podName: launch.podName, podUID: launch.podUID),
                                                withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var request = Runtime_V1_RunPodSandboxRequest()
        request.config = sandboxConfig(launch)
        request.config.metadata.attempt = (found.map(\.metadata.attempt).max().map { $0 + 1 }) ?? 0
        do {
            let id = try await connection.runtime.runPodSandbox(request, options: options).podSandboxID
            logger.info("sandbox ready", metadata: ["pod": "\(launch.namespace)/\(launch.podName)", "sandbox": "\(id.prefix(12))", "attempt": "\(request.config.metadata.attempt)"])
            return id
        } catch let error as RPCError {
            throw RuntimeError("cannot create the pod's sandbox: \(error.message)", reason: "FailedCreatePodSandBox")
        }
    }

    /// The pod's sandbox IP (empty for host-network pods and runtimes without networking).
    public func podIP(podUID: String) async -> String? {
        guard let id = sandboxes.withLock({ $0[podUID] }) else { return nil }
        var request = Runtime_V1_PodSandboxStatusRequest()
        request.podSandboxID = id
        guard let status = try? await connection.runtime.podSandboxStatus(request, options: options).status else { return nil }
        return status.network.ip
    }

    // MARK: - Images

    /// Makes sure the image is there, by the pull policy: ErrImageNeverPull or ErrImagePull otherwise.
    /// The image, pulled when the policy says so; with what the runtime said of it when it was
    /// asked (nil: pulled, not asked).
    func ensureImage(_ launch: ContainerLaunch, sandbox: Runtime_V1_PodSandboxConfig) async throws -> Runtime_V1_Image? {
        var spec = Runtime_V1_ImageSpec()
        spec.image = launch.image
        let policy = launch.imagePullPolicy.isEmpty ? ContainerLaunch.defaultPullPolicy(launch.image) : launch.imagePullPolicy
        if policy != "Always" {
            var status = Runtime_V1_ImageStatusRequest()
            status.image = spec
            let present = try await connection.images.imageStatus(status, options: options)
            if present.hasImage { return present.image }
            if policy == "Never" {
                throw RuntimeError("Container image \"\(launch.image)\" is not present with pull policy of Never", reason: "ErrImageNeverPull")
            }
        }
        var pull = Runtime_V1_PullImageRequest()
        pull.image = spec
        pull.sandboxConfig = sandbox
        do {
            _ = try await connection.images.pullImage(pull, options: CRIConnection.options(timeout: .seconds(300)))
            return nil
        } catch let error as RPCError {
            throw RuntimeError("failed to pull image \"\(launch.image)\": \(error.message)", reason: "ErrImagePull")
        }
    }

    // MARK: - Containers

    func containerConfig(_ launch: ContainerLaunch, attempt: UInt32) -> Runtime_V1_ContainerConfig {
        var config = Runtime_V1_ContainerConfig()
        config.metadata.name = launch.container
        config.metadata.attempt = attempt
        config.image.image = launch.image
        config.command = launch.command
        config.args = launch.args
        config.workingDir = launch.workingDirectory ?? ""
        config.envs = launch.environment.sorted { $0.key < $1.key }.map { key, value in
            var pair = Runtime_V1_KeyValue()
            pair.key = key
            pair.value = value
            return pair
        }
        config.labels = Self.sandboxLabels(launch).merging([Self.containerNameLabel: launch.container]) { $1 }
        config.logPath = "\(launch.container)/\(attempt).log"
        if let terminal = launch.terminal {
            config.stdin = terminal.stdin
            config.stdinOnce = terminal.stdinOnce
            config.tty = terminal.tty
        }
        config.mounts = (launch.mounts ?? []).map { mount in
            var cri = Runtime_V1_Mount()
            cri.containerPath = mount.containerPath
            cri.hostPath = mount.hostPath
            cri.readonly = mount.readOnly
            cri.propagation = mount.propagation == .hostToContainer ? .propagationHostToContainer : .propagationPrivate
            return cri
        }
        var resources = Runtime_V1_LinuxContainerResources()
        if let memory = launch.memoryLimitBytes { resources.memoryLimitInBytes = memory }
        if let cpu = launch.cpuLimitMillis {
            resources.cpuPeriod = 100_000
            resources.cpuQuota = max(1000, cpu * 100)
        }
        // cpu.shares from the request (the kubelet's 1024 per core, at least 2).
        resources.cpuShares = max(2, (launch.cpuRequestMillis ?? launch.cpuLimitMillis ?? 0) * 1024 / 1000)
        config.linux.resources = resources
        var namespaces = Runtime_V1_NamespaceOption()
        namespaces.network = launch.hostNetwork ? .node : .pod
        namespaces.pid = .container
        namespaces.ipc = .pod
        config.linux.securityContext.namespaceOptions = namespaces
        if let security = launch.security {
            var context = config.linux.securityContext
            if let user = security.runAsUser { context.runAsUser.value = user }
            if let group = security.runAsGroup { context.runAsGroup.value = group }
            context.privileged = security.privileged
            context.readonlyRootfs = security.readOnlyRootFilesystem
            context.noNewPrivs = security.noNewPrivileges
            context.capabilities.addCapabilities = security.addCapabilities
            context.capabilities.dropCapabilities = security.dropCapabilities
            context.supplementalGroups = security.supplementalGroups
            config.linux.securityContext = context
        }
        return config
    }

    /// runAsNonRoot, as the kubelet checks it before a start: the user asked for, else the
    /// image's (no user in the image is root).
    func checkNonRoot(_ launch: ContainerLaunch, image known: Runtime_V1_Image?) async throws {
        guard let security = launch.security, security.runAsNonRoot else { return }
        let pod = "\(launch.podName)_\(launch.namespace)(\(launch.podUID))"
        if let user = security.runAsUser {
            guard user != 0 else {
                throw RuntimeError("container's runAsUser breaks non-root policy (pod: \"\(pod)\", container: \(launch.container))", reason: "CreateContainerConfigError")
            }
            return
        }
        let image: Runtime_V1_Image
        if let known {
            image = known
        } else if launch.image.isEmpty {
            image = Runtime_V1_Image()
        } else {
            var request = Runtime_V1_ImageStatusRequest()
            request.image.image = launch.image
            image = try await connection.images.imageStatus(request, options: options).image
        }
        if image.hasUid {
            guard image.uid.value != 0 else {
                throw RuntimeError("container has runAsNonRoot and image will run as root (pod: \"\(pod)\", container: \(launch.container))", reason: "CreateContainerConfigError")
            }
            return
        }
        if !image.username.isEmpty, image.username != "root" {
            throw RuntimeError("container has runAsNonRoot and image has non-numeric user (\(image.username)), cannot verify user is non-root (pod: \"\(pod)\", container: \(launch.container))",
                               reason: "CreateContainerConfigError")
        }
        throw RuntimeError("container has runAsNonRoot and image will run as root (pod: \"\(pod)\", container: \(launch.container))", reason: "CreateContainerConfigError")
    }

    public func start(_ launch: ContainerLaunch) async throws -> RuntimeContainer {
        let sandboxID = try await sandbox(for: launch)
        let sandboxConfig = self.sandboxConfig(launch)
        let image = launch.image.isEmpty ? nil : try await ensureImage(launch, sandbox: sandboxConfig)
        try await checkNonRoot(launch, image: image)
        // (name, attempt) is unique in a sandbox: the next attempt after every one the runtime
        // still has. The newest exited one stays (its log is `logs --previous`); older ones go.
        var filter = Runtime_V1_ListContainersRequest()
        filter.filter.podSandboxID = sandboxID
        filter.filter.labelSelector = [Self.containerNameLabel: launch.container]
        let earlier = try await connection.runtime.listContainers(filter, options: options).containers.sorted { $0.metadata.attempt < $1.metadata.attempt }
        // Past every attempt whose log is still here too: an earlier sandbox's containers are gone
        // once it is replaced, their logs are not, and a reused number would write into one.
        let logs = (sandboxConfig.logDirectory as NSString).appendingPathComponent(launch.container)
        let logged = loggedAttempts(directory: logs)
        // One running container per name and pod: an agent that could not list when it started
        // (the runtime was down) learns of a running one here, and adopts it.
        if let running = earlier.last(where: { $0.state == .containerRunning }), let status = await status(id: running.id), status.isRunning {
            seen.withLock { $0[running.id] = status }
            logger.warning("a container is running already; adopting it instead of starting another", metadata: ["pod": "\(launch.namespace)/\(launch.podName)", "container": "\(launch.container)", "id": "\(running.id.prefix(12))"])
            return status
        }
        let attempt = max(earlier.last.map { $0.metadata.attempt + 1 } ?? 0, logged.last.map { UInt32($0) + 1 } ?? 0)
        for old in earlier.dropLast() where old.state != .containerRunning { await remove(id: old.id) }
        // The runtime leaves logs to the agent: the previous attempt's stays, older ones go.
        for old in logged.dropLast() {
            let path = (logs as NSString).appendingPathComponent("\(old).log")
            try? FileManager.default.removeItem(atPath: path)
            removeRotated(of: path, keeping: 0)
        }
        var create = Runtime_V1_CreateContainerRequest()
        create.podSandboxID = sandboxID
        create.config = containerConfig(launch, attempt: attempt)
        create.sandboxConfig = sandboxConfig
        let id: String
        do {
            id = try await connection.runtime.createContainer(create, options: options).containerID
        } catch let error as RPCError {
            // The sandbox may be what failed (its pause process gone): the next start looks again.
            sandboxes.withLock { _ = $0.removeValue(forKey: launch.podUID) }
            throw RuntimeError("failed to create container \(launch.container): \(error.message)", reason: "CreateContainerError")
        }
        var startRequest = Runtime_V1_StartContainerRequest()
        startRequest.containerID = id
        do {
            _ = try await connection.runtime.startContainer(startRequest, options: options)
        } catch let error as RPCError {
            await remove(id: id)
            throw RuntimeError("failed to start container \(launch.container): \(error.message)", reason: "RunContainerError")
        }
        let logPath = (sandboxConfig.logDirectory as NSString).appendingPathComponent(create.config.logPath)
        let container = RuntimeContainer(id: id, launch: launch, startedAt: Date(), state: .running, logPath: logPath)
        seen.withLock { $0[id] = container }
        logger.info("container started", metadata: ["pod": "\(launch.namespace)/\(launch.podName)", "container": "\(launch.container)", "id": "\(id.prefix(12))", "attempt": "\(attempt)"])
        return container
    }

    public func stop(id: String, grace: Duration) async {
        var request = Runtime_V1_StopContainerRequest()
        request.containerID = id
        request.timeout = Int64((Double(grace.components.seconds) + Double(grace.components.attoseconds) / 1e18).rounded(.up))
        // StopContainer may be asked again (a stopped container stays stopped): a call the
        // connection dropped (containerd 1.6 under load ends calls with "Stream unexpectedly
        // closed") is asked once more rather than leaving the container running.
        for attempt in 1...2 {
            do {
                _ = try await connection.runtime.stopContainer(request, options: CRIConnection.options(timeout: grace + callTimeout))
                break
            } catch let error as RPCError where error.code == .unavailable && attempt == 1 {
                logger.info("stopping a container again: the runtime dropped the call", metadata: ["id": "\(id.prefix(12))", "error": "\(error)"])
            } catch {
                logger.warning("cannot stop container", metadata: ["id": "\(id.prefix(12))", "error": "\(error)"])
                break
            }
        }
        await noteExit(id)
    }

    public func status(id: String) async -> RuntimeContainer? {
        var request = Runtime_V1_ContainerStatusRequest()
        request.containerID = id
        guard let status = try? await connection.runtime.containerStatus(request, options: options).status else { return nil }
        return Self.container(status)
    }

    /// A CRI container status as the agent's record of it.
    static func container(_ status: Runtime_V1_ContainerStatus) -> RuntimeContainer {
        let labels = status.labels
        var launch = ContainerLaunch(podUID: labels[podUIDLabel] ?? "", namespace: labels[podNamespaceLabel] ?? "", podName: labels[podNameLabel] ?? "",
                                     container: labels[containerNameLabel] ?? status.metadata.name, command: [])
        launch.image = status.image.image
        let started = Date(timeIntervalSince1970: Double(status.startedAt > 0 ? status.startedAt : status.createdAt) / 1e9)
        let state: RuntimeContainer.State
        switch status.state {
        case .containerRunning:
            state = .running
        case .containerExited:
            let code = status.exitCode
            let reason = status.reason.isEmpty ? (code == 0 ? "Completed" : "Error") : status.reason
            state = .exited(exitCode: code, signal: code > 128 ? code - 128 : 0, reason: reason,
                            finishedAt: Date(timeIntervalSince1970: Double(status.finishedAt) / 1e9))
        default:
            // Created but never started (a start that failed half-way), or unknown: not running.
            state = .exited(exitCode: 128, signal: 0, reason: status.reason.isEmpty ? "Unknown" : status.reason,
                            finishedAt: Date(timeIntervalSince1970: Double(max(status.finishedAt, status.createdAt)) / 1e9))
        }
        return RuntimeContainer(id: status.id, launch: launch, startedAt: started, state: state, logPath: status.logPath)
    }

    public func list() async -> [RuntimeContainer] {
        (try? await listAll()) ?? seen.withLock { Array($0.values) }
    }

    /// Every container the runtime has for pods (those with the agent's labels), with its status.
    func listAll() async throws -> [RuntimeContainer] {
        try await listWithStates().map(\.container)
    }

    /// `listAll`, with whether the list showed each container started (running or exited, not
    /// only created): a container created but not yet started says nothing about an exit.
    func listWithStates() async throws -> [(container: RuntimeContainer, started: Bool)] {
        let containers = try await connection.runtime.listContainers(Runtime_V1_ListContainersRequest(), options: options).containers
        var result: [(container: RuntimeContainer, started: Bool)] = []
        for container in containers where container.labels[Self.podUIDLabel] != nil {
            let started = container.state == .containerRunning || container.state == .containerExited
            if let known = seen.withLock({ $0[container.id] }), known.isRunning, container.state == .containerRunning {
                result.append((known, true))
            } else if let status = await status(id: container.id) {
                result.append((status, started))
            }
        }
        return result
    }

    /// Compares the runtime's containers with the last look: containers no longer running exited.
    func relist() async {
        let before = seen.withLock { Set($0.values.filter(\.isRunning).map(\.id)) }
        let listed: [(container: RuntimeContainer, started: Bool)]
        do {
            listed = try await listWithStates()
            if relistFailures.withLock({ failures in defer { failures = 0 }; return failures }) > 0 {
                logger.info("the runtime's containers can be listed again")
            }
        } catch {
            if relistFailures.withLock({ $0 += 1; return $0 }) == 1 {
                logger.warning("cannot list the runtime's containers; exits are seen once it answers again", metadata: ["error": "\(error)"])
            }
            return
        }
        let exited = seen.withLock { seen -> [String] in
            let decision = Self.reconcile(seen: seen, runningBefore: before, listed: listed)
            seen = decision.seen
            return decision.exited
        }
        for id in exited { exitFeed.send(id) }
    }

    /// One relist's decision, from what the agent knew (`seen` now, and which were running when
    /// the list began) and what the list showed: the new picture and the containers that exited.
    /// A container that started while the list was being taken is missing from it, or shown only
    /// created: it is kept as running, not forgotten (its exit would never be reported). One the
    /// list shows exited has exited, whenever it started; one running before the list and missing
    /// from it is gone.
    static func reconcile(seen: [String: RuntimeContainer], runningBefore: Set<String>,
                          listed: [(container: RuntimeContainer, started: Bool)]) -> (seen: [String: RuntimeContainer], exited: [String]) {
        var next: [String: RuntimeContainer] = [:]
        var listedStarted: [String: Bool] = [:]
        for entry in listed {
            next[entry.container.id] = entry.container
            listedStarted[entry.container.id] = entry.started
        }
        var exited: [String] = []
        for (id, known) in seen where known.isRunning {
            switch listedStarted[id] {
            case true?:
                if next[id]?.isRunning != true { exited.append(id) }
            case false?:
                next[id] = known  // only created when listed; started since
            case nil:
                if runningBefore.contains(id) {
                    exited.append(id)  // running before the list, and gone from it
                } else {
                    next[id] = known  // started while the list was being taken
                }
            }
        }
        return (next, exited.sorted())
    }

    func noteExit(_ id: String) async {
        guard let status = await status(id: id), !status.isRunning else { return }
        let wasRunning = seen.withLock { seen -> Bool in
            defer { seen[id] = status }
            return seen[id]?.isRunning == true
        }
        if wasRunning { exitFeed.send(id) }
    }

    public func remove(id: String) async {
        var request = Runtime_V1_RemoveContainerRequest()
        request.containerID = id
        _ = try? await connection.runtime.removeContainer(request, options: options)
        seen.withLock { _ = $0.removeValue(forKey: id) }
    }

    /// Stops and removes the pod's sandboxes (and so its containers and network) and its logs.
    public func cleanup(podUID: String) async {
        var filter = Runtime_V1_ListPodSandboxRequest()
        filter.filter.labelSelector = [Self.podUIDLabel: podUID]
        let found = (try? await connection.runtime.listPodSandbox(filter, options: options).items) ?? []
        for sandbox in found {
            var stop = Runtime_V1_StopPodSandboxRequest()
            stop.podSandboxID = sandbox.id
            _ = try? await connection.runtime.stopPodSandbox(stop, options: options)
            var remove = Runtime_V1_RemovePodSandboxRequest()
            remove.podSandboxID = sandbox.id
            do {
                _ = try await connection.runtime.removePodSandbox(remove, options: options)
            } catch {
                logger.warning("cannot remove a sandbox", metadata: ["sandbox": "\(sandbox.id.prefix(12))", "error": "\(error)"])
            }
            try? FileManager.default.removeItem(atPath: logDirectory(namespace: sandbox.metadata.namespace, podName: sandbox.metadata.name, podUID: podUID))
        }
        sandboxes.withLock { _ = $0.removeValue(forKey: podUID) }
        seen.withLock { seen in seen = seen.filter { $0.value.launch.podUID != podUID } }
    }

    /// Sandboxes of pods not in `keep` (orphans after the agent was away): stopped and removed.
    public func removeSandboxes(except keep: Set<String>) async {
        let all = (try? await connection.runtime.listPodSandbox(Runtime_V1_ListPodSandboxRequest(), options: options).items) ?? []
        for sandbox in all {
            guard let uid = sandbox.labels[Self.podUIDLabel], !keep.contains(uid) else { continue }
            logger.warning("removing the sandbox of a pod that is gone", metadata: ["pod": "\(sandbox.metadata.namespace)/\(sandbox.metadata.name)"])
            await cleanup(podUID: uid)
        }
    }

    /// Stops every pod sandbox (`cox up` on its way out): their containers and network go; their
    /// records stay until their pods are deleted.
    public func stopSandboxes() async {
        let all = (try? await connection.runtime.listPodSandbox(Runtime_V1_ListPodSandboxRequest(), options: options).items) ?? []
        for sandbox in all where sandbox.labels[Self.podUIDLabel] != nil && sandbox.state == .sandboxReady {
            var stop = Runtime_V1_StopPodSandboxRequest()
            stop.podSandboxID = sandbox.id
            _ = try? await connection.runtime.stopPodSandbox(stop, options: options)
        }
        sandboxes.withLock { $0.removeAll() }
    }

    /// The current (or, with `previous`, the one before) attempt's CRI log file of the container.
    public func logPath(podUID: String, container: String, previous: Bool) -> String {
        let directories = (try? FileManager.default.contentsOfDirectory(atPath: logRoot)) ?? []
        guard let pod = directories.first(where: { $0.hasSuffix("_\(podUID)") }) else { return "/nonexistent" }
        let directory = (logRoot as NSString).appendingPathComponent("\(pod)/\(container)")
        let attempts = loggedAttempts(directory: directory)
        let chosen = previous ? attempts.dropLast().last : attempts.last
        guard let chosen else { return "/nonexistent" }
        return (directory as NSString).appendingPathComponent("\(chosen).log")
    }

    // MARK: - Log rotation

    /// Rotates every running container's log that has grown past `maxSize` bytes, as the kubelet
    /// does: the file is renamed `N.log.YYYYMMDD-hhmmss`, the runtime reopens `N.log`
    /// (ReopenContainerLog), and of the rotated files the newest `maxFiles - 1` are kept. A runtime
    /// that cannot reopen gets its file back (and a warning): its output is never cut off.
    public func rotateLogs(maxSize: Int, maxFiles: Int) async {
        let running = seen.withLock { $0.values.filter { $0.isRunning && !$0.logPath.isEmpty } }
        for container in running {
            var info = stat()
            guard stat(container.logPath, &info) == 0, Int(info.st_size) >= maxSize else { continue }
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "UTC")
            formatter.dateFormat = "yyyyMMdd-HHmmss"
            // Several rotations within a second are numbered after the newest kept: a free name
            // is not enough (the first of that second may have been removed already, and its name
            // would sort the newest file first, to be removed as the oldest).
            let rotated = Self.rotatedName(container.logPath, stamp: formatter.string(from: Date()), existing: rotatedFiles(of: container.logPath))
            guard rename(container.logPath, rotated) == 0 else {
                logger.warning("cannot rotate a container log", metadata: ["path": "\(container.logPath)", "error": "\(String(cString: strerror(errno)))"])
                continue
            }
            var reopen = Runtime_V1_ReopenContainerLogRequest()
            reopen.containerID = container.id
            do {
                _ = try await connection.runtime.reopenContainerLog(reopen, options: options)
            } catch {
                _ = rename(rotated, container.logPath)
                logger.warning("the runtime cannot reopen a container log; not rotating it", metadata: ["id": "\(container.id.prefix(12))", "error": "\(error)"])
                continue
            }
            // A container that ended meanwhile writes no new file: an empty one keeps `logs` answering.
            if !FileManager.default.fileExists(atPath: container.logPath) {
                let fd = open(container.logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
                if fd >= 0 { close(fd) }
            }
            removeRotated(of: container.logPath, keeping: maxFiles - 1)
        }
    }

    /// The rotated files of `logPath` (`N.log.STAMP` and `N.log.STAMP-K` for the K+1st of one
    /// second), oldest first.
    func rotatedFiles(of logPath: String) -> [String] {
        let directory = (logPath as NSString).deletingLastPathComponent
        let prefix = (logPath as NSString).lastPathComponent + "."
        let names: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix(prefix) }
        let keyed: [(name: String, stamp: String, number: Int)] = names.map { name in
            let parts = Self.rotationParts(name.dropFirst(prefix.count))
            return (name, parts.stamp, parts.number)
        }
        let ordered = keyed.sorted { first, second in
            first.stamp != second.stamp ? first.stamp < second.stamp : first.number < second.number
        }
        return ordered.map { (directory as NSString).appendingPathComponent($0.name) }
    }

    /// The name for `logPath` rotated at `stamp`, given the rotated files there are: `N.log.STAMP`,
    /// or numbered past the newest of the same second.
    static func rotatedName(_ logPath: String, stamp: String, existing: [String]) -> String {
        let prefixLength = (logPath as NSString).lastPathComponent.count + 1
        let sameSecond = existing.compactMap { path -> Int? in
            let parts = rotationParts((path as NSString).lastPathComponent.dropFirst(prefixLength))
            return parts.stamp == stamp ? parts.number : nil
        }
        return logPath + "." + stamp + (sameSecond.max().map { "-\($0 + 1)" } ?? "")
    }

    /// `YYYYMMDD-hhmmss` and the number after it (0 without one).
    static func rotationParts(_ text: Substring) -> (stamp: String, number: Int) {
        let parts = text.split(separator: "-")
        guard parts.count == 3, let number = Int(parts[2]) else { return (String(text), 0) }
        return ("\(parts[0])-\(parts[1])", number)
    }

    func removeRotated(of logPath: String, keeping: Int) {
        let rotated = rotatedFiles(of: logPath)
        for old in rotated.dropLast(max(0, keeping)) { try? FileManager.default.removeItem(atPath: old) }
    }

    /// The attempts with a log file (N.log) in a container's log directory, in order.
    func loggedAttempts(directory: String) -> [Int] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .compactMap { name -> Int? in name.hasSuffix(".log") ? Int(name.dropLast(4)) : nil }
            .sorted()
    }

    public var logFormat: LogFormat { .cri }

    // MARK: - Exec

    /// Runs `command` in the container and returns its exit code and output (ExecSync).
    public func execSync(id: String, command: [String], timeout: Duration) async throws -> (exitCode: Int32, stdout: Data, stderr: Data) {
        var request = Runtime_V1_ExecSyncRequest()
        request.containerID = id
        request.cmd = command
        request.timeout = max(1, timeout.components.seconds)
        let response = try await connection.runtime.execSync(request, options: CRIConnection.options(timeout: timeout + .seconds(5)))
        return (response.exitCode, response.stdout, response.stderr)
    }

    // MARK: - Streaming (exec, attach, port-forward)

    /// Asks the runtime where it serves the stream (CRI Exec, Attach or PortForward). A call the connection dropped (containerd 1.6 sometimes ends an Attach call with "Stream
    /// unexpectedly closed" while it goes on serving) is asked once more: it only asks for a URL.
    public func streamURL(_ request: StreamRequest) async throws -> String {
        do {
            do {
                return try await askStreamURL(request)
            } catch let error as RPCError where error.code == .unavailable {
                logger.warning("the runtime's connection dropped a streaming call; asking again",
                               metadata: ["kind": "\(request.kind.rawValue)", "container": "\(request.containerID.prefix(12))", "error": "\(error.message)"])
                return try await askStreamURL(request)
            }
        } catch let error as RPCError {
            throw RuntimeError("the runtime refused the \(request.kind.rawValue): \(error.message)")
        }
    }

    private func askStreamURL(_ request: StreamRequest) async throws -> String {
        switch request.kind {
        case .exec:
            var exec = Runtime_V1_ExecRequest()
            exec.containerID = request.containerID
            exec.cmd = request.command
            exec.tty = request.tty
            exec.stdin = request.stdin
            exec.stdout = request.stdout
            exec.stderr = request.stderr && !request.tty
            return try await connection.runtime.exec(exec, options: options).url
        case .attach:
            var attach = Runtime_V1_AttachRequest()
            attach.containerID = request.containerID
            attach.tty = request.tty
            attach.stdin = request.stdin
            attach.stdout = request.stdout
            attach.stderr = request.stderr && !request.tty
            return try await connection.runtime.attach(attach, options: options).url
        case .portForward:
            guard let sandbox = sandboxes.withLock({ $0[request.podUID] }) else {
                throw RuntimeError("the pod has no sandbox on this node")
            }
            var forward = Runtime_V1_PortForwardRequest()
            forward.podSandboxID = sandbox
            forward.port = request.ports
            return try await connection.runtime.portForward(forward, options: options).url
        }
    }
}
