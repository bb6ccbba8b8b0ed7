import API
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// Runs one probe attempt (exec, httpGet or tcpSocket) within its timeout. Each attempt runs on a
/// thread of its own: probes block on sockets and processes, never on the agent's async threads.
enum Prober {
    enum Kind: String, Sendable { case startup, liveness, readiness }

    static func run(_ probe: Probe, container: Container, launch: ContainerLaunch, host: String) async -> Bool {
        let timeout = Double(max(probe.timeoutSeconds, 1))
        if probe.hasHTTPGet {
            let action = probe.httpGet
            guard let port = port(action.port, container) else { return false }
            return await httpGet(scheme: action.scheme, host: action.host.isEmpty ? host : action.host, port: port, path: action.path,
                                 headers: action.httpHeaders, timeout: timeout)
        }
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let result: Bool
                if probe.hasExec {
                    result = exec(probe.exec.command, launch: launch, timeout: timeout)
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

    /// The client HTTP probes use: HTTPS without verifying the certificate (as the kubelet
    /// probes: a pod's certificate is rarely one the node could verify), no redirects followed
    /// (a redirect's own status counts), one for the process.
    static let httpClient: HTTPClient = {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow)
        configuration.decompression = .disabled
        configuration.tracing.tracer = nil
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Most of a probe's response body read (the kubelet reads 10 KiB); the rest is dropped.
    static let maxProbeBody = 10 * 1024

    /// GET over HTTP or HTTPS (`scheme`, default HTTP) with the probe's headers; a status from
    /// 200 to 399 is success, as in Kubernetes. A `Host` header replaces the default one.
    static func httpGet(scheme: String, host: String, port: Int, path: String, headers: [HTTPHeader], timeout: Double) async -> Bool {
        let secure = scheme.uppercased() == "HTTPS"
        let urlHost = host.contains(":") ? "[\(host)]" : host
        let target = path.isEmpty ? "/" : (path.hasPrefix("/") ? path : "/" + path)
        var request = HTTPClientRequest(url: "\(secure ? "https" : "http")://\(urlHost):\(port)\(target)")
        request.method = .GET
        request.headers.add(name: "User-Agent", value: "cox-probe/\(CoxVersion.version)")
        request.headers.add(name: "Accept", value: "*/*")
        for header in headers {
            if header.name.lowercased() == "user-agent" || header.name.lowercased() == "accept" { request.headers.remove(name: header.name) }
            request.headers.add(name: header.name, value: header.value)
        }
        do {
            let response = try await httpClient.execute(request, timeout: .nanoseconds(Int64(timeout * 1e9)))
            _ = try? await response.body.collect(upTo: maxProbeBody)
            return (200..<400).contains(Int(response.status.code))
        } catch {
            return false
        }
    }
}
