import Synchronization
import API
import Foundation

/// What a runtime needs to start one container of a pod.
public struct ContainerLaunch: Sendable, Codable, Equatable {
    public var podUID: String
    public var namespace: String
    public var podName: String
    public var container: String
    /// The container's `command` (for an image: replaces its entrypoint).
    public var command: [String]
    /// The container's `args` (for an image: replaces its cmd).
    public var args: [String] = []
    public var environment: [String: String]
    public var workingDirectory: String?
    /// From `resources.limits`; nil when unlimited.
    public var memoryLimitBytes: Int64?
    public var cpuLimitMillis: Int64?
    public var cpuRequestMillis: Int64?
    /// The image reference as the pod gives it; runtimes without images ignore it.
    public var image: String = ""
    /// Always, IfNotPresent or Never (empty: Kubernetes' default for the image's tag).
    public var imagePullPolicy: String = ""
    /// The pod shares the node's network namespace.
    public var hostNetwork = false
    /// Files for standard output and error (the process runtime's CRI plugin copies them into the
    /// CRI log); nil: the runtime's own log file for the container, both streams together.
    public var outputPaths: [String]?
    /// The pod's volumes as this container mounts them (host paths the agent prepared); nil: none.
    /// Optional so records written before volumes existed still decode.
    public var mounts: [Mount]?
    /// The container's `stdin`, `stdinOnce` and `tty`; nil: none of them (optional, as `mounts`).
    public var terminal: Terminal?

    public struct Terminal: Sendable, Codable, Equatable {
        public var stdin = false
        public var stdinOnce = false
        public var tty = false
        /// The process runtime's FIFO for the container's standard input (nil: none).
        public var stdinPath: String?
        public init(stdin: Bool = false, stdinOnce: Bool = false, tty: Bool = false) {
            self.stdin = stdin
            self.stdinOnce = stdinOnce
            self.tty = tty
        }
    }

    /// What the container runs as and may do: the pod's securityContext with the container's over
    /// it (nil: nothing asked). A runtime that cannot give something asked refuses the start.
    public var security: Security?

    public struct Security: Sendable, Codable, Equatable {
        public var runAsUser: Int64?
        public var runAsGroup: Int64?
        public var runAsNonRoot = false
        public var privileged = false
        public var readOnlyRootFilesystem = false
        /// allowPrivilegeEscalation: false (no_new_privs).
        public var noNewPrivileges = false
        public var addCapabilities: [String] = []
        public var dropCapabilities: [String] = []
        public var supplementalGroups: [Int64] = []
        public init() {}
    }

    /// A path of the node seen at a path of the container.
    public struct Mount: Sendable, Codable, Equatable {
        public enum Propagation: String, Sendable, Codable { case none = "None", hostToContainer = "HostToContainer" }
        public var containerPath: String
        public var hostPath: String
        public var readOnly: Bool
        public var propagation: Propagation
        public init(containerPath: String, hostPath: String, readOnly: Bool = false, propagation: Propagation = .none) {
            self.containerPath = containerPath
            self.hostPath = hostPath
            self.readOnly = readOnly
            self.propagation = propagation
        }
    }

    /// What a runtime without images runs: command then args.
    public var argv: [String] { command + args }

    /// Kubernetes' default pull policy for the image (when the pod came without one).
    public static func defaultPullPolicy(_ image: String) -> String { PodDefaults.pullPolicy(image: image) }

    public init(podUID: String, namespace: String, podName: String, container: String, command: [String],
                environment: [String: String] = [:], workingDirectory: String? = nil) {
        self.podUID = podUID
        self.namespace = namespace
        self.podName = podName
        self.container = container
        self.command = command
        self.environment = environment
        self.workingDirectory = workingDirectory
    }
}

/// A container the runtime knows: running, or exited with how it ended.
public struct RuntimeContainer: Sendable, Codable, Equatable {
    public enum State: Sendable, Codable, Equatable {
        case running
        /// `exitCode` is 128+signal for a signal; `reason` is Completed, Error, OOMKilled or Unknown.
        case exited(exitCode: Int32, signal: Int32, reason: String, finishedAt: Date)
    }
    /// `process://PID` for the process runtime.
    public var id: String
    public var launch: ContainerLaunch
    public var startedAt: Date
    public var state: State
    public var logPath: String

    public var isRunning: Bool { state == .running }
}

/// The seam between the node agent and whatever runs containers. The agent drives pods through
/// it; the built-in process runtime runs plain processes, plugins may run anything else.
public protocol ContainerRuntime: Sendable {
    /// `process`, `fake`, … (reported in the node's info).
    var name: String { get }
    /// Starts the container; its output goes to the runtime's log file for it.
    func start(_ launch: ContainerLaunch) async throws -> RuntimeContainer
    /// SIGTERM (or the runtime's equivalent), then a forced stop after `grace`. Returns once stopped.
    func stop(id: String, grace: Duration) async
    /// The container's current state; nil when the runtime does not know the id.
    func status(id: String) async -> RuntimeContainer?
    /// Every container the runtime knows, including those started before an agent restart.
    func list() async -> [RuntimeContainer]
    /// Forgets an exited container (its record; its logs stay until the pod goes).
    func remove(id: String) async
    /// Deletes what is kept for a pod that is gone (logs, records).
    func cleanup(podUID: String) async
    /// Where the container's output is written.
    func logPath(podUID: String, container: String, previous: Bool) -> String
    /// Ids of containers as they exit, to the agent that asked last (an agent that starts over
    /// takes the feed from its predecessor; exits nobody was listening for wait for the next one).
    var exits: AsyncStream<String> { get }
    /// How resource limits are enforced (reported as the node's ResourceLimitsEnforced condition).
    var cgroups: Cgroups { get }
    /// Stops watching containers (they keep running where the runtime allows it).
    func shutdown()
    /// How the log files are written: raw output, or the CRI format (timestamp, stream, tag, line).
    var logFormat: LogFormat { get }
    /// The pod's own address, where the runtime gives pods one (CRI sandboxes with CNI); "" when
    /// its pods share the node's network (the pod's address is then the node's); nil while the pod
    /// has no sandbox yet.
    func podIP(podUID: String) async -> String?
    /// Whether the runtime answers and is ready, and whether its pod network is (a CNI runtime's
    /// is not until its network configuration exists).
    func health() async -> RuntimeHealth
    /// Gives the runtime's pods the node's address range: writes a CNI network for it where the
    /// runtime has none. Returns what it did, for the log (nil: nothing to do).
    func configureNetwork(podCIDR: String) async throws -> String?
    /// Where the runtime's streaming server serves this exec, attach or port-forward (CRI's Exec,
    /// Attach and PortForward answer a URL; the agent joins the caller's connection to it).
    func streamURL(_ request: StreamRequest) async throws -> String
    /// Runs `command` in the running container and returns its exit code and output (CRI's
    /// ExecSync): exec probes run so, inside the container as the kubelet runs them.
    func execSync(id: String, command: [String], timeout: Duration) async throws -> (exitCode: Int32, stdout: Data, stderr: Data)
}

/// An exec, attach or port-forward, as the agent asks its runtime for it.
public struct StreamRequest: Sendable, Equatable {
    public enum Kind: String, Sendable { case exec, attach, portForward }
    public var kind: Kind
    /// The container (exec, attach), as the runtime knows it.
    public var containerID = ""
    /// The pod (port-forward).
    public var podUID = ""
    public var command: [String] = []
    public var stdin = false
    public var stdout = true
    public var stderr = true
    public var tty = false
    public var ports: [Int32] = []
    public init(kind: Kind) { self.kind = kind }
}

/// The runtime's readiness as the node reports it (its Ready condition).
public struct RuntimeHealth: Sendable, Equatable {
    public var runtimeReady = true
    public var networkReady = true
    /// Why not, in the kubelet's words (`container runtime is down: …`,
    /// `container runtime network not ready: NetworkReady=false reason:… message:…`).
    public var message = ""
    public init(runtimeReady: Bool = true, networkReady: Bool = true, message: String = "") {
        self.runtimeReady = runtimeReady
        self.networkReady = networkReady
        self.message = message
    }
    public var isReady: Bool { runtimeReady && networkReady }
}

public enum LogFormat: Sendable { case raw, cri }

extension ContainerRuntime {
    public var logFormat: LogFormat { .raw }
    public func podIP(podUID: String) async -> String? { "" }
    public func health() async -> RuntimeHealth { RuntimeHealth() }
    public func configureNetwork(podCIDR: String) async throws -> String? { nil }
    public func execSync(id: String, command: [String], timeout: Duration) async throws -> (exitCode: Int32, stdout: Data, stderr: Data) {
        throw RuntimeError("the \(name) runtime cannot run commands in containers")
    }
    public func streamURL(_ request: StreamRequest) async throws -> String {
        throw RuntimeError("the \(name) runtime does not serve \(request.kind.rawValue)")
    }
}

public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// Kubernetes' waiting reason for a start that failed this way (ErrImagePull, CreateContainerError, ...).
    public let reason: String?
    public init(_ message: String, reason: String? = nil) {
        self.message = message
        self.reason = reason
    }
    public var description: String { message }
}

/// The exits feed of a runtime: one listener at a time, the newest; ids that arrive while nobody
/// listens are kept for the next listener.
public final class ExitFeed: Sendable {
    struct State {
        var listener: AsyncStream<String>.Continuation?
        var pending: [String] = []
        var finished = false
    }

    private let state = Mutex(State())

    public init() {}

    /// A new listener; the previous one's stream ends.
    public func listen() -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream<String>.makeStream()
        let previous = state.withLock { state -> AsyncStream<String>.Continuation? in
            let previous = state.listener
            if state.finished {
                continuation.finish()
                return previous
            }
            state.listener = continuation
            for id in state.pending { continuation.yield(id) }
            state.pending = []
            return previous
        }
        previous?.finish()
        return stream
    }

    public func send(_ id: String) {
        state.withLock { state in
            guard !state.finished else { return }
            if let listener = state.listener, case .enqueued = listener.yield(id) { return }
            state.listener = nil
            state.pending.append(id)
        }
    }

    public func finish() {
        let listener = state.withLock { state -> AsyncStream<String>.Continuation? in
            state.finished = true
            defer { state.listener = nil }
            return state.listener
        }
        listener?.finish()
    }
}
