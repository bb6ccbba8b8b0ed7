import API
import Client
import Foundation
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket
import ServiceLifecycle

/// The agent's connections: TLS (a client certificate from the cluster CA required), then the
/// first request's head decides. `/exec/NS/POD/CONTAINER`, `/attach/NS/POD/CONTAINER` and
/// `/portForward/NS/POD` asking to upgrade (the API server proxies `pods/exec`, `pods/attach`
/// and `pods/portforward` here) are joined to the container runtime's streaming server, at the
/// URL its CRI Exec, Attach or PortForward answers, byte for byte: the runtime answers the
/// upgrade, in whichever protocol the client speaks (WebSocket or SPDY) it serves — or, when it
/// refuses kubectl's newer WebSocket protocols, the agent serves them and speaks SPDY to the
/// runtime (`StreamTranslation`). Everything else goes to the HTTP/1.1 handlers (logs).
struct AgentServerChannel: ServerChildChannel {
    enum Negotiated: Sendable {
        case http1(HTTP1Channel.Value)
        case upgrade(RawRequestHead, UpgradeSniffer)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    static let streamKinds: [String: StreamRequest.Kind] = ["exec": .exec, "attach": .attach, "portForward": .portForward]

    let sslContext: NIOSSLContext
    let http1: HTTP1Channel
    let runtime: any ContainerRuntime
    let logger: Logger

    init(tls: TLSConfiguration, responder: @escaping HTTPChannelHandler.Responder, runtime: any ContainerRuntime, logger: Logger) throws {
        sslContext = try NIOSSLContext(configuration: tls)
        http1 = HTTP1Channel(responder: responder, configuration: .init(idleTimeout: .seconds(90)))
        self.runtime = runtime
        self.logger = logger
    }

    @Sendable static func isStream(_ head: RawRequestHead) -> Bool {
        guard head.isUpgrade, let first = head.path.split(separator: "/").first else { return false }
        return streamKinds[String(first)] != nil
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
            try channel.pipeline.syncOperations.addHandler(HandshakeDeadline(limit: .seconds(10)))
            let sniffer = UpgradeSniffer(eventLoop: channel.eventLoop, takes: Self.isStream)
            try channel.pipeline.syncOperations.addHandler(sniffer)
            let negotiated = sniffer.sniffed.flatMap { [http1] sniffed -> EventLoopFuture<Negotiated> in
                switch sniffed {
                case .ordinary:
                    return http1.setup(channel: channel, logger: logger).map { value in
                        sniffer.handOn()
                        return .http1(value)
                    }
                case .upgrade(let head):
                    return channel.eventLoop.makeSucceededFuture(.upgrade(head, sniffer))
                }
            }
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        // Not Hummingbird's yet (no head read) or a stream: either ends on graceful shutdown.
        let channel = value.channel
        guard let negotiated = await withGracefulShutdownHandler(operation: { try? await value.negotiated.get() },
                                                                  onGracefulShutdown: { channel.close(promise: nil) }) else { return }
        switch negotiated {
        case .http1(let connection):
            await http1.handle(value: connection, logger: logger)
        case .upgrade(let head, let sniffer):
            await withGracefulShutdownHandler {
                await serveStream(head, sniffer: sniffer, channel: channel)
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
        }
    }

    /// A refusal in Kubernetes' shape (a Status), which the API server passes on as it is.
    struct Refusal: Error {
        let code: Int
        let reason: String
        let message: String
    }

    func serveStream(_ head: RawRequestHead, sniffer: UpgradeSniffer, channel: any Channel) async {
        do {
            try await proxy(head, sniffer: sniffer, channel: channel)
        } catch {
            let refusal = error as? Refusal ?? Refusal(code: 500, reason: "InternalError", message: "\(error)")
            if refusal.code == 500 { logger.warning("stream refused", metadata: ["path": "\(head.path)", "error": "\(error)"]) }
            var status = Status()
            status.apiVersion = "v1"
            status.kind = "Status"
            status.status = "Failure"
            status.message = refusal.message
            status.reason = refusal.reason
            status.code = Int32(refusal.code)
            let phrase = [400: "Bad Request", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway"][refusal.code] ?? "Error"
            let bytes = RawRequestHead.response(code: refusal.code, reason: phrase, contentType: "application/json", body: status.jsonBytes())
            try? await channel.writeAndFlush(ByteBuffer(bytes: bytes))
            try? await channel.close()
        }
    }

    private func proxy(_ head: RawRequestHead, sniffer: UpgradeSniffer, channel: any Channel) async throws {
        guard try await LogServer.callerIsSuperuser(channel) else {
            throw Refusal(code: 403, reason: "Forbidden", message: "only the API server (system:masters) may open streams here; use kubectl exec, attach or port-forward")
        }
        let segments = head.path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        guard let kind = Self.streamKinds[segments[0]], segments.count == (kind == .portForward ? 3 : 4) else {
            throw Refusal(code: 404, reason: "NotFound", message: "no such stream path: \(head.path)")
        }
        let (namespace, podName) = (segments[1], segments[2])
        let query = head.query
        func flag(_ names: String...) -> Bool? {
            for name in names { if let value = query.first(where: { $0.key == name })?.value { return value == "true" || value == "1" } }
            return nil
        }
        let podUID = query.first { $0.key == "podUID" }?.value ?? ""
        var request = StreamRequest(kind: kind)
        request.command = query.filter { $0.key == "command" }.map(\.value)
        request.stdin = flag("stdin", "input") ?? false
        request.stdout = flag("stdout", "output") ?? true
        request.tty = flag("tty") ?? false
        request.stderr = flag("stderr", "error") ?? !request.tty
        request.ports = query.filter { $0.key == "ports" || $0.key == "port" }.flatMap { $0.value.split(separator: ",") }.compactMap { Int32($0) }
        let containers = await runtime.list().filter { candidate in
            candidate.launch.namespace == namespace && candidate.launch.podName == podName
                && (podUID.isEmpty || candidate.launch.podUID == podUID)
        }
        if kind == .portForward {
            guard let any = containers.first(where: \.isRunning) ?? containers.first else {
                throw Refusal(code: 404, reason: "NotFound", message: "pod \"\(podName)\" has no sandbox on this node")
            }
            request.podUID = any.launch.podUID
        } else {
            let name = segments[3]
            guard let container = containers.filter({ $0.launch.container == name }).max(by: { $0.startedAt < $1.startedAt }) else {
                throw Refusal(code: 404, reason: "NotFound", message: "container not found (\"\(name)\")")
            }
            guard container.isRunning else {
                throw Refusal(code: 400, reason: "BadRequest", message: "container \(name) is not running in pod \(podName): it has exited")
            }
            if kind == .exec && request.command.isEmpty {
                throw Refusal(code: 400, reason: "BadRequest", message: "you must specify at least 1 command")
            }
            request.containerID = container.id
        }
        let (upstream, target, authority) = try await dialRuntime(request, on: channel.eventLoop)
        var forwarded = head
        forwarded.target = target
        forwarded.headers.removeAll { $0.name.lowercased() == "host" }
        forwarded.headers.insert(("Host", authority), at: 0)
        // The runtime's answer is read before anything is joined. A refusal (a runtime that does
        // not speak the protocol the client offers answers 403 and closes, with no length) of a
        // WebSocket protocol the agent can translate is served by the agent (see
        // `StreamTranslation`); any other goes back as a whole answer with a length, so the
        // client sees a failed upgrade at once (kubectl then falls back to SPDY).
        let (reader, answer) = try await askUpgrade(upstream, forwarded.serialized(), what: "the upgrade")
        guard answer.code == 101 else {
            upstream.close(promise: nil)
            if let translation = StreamTranslation(head, kind: kind) {
                // Refused what the client offered over WebSocket: the agent speaks it instead,
                // and SPDY to the runtime (a new URL: the refused one is spent).
                try await translate(translation, head: head, request: request, sniffer: sniffer, channel: channel)
                return
            }
            let text = answer.body.trimmingCharacters(in: .whitespacesAndNewlines)
            let offered = head.header("Sec-WebSocket-Protocol").map { " (offered: \($0))" } ?? ""
            throw Refusal(code: answer.code >= 400 && answer.code < 600 ? answer.code : 502, reason: answer.code == 403 ? "Forbidden" : "BadRequest",
                          message: text.isEmpty ? "the container runtime refused the upgrade\(offered): HTTP \(answer.code)" : text)
        }
        logger.debug("stream joined", metadata: ["pod": "\(namespace)/\(podName)", "kind": "\(kind.rawValue)"])
        try await withTaskCancellationHandler {
            try await SpliceHandler.join(channel, upstream, sniffer: sniffer, answer: reader).get()
        } onCancel: {
            channel.close(promise: nil)
            upstream.close(promise: nil)
        }
    }

    /// A connection to the runtime's streaming server, at a URL its CRI call answered for
    /// `request`, and the target and authority to ask it for.
    private func dialRuntime(_ request: StreamRequest, on eventLoop: any EventLoop) async throws -> (any Channel, target: String, authority: String) {
        let address: String
        do {
            address = try await runtime.streamURL(request)
        } catch {
            throw Refusal(code: 502, reason: "BadGateway", message: "\(error)")
        }
        guard let url = URL(string: address), let host = url.host, url.scheme == "http" || url.scheme == "https" else {
            throw Refusal(code: 502, reason: "BadGateway", message: "the runtime's streaming server answered a URL the agent cannot use: \(address)")
        }
        let port = url.port ?? (url.scheme == "https" ? 443 : 80)
        var tls: NIOSSLContext?
        if url.scheme == "https" {
            // A runtime serving streams over TLS does so with a certificate of its own making, on
            // the node; the agent reaches it locally and takes it as it is.
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            tls = try NIOSSLContext(configuration: configuration)
        }
        do {
            let upstream = try await StreamDialer.connect(host: host, port: port, tls: tls, on: eventLoop)
            let path = url.path.isEmpty ? "/" : url.path
            return (upstream, path + (url.query.map { "?" + $0 } ?? ""), "\(host):\(port)")
        } catch {
            throw Refusal(code: 502, reason: "BadGateway", message: "cannot reach the runtime's streaming server at \(host):\(port): \(error)")
        }
    }

    /// Sends an upgrade request to the runtime's streaming server and reads its answer (the
    /// reader keeps every byte for whoever goes on with the connection). Closes it on failure.
    private func askUpgrade(_ upstream: any Channel, _ request: [UInt8], what: String) async throws -> (ResponseHeadReader, ResponseHeadReader.Answer) {
        let reader = ResponseHeadReader(eventLoop: upstream.eventLoop)
        do {
            try await upstream.pipeline.addHandler(reader).get()
            try await upstream.writeAndFlush(ByteBuffer(bytes: request))
            let answer = try await withTaskCancellationHandler {
                try await reader.answer.get()
            } onCancel: {
                upstream.close(promise: nil)
            }
            return (reader, answer)
        } catch {
            upstream.close(promise: nil)
            throw Refusal(code: 502, reason: "BadGateway", message: "the runtime's streaming server did not answer \(what): \(error)")
        }
    }

    /// Serves the client's WebSocket protocol and speaks SPDY to the runtime (`StreamTranslation`).
    private func translate(_ translation: StreamTranslation, head: RawRequestHead, request: StreamRequest, sniffer: UpgradeSniffer, channel: any Channel) async throws {
        let (upstream, target, authority) = try await dialRuntime(request, on: channel.eventLoop)
        let (reader, answer) = try await askUpgrade(upstream, translation.runtimeRequest(target: target, host: authority), what: "a SPDY upgrade")
        guard answer.code == 101 else {
            upstream.close(promise: nil)
            let text = answer.body.trimmingCharacters(in: .whitespacesAndNewlines)
            throw Refusal(code: 502, reason: "BadGateway",
                          message: "the container runtime refused both \(translation.clientProtocol) and SPDY (\(translation.runtimeProtocol)): HTTP \(answer.code)\(text.isEmpty ? "" : ": " + text)")
        }
        let response = StreamTranslation.acceptingResponse(key: head.header("sec-websocket-key") ?? "", subprotocol: translation.clientProtocol)
        let logger = logger
        try await channel.eventLoop.submit {
            let bridge = TranslatingBridge(translation, logger: logger)
            // The 101 goes out as bytes, before the frame encoder is in place.
            channel.writeAndFlush(ByteBuffer(bytes: response), promise: nil)
            let client = channel.pipeline.syncOperations
            try client.addHandler(WebSocketFrameEncoder())
            try client.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)))
            try client.addHandler(TranslatedClientEnd(bridge))
            let runtime = upstream.pipeline.syncOperations
            if translation == .remoteCommand {
                try runtime.addHandler(ByteToMessageHandler(SPDYFrameDecoder()))
                try runtime.addHandler(TranslatedRuntimeEnd<SPDYFrame>(bridge, request: request) { $0.fromRuntime(frame: $1) })
            } else {
                try runtime.addHandler(TranslatedRuntimeEnd<ByteBuffer>(bridge, request: request) { $0.fromRuntime(bytes: $1) })
            }
            // What either side sent after its head goes through the new handlers.
            sniffer.handOn()
            reader.handOnAfterHead()
        }.get()
        logger.info("serving \(translation.clientProtocol) for a runtime that speaks it only as SPDY", metadata: ["kind": "\(request.kind.rawValue)"])
        try await withTaskCancellationHandler {
            try await channel.closeFuture.and(upstream.closeFuture).get()
        } onCancel: {
            channel.close(promise: nil)
            upstream.close(promise: nil)
        }
    }
}
