import Crypto
import Foundation

/// Runs a command on the host (the process runtime's ExecSync): in its own process group, with
/// the given environment over PATH and HOME and the given directory, output captured up to 16 MiB
/// per stream (the rest is read and dropped, as CRI runtimes do), killed with its group at the
/// timeout.
enum HostExec {
    struct Outcome: Sendable {
        var exitCode: Int32
        var stdout: Data
        var stderr: Data
        var timedOut: Bool
    }

    static let captureLimit = 16 * 1024 * 1024

    static func run(_ command: [String], environment: [String: String], directory: String?, timeout: Double?) async throws -> Outcome {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Swift.Result(catching: { try runBlocking(command, environment: environment, directory: directory, timeout: timeout) }))
            }
        }
    }

    static func runBlocking(_ command: [String], environment: [String: String], directory: String?, timeout: Double?) throws -> Outcome {
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        guard pipe(&outPipe) == 0, pipe(&errPipe) == 0 else { throw RuntimeError("cannot create a pipe: \(String(cString: strerror(errno)))") }
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        spawnStartClean(&attributes, flags: Int32(POSIX_SPAWN_SETPGROUP))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        _ = spawnAddCloseFrom(&actions, 3)
        if let directory, !directory.isEmpty { _ = directory.withCString { spawnAddChdir(&actions, $0) } }
        let argv = command.map { strdup($0) } + [nil]
        let envp = Self.environment(environment)
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, command[0], &actions, &attributes, argv, envp)
        close(outPipe[1])
        close(errPipe[1])
        defer {
            close(outPipe[0])
            close(errPipe[0])
        }
        if spawned != 0 {
            return Outcome(exitCode: 127, stdout: Data(), stderr: Data("exec: \"\(command[0])\": \(String(cString: strerror(spawned)))\n".utf8), timedOut: false)
        }
        var outputs = [Data(), Data()]
        var open = [true, true]
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var timedOut = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        while open[0] || open[1] {
            var fds = [pollfd(fd: open[0] ? outPipe[0] : -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: open[1] ? errPipe[0] : -1, events: Int16(POLLIN), revents: 0)]
            let wait = deadline.map { max(0, Int32($0.timeIntervalSinceNow * 1000)) } ?? 1000
            let ready = poll(&fds, 2, min(wait, 1000))
            if ready < 0 && errno != EINTR { break }
            for index in 0..<2 where open[index] && fds[index].revents != 0 {
                let count = read(fds[index].fd, &buffer, buffer.count)
                if count <= 0 {
                    open[index] = false
                } else if outputs[index].count < captureLimit {
                    outputs[index].append(contentsOf: buffer[0..<min(count, captureLimit - outputs[index].count)])
                }
            }
            if let deadline, Date() >= deadline {
                kill(-pid, SIGKILL)
                timedOut = true
                break
            }
        }
        return Outcome(exitCode: Self.wait(pid), stdout: outputs[0], stderr: outputs[1], timedOut: timedOut)
    }

    /// A command's environment for posix_spawn (each entry `strdup`ed, nil-terminated; the caller
    /// frees them): PATH and HOME from here, then `variables` over them.
    static func environment(_ variables: [String: String]) -> [UnsafeMutablePointer<CChar>?] {
        var merged = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
                      "HOME": ProcessInfo.processInfo.environment["HOME"] ?? "/"]
        for (key, value) in variables { merged[key] = value }
        return merged.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
    }

    /// Waits for `pid` (blocking: a thread of its own) and answers its exit code, 128+N for signal N.
    static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signaled = (status & 0x7F) != 0
        return signaled ? 128 + (status & 0x7F) : (status >> 8) & 0xFF
    }
}

enum SHA256Hex {
    static func of(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
