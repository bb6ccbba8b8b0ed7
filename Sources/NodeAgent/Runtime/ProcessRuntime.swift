import API
import Foundation
import Logging
import Synchronization

/// The built-in runtime: each container is a plain process, the leader of its own session and
/// process group (so a stop reaches everything it started), with standard output and error
/// appended to a log file. Records of running containers are kept on disk, so an agent that
/// restarts finds its containers again (matching PID *and* process start time, so a reused PID is
/// never mistaken for ours) instead of starting duplicates.
public final class ProcessRuntime: ContainerRuntime, @unchecked Sendable {
    public let name = "process"
    let root: String
    let logger: Logger
    /// Logs above this are copied to `.1` and truncated (copytruncate; lines written during the
    /// copy may be lost).
    let maxLogBytes: Int
    /// Memory, cpu and pid limits (or the reason there are none).
    public let cgroups: Cgroups
    /// Processes a container may have (its pids cgroup).
    let maxPids: Int

    struct Entry {
        var container: RuntimeContainer
        var pid: pid_t
        var startTicks: UInt64
        /// Spawned by this agent process (so waitpid gives its exit status); false when re-adopted.
        var isChild: Bool
    }
    private let entries = Mutex<[String: Entry]>([:])
    /// Write ends of stdinOnce containers' input FIFOs, held until their first attach ends.
    let heldInputs = Mutex<[String: Int32]>([:])
    private let exitFeed = ExitFeed()
    /// Ids of containers as they exit (one consumer: the agent).
    public var exits: AsyncStream<String> { exitFeed.listen() }
    private let reaper = Mutex<Task<Void, Never>?>(nil)

    public init(root: String, maxLogBytes: Int = 10 * 1024 * 1024, maxPids: Int = 1024, logger: Logger = Logger(label: "cox.runtime")) throws {
        self.root = root
        self.logger = logger
        self.maxLogBytes = maxLogBytes
        self.maxPids = maxPids
        self.cgroups = Cgroups.detect(logger: logger)
        // Records and logs are the agent's alone (a container's output can hold secrets).
        for directory in [root, recordsDirectory, (root as NSString).appendingPathComponent("logs")] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            _ = chmod(directory, 0o700)  // made by an older version with the umask's mode
        }
        loadRecords()
        let task = Task.detached { [weak self] in
            var tick = 0
            while !Task.isCancelled, let self {
                self.reap()
                tick += 1
                if tick % 50 == 0 { self.rotateLogs() }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        reaper.withLock { $0 = task }
    }

    deinit {
        reaper.withLock { $0?.cancel() }
        exitFeed.finish()
    }

    /// Stops watching processes (they keep running; a new runtime on the same root re-adopts them).
    public func shutdown() {
        reaper.withLock { $0?.cancel() }
        exitFeed.finish()
    }

    var recordsDirectory: String { (root as NSString).appendingPathComponent("containers") }

    public func logPath(podUID: String, container: String, previous: Bool) -> String {
        (root as NSString).appendingPathComponent("logs/\(podUID)/\(container)\(previous ? ".previous" : "").log")
    }

    // MARK: - Start and stop

    public func start(_ launch: ContainerLaunch) async throws -> RuntimeContainer {
        guard let executable = launch.argv.first, !executable.isEmpty else {
            throw RuntimeError("container \(launch.container) has no command (the process runtime needs spec.containers[].command)")
        }
        let logPath = launch.outputPaths?.first ?? logPath(podUID: launch.podUID, container: launch.container, previous: false)
        try FileManager.default.createDirectory(atPath: (logPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        if launch.outputPaths == nil {
            // The last run's output stays readable as the previous log (`cox logs -p`).
            let previous = self.logPath(podUID: launch.podUID, container: launch.container, previous: true)
            if FileManager.default.fileExists(atPath: logPath) {
                _ = unlink(previous)
                _ = rename(logPath, previous)
            }
        }
        if let directory = launch.workingDirectory, !directory.isEmpty {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw RuntimeError("workingDir \(directory) of container \(launch.container) is not a directory")
            }
        }
        let pid = try spawn(launch, logPath: logPath)
        let container = RuntimeContainer(id: "process://\(pid)", launch: launch, startedAt: Date(), state: .running, logPath: logPath)
        let entry = Entry(container: container, pid: pid, startTicks: Self.startTicks(pid) ?? 0, isChild: true)
        entries.withLock { $0[container.id] = entry }
        do {
            // Durable before the container counts as started: an agent that restarts finds it
            // again instead of starting it twice.
            try persist(entry)
        } catch {
            entries.withLock { $0[container.id] = nil }
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            throw RuntimeError("cannot record container \(launch.container) for re-adoption (\(error)); it was stopped, not left running unrecorded")
        }
        logger.info("container started", metadata: ["pod": "\(launch.namespace)/\(launch.podName)", "container": "\(launch.container)", "pid": "\(pid)"])
        return container
    }

    /// Starts the container's process. With cgroups, it starts held: a shell waits on a pipe while
    /// the agent puts its PID into the container's cgroups, then execs the command (same PID) —
    /// so nothing the container runs or forks ever runs outside its limits.
    func spawn(_ launch: ContainerLaunch, logPath: String) throws -> pid_t {
        let executable = launch.argv[0]
        if !executable.contains("/") && Self.lookPath(executable, path: launch.environment["PATH"] ?? ProcessInfo.processInfo.environment["PATH"]) == nil {
            throw RuntimeError("cannot start container \(launch.container): executable file \"\(executable)\" not found in $PATH")
        }
        let held = cgroups.version != .none
        var gate: [Int32] = [-1, -1]
        if held {
            guard pipe(&gate) == 0, fcntl(gate[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(gate[1], F_SETFD, FD_CLOEXEC) == 0 else { throw RuntimeError("cannot create a pipe: \(String(cString: strerror(errno)))") }
        }
        defer { if held { close(gate[0]) } }
        let logFD = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard logFD >= 0 else { throw RuntimeError("cannot open log file \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(logFD) }
        var errorFD = logFD
        if let paths = launch.outputPaths, paths.count > 1 {
            errorFD = open(paths[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            guard errorFD >= 0 else { throw RuntimeError("cannot open log file \(paths[1]): \(String(cString: strerror(errno)))") }
        }
        defer { if errorFD != logFD { close(errorFD) } }
        let inputFD = try openInput(launch)
        defer { if inputFD >= 0 { close(inputFD) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if inputFD >= 0 {
            posix_spawn_file_actions_adddup2(&actions, inputFD, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, errorFD, 2)
        if let directory = launch.workingDirectory, !directory.isEmpty {
            _ = spawnAddChdir(&actions, directory)
        }
        // Nothing else of the agent's leaks into the container: an inherited descriptor (a pipe
        // the agent's own parent watches for EOF, a socket) would outlive the agent in the child.
        if held { posix_spawn_file_actions_adddup2(&actions, gate[0], 3) }
        _ = spawnAddCloseFrom(&actions, held ? 4 : 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own session (and so process group).
        spawnStartClean(&attributes, flags: 0x80 /* POSIX_SPAWN_SETSID */)

        // The pod's env over a minimal base (PATH and HOME), as a container runtime would give.
        var environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
                           "HOME": ProcessInfo.processInfo.environment["HOME"] ?? "/",
                           "HOSTNAME": launch.podName]
        for (key, value) in launch.environment { environment[key] = value }
        let command = held ? ["/bin/sh", "-c", "read -r _ <&3; exec 3<&-; exec \"$@\"", "sh"] + launch.argv : launch.argv
        let argv = command.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        // posix_spawnp searches the agent's PATH for a bare command name.
        let result = posix_spawnp(&pid, command[0], &actions, &attributes, argv, envp)
        guard result == 0 else {
            if held { close(gate[1]) }
            throw RuntimeError("cannot start \(launch.argv[0]) for container \(launch.container): \(String(cString: strerror(result)))")
        }
        if held {
            cgroups.place(pid: pid, name: Self.cgroupName(launch), memoryBytes: launch.memoryLimitBytes, cpuMillis: launch.cpuLimitMillis, maxPids: maxPids)
            _ = Glibc.write(gate[1], "g", 1)  // go
            close(gate[1])
        }
        return pid
    }

    /// The container's standard input when it asks for one (`stdin`): a FIFO that attach writes
    /// into, which outlives this runtime. With `stdinOnce` the container reads a read-only end
    /// and the runtime holds a write end until the first attach with stdin ends — then the
    /// container reads the end of its input, as in Kubernetes. Without it, the container holds a
    /// write end itself and never reads an end. -1: no stdin (/dev/null).
    func openInput(_ launch: ContainerLaunch) throws -> Int32 {
        guard let terminal = launch.terminal, terminal.stdin, let path = terminal.stdinPath else { return -1 }
        if mkfifo(path, 0o600) != 0 && errno != EEXIST {
            throw RuntimeError("cannot make the stdin of container \(launch.container) (\(path)): \(String(cString: strerror(errno)))")
        }
        let fd = open(path, (terminal.stdinOnce ? O_RDONLY | O_NONBLOCK : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw RuntimeError("cannot open the stdin of container \(launch.container): \(String(cString: strerror(errno)))") }
        if terminal.stdinOnce {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)  // the container's reads wait
            let writer = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if writer >= 0 { heldInputs.withLock { $0[path].map { _ = close($0) }; $0[path] = writer } }
        }
        return fd
    }

    /// The PID in a container id (`process://PID`).
    public static func pid(of id: String) -> pid_t? {
        id.hasPrefix("process://") ? pid_t(id.dropFirst("process://".count)) : nil
    }

    /// Lets a stdinOnce container read the end of its input (the first attach is over).
    public func releaseInput(_ path: String) {
        if let fd = heldInputs.withLock({ $0.removeValue(forKey: path) }) { close(fd) }
    }

    public func stop(id: String, grace: Duration) async {
        guard let entry = entries.withLock({ $0[id] }), entry.container.isRunning else { return }
        kill(-entry.pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            reap()
            if await status(id: id)?.isRunning != true { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        logger.info("grace period over: killing", metadata: ["container": "\(entry.container.launch.container)", "pid": "\(entry.pid)"])
        kill(-entry.pid, SIGKILL)
        kill(entry.pid, SIGKILL)
        for _ in 0..<200 {
            reap()
            if await status(id: id)?.isRunning != true { return }
            try? await Task.sleep(for: .milliseconds(25))
        }
    }

    public func status(id: String) async -> RuntimeContainer? {
        entries.withLock { $0[id]?.container }
    }

    public func list() async -> [RuntimeContainer] {
        entries.withLock { $0.values.map(\.container) }
    }

    /// The command on the host, in the container's environment and directory (its group killed
    /// at the timeout).
    public func execSync(id: String, command: [String], timeout: Duration) async throws -> (exitCode: Int32, stdout: Data, stderr: Data) {
        guard let container = await status(id: id), container.isRunning else { throw RuntimeError("container \(id) is not running") }
        guard !command.isEmpty else { throw RuntimeError("exec needs a command") }
        let result = try await HostExec.run(command, environment: container.launch.environment, directory: container.launch.workingDirectory,
                                            timeout: Double(max(1, timeout.components.seconds)))
        if result.timedOut { throw RuntimeError("command \(command) timed out after \(timeout)") }
        return (result.exitCode, result.stdout, result.stderr)
    }

    public func remove(id: String) async {
        guard let entry = entries.withLock({ $0.removeValue(forKey: id) }) else { return }
        if entry.container.isRunning { entries.withLock { $0[id] = entry }; return }
        _ = unlink(recordPath(entry.pid))
    }

    public func cleanup(podUID: String) async {
        let ids = entries.withLock { $0.filter { $0.value.container.launch.podUID == podUID && !$0.value.container.isRunning }.map(\.key) }
        for id in ids { await remove(id: id) }
        try? FileManager.default.removeItem(atPath: (root as NSString).appendingPathComponent("logs/\(podUID)"))
    }

    /// Where `name` is found on `path`, as execvp would.
    static func lookPath(_ name: String, path: String?) -> String? {
        for directory in (path ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// One cgroup per container instance's pod and name (a restart reuses it, after the old process is gone).
    static func cgroupName(_ launch: ContainerLaunch) -> String { "\(launch.podUID)_\(launch.container)" }

    // MARK: - Exits

    /// Collects exit statuses: waitpid for our children, liveness (and start time) for re-adopted ones.
    func reap() {
        let running = entries.withLock { $0.values.filter { $0.container.isRunning } }
        for entry in running {
            var state: RuntimeContainer.State?
            if entry.isChild {
                var status: Int32 = 0
                let result = waitpid(entry.pid, &status, WNOHANG)
                if result == entry.pid {
                    let signaled = (status & 0x7F) != 0
                    let signal = signaled ? status & 0x7F : 0
                    let code = signaled ? 128 + signal : (status >> 8) & 0xFF
                    let name = Self.cgroupName(entry.container.launch)
                    // The OOM killer may have hit the container's main process or a child (then the shell exits 137).
                    let reason = code != 0 && cgroups.oomKilled(name: name) ? "OOMKilled" : code == 0 ? "Completed" : "Error"
                    cgroups.remove(name: name)
                    state = .exited(exitCode: code, signal: signal, reason: reason, finishedAt: Date())
                } else if result < 0 && errno == ECHILD {
                    state = .exited(exitCode: 255, signal: 0, reason: "Unknown", finishedAt: Date())
                }
            } else if kill(entry.pid, 0) != 0 && errno == ESRCH || Self.startTicks(entry.pid) != entry.startTicks || Self.isZombie(entry.pid) {
                // Not our child: its exit status went to whoever reaped it.
                state = .exited(exitCode: 255, signal: 0, reason: "Unknown", finishedAt: Date())
            }
            guard let state else { continue }
            let id = entry.container.id
            let updated = entries.withLock { entries -> Entry? in
                entries[id]?.container.state = state
                return entries[id]
            }
            if let updated {
                do {
                    try persist(updated)
                } catch {
                    // The exit is known in memory (and reported); a restarted agent that finds the
                    // old record sees the process gone and reports it exited (Unknown).
                    logger.error("cannot record a container's exit", metadata: ["container": "\(id)", "error": "\(error)"])
                }
            }
            exitFeed.send(id)
        }
    }

    func rotateLogs() {
        let paths = entries.withLock { $0.values.filter { $0.container.isRunning }.map(\.container.logPath) }
        for path in paths {
            guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size > maxLogBytes else { continue }
            let rotated = path + ".1"
            _ = unlink(rotated)
            if (try? FileManager.default.copyItem(atPath: path, toPath: rotated)) != nil {
                _ = truncate(path, 0)
            }
        }
    }

    // MARK: - Records

    struct Record: Codable {
        var container: RuntimeContainer
        var pid: Int32
        var startTicks: UInt64
    }

    func recordPath(_ pid: pid_t) -> String { (recordsDirectory as NSString).appendingPathComponent("\(pid).json") }

    /// Writes the container's record durably: a temporary file, fsynced, renamed over the old
    /// one, and the directory fsynced (so the rename survives a power loss too).
    func persist(_ entry: Entry) throws {
        let record = Record(container: entry.container, pid: entry.pid, startTicks: entry.startTicks)
        let data = try JSONEncoder().encode(record)
        try Self.writeDurably(data, to: recordPath(entry.pid))
    }

    static func writeDurably(_ data: Data, to path: String) throws {
        func failure(_ what: String) -> RuntimeError { RuntimeError("\(what) \(path): \(String(cString: strerror(errno)))") }
        // A temporary of its own: two writers of one record (a container's exit seen by the
        // reaper and by a stop at once) each rename theirs; a shared name made one fail.
        let temporary = "\(path).\(UInt64.random(in: 0...UInt64.max)).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("cannot create") }
        let written = data.withUnsafeBytes { bytes -> Bool in
            var offset = 0
            while offset < bytes.count {
                let count = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if count < 0 { if errno == EINTR { continue }; return false }
                offset += count
            }
            return true
        }
        guard written, fsync(fd) == 0 else {
            let error = failure("cannot write")
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = failure("cannot rename into")
            unlink(temporary)
            throw error
        }
        let directory = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw failure("cannot open the directory of") }
        defer { close(directory) }
        guard fsync(directory) == 0 else { throw failure("cannot sync the directory of") }
    }

    /// Re-adopts containers recorded by an earlier agent: alive with the same start time → running
    /// (not our child); gone → exited with an unknown status.
    func loadRecords() {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: recordsDirectory)) ?? []
        var loaded: [String: Entry] = [:]
        for file in files where file.hasSuffix(".json") {
            let path = (recordsDirectory as NSString).appendingPathComponent(file)
            guard let data = FileManager.default.contents(atPath: path), var record = try? JSONDecoder().decode(Record.self, from: data) else {
                _ = unlink(path)
                continue
            }
            if record.container.isRunning && Self.startTicks(record.pid) != record.startTicks {
                record.container.state = .exited(exitCode: 255, signal: 0, reason: "Unknown", finishedAt: Date())
            }
            loaded[record.container.id] = Entry(container: record.container, pid: record.pid, startTicks: record.startTicks, isChild: false)
        }
        entries.withLock { $0 = loaded }
        let running = loaded.values.filter { $0.container.isRunning }.count
        if !loaded.isEmpty { logger.info("re-adopted containers", metadata: ["running": "\(running)", "exited": "\(loaded.count - running)"]) }
    }

    /// Exited but not yet reaped by its (new) parent: as good as gone.
    static func isZombie(_ pid: pid_t) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return false }
        return text[text.index(after: close)...].split(separator: " ").first == "Z"
    }

    /// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
    static func startTicks(_ pid: pid_t) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // Fields after the command name (which may contain spaces) start at field 3.
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }
}

/// Spawn attributes for a child that starts clean whatever its parent did: default handling of
/// every signal (an agent or a test process ignores SIGPIPE, and an ignored signal stays ignored
/// across exec), an empty signal mask, and `flags` besides.
public func spawnStartClean(_ attributes: inout posix_spawnattr_t, flags: Int32) {
    var none = sigset_t()
    sigemptyset(&none)
    var all = sigset_t()
    sigfillset(&all)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setsigdefault(&attributes, &all)
    posix_spawnattr_setflags(&attributes, Int16(flags | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
}

/// glibc's posix_spawn_file_actions_addchdir_np (2.29+), which the Glibc module does not export.
@_silgen_name("posix_spawn_file_actions_addchdir_np")
public func spawnAddChdir(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ path: UnsafePointer<CChar>) -> Int32

/// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+): close every descriptor from `low` up.
@_silgen_name("posix_spawn_file_actions_addclosefrom_np")
public func spawnAddCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ low: Int32) -> Int32
