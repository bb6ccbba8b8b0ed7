import API
import CRI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import Synchronization

/// Coxswain's process runtime as a CRI plugin (`cox runtime process --listen unix:///...`): the
/// RuntimeService and ImageService over `ProcessRuntime`. What a process runtime can honestly give:
///
/// - A sandbox is a record (metadata, labels, log directory); its containers share the node's
///   network, PID and IPC namespaces (PodSandboxStatus has no IP: the pod has the node's).
/// - A container is a process in its own session and cgroup (memory, cpu, pids limits), running
///   `command + args` on the host; `image` names nothing to pull (every image "is present").
/// - Output goes to raw files the process writes directly (so it outlives this server), which a
///   copier turns into the CRI log file the agent asked for (`timestamp stream tag line`); after a
///   restart it resumes where it stopped.
/// - ExecSync runs the command on the host in the container's environment and directory.
/// - Exec and Attach (streaming) are served by `ProcessStreamingServer` on
///   loopback; attach reads the raw output files from their end and writes stdin into the
///   container's FIFO (`stdin`; `stdinOnce` ends it with the first attach's input). PortForward
///   connects to the port on this node (the pods share its network); all three over WebSocket and
///   SPDY/3.1. `tty` and mounts are refused (INVALID_ARGUMENT / UNIMPLEMENTED, saying why).
/// - Records of sandboxes and containers are kept on disk: a restarted plugin knows them again,
///   and its running processes keep running meanwhile.
public final class ProcessCRIState: @unchecked Sendable {
    struct Sandbox: Codable {
        var id: String
        var name: String
        var uid: String
        var namespace: String
        var attempt: UInt32
        var labels: [String: String]
        var annotations: [String: String]
        var logDirectory: String
        var createdAt: Int64
        var ready: Bool
    }

    struct Container: Codable {
        var id: String
        var sandboxID: String
        var name: String
        var attempt: UInt32
        var image: String
        var labels: [String: String]
        var annotations: [String: String]
        /// Absolute path of the CRI log file ("" when the sandbox has no log directory).
        var logPath: String
        var createdAt: Int64
        var launch: ContainerLaunch
        /// `process://PID` once started.
        var processID: String?
        var startError: String?
        /// How far the raw stdout and stderr files have been copied into the CRI log.
        var copied: [Int] = [0, 0]
    }

    let runtime: ProcessRuntime
    let root: String
    let logger: Logger
    /// One runtime per state directory: two would adopt each other's containers.
    let directoryLock: DirectoryLock
    let lock = Mutex<(sandboxes: [String: Sandbox], containers: [String: Container])>(([:], [:]))
    /// exec's streaming server (bound on the first exec).
    public let streaming: ProcessStreamingServer
    private let copier = Mutex<Task<Void, Never>?>(nil)
    /// Partial lines read from raw files but not yet written (no newline yet), by container and stream.
    private let partial = Mutex<[String: [Data]]>([:])

    /// Throws `DirectoryLock.InUse` when another process serves the same state directory.
    public init(root: String, logger: Logger = Logger(label: "cox.runtime.process")) throws {
        self.directoryLock = try DirectoryLock(directory: root)
        self.root = root
        self.logger = logger
        self.runtime = try ProcessRuntime(root: root, logger: logger)
        self.streaming = ProcessStreamingServer(logger: logger)
        for directory in [sandboxesDirectory, containersDirectory, rawDirectory] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        load()
        let task = Task.detached { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                await self.copyLogs()
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        copier.withLock { $0 = task }
    }

    public func shutdown() {
        copier.withLock { $0?.cancel() }
        runtime.shutdown()
        directoryLock.release()
    }

    var sandboxesDirectory: String { (root as NSString).appendingPathComponent("cri/sandboxes") }
    var containersDirectory: String { (root as NSString).appendingPathComponent("cri/containers") }
    var rawDirectory: String { (root as NSString).appendingPathComponent("cri/output") }
    func rawPath(_ id: String, stream: Int) -> String { (rawDirectory as NSString).appendingPathComponent("\(id).\(stream == 0 ? "stdout" : "stderr")") }

    func load() {
        var sandboxes: [String: Sandbox] = [:]
        var containers: [String: Container] = [:]
        for file in (try? FileManager.default.contentsOfDirectory(atPath: sandboxesDirectory)) ?? [] where file.hasSuffix(".json") {
            if let data = FileManager.default.contents(atPath: (sandboxesDirectory as NSString).appendingPathComponent(file)),
               let sandbox = try? JSONDecoder().decode(Sandbox.self, from: data) { sandboxes[sandbox.id] = sandbox }
        }
        for file in (try? FileManager.default.contentsOfDirectory(atPath: containersDirectory)) ?? [] where file.hasSuffix(".json") {
            if let data = FileManager.default.contents(atPath: (containersDirectory as NSString).appendingPathComponent(file)),
               let container = try? JSONDecoder().decode(Container.self, from: data) { containers[container.id] = container }
        }
        lock.withLock { $0 = (sandboxes, containers) }
        if !sandboxes.isEmpty { logger.info("known again after a restart", metadata: ["sandboxes": "\(sandboxes.count)", "containers": "\(containers.count)"]) }
    }

    func save(_ sandbox: Sandbox) throws {
        try ProcessRuntime.writeDurably(JSONEncoder().encode(sandbox), to: (sandboxesDirectory as NSString).appendingPathComponent("\(sandbox.id).json"))
    }

    func save(_ container: Container) throws {
        try ProcessRuntime.writeDurably(JSONEncoder().encode(container), to: (containersDirectory as NSString).appendingPathComponent("\(container.id).json"))
    }

    static func newID() -> String {
        (0..<32).map { _ in String(UInt8.random(in: 0...15), radix: 16) }.joined()
    }

    static var nowNanos: Int64 { Int64(Date().timeIntervalSince1970 * 1e9) }

    // MARK: - Logs

    /// Copies new output of every container from its raw files into its CRI log file.
    func copyLogs() async {
        let containers = lock.withLock { Array($0.containers.values) }
        for container in containers where container.processID != nil && !container.logPath.isEmpty {
            let running = await runtime.status(id: container.processID!)?.isRunning ?? false
            var copied = container.copied
            var lines = Data()
            for stream in 0..<2 {
                let path = rawPath(container.id, stream: stream)
                guard let handle = FileHandle(forReadingAtPath: path) else { continue }
                defer { try? handle.close() }
                let size = Int((try? handle.seekToEnd()) ?? 0)
                guard size > copied[stream] || !running else { continue }
                try? handle.seek(toOffset: UInt64(copied[stream]))
                let chunk = handle.readData(ofLength: min(size - copied[stream], 4 * 1024 * 1024))
                copied[stream] += chunk.count
                lines.append(format(chunk, stream: stream, key: container.id, flush: !running))
                // Copied bytes no longer take space (the file keeps its size, so offsets stay valid).
                if copied[stream] > 1 << 20 { _ = punchHole(handle.fileDescriptor, length: copied[stream] & ~4095) }
            }
            if !lines.isEmpty {
                let fd = open(container.logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
                if fd >= 0 {
                    _ = lines.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                    close(fd)
                }
            }
            if copied != container.copied {
                let updated = lock.withLock { state -> Container? in
                    state.containers[container.id]?.copied = copied
                    return state.containers[container.id]
                }
                if let updated { try? save(updated) }
            }
        }
    }

    /// Output as CRI log lines: `2006-01-02T15:04:05.999999999Z stdout F text`; a line longer than
    /// 16 KiB is split into partial (P) lines; an unterminated tail waits for its newline unless
    /// the container is gone (`flush`).
    func format(_ chunk: Data, stream: Int, key: String, flush: Bool) -> Data {
        var pending = partial.withLock { $0[key]?[stream] } ?? Data()
        pending.append(chunk)
        let name = stream == 0 ? "stdout" : "stderr"
        let stamp = Self.timestamp(Date())
        var out = Data()
        var start = pending.startIndex
        while let newline = pending[start...].firstIndex(of: 0x0A) {
            Self.appendLine(&out, stamp: stamp, stream: name, text: pending[start..<newline], final: true)
            start = pending.index(after: newline)
        }
        var rest = Data(pending[start...])
        while rest.count > 16 * 1024 {
            Self.appendLine(&out, stamp: stamp, stream: name, text: rest.prefix(16 * 1024), final: false)
            rest = Data(rest.dropFirst(16 * 1024))
        }
        if flush && !rest.isEmpty {
            Self.appendLine(&out, stamp: stamp, stream: name, text: rest[...], final: true)
            rest = Data()
        }
        partial.withLock { partial in
            var streams = partial[key] ?? [Data(), Data()]
            streams[stream] = rest
            partial[key] = streams
        }
        return out
    }

    static func appendLine(_ out: inout Data, stamp: String, stream: String, text: Data.SubSequence, final: Bool) {
        out.append(contentsOf: Array("\(stamp) \(stream) \(final ? "F" : "P") ".utf8))
        out.append(contentsOf: text)
        out.append(0x0A)
    }

    /// RFC 3339 with nanoseconds, UTC.
    static func timestamp(_ date: Date) -> String {
        let seconds = date.timeIntervalSince1970
        var whole = time_t(seconds.rounded(.down))
        let nanos = Int((seconds - Double(whole)) * 1e9)
        var parts = tm()
        gmtime_r(&whole, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec, nanos)
    }

    func punchHole(_ fd: Int32, length: Int) -> Bool {
        // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        linuxFallocate(fd, 0x02 | 0x01, 0, off_t(length)) == 0
    }
}

/// glibc's fallocate(2), which the Glibc module does not export.
@_silgen_name("fallocate")
func linuxFallocate(_ fd: Int32, _ mode: Int32, _ offset: off_t, _ length: off_t) -> Int32

// MARK: - RuntimeService

public struct ProcessRuntimeService: Runtime_V1_RuntimeService.SimpleServiceProtocol {
    let state: ProcessCRIState

    public init(state: ProcessCRIState) { self.state = state }

    static func notFound(_ what: String, _ id: String) -> RPCError {
        RPCError(code: .notFound, message: "\(what) \"\(id)\" not found")
    }

    public func version(request: Runtime_V1_VersionRequest, context: ServerContext) async throws -> Runtime_V1_VersionResponse {
        var response = Runtime_V1_VersionResponse()
        response.version = "0.1.0"
        response.runtimeName = "cox-process"
        response.runtimeVersion = CoxVersion.version
        response.runtimeApiVersion = "v1"
        return response
    }

    public func status(request: Runtime_V1_StatusRequest, context: ServerContext) async throws -> Runtime_V1_StatusResponse {
        var response = Runtime_V1_StatusResponse()
        for type in ["RuntimeReady", "NetworkReady"] {
            var condition = Runtime_V1_RuntimeCondition()
            condition.type = type
            condition.status = true
            response.status.conditions.append(condition)
        }
        if request.verbose {
            response.info["cgroups"] = "{\"version\":\"\(state.runtime.cgroups.version.rawValue)\"}"
            response.info["network"] = "{\"mode\":\"host\"}"
        }
        return response
    }

    // MARK: Sandboxes

    public func runPodSandbox(request: Runtime_V1_RunPodSandboxRequest, context: ServerContext) async throws -> Runtime_V1_RunPodSandboxResponse {
        let config = request.config
        guard !config.metadata.uid.isEmpty, !config.metadata.name.isEmpty else {
            throw RPCError(code: .invalidArgument, message: "sandbox config metadata needs name and uid")
        }
        if !config.logDirectory.isEmpty {
            try FileManager.default.createDirectory(atPath: config.logDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        }
        let sandbox = ProcessCRIState.Sandbox(id: ProcessCRIState.newID(), name: config.metadata.name, uid: config.metadata.uid,
                                              namespace: config.metadata.namespace, attempt: config.metadata.attempt, labels: config.labels,
                                              annotations: config.annotations, logDirectory: config.logDirectory,
                                              createdAt: ProcessCRIState.nowNanos, ready: true)
        try state.save(sandbox)
        state.lock.withLock { $0.sandboxes[sandbox.id] = sandbox }
        var response = Runtime_V1_RunPodSandboxResponse()
        response.podSandboxID = sandbox.id
        return response
    }

    /// Stops the sandbox's containers (SIGTERM, then SIGKILL after 2 s).
    public func stopPodSandbox(request: Runtime_V1_StopPodSandboxRequest, context: ServerContext) async throws -> Runtime_V1_StopPodSandboxResponse {
        let (sandbox, processes) = state.lock.withLock { state -> (ProcessCRIState.Sandbox?, [String]) in
            (state.sandboxes[request.podSandboxID], state.containers.values.filter { $0.sandboxID == request.podSandboxID }.compactMap(\.processID))
        }
        guard var sandbox else { return Runtime_V1_StopPodSandboxResponse() }  // idempotent
        await withTaskGroup(of: Void.self) { group in
            for process in processes { group.addTask { await state.runtime.stop(id: process, grace: .seconds(2)) } }
        }
        sandbox.ready = false
        try state.save(sandbox)
        state.lock.withLock { $0.sandboxes[sandbox.id] = sandbox }
        return Runtime_V1_StopPodSandboxResponse()
    }

    public func removePodSandbox(request: Runtime_V1_RemovePodSandboxRequest, context: ServerContext) async throws -> Runtime_V1_RemovePodSandboxResponse {
        _ = try await stopPodSandbox(request: .with { $0.podSandboxID = request.podSandboxID }, context: context)
        let containers = state.lock.withLock { $0.containers.values.filter { $0.sandboxID == request.podSandboxID }.map(\.id) }
        for id in containers { try await removeContainer(id) }
        state.lock.withLock { _ = $0.sandboxes.removeValue(forKey: request.podSandboxID) }
        _ = unlink((state.sandboxesDirectory as NSString).appendingPathComponent("\(request.podSandboxID).json"))
        return Runtime_V1_RemovePodSandboxResponse()
    }

    func sandboxMessage(_ sandbox: ProcessCRIState.Sandbox) -> Runtime_V1_PodSandbox {
        var message = Runtime_V1_PodSandbox()
        message.id = sandbox.id
        message.metadata.name = sandbox.name
        message.metadata.uid = sandbox.uid
        message.metadata.namespace = sandbox.namespace
        message.metadata.attempt = sandbox.attempt
        message.state = sandbox.ready ? .sandboxReady : .sandboxNotready
        message.createdAt = sandbox.createdAt
        message.labels = sandbox.labels
        message.annotations = sandbox.annotations
        return message
    }

    public func podSandboxStatus(request: Runtime_V1_PodSandboxStatusRequest, context: ServerContext) async throws -> Runtime_V1_PodSandboxStatusResponse {
        guard let sandbox = state.lock.withLock({ $0.sandboxes[request.podSandboxID] }) else { throw Self.notFound("pod sandbox", request.podSandboxID) }
        let message = sandboxMessage(sandbox)
        var response = Runtime_V1_PodSandboxStatusResponse()
        response.status.id = message.id
        response.status.metadata = message.metadata
        response.status.state = message.state
        response.status.createdAt = message.createdAt
        response.status.labels = message.labels
        response.status.annotations = message.annotations
        response.status.linux.namespaces.options.network = .node
        response.status.linux.namespaces.options.pid = .node
        response.status.linux.namespaces.options.ipc = .node
        return response
    }

    public func listPodSandbox(request: Runtime_V1_ListPodSandboxRequest, context: ServerContext) async throws -> Runtime_V1_ListPodSandboxResponse {
        let filter = request.filter
        let sandboxes = state.lock.withLock { Array($0.sandboxes.values) }
        var response = Runtime_V1_ListPodSandboxResponse()
        response.items = sandboxes.filter { sandbox in
            (filter.id.isEmpty || sandbox.id == filter.id)
                && (!filter.hasState || (filter.state.state == .sandboxReady) == sandbox.ready)
                && filter.labelSelector.allSatisfy { sandbox.labels[$0.key] == $0.value }
        }.sorted { $0.createdAt < $1.createdAt }.map(sandboxMessage)
        return response
    }

    // MARK: Containers

    /// What a container's security context asks that this runtime cannot do (nil: nothing): a
    /// user or group other than its own, privileges, a read-only root, capabilities, no_new_privs,
    /// extra groups.
    static func unsupportedSecurity(_ context: Runtime_V1_LinuxContainerSecurityContext) -> String? {
        var asked: [String] = []
        if context.hasRunAsUser, context.runAsUser.value != Int64(getuid()) { asked.append("runAsUser \(context.runAsUser.value)") }
        if context.hasRunAsGroup, context.runAsGroup.value != Int64(getgid()) { asked.append("runAsGroup \(context.runAsGroup.value)") }
        if context.privileged { asked.append("privileged") }
        if context.readonlyRootfs { asked.append("readOnlyRootFilesystem") }
        if context.noNewPrivs { asked.append("allowPrivilegeEscalation: false") }
        if !context.capabilities.addCapabilities.isEmpty { asked.append("capabilities.add \(context.capabilities.addCapabilities)") }
        if !context.capabilities.dropCapabilities.isEmpty { asked.append("capabilities.drop \(context.capabilities.dropCapabilities)") }
        if !context.supplementalGroups.isEmpty { asked.append("supplementalGroups \(context.supplementalGroups)") }
        return asked.isEmpty ? nil : asked.joined(separator: ", ")
    }

    public func createContainer(request: Runtime_V1_CreateContainerRequest, context: ServerContext) async throws -> Runtime_V1_CreateContainerResponse {
        guard let sandbox = state.lock.withLock({ $0.sandboxes[request.podSandboxID] }) else { throw Self.notFound("pod sandbox", request.podSandboxID) }
        guard sandbox.ready else { throw RPCError(code: .failedPrecondition, message: "pod sandbox \(sandbox.id) is not ready") }
        let config = request.config
        let taken = state.lock.withLock { state in
            state.containers.values.contains { $0.sandboxID == sandbox.id && $0.name == config.metadata.name && $0.attempt == config.metadata.attempt }
        }
        if taken {
            throw RPCError(code: .alreadyExists, message: "container name \"\(config.metadata.name)\" attempt \(config.metadata.attempt) is already in use in sandbox \(sandbox.id)")
        }
        if config.tty {
            // A terminal lives in the process that holds its master side; this runtime's
            // containers outlive it (and the agent), a terminal would not. Refused, not faked.
            throw RPCError(code: .invalidArgument, message: "the process runtime cannot give container \"\(config.metadata.name)\" a terminal (tty: true): its containers outlive the runtime, a terminal would not (use stdin without tty, or kubectl exec -it)")
        }
        if !config.mounts.isEmpty {
            // Its processes share the node's filesystem: a volume cannot appear at a path of
            // theirs without changing that path for the whole node. Refused, never ignored.
            throw RPCError(code: .invalidArgument, message: "the process runtime cannot mount volumes: container \"\(config.metadata.name)\" mounts \(config.mounts.map(\.containerPath).joined(separator: ", ")); its processes share the node's filesystem (run the pod on a node with an image runtime such as containerd, or drop its volumeMounts)")
        }
        if let refused = Self.unsupportedSecurity(config.linux.securityContext) {
            // Its processes are the runtime's own, as the runtime's user with the runtime's
            // privileges: what else a securityContext asks it cannot give. Refused, never ignored.
            throw RPCError(code: .invalidArgument, message: "the process runtime cannot give container \"\(config.metadata.name)\" its securityContext: \(refused); its processes run as the runtime's own user and privileges (run the pod on a node with an image runtime such as containerd, or drop those fields)")
        }
        var launch = ContainerLaunch(podUID: sandbox.uid, namespace: sandbox.namespace, podName: sandbox.name, container: config.metadata.name,
                                     command: config.command, environment: Dictionary(config.envs.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 }),
                                     workingDirectory: config.workingDir.isEmpty ? nil : config.workingDir)
        launch.args = config.args
        launch.image = config.image.image
        let resources = config.linux.resources
        if resources.memoryLimitInBytes > 0 { launch.memoryLimitBytes = resources.memoryLimitInBytes }
        if resources.cpuQuota > 0, resources.cpuPeriod > 0 { launch.cpuLimitMillis = resources.cpuQuota * 1000 / resources.cpuPeriod }
        guard !launch.argv.isEmpty else {
            throw RPCError(code: .invalidArgument, message: "container \(config.metadata.name) has no command: the process runtime runs command and args on the host and has no image entrypoint to fall back on")
        }
        let id = ProcessCRIState.newID()
        let logPath = sandbox.logDirectory.isEmpty || config.logPath.isEmpty ? "" : (sandbox.logDirectory as NSString).appendingPathComponent(config.logPath)
        if !logPath.isEmpty {
            try FileManager.default.createDirectory(atPath: (logPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
            // There from creation, as containerd makes it: the agent counts attempts by their logs.
            let fd = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
            if fd >= 0 { close(fd) }
        }
        launch.outputPaths = [state.rawPath(id, stream: 0), state.rawPath(id, stream: 1)]
        if config.stdin {
            var terminal = ContainerLaunch.Terminal(stdin: true, stdinOnce: config.stdinOnce)
            terminal.stdinPath = (state.rawDirectory as NSString).appendingPathComponent("\(id).stdin")
            launch.terminal = terminal
        }
        let container = ProcessCRIState.Container(id: id, sandboxID: sandbox.id, name: config.metadata.name, attempt: config.metadata.attempt,
                                                  image: config.image.image, labels: config.labels, annotations: config.annotations,
                                                  logPath: logPath, createdAt: ProcessCRIState.nowNanos, launch: launch)
        try state.save(container)
        state.lock.withLock { $0.containers[id] = container }
        var response = Runtime_V1_CreateContainerResponse()
        response.containerID = id
        return response
    }

    public func startContainer(request: Runtime_V1_StartContainerRequest, context: ServerContext) async throws -> Runtime_V1_StartContainerResponse {
        guard var container = state.lock.withLock({ $0.containers[request.containerID] }) else { throw Self.notFound("container", request.containerID) }
        guard container.processID == nil else { throw RPCError(code: .failedPrecondition, message: "container \(container.id) was started already") }
        do {
            let started = try await state.runtime.start(container.launch)
            container.processID = started.id
        } catch {
            container.startError = "\(error)"
            try? state.save(container)
            state.lock.withLock { $0.containers[container.id] = container }
            throw RPCError(code: .unknown, message: "\(error)")
        }
        try state.save(container)
        state.lock.withLock { $0.containers[container.id] = container }
        return Runtime_V1_StartContainerResponse()
    }

    public func stopContainer(request: Runtime_V1_StopContainerRequest, context: ServerContext) async throws -> Runtime_V1_StopContainerResponse {
        guard let container = state.lock.withLock({ $0.containers[request.containerID] }) else { throw Self.notFound("container", request.containerID) }
        if let process = container.processID { await state.runtime.stop(id: process, grace: .seconds(max(0, request.timeout))) }
        return Runtime_V1_StopContainerResponse()
    }

    public func removeContainer(request: Runtime_V1_RemoveContainerRequest, context: ServerContext) async throws -> Runtime_V1_RemoveContainerResponse {
        try await removeContainer(request.containerID)
        return Runtime_V1_RemoveContainerResponse()
    }

    func removeContainer(_ id: String) async throws {
        guard let container = state.lock.withLock({ $0.containers[id] }) else { return }  // idempotent
        if let process = container.processID {
            await state.runtime.stop(id: process, grace: .zero)
            await state.copyLogs()
            await state.runtime.remove(id: process)
        }
        state.lock.withLock { _ = $0.containers.removeValue(forKey: id) }
        _ = unlink((state.containersDirectory as NSString).appendingPathComponent("\(id).json"))
        for stream in 0..<2 { _ = unlink(state.rawPath(id, stream: stream)) }
        if let input = container.launch.terminal?.stdinPath {
            state.runtime.releaseInput(input)
            _ = unlink(input)
        }
    }

    func containerState(_ container: ProcessCRIState.Container) async -> (Runtime_V1_ContainerState, RuntimeContainer?) {
        guard let process = container.processID else { return (container.startError == nil ? .containerCreated : .containerExited, nil) }
        guard let known = await state.runtime.status(id: process) else { return (.containerExited, nil) }
        return (known.isRunning ? .containerRunning : .containerExited, known)
    }

    public func listContainers(request: Runtime_V1_ListContainersRequest, context: ServerContext) async throws -> Runtime_V1_ListContainersResponse {
        let filter = request.filter
        let containers = state.lock.withLock { Array($0.containers.values) }.filter { container in
            (filter.id.isEmpty || container.id == filter.id)
                && (filter.podSandboxID.isEmpty || container.sandboxID == filter.podSandboxID)
                && filter.labelSelector.allSatisfy { container.labels[$0.key] == $0.value }
        }
        var response = Runtime_V1_ListContainersResponse()
        for container in containers.sorted(by: { $0.createdAt < $1.createdAt }) {
            let (current, _) = await containerState(container)
            if filter.hasState && filter.state.state != current { continue }
            var message = Runtime_V1_Container()
            message.id = container.id
            message.podSandboxID = container.sandboxID
            message.metadata.name = container.name
            message.metadata.attempt = container.attempt
            message.image.image = container.image
            message.imageRef = container.image
            message.state = current
            message.createdAt = container.createdAt
            message.labels = container.labels
            message.annotations = container.annotations
            response.containers.append(message)
        }
        return response
    }

    public func containerStatus(request: Runtime_V1_ContainerStatusRequest, context: ServerContext) async throws -> Runtime_V1_ContainerStatusResponse {
        guard let container = state.lock.withLock({ $0.containers[request.containerID] }) else { throw Self.notFound("container", request.containerID) }
        let (current, known) = await containerState(container)
        var status = Runtime_V1_ContainerStatus()
        status.id = container.id
        status.metadata.name = container.name
        status.metadata.attempt = container.attempt
        status.state = current
        status.createdAt = container.createdAt
        status.image.image = container.image
        status.imageRef = container.image
        status.labels = container.labels
        status.annotations = container.annotations
        status.logPath = container.logPath
        if let memory = container.launch.memoryLimitBytes { status.resources.linux.memoryLimitInBytes = memory }
        if let known {
            status.startedAt = Int64(known.startedAt.timeIntervalSince1970 * 1e9)
            if case .exited(let code, _, let reason, let finishedAt) = known.state {
                status.exitCode = code
                status.reason = reason
                status.finishedAt = Int64(finishedAt.timeIntervalSince1970 * 1e9)
            }
        } else if current == .containerExited {
            status.exitCode = 128
            status.reason = container.startError == nil ? "Unknown" : "StartError"
            status.message = container.startError ?? "the process is no longer known to the runtime"
            status.finishedAt = container.createdAt
        }
        var response = Runtime_V1_ContainerStatusResponse()
        response.status = status
        if request.verbose, let process = container.processID { response.info["pid"] = String(process.dropFirst("process://".count)) }
        return response
    }

    public func updateContainerResources(request: Runtime_V1_UpdateContainerResourcesRequest, context: ServerContext) async throws -> Runtime_V1_UpdateContainerResourcesResponse {
        throw RPCError(code: .unimplemented, message: "the process runtime cannot change a running container's limits; the pod must be recreated")
    }

    public func reopenContainerLog(request: Runtime_V1_ReopenContainerLogRequest, context: ServerContext) async throws -> Runtime_V1_ReopenContainerLogResponse {
        // The copier opens the log file anew for every write: a rotated file is replaced at once.
        guard let container = state.lock.withLock({ $0.containers[request.containerID] }) else { throw Self.notFound("container", request.containerID) }
        guard case (.containerRunning, _) = await containerState(container) else {
            throw RPCError(code: .failedPrecondition, message: "container is not running")  // as containerd answers
        }
        return Runtime_V1_ReopenContainerLogResponse()
    }

    public func execSync(request: Runtime_V1_ExecSyncRequest, context: ServerContext) async throws -> Runtime_V1_ExecSyncResponse {
        guard let container = state.lock.withLock({ $0.containers[request.containerID] }) else { throw Self.notFound("container", request.containerID) }
        guard case (.containerRunning, _) = await containerState(container) else {
            throw RPCError(code: .failedPrecondition, message: "container \(container.id) is not running")
        }
        guard !request.cmd.isEmpty else { throw RPCError(code: .invalidArgument, message: "exec needs a command") }
        let timeout = request.timeout > 0 ? Double(request.timeout) : nil
        let result = try await HostExec.run(request.cmd, environment: container.launch.environment, directory: container.launch.workingDirectory, timeout: timeout)
        if result.timedOut {
            throw RPCError(code: .deadlineExceeded, message: "command \(request.cmd) timed out after \(request.timeout)s")
        }
        var response = Runtime_V1_ExecSyncResponse()
        response.exitCode = result.exitCode
        response.stdout = result.stdout
        response.stderr = result.stderr
        return response
    }

    public func exec(request: Runtime_V1_ExecRequest, context: ServerContext) async throws -> Runtime_V1_ExecResponse {
        guard let container = state.lock.withLock({ $0.containers[request.containerID] }) else { throw Self.notFound("container", request.containerID) }
        guard case (.containerRunning, _) = await containerState(container) else {
            throw RPCError(code: .failedPrecondition, message: "container \(container.id) is not running")
        }
        guard !request.cmd.isEmpty else { throw RPCError(code: .invalidArgument, message: "exec needs a command") }
        guard request.stdout || request.stderr || request.stdin else {
            throw RPCError(code: .invalidArgument, message: "one of stdin, stdout, or stderr must be set")
        }
        var response = Runtime_V1_ExecResponse()
        do {
            response.url = try await state.streaming.execURL(command: request.cmd, environment: container.launch.environment,
                                                             directory: container.launch.workingDirectory, stdin: request.stdin,
                                                             stdout: request.stdout, stderr: request.stderr, tty: request.tty)
        } catch {
            throw RPCError(code: .unavailable, message: "the process runtime cannot serve streams: \(error)")
        }
        return response
    }

    /// Attach: the container's output from now on (read from the files it writes), and its stdin
    /// FIFO when it has one and the client sends stdin.
    public func attach(request: Runtime_V1_AttachRequest, context: ServerContext) async throws -> Runtime_V1_AttachResponse {
        guard let container = state.lock.withLock({ $0.containers[request.containerID] }) else { throw Self.notFound("container", request.containerID) }
        guard case (.containerRunning, let process?) = await containerState(container), let pid = ProcessRuntime.pid(of: process.id) else {
            throw RPCError(code: .failedPrecondition, message: "container \(container.id) is not running")
        }
        guard request.stdout || request.stderr || request.stdin else {
            throw RPCError(code: .invalidArgument, message: "one of stdin, stdout, or stderr must be set")
        }
        let terminal = container.launch.terminal
        let input = request.stdin && terminal?.stdin == true ? terminal?.stdinPath : nil
        var outputs: [(path: String, stream: UInt8)] = []
        if request.stdout { outputs.append((state.rawPath(container.id, stream: 0), 1)) }
        if request.stderr { outputs.append((state.rawPath(container.id, stream: 1), 2)) }
        let runtime = state.runtime
        let once = terminal?.stdinOnce == true
        let target = ProcessStreamingServer.AttachTarget(pid: pid, outputs: outputs, input: input,
                                                         inputEnded: { if once, let input { runtime.releaseInput(input) } })
        var response = Runtime_V1_AttachResponse()
        do {
            response.url = try await state.streaming.attachURL(target)
        } catch {
            throw RPCError(code: .unavailable, message: "the process runtime cannot serve streams: \(error)")
        }
        return response
    }

    /// PortForward: the ports on this node (the pods share its network), over WebSocket.
    public func portForward(request: Runtime_V1_PortForwardRequest, context: ServerContext) async throws -> Runtime_V1_PortForwardResponse {
        guard state.lock.withLock({ $0.sandboxes[request.podSandboxID] }) != nil else { throw Self.notFound("pod sandbox", request.podSandboxID) }
        // No ports is SPDY's way: they come with each stream.
        guard request.port.allSatisfy({ (1...65535).contains($0) }) else {
            throw RPCError(code: .invalidArgument, message: "port-forward needs ports between 1 and 65535, got \(request.port)")
        }
        var response = Runtime_V1_PortForwardResponse()
        do {
            response.url = try await state.streaming.portForwardURL(ports: request.port)
        } catch {
            throw RPCError(code: .unavailable, message: "the process runtime cannot serve streams: \(error)")
        }
        return response
    }

    public func containerStats(request: Runtime_V1_ContainerStatsRequest, context: ServerContext) async throws -> Runtime_V1_ContainerStatsResponse {
        guard let container = state.lock.withLock({ $0.containers[request.containerID] }) else { throw Self.notFound("container", request.containerID) }
        var response = Runtime_V1_ContainerStatsResponse()
        response.stats = stats(container)
        return response
    }

    public func listContainerStats(request: Runtime_V1_ListContainerStatsRequest, context: ServerContext) async throws -> Runtime_V1_ListContainerStatsResponse {
        let filter = request.filter
        let containers = state.lock.withLock { Array($0.containers.values) }.filter { container in
            (filter.id.isEmpty || container.id == filter.id) && (filter.podSandboxID.isEmpty || container.sandboxID == filter.podSandboxID)
                && filter.labelSelector.allSatisfy { container.labels[$0.key] == $0.value }
        }
        var response = Runtime_V1_ListContainerStatsResponse()
        response.stats = containers.map(stats)
        return response
    }

    func stats(_ container: ProcessCRIState.Container) -> Runtime_V1_ContainerStats {
        var stats = Runtime_V1_ContainerStats()
        stats.attributes.id = container.id
        stats.attributes.metadata.name = container.name
        stats.attributes.metadata.attempt = container.attempt
        stats.attributes.labels = container.labels
        stats.attributes.annotations = container.annotations
        if let usage = state.runtime.cgroups.memoryUsage(name: ProcessRuntime.cgroupName(container.launch)) {
            stats.memory.timestamp = ProcessCRIState.nowNanos
            stats.memory.workingSetBytes.value = usage
            stats.memory.usageBytes.value = usage
        }
        return stats
    }
}

// MARK: - ImageService

/// The process runtime runs host executables: every image reference "is present" (its id is a
/// digest of the reference), pulls succeed without fetching anything, and the list holds the
/// images containers name.
public struct ProcessImageService: Runtime_V1_ImageService.SimpleServiceProtocol {
    let state: ProcessCRIState

    public init(state: ProcessCRIState) { self.state = state }

    static func image(_ reference: String) -> Runtime_V1_Image {
        var image = Runtime_V1_Image()
        image.id = "sha256:" + SHA256Hex.of(reference)
        image.repoTags = [reference]
        image.size = 1
        image.spec.image = reference
        return image
    }

    public func listImages(request: Runtime_V1_ListImagesRequest, context: ServerContext) async throws -> Runtime_V1_ListImagesResponse {
        let references = Set(state.lock.withLock { $0.containers.values.map(\.image) }.filter { !$0.isEmpty })
        var response = Runtime_V1_ListImagesResponse()
        response.images = references.sorted().map(Self.image)
        return response
    }

    public func imageStatus(request: Runtime_V1_ImageStatusRequest, context: ServerContext) async throws -> Runtime_V1_ImageStatusResponse {
        var response = Runtime_V1_ImageStatusResponse()
        if !request.image.image.isEmpty { response.image = Self.image(request.image.image) }
        return response
    }

    public func pullImage(request: Runtime_V1_PullImageRequest, context: ServerContext) async throws -> Runtime_V1_PullImageResponse {
        var response = Runtime_V1_PullImageResponse()
        response.imageRef = Self.image(request.image.image).id
        return response
    }

    public func removeImage(request: Runtime_V1_RemoveImageRequest, context: ServerContext) async throws -> Runtime_V1_RemoveImageResponse {
        Runtime_V1_RemoveImageResponse()
    }

    public func imageFsInfo(request: Runtime_V1_ImageFsInfoRequest, context: ServerContext) async throws -> Runtime_V1_ImageFsInfoResponse {
        Runtime_V1_ImageFsInfoResponse()
    }
}

// MARK: - Serving

/// Serves the process runtime's CRI on a unix socket until cancelled.
public enum ProcessCRIServer {
    /// Serves until cancelled; cancellation shuts the server down gracefully (calls in flight are
    /// answered). It never reaches the server's task: NIO's async channels trap when one is
    /// cancelled with a connection or stream accepted but not yet served.
    public static func serve(state: ProcessCRIState, socketPath: String, logger: Logger, ready: (@Sendable () -> Void)? = nil) async throws {
        try FileManager.default.createDirectory(atPath: (socketPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        _ = unlink(socketPath)  // a socket left by an earlier run
        let server = GRPCServer(transport: .http2NIOPosix(address: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext),
                                services: [ProcessRuntimeService(state: state), ProcessImageService(state: state)])
        let serving = Task { try await server.serve() }
        let announced = Task {
            _ = try await server.listeningAddress
            _ = chmod(socketPath, 0o600)  // CRI is root's: whoever can speak it runs anything
            logger.info("serving CRI", metadata: ["endpoint": "unix://\(socketPath)", "runtime": "process"])
            ready?()
        }
        defer { state.streaming.close() }
        try await withTaskCancellationHandler {
            try await announced.value
            try await serving.value
        } onCancel: {
            server.beginGracefulShutdown()
        }
    }
}
