import API
import Foundation
import ServiceLifecycle
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import PKI

/// The agent's own small HTTPS endpoint: `GET /containerLogs/NS/POD/CONTAINER?podUID=&tailLines=&follow=&previous=`,
/// and exec, attach and port-forward streams (AgentServerChannel.swift).
/// Only clients with a certificate from the cluster CA get past the TLS handshake, and only
/// superusers (`system:masters`: the API server, which checked the caller's RBAC for `pods/log`,
/// and admins) get logs: a node or a viewer cannot read other pods' output around RBAC. The
/// server's certificate is issued for the node's address.
public final class LogServer: Sendable {
    let runtime: any ContainerRuntime
    let tls: TLSConfiguration
    let host: String
    let requestedPort: Int
    let logger: Logger
    private let ports: AsyncStream<Int>
    private let portContinuation: AsyncStream<Int>.Continuation

    /// Issues the serving certificate from the cluster CA (an agent beside the server, holding
    /// its key).
    public convenience init(runtime: any ContainerRuntime, authority: CertificateAuthority, nodeName: String, address: String, port: Int, logger: Logger) throws {
        let isIP = CertificateAuthority.ipAddressBytes(address) != nil
        let serving = try authority.issue(commonName: NodeIdentity.user(nodeName), usage: .server(
            dnsNames: ["localhost", nodeName] + (isIP ? [] : [address]), ipAddresses: ["127.0.0.1", "::1"] + (isIP ? [address] : [])))
        try self.init(runtime: runtime, serving: serving, clientCAPEM: authority.certificatePEM, address: address, port: port, logger: logger)
    }

    /// Serves with `serving` (a joined node's, signed on request) and lets in clients with a
    /// certificate from the CA in `clientCAPEM`.
    public init(runtime: any ContainerRuntime, serving: KeyPair, clientCAPEM: String, address: String, port: Int, logger: Logger) throws {
        self.runtime = runtime
        self.host = address
        self.requestedPort = port
        self.logger = logger
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(serving.certificatePEM.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(serving.privateKeyPEM.utf8), format: .pem)))
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(clientCAPEM.utf8)))
        tls.certificateVerification = .noHostnameVerification  // a client certificate is required
        tls.minimumTLSVersion = .tlsv12
        self.tls = tls
        (ports, portContinuation) = AsyncStream<Int>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// The port it listens on, once it does.
    public func port() async -> Int {
        for await port in ports { return port }
        return 0
    }

    public func run() async throws {
        let router = Router(context: LogRequestContext.self)
        let runtime = self.runtime
        router.get("containerLogs/:namespace/:pod/:container") { request, context -> Response in
            guard try await LogServer.callerIsSuperuser(context.channel) else {
                return Response(status: .forbidden, headers: [.contentType: "text/plain"],
                                body: .init(byteBuffer: ByteBuffer(string: "only the API server (system:masters) may read logs here; use cox logs")))
            }
            let namespace = try context.parameters.require("namespace")
            let pod = try context.parameters.require("pod")
            let container = try context.parameters.require("container")
            let query = request.uri.queryParameters
            let previous = query["previous"] == "true" || query["previous"] == "1"
            let follow = query["follow"] == "true" || query["follow"] == "1"
            let tail = query["tailLines"].flatMap { Int(String($0)) }
            let timestamps = query["timestamps"] == "true" || query["timestamps"] == "1"
            let since: Date? = query["sinceTime"].flatMap { CRILog.parseTime(String($0).removingPercentEncoding ?? String($0)) }
                ?? query["sinceSeconds"].flatMap { Int(String($0)) }.map { Date().addingTimeInterval(-Double($0)) }
            let limitBytes = query["limitBytes"].flatMap { Int(String($0)) }
            let known = await runtime.list().filter { $0.launch.namespace == namespace && $0.launch.podName == pod && $0.launch.container == container }
            let uid = query["podUID"].map(String.init) ?? known.last?.launch.podUID ?? ""
            let path = runtime.logPath(podUID: uid, container: container, previous: previous)
            guard !uid.isEmpty, FileManager.default.fileExists(atPath: path) else {
                let what = previous ? "previous terminated container \"\(container)\" in pod \"\(pod)\" not found" : "container \"\(container)\" in pod \"\(pod)\" has not written a log yet"
                return Response(status: .notFound, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: what)))
            }
            let cri = runtime.logFormat == .cri
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: ResponseBody { writer in
                var budget = limitBytes ?? .max
                func send(_ bytes: Data) async throws -> Bool {
                    guard budget > 0 else { return false }
                    let part = bytes.prefix(budget)
                    budget -= part.count
                    if !part.isEmpty { try await writer.write(ByteBuffer(bytes: part)) }
                    return budget > 0
                }
                let data = FileManager.default.contents(atPath: path) ?? Data()
                // CRI records are whole lines: read up to the last newline; the rest comes with the next read.
                var offset = cri ? (data.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) : data.count
                let initial: Data
                if cri {
                    initial = CRILog.render(CRILog.lines(data.prefix(offset)), timestamps: timestamps, since: since, tail: tail)
                } else {
                    initial = Data(tail.map { LogServer.lastLines(data, $0) } ?? data[...])
                }
                var open = try await send(initial)
                // Follow: new output as it comes, until the container has stopped and nothing is
                // left. The file stays open, so output written just before a rotation (the file
                // renamed, a new one opened) is still read, then reading moves to the new file.
                var handle = FileHandle(forReadingAtPath: path)
                defer { try? handle?.close() }
                while follow && open && !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(250))
                    guard let current = handle else { break }
                    let size = Int((try? current.seekToEnd()) ?? 0)
                    if size < offset { offset = 0 }  // truncated: start over
                    if size > offset {
                        try current.seek(toOffset: UInt64(offset))
                        var chunk = current.readData(ofLength: size - offset)
                        if cri {
                            chunk = chunk.lastIndex(of: 0x0A).map { Data(chunk.prefix(through: $0)) } ?? Data()
                            offset += chunk.count
                            open = try await send(CRILog.render(CRILog.lines(chunk), timestamps: timestamps, since: since))
                        } else {
                            offset += chunk.count
                            open = try await send(chunk)
                        }
                        continue
                    }
                    var opened = stat(), named = stat()
                    if fstat(current.fileDescriptor, &opened) == 0, stat(path, &named) == 0, opened.st_ino != named.st_ino,
                       let next = FileHandle(forReadingAtPath: path) {
                        try? current.close()
                        handle = next
                        offset = 0
                        continue
                    }
                    let running = await runtime.list().contains { $0.launch.podUID == uid && $0.launch.container == container && $0.isRunning }
                    if !running { break }
                }
                try await writer.finish(nil)
            })
        }
        let continuation = portContinuation
        let (tls, logger) = (self.tls, self.logger)
        let app = Application(
            router: router,
            // TLS, then exec/attach/port-forward streams joined to the runtime, or HTTP/1.1 (logs).
            server: HTTPServerBuilder { responder in
                try AgentServerChannel(tls: tls, responder: responder, runtime: runtime, logger: logger)
            },
            configuration: .init(address: .hostname(host, port: requestedPort), serverName: "cox-agent"),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) },
            logger: logger)
        // Cancelled (the agent starts over with renewed certificates, or stops), the server shuts
        // down gracefully: connections in their handshake are closed, not cut (a cut logged
        // "Waiting on child channel: CancellationError()" as an error), streams end, and after
        // 5 s whatever is left is cancelled.
        var configuration = ServiceGroupConfiguration(services: [app], logger: logger)
        configuration.maximumGracefulShutdownDuration = .seconds(5)
        let group = ServiceGroup(configuration: configuration)
        let running = Task { try await group.run() }
        try await withTaskCancellationHandler {
            try await running.value
        } onCancel: {
            Task { await group.triggerGracefulShutdown() }
        }
    }

    /// Whether the TLS peer's certificate names a member of `system:masters`.
    static func callerIsSuperuser(_ channel: any Channel) async throws -> Bool {
        let der = try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate?.toDERBytes()
        }.get()
        guard let der else { return false }
        return try CertificateRequest.subject(der: der).organizations.contains("system:masters")
    }

    /// The last `count` lines of `data` (a trailing newline ends the last line, it does not start one).
    static func lastLines(_ data: Data, _ count: Int) -> Data.SubSequence {
        guard count >= 0 else { return data[...] }
        if count == 0 { return data[data.endIndex...] }
        var index = data.endIndex
        var seen = 0
        if index > data.startIndex, data[index - 1] == 0x0A { index -= 1 }
        while index > data.startIndex {
            if data[index - 1] == 0x0A {
                seen += 1
                if seen == count { break }
            }
            index -= 1
        }
        return data[index...]
    }
}

/// Hummingbird's request context plus the connection, for the TLS peer's certificate.
struct LogRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}
