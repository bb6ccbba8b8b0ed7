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

    /// The command in the container's environment and directory; success is exit status 0.
    static func exec(_ command: [String], launch: ContainerLaunch, timeout: Double) -> Bool {
        guard let first = command.first else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: first.contains("/") ? first : "/usr/bin/env")
        process.arguments = first.contains("/") ? Array(command.dropFirst()) : command
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in launch.environment { environment[key] = value }
        process.environment = environment
        if let directory = launch.workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return false }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return false
        }
        return process.terminationStatus == 0
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
