import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// Unary exchanges as HTTP/2 streams of one connection, handled as frames: a stream is a
/// dictionary entry, not a channel and pipeline of its own (which is what makes swift-nio-http2's
/// multiplexer, and so AsyncHTTPClient over HTTP/2, cost several times more per call).
///
/// Requests beyond the server's concurrent-stream limit wait here for a stream to end. Response
/// data is granted back to the server as it arrives (the connection's window is opened wide at
/// the start). A stream the server resets or refuses, or a connection that ends, fails its
/// exchanges: `notSent` for streams the server says it never processed (REFUSED_STREAM, or above
/// a GOAWAY's last stream), `lost` otherwise.
final class HTTP2ExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = KeepAlive.Exchange
    typealias OutboundOut = HTTP2Frame

    /// Our receive window per stream and for the connection.
    static let window = 16 * 1024 * 1024

    struct Stream {
        let promise: EventLoopPromise<KeepAlive.Response>
        var status: Int?
        var headers = HTTPHeaders()
        var body: ByteBuffer?
        var unacknowledged = 0
    }

    let authority: String
    private var streams: [HTTP2StreamID: Stream] = [:]
    private var queued = CircularBuffer<KeepAlive.Exchange>()
    private var nextStreamID = HTTP2StreamID(1)
    private var maxConcurrent = 100
    private var connectionUnacknowledged = 0
    private var goingAway = false
    private var closed = false
    private var handshaken = false

    init(authority: String) { self.authority = authority }

    func channelActive(context: ChannelHandlerContext) {
        // The connection window starts at 64 KiB whatever the settings say: open it.
        let grow = HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: Self.window - 65_535))
        context.writeAndFlush(wrapOutboundOut(grow), promise: nil)
        context.fireChannelActive()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        promise?.succeed()
        guard !closed && !goingAway else {
            exchange.promise.fail(KeepAlive.Failure.notSent(ChannelError.ioOnClosedChannel))
            return
        }
        if streams.count >= maxConcurrent {
            queued.append(exchange)
        } else {
            open(exchange, context: context)
        }
    }

    private func open(_ exchange: KeepAlive.Exchange, context: ChannelHandlerContext) {
        let id = nextStreamID
        nextStreamID = HTTP2StreamID(Int(id) + 2)
        var headers = HPACKHeaders()
        headers.reserveCapacity(exchange.head.headers.count + 4)
        headers.add(name: ":method", value: exchange.head.method.rawValue)
        headers.add(name: ":scheme", value: "https")
        headers.add(name: ":authority", value: authority)
        headers.add(name: ":path", value: exchange.head.uri)
        for (name, value) in exchange.head.headers {
            let lower = name.lowercased()
            if lower == "host" || lower == "connection" || lower == "content-length" { continue }
            headers.add(name: lower, value: value)
        }
        streams[id] = Stream(promise: exchange.promise)
        let hasBody = (exchange.body?.readableBytes ?? 0) > 0
        context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers, endStream: !hasBody)))), promise: nil)
        if hasBody, let body = exchange.body {
            context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body), endStream: true)))), promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let payload):
            guard var stream = streams[frame.streamID] else { return }
            if stream.status == nil {
                guard let status = payload.headers.first(name: ":status").flatMap(Int.init) else { return finish(frame.streamID, context: context) }
                if (100..<200).contains(status) { return }  // interim
                stream.status = status
                for (name, value, _) in payload.headers where !name.hasPrefix(":") { stream.headers.add(name: name, value: value) }
            }
            streams[frame.streamID] = stream
            if payload.endStream { finish(frame.streamID, context: context) }
        case .data(let payload):
            let length = payload.data.readableBytes + (payload.paddingBytes ?? 0)
            grant(length, to: frame.streamID, endStream: payload.endStream, context: context)
            guard var stream = streams[frame.streamID] else { return }
            if case .byteBuffer(var bytes) = payload.data {
                if stream.body == nil { stream.body = bytes } else { stream.body!.writeBuffer(&bytes) }
            }
            streams[frame.streamID] = stream
            if payload.endStream { finish(frame.streamID, context: context) }
        case .rstStream(let code):
            guard let stream = streams.removeValue(forKey: frame.streamID) else { return }
            let error = NIOHTTP2Errors.streamClosed(streamID: frame.streamID, errorCode: code)
            stream.promise.fail(code == .refusedStream ? KeepAlive.Failure.notSent(error) : KeepAlive.Failure.lost(error))
            openQueued(context: context)
        case .goAway(let lastStreamID, let code, _):
            goingAway = true
            // Streams above the last one the server processed never ran: safe to send again.
            for id in streams.keys where id > lastStreamID {
                streams.removeValue(forKey: id)?.promise.fail(KeepAlive.Failure.notSent(NIOHTTP2Errors.streamClosed(streamID: id, errorCode: code)))
            }
            while let waiting = queued.popFirst() { waiting.promise.fail(KeepAlive.Failure.notSent(ChannelError.outputClosed)) }
            if streams.isEmpty { context.close(promise: nil) }
        case .settings(.settings(let settings)):
            handshaken = true
            for setting in settings where setting.parameter == .maxConcurrentStreams { maxConcurrent = max(1, setting.value) }
            openQueued(context: context)
        default:
            break
        }
    }

    /// Gives back what the server sent, to the connection and (while it goes on) the stream, in
    /// steps of a quarter window.
    private func grant(_ length: Int, to id: HTTP2StreamID, endStream: Bool, context: ChannelHandlerContext) {
        guard length > 0 else { return }
        connectionUnacknowledged += length
        if connectionUnacknowledged >= Self.window / 4 {
            context.write(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connectionUnacknowledged))), promise: nil)
            connectionUnacknowledged = 0
            context.flush()
        }
        guard !endStream, var stream = streams[id] else { return }
        stream.unacknowledged += length
        if stream.unacknowledged >= Self.window / 4 {
            context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: stream.unacknowledged))), promise: nil)
            stream.unacknowledged = 0
        }
        streams[id] = stream
    }

    private func finish(_ id: HTTP2StreamID, context: ChannelHandlerContext) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        if let status = stream.status {
            stream.promise.succeed(KeepAlive.Response(status: status, headers: stream.headers, body: stream.body ?? ByteBuffer()))
        } else {
            stream.promise.fail(KeepAlive.Failure.lost(KeepAlive.UnexpectedResponse()))
        }
        openQueued(context: context)
        if goingAway && streams.isEmpty { context.close(promise: nil) }
    }

    private func openQueued(context: ChannelHandlerContext) {
        var opened = false
        while !goingAway, streams.count < maxConcurrent, let next = queued.popFirst() {
            open(next, context: context)
            opened = true
        }
        if opened { context.flush() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ChannelError.eof)
        context.fireChannelInactive()
    }

    private func fail(_ error: any Error) {
        closed = true
        let failure = KeepAlive.Failure.of(error, sessionUp: handshaken)
        for (_, stream) in streams { stream.promise.fail(failure) }
        streams.removeAll()
        while let waiting = queued.popFirst() { waiting.promise.fail(KeepAlive.Failure.notSent(error)) }
    }
}
