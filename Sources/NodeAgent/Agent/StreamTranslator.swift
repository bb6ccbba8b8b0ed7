import Client
import Crypto
import Foundation
import Logging
import NIOCore
import NIOWebSocket

/// What the agent speaks for a runtime whose streaming server refuses what the client offers over
/// WebSocket. containerd 1.6's streaming server (the kubelet's library of its time) speaks
/// WebSocket up to `v4.channel.k8s.io` and SPDY; kubectl ≥ 1.30 offers exec and attach as
/// `v5.channel.k8s.io` and, from 1.31, port-forward as SPDY tunnelled in WebSocket
/// (`SPDY/3.1+portforward.k8s.io`). The agent answers such a client itself and talks SPDY to the
/// runtime, as the kubelet's own translating proxy does:
/// - `remoteCommand`: each v5 channel message becomes data on the SPDY stream of its role
///   (stdin, resize; channel 255 ends stdin with a FIN), and the runtime's stdout, stderr and
///   error streams come back as channels 1, 2 and 3 (v4's error stream carries the same Status).
/// - `portForwardTunnel`: the client's binary messages are the SPDY connection's bytes; they go to
///   the runtime as they are, and its bytes come back one message per read.
enum StreamTranslation: Equatable {
    case remoteCommand
    case portForwardTunnel

    static let remoteCommandV5 = "v5.channel.k8s.io"
    static let tunnelledPortForward = "SPDY/3.1+portforward.k8s.io"

    /// The translation for a WebSocket upgrade the runtime refused, if there is one.
    init?(_ head: RawRequestHead, kind: StreamRequest.Kind) {
        guard head.header("upgrade")?.lowercased() == "websocket", head.header("sec-websocket-key") != nil else { return nil }
        let offered = Self.offered(head)
        if kind == .portForward {
            guard offered.contains(Self.tunnelledPortForward) else { return nil }
            self = .portForwardTunnel
        } else {
            guard offered.contains(Self.remoteCommandV5) else { return nil }
            self = .remoteCommand
        }
    }

    static func offered(_ head: RawRequestHead) -> [String] {
        head.headers.filter { $0.name.lowercased() == "sec-websocket-protocol" }
            .flatMap { $0.value.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// The subprotocol answered to the client.
    var clientProtocol: String { self == .remoteCommand ? Self.remoteCommandV5 : Self.tunnelledPortForward }
    /// The SPDY protocol asked of the runtime.
    var runtimeProtocol: String { self == .remoteCommand ? "v4.channel.k8s.io" : "portforward.k8s.io" }

    /// The client's 101 (RFC 6455: the key and the fixed GUID, SHA-1, base64).
    static func acceptingResponse(key: String, subprotocol: String) -> [UInt8] {
        let accept = Data(Insecure.SHA1.hash(data: Data((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))).base64EncodedString()
        return Array(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Accept: \(accept)\r\nSec-WebSocket-Protocol: \(subprotocol)\r\n\r\n").utf8)
    }

    /// The SPDY upgrade asked of the runtime's streaming server at `target`.
    func runtimeRequest(target: String, host: String) -> [UInt8] {
        Array(("POST \(target) HTTP/1.1\r\nHost: \(host)\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            + "X-Stream-Protocol-Version: \(runtimeProtocol)\r\nContent-Length: 0\r\n\r\n").utf8)
    }

    /// The streams a remote command opens, in kubectl's order, each with its `streamType`.
    static func roles(_ request: StreamRequest) -> [String] {
        var roles = ["error"]
        if request.stdin { roles.append("stdin") }
        if request.stdout { roles.append("stdout") }
        if request.stderr && !request.tty { roles.append("stderr") }
        if request.tty { roles.append("resize") }
        return roles
    }
}

extension SPDYFrames {
    /// SYN_STREAM from the client's side: the id, no associated stream, priority 0, and the
    /// header block (a count, then each name and value behind its length) compressed.
    static func synStream(_ id: UInt32, headers: [(String, String)], compression: SPDYHeaderCompression) throws -> ByteBuffer {
        var block = word(UInt32(headers.count))
        for (name, value) in headers {
            block += word(UInt32(name.utf8.count)) + Array(name.utf8) + word(UInt32(value.utf8.count)) + Array(value.utf8)
        }
        return control(1, word(id) + word(0) + [0, 0] + (try compression.process(block)))
    }
}

/// Both ends of one translated stream, on one event loop: the client's WebSocket and the
/// runtime's SPDY connection. Either end closing closes the other (the client's with a close
/// frame); each end reads only while the other can take what it writes.
final class TranslatingBridge {
    let translation: StreamTranslation
    let logger: Logger
    private var client: ChannelHandlerContext?
    private var runtime: ChannelHandlerContext?
    private var compression: SPDYHeaderCompression?
    /// Stream ids by role (remote command).
    private var ids: [String: UInt32] = [:]
    private var roles: [UInt32: String] = [:]
    /// A message in fragments (a continuation frame follows).
    private var partial: ByteBuffer?
    private var stdinEnded = false
    private var closed = false

    init(_ translation: StreamTranslation, logger: Logger) {
        self.translation = translation
        self.logger = logger
    }

    func clientAdded(_ context: ChannelHandlerContext) { client = context }

    /// The runtime's end is in place: a remote command's streams are opened.
    func runtimeAdded(_ context: ChannelHandlerContext, request: StreamRequest) throws {
        runtime = context
        guard translation == .remoteCommand else { return }
        let compression = try SPDYHeaderCompression(inflating: false)
        self.compression = compression
        var next: UInt32 = 1
        for role in StreamTranslation.roles(request) {
            ids[role] = next
            roles[next] = role
            context.write(NIOAny(try SPDYFrames.synStream(next, headers: [("streamtype", role)], compression: compression)), promise: nil)
            next += 2
        }
        context.flush()
    }

    // MARK: From the client

    func fromClient(_ frame: WebSocketFrame) {
        switch frame.opcode {
        case .binary, .text, .continuation:
            var data = frame.unmaskedData
            if frame.opcode == .continuation, var start = partial {
                start.writeBuffer(&data)
                data = start
            }
            guard frame.fin else {
                partial = data
                return
            }
            partial = nil
            clientMessage(data)
        case .ping:
            client?.writeAndFlush(NIOAny(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            close()
        default:
            break
        }
    }

    private func clientMessage(_ message: ByteBuffer) {
        guard let runtime else { return }
        guard translation == .remoteCommand else {
            runtime.writeAndFlush(NIOAny(message), promise: nil)
            return
        }
        var payload = message
        guard let channel = payload.readInteger(as: UInt8.self) else { return }
        let allocator = runtime.channel.allocator
        switch channel {
        case 0:
            guard let id = ids["stdin"], !stdinEnded, payload.readableBytes > 0 else { return }
            runtime.writeAndFlush(NIOAny(SPDYFrames.data(id, payload, fin: false, allocator: allocator)), promise: nil)
        case 4:
            guard let id = ids["resize"] else { return }
            var size = payload
            size.writeString("\n")
            runtime.writeAndFlush(NIOAny(SPDYFrames.data(id, size, fin: false, allocator: allocator)), promise: nil)
        case 255:
            // v5's close of a channel: only stdin is the client's to end.
            guard payload.readInteger(as: UInt8.self) == 0, let id = ids["stdin"], !stdinEnded else { return }
            stdinEnded = true
            runtime.writeAndFlush(NIOAny(SPDYFrames.data(id, ByteBuffer(), fin: true, allocator: allocator)), promise: nil)
        default:
            break
        }
    }

    // MARK: From the runtime

    func fromRuntime(bytes: ByteBuffer) {
        client?.write(NIOAny(WebSocketFrame(fin: true, opcode: .binary, data: bytes)), promise: nil)
    }

    func fromRuntime(frame: SPDYFrame) {
        switch frame {
        case .data(let id, _, let bytes):
            guard bytes.readableBytes > 0, let channel = ["stdout": UInt8(1), "stderr": 2, "error": 3][roles[id] ?? ""], let client else { return }
            var message = client.channel.allocator.buffer(capacity: bytes.readableBytes + 1)
            message.writeInteger(channel)
            message.writeImmutableBuffer(bytes)
            client.write(NIOAny(WebSocketFrame(fin: true, opcode: .binary, data: message)), promise: nil)
        case .ping(let id):
            runtime?.writeAndFlush(NIOAny(SPDYFrames.ping(id)), promise: nil)
        case .synStream(let id, _, _):
            // The runtime opens no streams of its own in these protocols.
            runtime?.writeAndFlush(NIOAny(SPDYFrames.reset(id, status: 3)), promise: nil)
        case .reset, .goAway, .other:
            break
        }
    }

    func runtimeReadComplete() { client?.flush() }

    // MARK: Flow and ends

    /// One end's writability: the other reads only while it can be written.
    func writabilityChanged(ofClient: Bool) {
        guard let client, let runtime else { return }
        let (writer, reader) = ofClient ? (client, runtime) : (runtime, client)
        reader.channel.setOption(ChannelOptions.autoRead, value: writer.channel.isWritable).whenFailure { _ in }
        if writer.channel.isWritable { reader.read() }
    }

    /// Either end ended: the client gets a normal close, then both connections close.
    func close() {
        guard !closed else { return }
        closed = true
        runtime?.close(promise: nil)
        if let client { ExecStreamHandler.close(client) }
    }
}

/// The client's end of a translation (after the WebSocket frame codec).
final class TranslatedClientEnd: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    let bridge: TranslatingBridge
    init(_ bridge: TranslatingBridge) { self.bridge = bridge }
    func handlerAdded(context: ChannelHandlerContext) { bridge.clientAdded(context) }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { bridge.fromClient(unwrapInboundIn(data)) }
    func channelWritabilityChanged(context: ChannelHandlerContext) { bridge.writabilityChanged(ofClient: true) }
    func channelInactive(context: ChannelHandlerContext) { bridge.close() }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        bridge.logger.debug("a translated stream's client failed", metadata: ["error": "\(error)"])
        bridge.close()
    }
}

/// The runtime's end of a translation: SPDY frames (a remote command, after the frame decoder) or
/// the connection's bytes as they are (a tunnelled port-forward).
final class TranslatedRuntimeEnd<In>: ChannelInboundHandler {
    typealias InboundIn = In
    let bridge: TranslatingBridge
    let request: StreamRequest
    let deliver: (TranslatingBridge, In) -> Void

    init(_ bridge: TranslatingBridge, request: StreamRequest, deliver: @escaping (TranslatingBridge, In) -> Void) {
        self.bridge = bridge
        self.request = request
        self.deliver = deliver
    }

    func handlerAdded(context: ChannelHandlerContext) {
        do {
            try bridge.runtimeAdded(context, request: request)
        } catch {
            bridge.logger.warning("cannot open the runtime's SPDY streams", metadata: ["error": "\(error)"])
            bridge.close()
        }
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { deliver(bridge, unwrapInboundIn(data)) }
    func channelReadComplete(context: ChannelHandlerContext) { bridge.runtimeReadComplete() }
    func channelWritabilityChanged(context: ChannelHandlerContext) { bridge.writabilityChanged(ofClient: false) }
    func channelInactive(context: ChannelHandlerContext) { bridge.close() }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        bridge.logger.debug("a translated stream's runtime end failed", metadata: ["error": "\(error)"])
        bridge.close()
    }
}
