import API
import Foundation

/// Runs one probe attempt (exec, httpGet or tcpSocket) within its timeout. Each attempt runs on a
/// thread of its own: probes block on sockets and processes, never on the agent's async threads.
enum Prober {
    enum Kind: String, Sendable { case startup, liveness, readiness }

    static func run(_ probe: Probe, container: Container, launch: ContainerLaunch, host: String) async -> Bool {
        let timeout = Double(max(probe.timeoutSeconds, 1))
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let result: Bool
                if probe.hasExec {
                    result = exec(probe.exec.command, launch: launch, timeout: timeout)
                } else if probe.hasHTTPGet {
                    let target = probe.httpGet.host.isEmpty ? host : probe.httpGet.host
                    result = port(probe.httpGet.port, container).map { httpGet(host: target, port: $0, path: probe.httpGet.path, headers: probe.httpGet.httpHeaders, timeout: timeout) } ?? false
                } else if probe.hasTcpSocket {
                    let target = probe.tcpSocket.host.isEmpty ? host : probe.tcpSocket.host
                    result = port(probe.tcpSocket.port, container).map { connect(host: target, port: $0, timeout: timeout) >= 0 ? true : false } ?? false
                } else {
                    result = true
                }
                continuation.resume(returning: result)
            }
        }
    }

    /// A port number, or a named port of the container.
    static func port(_ value: IntOrString, _ container: Container) -> Int? {
        switch value.value {
        case .intVal(let number)?: return Int(number)
        case .strVal(let name)?: return container.ports.first { $0.name == name }.map { Int($0.containerPort) } ?? Int(name)
        case nil: return nil
        }
    }

    /// The command in the container's environment and directory; success is exit status 0. It
    /// runs in a process group of its own: on timeout the whole group is killed, so a probe that
    /// started children (a shell pipeline, a background job) leaves none behind.
    static func exec(_ command: [String], launch: ContainerLaunch, timeout: Double) -> Bool {
        guard let first = command.first else { return false }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        spawnStartClean(&attributes, flags: Int32(POSIX_SPAWN_SETPGROUP))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in [Int32(0), 1, 2] { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
        _ = spawnAddCloseFrom(&actions, 3)
        if let directory = launch.workingDirectory { _ = directory.withCString { spawnAddChdir(&actions, $0) } }
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in launch.environment { environment[key] = value }
        let argv = command.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        guard posix_spawnp(&pid, first, &actions, &attributes, argv, envp) == 0 else { return false }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid { break }
            if reaped < 0 && errno != EINTR { return false }
            if Date() >= deadline {
                kill(-pid, SIGKILL)  // the group: the command and whatever it started
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                return false
            }
            usleep(10_000)
        }
        // Exited normally with status 0 (WIFEXITED && WEXITSTATUS == 0).
        return status & 0x7f == 0 && (status >> 8) & 0xff == 0
    }

    /// A connected socket (caller closes) or -1, within `timeout`.
    static func connect(host: String, port: Int, timeout: Double) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &results) == 0, let first = results else { return -1 }
        defer { freeaddrinfo(results) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard Glibc.connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            close(fd)
            return -1
        }
        return fd
    }

    /// GET; a status from 200 to 399 is success, as in Kubernetes.
    static func httpGet(host: String, port: Int, path: String, headers: [HTTPHeader], timeout: Double) -> Bool {
        let fd = connect(host: host, port: port, timeout: timeout)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var request = "GET \(path.isEmpty ? "/" : path) HTTP/1.0\r\nHost: \(host):\(port)\r\nUser-Agent: cox-probe/\(CoxVersion.version)\r\n"
        for header in headers { request += "\(header.name): \(header.value)\r\n" }
        request += "\r\n"
        let bytes = Array(request.utf8)
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = recv(fd, &buffer, buffer.count, 0)
        guard count >= 12 else { return false }
        // "HTTP/1.x NNN"
        let line = String(decoding: buffer[0..<count], as: UTF8.self)
        let parts = line.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let code = Int(parts[1]) else { return false }
        return (200..<400).contains(code)
    }
}
