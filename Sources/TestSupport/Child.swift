import Foundation
import NodeAgent
import Synchronization

/// A process the tests start (a `cox` component, curl, openssl), spawned so that it inherits
/// nothing but its three standard descriptors, and reaped by a thread of its own.
///
/// Foundation's `Process` is not safe for this when tests run in parallel: it closes the parent's
/// other descriptors in the child from a list taken before the spawn, so a pipe or socket another
/// test opens meanwhile leaks into this child. It learns of a child's exit from EOF on a socket
/// the child inherits — so a leaked end held by another test's long-lived server or agent hides the
/// exit until that process ends, and a read of a leaked pipe never ends. Two tests waiting on each
/// other's leaks hung a whole CI run. Here every descriptor this file creates is close-on-exec, the
/// child closes everything above 2 before it execs, and the exit comes from `waitpid`.
public final class Child: Sendable {
    /// Where a standard stream goes.
    public enum Sink: Sendable {
        case null
        /// A pipe whose read end is `output` (standard output only).
        case pipe
        /// Appended to this file.
        case file(String)
        /// Standard error only: wherever standard output goes.
        case stdout
    }

    public let pid: pid_t
    /// The read end of standard output, with `stdout: .pipe`.
    public let output: FileHandle?
    /// The write end of standard input, with `stdin: true` (otherwise it reads /dev/null).
    public let input: FileHandle?

    /// How the child ended, and who waits for it; filled in by the reaper thread.
    private final class Exit: Sendable {
        struct State {
            var status: Int32?
            var waiters: [CheckedContinuation<Void, Never>] = []
            var blocked: [DispatchSemaphore] = []
        }
        let state = Mutex(State())

        func reap(_ pid: pid_t) {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let (waiters, blocked) = state.withLock { state in
                state.status = status
                defer { (state.waiters, state.blocked) = ([], []) }
                return (state.waiters, state.blocked)
            }
            waiters.forEach { $0.resume() }
            blocked.forEach { $0.signal() }
        }
    }
    private let exit: Exit

    public init(_ executable: String, _ arguments: [String], directory: String? = nil, environment: [String: String]? = nil,
                stdout: Sink = .null, stderr: Sink = .null, stdin: Bool = false) throws {
        // On the heap: the spawning thread reads it.
        let actions = UnsafeMutablePointer<posix_spawn_file_actions_t>.allocate(capacity: 1)
        posix_spawn_file_actions_init(actions)
        defer {
            posix_spawn_file_actions_destroy(actions)
            actions.deallocate()
        }
        var toClose: [Int32] = []
        defer { toClose.forEach { close($0) } }

        var inputEnd: FileHandle?
        if stdin {
            let (read, write) = try Self.pipe()
            posix_spawn_file_actions_adddup2(actions, read, 0)
            toClose.append(read)
            inputEnd = FileHandle(fileDescriptor: write, closeOnDealloc: true)
        } else {
            posix_spawn_file_actions_addopen(actions, 0, "/dev/null", O_RDONLY, 0)
        }
        var outputEnd: FileHandle?
        for (fd, sink) in [(Int32(1), stdout), (Int32(2), stderr)] {
            switch sink {
            case .null:
                posix_spawn_file_actions_addopen(actions, fd, "/dev/null", O_WRONLY, 0)
            case .pipe:
                precondition(fd == 1, "only standard output can be a pipe")
                let (read, write) = try Self.pipe()
                posix_spawn_file_actions_adddup2(actions, write, fd)
                toClose.append(write)
                outputEnd = FileHandle(fileDescriptor: read, closeOnDealloc: true)
            case .file(let path):
                let file = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                guard file >= 0 else { throw ChildError("cannot open \(path): \(String(cString: strerror(errno)))") }
                posix_spawn_file_actions_adddup2(actions, file, fd)
                toClose.append(file)
            case .stdout:
                precondition(fd == 2, "standard output cannot follow itself")
                posix_spawn_file_actions_adddup2(actions, 1, 2)
            }
        }
        if let directory { _ = spawnAddChdir(actions, directory) }
        _ = spawnAddCloseFrom(actions, 3)

        var variables = ProcessInfo.processInfo.environment
        for (key, value) in environment ?? [:] { variables[key] = value }
        // Tied to the test process: through setpriv, the child asks for SIGKILL when the thread
        // that spawned it ends (PR_SET_PDEATHSIG, which posix_spawn cannot set). That thread is
        // the child's own reaper, which lives until the child has exited, so the signal comes
        // only when the whole test process is gone — killed, crashed or timed out — and a
        // server, agent or peer it started does not outlive it holding ports and files.
        let command = [executable] + arguments
        let argv = (Self.deathSignal.map { [$0, "--pdeathsig", "KILL", "--"] + command } ?? command).map { strdup($0) } + [nil]
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        // What setpriv would report only as its own exit status: a tool that is not there.
        if !executable.contains("/"), Tools.find(executable) == nil {
            throw ChildError("cannot start \(executable): \(String(cString: strerror(ENOENT)))")
        }
        let program = Self.deathSignal ?? executable
        let exit = Exit()
        let started = DispatchSemaphore(value: 0)
        let spawned = Mutex<Result<pid_t, ChildError>>(.failure(ChildError("not started")))
        nonisolated(unsafe) let request = (actions: actions, argv: argv, envp: envp)
        Thread {
            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            // Its own process group (a test's Ctrl-C is not the child's).
            posix_spawnattr_setpgroup(&attributes, 0)
            spawnStartClean(&attributes, flags: Int32(POSIX_SPAWN_SETPGROUP))
            var pid: pid_t = 0
            let result = posix_spawnp(&pid, program, request.actions, &attributes, request.argv, request.envp)
            spawned.withLock { $0 = result == 0 ? .success(pid) : .failure(ChildError("cannot start \(executable): \(String(cString: strerror(result)))")) }
            started.signal()
            if result == 0 { exit.reap(pid) }
        }.start()
        started.wait()
        pid = try spawned.withLock { $0 }.get()
        self.exit = exit
        output = outputEnd
        input = inputEnd
    }

    /// setpriv(1) (util-linux), when this machine has it.
    private static let deathSignal: String? = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }

    private static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard pipe2(&fds, O_CLOEXEC) == 0 else { throw ChildError("cannot create a pipe: \(String(cString: strerror(errno)))") }
        return (fds[0], fds[1])
    }

    public var isRunning: Bool { exit.state.withLock { $0.status == nil } }

    /// Sends `signal` to the child.
    public func signal(_ signal: Int32) { kill(pid, signal) }

    /// Waits until the child has exited; with `killAfter`, SIGKILLs it once that many seconds have
    /// passed (a child that ignores its signal fails its test instead of hanging it).
    public func wait(killAfter: Double? = nil) async {
        let watchdog = DispatchWorkItem { [pid] in kill(pid, SIGKILL) }
        if let killAfter { DispatchQueue.global().asyncAfter(deadline: .now() + killAfter, execute: watchdog) }
        defer { watchdog.cancel() }
        await withCheckedContinuation { continuation in
            let exited = exit.state.withLock { state in
                if state.status == nil { state.waiters.append(continuation) }
                return state.status != nil
            }
            if exited { continuation.resume() }
        }
    }

    /// Blocks this thread until the child has exited (for a thread of one's own, not an async task).
    public func waitBlocking() {
        let exited = DispatchSemaphore(value: 0)
        let done = exit.state.withLock { state in
            if state.status == nil { state.blocked.append(exited) }
            return state.status != nil
        }
        if !done { exited.wait() }
    }

    /// The exit code, or the number of the signal that ended it (as Foundation's `Process` has it).
    public var terminationStatus: Int32 {
        let status = exit.state.withLock { $0.status } ?? 0
        return Self.signalled(status) ? status & 0x7f : (status >> 8) & 0xff
    }

    /// Whether a signal ended it.
    public var terminatedBySignal: Bool { Self.signalled(exit.state.withLock { $0.status } ?? 0) }

    private static func signalled(_ status: Int32) -> Bool { status & 0x7f != 0 && status & 0x7f != 0x7f }
}

public struct ChildError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// pipe2(2), which the Glibc module does not export (it needs _GNU_SOURCE).
@_silgen_name("pipe2")
private func pipe2(_ fds: UnsafeMutablePointer<Int32>, _ flags: Int32) -> Int32
