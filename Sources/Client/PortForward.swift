import API
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOWebSocket

/// `pods/portforward` over WebSocket, as the kubelet serves it and the official Python client
/// speaks it (`v4.channel.k8s.io`, one WebSocket per forwarded connection): channel 0 carries the
/// port's data both ways, channel 1 its errors; the server starts each with the port number (two
/// bytes, little-endian).
extension APIClient {
    static let portForwardProtocol = "v4.channel.k8s.io"

    /// Joins `local` (a connected channel, with autoRead off until the pod's end is up) to `port`
    /// of the pod until either end closes. `errors` gets what the node reports (nothing listening
    /// on the port, say). Returns once the two are joined.
    public func forward(_ local: any Channel, namespace: String, pod: String, port: Int,
                        errors: @escaping @Sendable (String) -> Void) async throws {
        guard let url = URL(string: server), let host = url.host else {
            throw ClientError(code: 0, reason: "BadConfig", message: "the server \(server) is not a URL")
        }
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let serverPort = url.port ?? 443
        var tls = tlsConfiguration
        tls.applicationProtocols = ["http/1.1"]
        tls.shutdownTimeout = .milliseconds(200)
        let context = try NIOSSLContext(configuration: tls)
        let isIP = (try? SocketAddress(ipAddress: bare, port: 0)) != nil
        let remote = try await ClientBootstrap(group: local.eventLoop)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: isIP ? nil : bare))
                }
            }
            .connect(host: bare, port: serverPort).get()
        var keyBytes = [UInt8](repeating: 0, count: 16)
        for index in keyBytes.indices { keyBytes[index] = UInt8.random(in: 0...255) }
        let safe = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
        func escape(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: safe) ?? text }
        let target = "/api/v1/namespaces/\(escape(namespace))/pods/\(escape(pod))/portforward?ports=\(port)"
        let headers: [(name: String, value: String)] = [
            ("Host", bare.contains(":") ? "[\(bare)]:\(serverPort)" : "\(bare):\(serverPort)"), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", Data(keyBytes).base64EncodedString()),
            ("Sec-WebSocket-Protocol", Self.portForwardProtocol),
        ] + credentialHeaders
        let upgraded = remote.eventLoop.makePromise(of: Void.self)
        try await remote.pipeline.addHandler(PortForwardHandshake(upgraded: upgraded, local: local, errors: errors)).get()
        try await remote.writeAndFlush(ByteBuffer(bytes: RawRequestHead(method: "GET", target: target, headers: headers).serialized()))
        do {
            try await upgraded.futureResult.get()
        } catch {
            remote.close(promise: nil)
            throw error
        }
        try await local.pipeline.addHandler(LocalForwardRelay(remote: remote)).get()
        try await local.setOption(ChannelOptions.autoRead, value: true).get()
        local.read()
    }
}

/// Reads the answer to the upgrade; on 101 puts the WebSocket and the port's frames in place.
final class PortForwardHandshake: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let upgraded: EventLoopPromise<Void>
    let local: any Channel
    let errors: @Sendable (String) -> Void
    private var buffered = ByteBuffer()
    private var code: Int?

    init(upgraded: EventLoopPromise<Void>, local: any Channel, errors: @escaping @Sendable (String) -> Void) {
        self.upgraded = upgraded
        self.local = local
        self.errors = errors
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffered.writeBuffer(&bytes)
        guard code == nil else { return }
        let view = buffered.readableBytesView
        guard let end = UpgradeSniffer.endOfHead(view) else { return }
        let statusLine = String(decoding: view[view.startIndex..<end], as: UTF8.self).components(separatedBy: "\r\n").first ?? ""
        buffered.moveReaderIndex(forwardBy: end + 4 - view.startIndex)
        let parts = statusLine.split(separator: " ")
        code = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        guard code == 101 else { return }  // the rest is the refusal's body, read at the end
        let rest = buffered
        buffered = ByteBuffer()
        do {
            let sync = context.pipeline.syncOperations
            try sync.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 16 << 20)), position: .after(self))
            try sync.addHandler(WebSocketFrameEncoder(), position: .last)
            try sync.addHandler(NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 4096, maxAccumulatedFrameSize: 16 << 20),
                                position: .last)
            try sync.addHandler(PortForwardFrames(local: local, errors: errors), position: .last)
        } catch {
            upgraded.fail(error)
            context.close(promise: nil)
            return
        }
        upgraded.succeed()
        if rest.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(rest))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        upgraded.fail(ClientError.upgradeFailed(code: code, body: buffered))
        local.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        upgraded.fail(error)
        context.close(promise: nil)
    }
}

/// The pod's side: data on channel 0 to the local connection, errors on channel 1 reported;
/// each channel's first two bytes (the port) skipped.
final class PortForwardFrames: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let local: any Channel
    let errors: @Sendable (String) -> Void
    private var prefixLeft: [Int] = [2, 2]

    init(local: any Channel, errors: @escaping @Sendable (String) -> Void) {
        self.local = local
        self.errors = errors
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary:
            var payload = frame.unmaskedData
            guard let channel = payload.readInteger(as: UInt8.self), channel < 2 else { return }
            let skip = min(prefixLeft[Int(channel)], payload.readableBytes)
            payload.moveReaderIndex(forwardBy: skip)
            prefixLeft[Int(channel)] -= skip
            guard payload.readableBytes > 0 else { return }
            if channel == 0 {
                local.writeAndFlush(payload, promise: nil)
            } else {
                errors(String(buffer: payload))
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        local.close(promise: nil)
        context.fireChannelInactive()
    }
}

/// The local side: what the local connection sends goes to the pod on channel 0; its end ends
/// the WebSocket.
final class LocalForwardRelay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let remote: any Channel

    init(remote: any Channel) { self.remote = remote }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        var message = context.channel.allocator.buffer(capacity: bytes.readableBytes + 1)
        message.writeInteger(UInt8(0))
        message.writeImmutableBuffer(bytes)
        remote.writeAndFlush(WebSocketFrame(fin: true, opcode: .binary, maskKey: .random(), data: message), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: .normalClosure)
        let remote = remote
        remote.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data)).whenComplete { _ in
            remote.close(promise: nil)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
