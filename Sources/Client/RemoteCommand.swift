import API
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization

/// `pods/exec` as kubectl ≥ 1.30 speaks it: a WebSocket (`v5.channel.k8s.io`, else
/// `v4.channel.k8s.io`) over its own HTTP/1.1 connection; binary messages whose first byte is
/// the stream (0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 terminal size, 255 close a
/// stream). The answer is the command's exit code.
public struct RemoteCommand: Sendable {
    public var namespace: String
    public var pod: String
    public var container: String?
    public var command: [String]
    public var stdin = false
    public var tty = false
    /// `pods/attach` instead: the container's own streams from now on (no command).
    public var attach = false

    public init(namespace: String, pod: String, container: String?, command: [String]) {
        self.namespace = namespace
        self.pod = pod
        self.container = container
        self.command = command
    }

    static let protocols = ["v5.channel.k8s.io", "v4.channel.k8s.io"]

    var target: String {
        let safe = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
        func escape(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: safe) ?? text }
        var query = attach ? [] : command.map { "command=\(escape($0))" }
        if let container { query.append("container=\(escape(container))") }
        query += ["stdin=\(stdin)", "stdout=true", "stderr=\(!tty)", "tty=\(tty)"]
        return "/api/v1/namespaces/\(escape(namespace))/pods/\(escape(pod))/\(attach ? "attach" : "exec")?" + query.joined(separator: "&")
    }
}

/// The two ends of a running remote command for its caller.
public struct RemoteSession: Sendable {
    let channel: any Channel
    let v5: Bool

    /// Sends bytes to the command's stdin.
    public func write(_ bytes: [UInt8]) {
        send(stream: 0, bytes)
    }

    /// Ends the command's stdin (v5; over v4 there is no way to say it but closing everything).
    public func closeInput() {
        if v5 { send(stream: 255, [0]) }
    }

    /// Tells the command's terminal its size.
    public func resize(width: Int, height: Int) {
        send(stream: 4, Array("{\"Width\":\(width),\"Height\":\(height)}".utf8))
    }

    func send(stream: UInt8, _ bytes: [UInt8]) {
        var buffer = channel.allocator.buffer(capacity: bytes.count + 1)
        buffer.writeInteger(stream)
        buffer.writeBytes(bytes)
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .binary, maskKey: .random(), data: buffer), promise: nil)
    }
}

extension APIClient {
    /// Runs `command`: `output` gets each chunk of stdout (1) and stderr (2) as it comes; `started`
    /// gets the session once the stream is open (to write stdin, resize). Returns the exit code.
    public func exec(_ command: RemoteCommand, started: @escaping @Sendable (RemoteSession) -> Void = { _ in },
                     output: @escaping @Sendable (_ stream: UInt8, _ bytes: ByteBuffer) -> Void) async throws -> Int32 {
        guard let url = URL(string: server), let host = url.host else {
            throw ClientError(code: 0, reason: "BadConfig", message: "the server \(server) is not a URL")
        }
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let port = url.port ?? 443
        var tls = tlsConfiguration
        tls.applicationProtocols = ["http/1.1"]
        tls.shutdownTimeout = .milliseconds(200)
        let context = try NIOSSLContext(configuration: tls)
        let isIP = bare.contains(":") || bare.split(separator: ".").allSatisfy { Int($0) != nil }
        return try await RemoteCommand.stream(host: bare, port: port, target: command.target, tls: context, serverHostname: isIP ? nil : bare,
                                              headers: credentialHeaders, connectTimeout: connectTimeout, started: started, output: output)
    }
}

extension RemoteCommand {
    /// Speaks the remote-command protocol over WebSocket to `target` on `host:port` (TLS with
    /// `tls`, plain TCP without): what `APIClient.exec` does against the API server, and what a
    /// test does against a runtime's streaming URL. Returns the exit code.
    public static func stream(host: String, port: Int, target: String, tls: NIOSSLContext?, serverHostname: String? = nil,
                              headers extra: [(name: String, value: String)] = [], connectTimeout: TimeAmount = .seconds(5),
                              started: @escaping @Sendable (RemoteSession) -> Void = { _ in },
                              output: @escaping @Sendable (_ stream: UInt8, _ bytes: ByteBuffer) -> Void) async throws -> Int32 {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: serverHostname)) }
                }
            }
            .connect(host: host, port: port).get()
        var keyBytes = [UInt8](repeating: 0, count: 16)
        for index in keyBytes.indices { keyBytes[index] = UInt8.random(in: 0...255) }
        let key = Data(keyBytes).base64EncodedString()
        let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        var headers: [(name: String, value: String)] = [
            ("Host", authority), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Protocol", protocols.joined(separator: ", ")),
        ]
        headers += extra
        let head = RawRequestHead(method: "GET", target: target, headers: headers)
        let done = channel.eventLoop.makePromise(of: Int32.self)
        let handshake = WebSocketHandshakeHandler(done: done, started: started, output: output)
        try await channel.pipeline.addHandler(handshake).get()
        try await channel.writeAndFlush(ByteBuffer(bytes: head.serialized()))
        return try await withTaskCancellationHandler {
            try await done.futureResult.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

/// Reads the answer to the upgrade: 101 puts the WebSocket in place; anything else fails with
/// the Status the server sent.
final class WebSocketHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let done: EventLoopPromise<Int32>
    let started: @Sendable (RemoteSession) -> Void
    let output: @Sendable (UInt8, ByteBuffer) -> Void
    private var buffered = ByteBuffer()
    private var head: (code: Int, headers: [(String, String)])?

    init(done: EventLoopPromise<Int32>, started: @escaping @Sendable (RemoteSession) -> Void, output: @escaping @Sendable (UInt8, ByteBuffer) -> Void) {
        self.done = done
        self.started = started
        self.output = output
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffered.writeBuffer(&bytes)
        if head == nil {
            let view = buffered.readableBytesView
            guard let end = UpgradeSniffer.endOfHead(view) else { return }
            let text = String(decoding: view[view.startIndex..<end], as: UTF8.self)
            buffered.moveReaderIndex(forwardBy: end + 4 - view.startIndex)
            var lines = text.components(separatedBy: "\r\n")
            let status = lines.removeFirst().split(separator: " ")
            let code = status.count > 1 ? Int(status[1]) ?? 0 : 0
            let headers = lines.compactMap { line -> (String, String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            }
            head = (code, headers)
            if code == 101 {
                let chosen = headers.first { $0.0 == "sec-websocket-protocol" }?.1 ?? ""
                let v5 = chosen == RemoteCommand.protocols[0]
                let rest = buffered
                buffered = ByteBuffer()
                do {
                    let sync = context.pipeline.syncOperations
                    try sync.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 16 << 20)), position: .after(self))
                    try sync.addHandler(WebSocketFrameEncoder(), position: .last)
                    try sync.addHandler(NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 4096, maxAccumulatedFrameSize: 16 << 20), position: .last)
                    try sync.addHandler(RemoteCommandHandler(done: done, output: output), position: .last)
                } catch {
                    done.fail(error)
                    context.close(promise: nil)
                    return
                }
                started(RemoteSession(channel: context.channel, v5: v5))
                // What came with the answer (the first messages, maybe all of them) goes on
                // before this handler leaves: a removed handler's context passes nothing on.
                if rest.readableBytes > 0 {
                    context.fireChannelRead(wrapInboundOut(rest))
                    context.fireChannelReadComplete()
                }
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                return
            }
        }
        // Not upgraded: the body (a Status, usually) says why; once it is all here, fail.
        if let head, let length = head.headers.first(where: { $0.0 == "content-length" }).flatMap({ Int($0.1) }), buffered.readableBytes >= length {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(ClientError.upgradeFailed(code: head?.code, body: buffered))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        done.fail(error)
        context.close(promise: nil)
    }
}

/// The remote command's messages: output to the caller, the Status at the end.
final class RemoteCommandHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let done: EventLoopPromise<Int32>
    let output: @Sendable (UInt8, ByteBuffer) -> Void
    private var outcome: Result<Int32, any Error>?

    init(done: EventLoopPromise<Int32>, output: @escaping @Sendable (UInt8, ByteBuffer) -> Void) {
        self.done = done
        self.output = output
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .text:
            var payload = frame.unmaskedData
            guard let stream = payload.readInteger(as: UInt8.self) else { return }
            switch stream {
            case 1, 2: if payload.readableBytes > 0 { output(stream, payload) }
            case 3: outcome = Self.outcome(of: payload)
            default: break
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            var data = context.channel.allocator.buffer(capacity: 2)
            data.write(webSocketErrorCode: .normalClosure)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data))).whenComplete { _ in
                context.close(promise: nil)
            }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch outcome {
        case .success(let code)?: done.succeed(code)
        case .failure(let error)?: done.fail(error)
        case nil: done.fail(ClientError(code: 0, reason: "StreamEnded", message: "the stream ended without the command's status (the connection was lost)"))
        }
        context.fireChannelInactive()
    }

    /// The exit code a Status stands for (Success: 0; NonZeroExitCode: its ExitCode cause), or the
    /// error it reports.
    static func outcome(of payload: ByteBuffer) -> Result<Int32, any Error> {
        guard let status = try? JSONParser.parse(bytes: Array(payload.readableBytesView)) else {
            return .failure(ClientError(code: 0, reason: "StreamError", message: String(buffer: payload)))
        }
        if case .string("Success")? = status["status"] { return .success(0) }
        if case .string("NonZeroExitCode")? = status["reason"], case .array(let causes)? = status["details"]?["causes"] {
            for cause in causes {
                if case .string("ExitCode")? = cause["reason"], case .string(let text)? = cause["message"], let code = Int32(text) {
                    return .success(code)
                }
            }
        }
        let message: String
        if case .string(let text)? = status["message"] { message = text } else { message = String(buffer: payload) }
        return .failure(ClientError(code: 0, reason: "StreamError", message: message))
    }
}

extension ClientError {
    /// An upgrade (exec, attach, port-forward) the server did not grant: its status and the
    /// message of the Status it sent, or that the connection closed before any answer (`code` nil).
    static func upgradeFailed(code: Int?, body: ByteBuffer) -> ClientError {
        let text = String(buffer: body)
        var message = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let status = try? JSONParser.parse(bytes: Array(text.utf8)), case .string(let said)? = status["message"] { message = said }
        guard let code, code != 0 else {
            return ClientError(code: 0, reason: "UpgradeFailed", message: "the connection closed before the server answered the upgrade")
        }
        return ClientError(code: code, reason: "UpgradeFailed", message: "unable to upgrade connection: \(message.isEmpty ? "HTTP \(code)" : message)")
    }
}
