import API
import CZlib
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

// SPDY/3.1 on the process runtime's streaming server: what kubectl ≤ 1.29 speaks for exec and
// attach, and every kubectl for port-forward (1.31+ first offers SPDY tunnelled in WebSocket,
// refused here, then falls back). The kubelet's protocols over it:
// - remote command (`v4.channel.k8s.io`): the client opens one stream per role (header
//   `streamType`: error, stdin, stdout, stderr, resize); the server answers each, runs the
//   command once the streams it needs are there, sends output on stdout/stderr, the final Status
//   on error, and ends them. Here the streams are turned into the WebSocket channel messages the
//   exec and attach handlers already speak, so both protocols share one implementation.
// - port-forward (`portforward.k8s.io`): per forwarded connection a data and an error stream
//   (headers `port`, `requestID`); each data stream is one TCP connection to the port on the node.
// No flow control is sent or obeyed (spdystream, kubectl's side, ignores it too).

/// SPDY/3's header compression dictionary (the draft-3 spec, §2.6.10.1): these names and values
/// each behind a 4-byte big-endian length, then the text after them as it is.
enum SPDYDictionary {
    static let words = [
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding", "accept-language",
        "accept-ranges", "age", "allow", "authorization", "cache-control", "connection", "content-base", "content-encoding",
        "content-language", "content-length", "content-location", "content-md5", "content-range", "content-type", "date", "etag",
        "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
        "last-modified", "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
        "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
        "origin",
    ]
    static let text = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        + "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
        + "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
        + "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        + "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        + "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."

    static let bytes: [UInt8] = {
        var out: [UInt8] = []
        for word in words {
            let count = UInt32(word.utf8.count)
            out += [UInt8(count >> 24), UInt8((count >> 16) & 0xFF), UInt8((count >> 8) & 0xFF), UInt8(count & 0xFF)]
            out += Array(word.utf8)
        }
        return out + Array(text.utf8)
    }()
}

struct SPDYError: Error, CustomStringConvertible {
    let description: String
}

/// One direction's header compression: a zlib stream for the connection's life, primed with the
/// dictionary, flushed at the end of every header block.
final class SPDYHeaderCompression {
    private let stream: UnsafeMutablePointer<z_stream>
    private let inflating: Bool

    init(inflating: Bool) throws {
        self.inflating = inflating
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let code = inflating ? cox_inflate_init(stream) : cox_deflate_init(stream, Z_DEFAULT_COMPRESSION)
        guard code == Z_OK else {
            stream.deallocate()
            throw SPDYError(description: "zlib would not start (\(code))")
        }
        if !inflating {
            let set = SPDYDictionary.bytes.withUnsafeBufferPointer { deflateSetDictionary(stream, $0.baseAddress, UInt32($0.count)) }
            guard set == Z_OK else { throw SPDYError(description: "zlib refused the SPDY dictionary (\(set))") }
        }
    }

    deinit {
        if inflating { inflateEnd(stream) } else { deflateEnd(stream) }
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// A header block's bytes through this stream (inflated or deflated), up to a sync flush.
    func process(_ input: [UInt8], limit: Int = 1 << 20) throws -> [UInt8] {
        var input = input
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        try input.withUnsafeMutableBufferPointer { source in
            stream.pointee.next_in = source.baseAddress
            stream.pointee.avail_in = UInt32(source.count)
            while true {
                let (code, produced) = chunk.withUnsafeMutableBufferPointer { out -> (Int32, Int) in
                    stream.pointee.next_out = out.baseAddress
                    stream.pointee.avail_out = UInt32(out.count)
                    var code = inflating ? inflate(stream, Z_SYNC_FLUSH) : deflate(stream, Z_SYNC_FLUSH)
                    if code == Z_NEED_DICT {
                        code = SPDYDictionary.bytes.withUnsafeBufferPointer { inflateSetDictionary(stream, $0.baseAddress, UInt32($0.count)) }
                        if code == Z_OK { code = inflate(stream, Z_SYNC_FLUSH) }
                    }
                    return (code, out.count - Int(stream.pointee.avail_out))
                }
                output += chunk[0..<produced]
                guard code == Z_OK || code == Z_BUF_ERROR || code == Z_STREAM_END else {
                    throw SPDYError(description: "a SPDY header block did not \(inflating ? "inflate" : "deflate") (zlib \(code))")
                }
                guard output.count <= limit else { throw SPDYError(description: "a SPDY header block inflates past \(limit) bytes") }
                if stream.pointee.avail_out != 0 || produced == 0 { break }
            }
            stream.pointee.next_in = nil
        }
        return output
    }
}

/// A frame from the client, decoded (header blocks inflated).
enum SPDYFrame {
    case synStream(id: UInt32, fin: Bool, headers: [String: String])
    case data(id: UInt32, fin: Bool, ByteBuffer)
    case reset(id: UInt32)
    case ping(UInt32)
    case goAway
    case other
}

/// Reads SPDY/3 frames: an 8-byte header (control: version and type; data: the stream), flags
/// and a 24-bit length, then the payload.
final class SPDYFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = SPDYFrame
    private let headers = try? SPDYHeaderCompression(inflating: true)

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
              let word = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt32.self) else { return .needMoreData }
        let length = Int(word & 0xFF_FFFF)
        let fin = (word >> 24) & 0x01 != 0
        guard buffer.readableBytes >= 8 + length else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 8)
        var payload = buffer.readSlice(length: length)!
        let frame: SPDYFrame
        if first & 0x8000_0000 == 0 {
            frame = .data(id: first & 0x7FFF_FFFF, fin: fin, payload)
        } else {
            let version = (first >> 16) & 0x7FFF
            guard version == 3 else { throw SPDYError(description: "SPDY version \(version) is not spoken here (3 is)") }
            switch first & 0xFFFF {
            case 1, 8:  // SYN_STREAM, HEADERS: their blocks keep the shared zlib stream in step
                guard let id = payload.readInteger(as: UInt32.self) else { throw SPDYError(description: "a short SPDY frame") }
                if first & 0xFFFF == 1 { payload.moveReaderIndex(forwardBy: min(6, payload.readableBytes)) }
                guard let headers else { throw SPDYError(description: "zlib is not available") }
                let block = try headers.process(Array(payload.readableBytesView))
                let parsed = try Self.parseHeaders(block)
                frame = first & 0xFFFF == 1 ? .synStream(id: id & 0x7FFF_FFFF, fin: fin, headers: parsed) : .other
            case 3:
                frame = .reset(id: (payload.readInteger(as: UInt32.self) ?? 0) & 0x7FFF_FFFF)
            case 6:
                frame = .ping(payload.readInteger(as: UInt32.self) ?? 0)
            case 7:
                frame = .goAway
            default:
                frame = .other
            }
        }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    /// A name/value block: a count, then each name and value behind its 32-bit length (several
    /// values NUL-separated; the first is kept). Names lower-cased.
    static func parseHeaders(_ block: [UInt8]) throws -> [String: String] {
        var buffer = ByteBuffer(bytes: block)
        guard let count = buffer.readInteger(as: UInt32.self), count <= 1024 else { throw SPDYError(description: "a bad SPDY header block") }
        var headers: [String: String] = [:]
        for _ in 0..<count {
            guard let nameLength = buffer.readInteger(as: UInt32.self), let name = buffer.readString(length: Int(nameLength)),
                  let valueLength = buffer.readInteger(as: UInt32.self), let value = buffer.readString(length: Int(valueLength)) else {
                throw SPDYError(description: "a truncated SPDY header block")
            }
            headers[name.lowercased()] = value.split(separator: "\0", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        }
        return headers
    }
}

/// Frames the server sends.
enum SPDYFrames {
    static func data(_ id: UInt32, _ bytes: ByteBuffer, fin: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: bytes.readableBytes + 8)
        var rest = bytes
        repeat {
            let slice = rest.readSlice(length: min(rest.readableBytes, 0xFF_FFFF))!
            out.writeInteger(id & 0x7FFF_FFFF)
            out.writeInteger((UInt32(fin && rest.readableBytes == 0 ? 1 : 0) << 24) | UInt32(slice.readableBytes))
            out.writeImmutableBuffer(slice)
        } while rest.readableBytes > 0
        return out
    }

    static func control(_ type: UInt16, flags: UInt8 = 0, _ payload: [UInt8]) -> ByteBuffer {
        var out = ByteBuffer()
        out.writeInteger(UInt16(0x8003))
        out.writeInteger(type)
        out.writeInteger((UInt32(flags) << 24) | UInt32(payload.count))
        out.writeBytes(payload)
        return out
    }

    static func word(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    /// SYN_REPLY with no headers (the count 0, compressed).
    static func synReply(_ id: UInt32, compression: SPDYHeaderCompression) throws -> ByteBuffer {
        control(2, word(id) + (try compression.process([0, 0, 0, 0])))
    }

    static func ping(_ id: UInt32) -> ByteBuffer { control(6, word(id)) }
    static func goAway(last: UInt32) -> ByteBuffer { control(7, word(last) + word(0)) }
    static func reset(_ id: UInt32, status: UInt32) -> ByteBuffer { control(3, word(id) + word(status)) }
}

/// Upgrades `Upgrade: SPDY/3.1` requests for a known session whose client offers the protocol
/// this server speaks for it (`X-Stream-Protocol-Version`); anything else falls through to the
/// refusal, which names the problem.
final class SPDYUpgrader: HTTPServerProtocolUpgrader, Sendable {
    let supportedProtocol = "SPDY/3.1"
    let requiredUpgradeHeaders: [String] = []
    let server: ProcessStreamingServer

    init(server: ProcessStreamingServer) { self.server = server }

    static let remoteCommandProtocol = "v4.channel.k8s.io"
    static let portForwardProtocol = "portforward.k8s.io"

    static func offered(_ head: HTTPRequestHead) -> [String] {
        head.headers["X-Stream-Protocol-Version"].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
    }

    func buildUpgradeResponse(channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders) -> EventLoopFuture<HTTPHeaders> {
        let segments = upgradeRequest.uri.split(separator: "/")
        guard segments.count == 2, ["exec", "attach", "portforward"].contains(segments[0]), server.has(String(segments[1])) else {
            return channel.eventLoop.makeFailedFuture(SPDYError(description: "unknown or expired streaming session"))
        }
        let wanted = segments[0] == "portforward" ? Self.portForwardProtocol : Self.remoteCommandProtocol
        guard Self.offered(upgradeRequest).contains(wanted) else {
            return channel.eventLoop.makeFailedFuture(SPDYError(description: "unable to negotiate protocol"))
        }
        var headers = initialResponseHeaders
        headers.add(name: "X-Stream-Protocol-Version", value: wanted)
        return channel.eventLoop.makeSucceededFuture(headers)
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        let token = upgradeRequest.uri.split(separator: "/").last.map(String.init) ?? ""
        guard let session = server.take(token) else {
            context.close(promise: nil)
            return context.eventLoop.makeFailedFuture(SPDYError(description: "unknown or expired streaming session"))
        }
        let logger = server.logger
        return context.eventLoop.makeCompletedFuture {
            let sync = context.pipeline.syncOperations
            try sync.addHandler(ByteToMessageHandler(SPDYFrameDecoder()))
            if session.ports != nil {
                try sync.addHandler(SPDYPortForwardHandler(logger: logger))
                return
            }
            var expected: Set<String> = ["error"]
            if session.stdin { expected.insert("stdin") }
            if session.stdout { expected.insert("stdout") }
            if session.stderr { expected.insert("stderr") }
            if session.tty { expected.insert("resize") }
            try sync.addHandler(SPDYRemoteCommandHandler(expected: expected, logger: logger) {
                if let target = session.attach { return AttachStreamHandler(target: target, v5: true, logger: logger) }
                return ExecStreamHandler(session: session, v5: true, logger: logger)
            })
        }
    }
}

/// The remote-command streams of one SPDY connection, as the channel messages of the WebSocket
/// protocol (v5: stdin's end is channel 255) for the exec or attach handler, which is put in
/// place once the streams it needs are open.
final class SPDYRemoteCommandHandler: ChannelDuplexHandler {
    typealias InboundIn = SPDYFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    /// How long the client has to open its streams (the kubelet's stream creation timeout).
    static let streamWait: TimeAmount = .seconds(30)

    let expected: Set<String>
    let logger: Logger
    let makeHandler: () -> any ChannelHandler
    private var compression: SPDYHeaderCompression?
    private var ids: [String: UInt32] = [:]
    private var roles: [UInt32: String] = [:]
    private var started = false
    private var pending: [WebSocketFrame] = []
    private var deadline: Scheduled<Void>?
    private var closing = false

    init(expected: Set<String>, logger: Logger, makeHandler: @escaping () -> any ChannelHandler) {
        self.expected = expected
        self.logger = logger
        self.makeHandler = makeHandler
    }

    func handlerAdded(context: ChannelHandlerContext) {
        compression = try? SPDYHeaderCompression(inflating: false)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let logger = logger
        deadline = context.eventLoop.scheduleTask(in: Self.streamWait) {
            logger.warning("a SPDY exec or attach client did not open its streams in time; closing")
            bound.value.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .synStream(let id, let fin, let headers):
            guard let compression, let reply = try? SPDYFrames.synReply(id, compression: compression) else {
                context.close(promise: nil)
                return
            }
            context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
            let role = headers["streamtype"] ?? ""
            ids[role] = id
            roles[id] = role
            if fin && role == "stdin" { deliver(context, [255, 0]) }
            if !started && expected.isSubset(of: Set(ids.keys)) {
                started = true
                deadline?.cancel()
                do {
                    try context.pipeline.syncOperations.addHandler(makeHandler(), position: .after(self))
                } catch {
                    context.close(promise: nil)
                    return
                }
                for frame in pending { context.fireChannelRead(wrapInboundOut(frame)) }
                pending = []
            }
        case .data(let id, let fin, let bytes):
            switch roles[id] {
            case "stdin":
                if bytes.readableBytes > 0 { deliver(context, [0], bytes) }
                if fin { deliver(context, [255, 0]) }
            case "resize":
                // One JSON size per line (Go's json.Encoder); each is a resize message.
                for line in String(buffer: bytes).split(separator: "\n") where !line.isEmpty {
                    deliver(context, [4], ByteBuffer(string: String(line)))
                }
            default:
                break
            }
        case .reset(let id):
            if roles[id] == "stdin" { deliver(context, [255, 0]) }
        case .ping(let id):
            context.writeAndFlush(wrapOutboundOut(SPDYFrames.ping(id)), promise: nil)
        case .goAway, .other:
            break
        }
    }

    private func deliver(_ context: ChannelHandlerContext, _ prefix: [UInt8], _ bytes: ByteBuffer = ByteBuffer()) {
        var message = context.channel.allocator.buffer(capacity: prefix.count + bytes.readableBytes)
        message.writeBytes(prefix)
        message.writeImmutableBuffer(bytes)
        let frame = WebSocketFrame(fin: true, opcode: .binary, data: message)
        if started { context.fireChannelRead(wrapInboundOut(frame)) } else { pending.append(frame) }
    }

    /// The handler's messages out: channel 1, 2, 3 to the stdout, stderr and error streams; its
    /// close ends every stream this side writes, then the connection (GOAWAY).
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        switch frame.opcode {
        case .binary, .text:
            var payload = frame.unmaskedData
            guard let channel = payload.readInteger(as: UInt8.self), let id = ids[["", "stdout", "stderr", "error"][Int(min(channel, 3))]],
                  channel >= 1 && channel <= 3 else {
                promise?.succeed()
                return
            }
            context.write(wrapOutboundOut(SPDYFrames.data(id, payload, fin: false, allocator: context.channel.allocator)), promise: promise)
        case .connectionClose:
            guard !closing else {
                promise?.succeed()
                return
            }
            closing = true
            for role in ["stdout", "stderr", "error"] {
                if let id = ids[role] { context.write(wrapOutboundOut(SPDYFrames.data(id, ByteBuffer(), fin: true, allocator: context.channel.allocator)), promise: nil) }
            }
            context.write(wrapOutboundOut(SPDYFrames.goAway(last: roles.keys.max() ?? 0)), promise: promise)
        default:
            promise?.succeed()
        }
    }
}

/// Port-forward streams of one SPDY connection: each `requestID`'s data stream is a TCP
/// connection to its `port` on the node; its error stream carries a failure to connect; both end
/// when the connection does.
final class SPDYPortForwardHandler: ChannelInboundHandler {
    typealias InboundIn = SPDYFrame
    typealias OutboundOut = ByteBuffer

    struct Forward {
        var port = 0
        var data: UInt32?
        var error: UInt32?
        var upstream: (any Channel)?
        var pending: [ByteBuffer] = []
        var clientDone = false
    }

    let logger: Logger
    private var compression: SPDYHeaderCompression?
    private var forwards: [String: Forward] = [:]
    private var requests: [UInt32: String] = [:]
    private var context: ChannelHandlerContext?

    init(logger: Logger) { self.logger = logger }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        compression = try? SPDYHeaderCompression(inflating: false)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .synStream(let id, _, let headers):
            guard let compression, let reply = try? SPDYFrames.synReply(id, compression: compression) else {
                context.close(promise: nil)
                return
            }
            guard let port = headers["port"].flatMap({ Int($0) }), (1...65535).contains(port) else {
                context.writeAndFlush(wrapOutboundOut(SPDYFrames.reset(id, status: 1)), promise: nil)
                return
            }
            context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
            let request = headers["requestid"] ?? "\(port)"
            requests[id] = request
            var forward = forwards[request] ?? Forward()
            forward.port = port
            if headers["streamtype"] == "error" {
                forward.error = id
                forwards[request] = forward
            } else if headers["streamtype"] == "data" {
                forward.data = id
                forwards[request] = forward
                connect(request, port: port, on: context.eventLoop)
            }
        case .data(let id, let fin, let bytes):
            guard let request = requests[id], var forward = forwards[request], forward.data == id else { return }
            if bytes.readableBytes > 0 {
                if let upstream = forward.upstream { upstream.writeAndFlush(bytes, promise: nil) } else { forward.pending.append(bytes) }
            }
            if fin {
                forward.clientDone = true
                if let upstream = forward.upstream { upstream.close(mode: .output, promise: nil) }
            }
            forwards[request] = forward
        case .reset(let id):
            if let request = requests[id], let upstream = forwards[request]?.upstream { upstream.close(promise: nil) }
        case .ping(let id):
            context.writeAndFlush(wrapOutboundOut(SPDYFrames.ping(id)), promise: nil)
        case .goAway, .other:
            break
        }
    }

    private func connect(_ request: String, port: Int, on loop: any EventLoop) {
        let handler = NIOLoopBound(self, eventLoop: loop)
        let relay = PortRelay(deliver: { handler.value.send(request, $0) }, ended: { handler.value.ended(request) })
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(5))
            .channelOption(.allowRemoteHalfClosure, value: false)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(relay) } }
            .connect(host: "127.0.0.1", port: port)
            .whenComplete { result in
                switch result {
                case .success(let channel): handler.value.connected(request, channel)
                case .failure(let error): handler.value.failed(request, error)
                }
            }
    }

    private func connected(_ request: String, _ channel: any Channel) {
        guard context != nil, var forward = forwards[request] else {
            channel.close(promise: nil)
            return
        }
        forward.upstream = channel
        for bytes in forward.pending { channel.write(bytes, promise: nil) }
        forward.pending = []
        channel.flush()
        if forward.clientDone { channel.close(mode: .output, promise: nil) }
        forwards[request] = forward
    }

    private func failed(_ request: String, _ error: any Error) {
        guard let context, let forward = forwards[request] else { return }
        if let id = forward.error {
            // The kubelet's words.
            let message = "error forwarding port \(forward.port) to pod: failed to connect to localhost:\(forward.port): \(error)"
            context.write(wrapOutboundOut(SPDYFrames.data(id, ByteBuffer(string: message), fin: false, allocator: context.channel.allocator)), promise: nil)
        }
        ended(request)
    }

    private func send(_ request: String, _ bytes: ByteBuffer) {
        guard let context, let id = forwards[request]?.data else { return }
        context.writeAndFlush(wrapOutboundOut(SPDYFrames.data(id, bytes, fin: false, allocator: context.channel.allocator)), promise: nil)
    }

    /// The connection to the port is over: both streams end.
    private func ended(_ request: String) {
        guard let context, let forward = forwards.removeValue(forKey: request) else { return }
        for id in [forward.data, forward.error].compactMap({ $0 }) {
            context.write(wrapOutboundOut(SPDYFrames.data(id, ByteBuffer(), fin: true, allocator: context.channel.allocator)), promise: nil)
            requests[id] = nil
        }
        context.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.context = nil
        for forward in forwards.values { forward.upstream?.close(promise: nil) }
        forwards = [:]
        context.fireChannelInactive()
    }
}

/// A byte stream carried in WebSocket binary messages (kubectl ≥ 1.31 tunnels port-forward's
/// SPDY so): what comes in is the messages' bytes, what goes out one message per write.
final class WebSocketTunnel: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .continuation, .text:
            context.fireChannelRead(wrapInboundOut(frame.unmaskedData))
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            ExecStreamHandler.close(context)
        default:
            break
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: unwrapOutboundIn(data))), promise: promise)
    }
}
