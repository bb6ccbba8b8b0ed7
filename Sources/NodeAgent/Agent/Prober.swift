import API
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// Runs one probe attempt (exec, httpGet or tcpSocket) within its timeout. A TCP attempt runs on a
/// thread of its own (it blocks on a socket), never on the agent's async threads.
enum Prober {
    enum Kind: String, Sendable { case startup, liveness, readiness }

    /// One attempt: `exec` runs a command in the container (through the runtime) and says whether
    /// it exited with 0 in time; HTTP and TCP probes go to `host` (the pod's address, or the
    /// node's for pods on its network).
    static func run(_ probe: Probe, container: Container, host: String, exec: @Sendable ([String], Duration) async -> Bool) async -> Bool {
        let timeout = Double(max(probe.timeoutSeconds, 1))
        if probe.hasExec {
            return await exec(probe.exec.command, .seconds(Int64(max(probe.timeoutSeconds, 1))))
        }
        if probe.hasHTTPGet {
            let action = probe.httpGet
            guard let port = port(action.port, container) else { return false }
            return await httpGet(scheme: action.scheme, host: action.host.isEmpty ? host : action.host, port: port, path: action.path,
                                 headers: action.httpHeaders, timeout: timeout)
        }
        guard probe.hasTcpSocket else { return true }
        let target = probe.tcpSocket.host.isEmpty ? host : probe.tcpSocket.host
        guard let port = port(probe.tcpSocket.port, container) else { return false }
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let fd = connect(host: target, port: port, timeout: timeout)
                if fd >= 0 { close(fd) }
                continuation.resume(returning: fd >= 0)
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
