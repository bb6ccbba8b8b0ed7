import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// Exchanges as HTTP/2 streams of one connection, handled as frames: a stream is a dictionary
/// entry, not a channel and pipeline of its own (which is what makes swift-nio-http2's
/// multiplexer, and so AsyncHTTPClient over HTTP/2, cost several times more per call).
/// A unary exchange's response is collected whole; a streamed one (a watch) answers with its head
/// and then hands each chunk to its `ResponseStream`, whose consumer paces the server through
/// the stream's flow-control window.
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

    /// Our receive window per stream and for the connection, for unary calls (a large list never
    /// waits for a window update).
    static let unaryWindow = 16 * 1024 * 1024

    struct Stream {
        let promise: EventLoopPromise<KeepAlive.Response>
        /// Where a streamed response's chunks go.
        let sink: ResponseStream?
        var status: Int?
        var headers = HTTPHeaders()
        var body: ByteBuffer?
        var unacknowledged = 0
        /// Streamed: the head was answered; chunks go to `sink` from now on.
        var streaming = false
        /// Streamed: window withheld while the consumer is behind.
        var owed = 0
    }

    let authority: String
    /// The receive window of each stream (and, for unary connections, of the connection).
    let window: Int
    private var streams: [HTTP2StreamID: Stream] = [:]
    private var queued = CircularBuffer<KeepAlive.Exchange>()
    private var nextStreamID = HTTP2StreamID(1)
    private var maxConcurrent = 100
    private var connectionUnacknowledged = 0
    private var goingAway = false
    private var closed = false
    private var handshaken = false
    /// The answer to our PING not yet come: the connection closes when it has not by then.
    private var pingDeadline: Scheduled<Void>?
    /// Requests written from many tasks share a flush (and so TLS records and a syscall).
    private let flushes = DeferredFlush()

    /// A connection past its last stream ID.
    struct StreamIDsUsedUp: Error, CustomStringConvertible {
        var description: String { "the connection has used all its HTTP/2 stream IDs; a new one takes its calls" }
    }

    /// No new streams; closes when the open ones are done. Exchanges queued here go elsewhere.
    private func retire(context: ChannelHandlerContext) {
        health.retired.store(true, ordering: .relaxed)
        goingAway = true
        while let queuedExchange = queued.popFirst() { queuedExchange.fail(KeepAlive.Failure.notSent(StreamIDsUsedUp())) }
        if streams.isEmpty { context.close(promise: nil) }
    }

    /// How long a PING may go unanswered before the connection counts as dead.
    static let pingTimeout: TimeAmount = .seconds(5)

    /// The connection failed to answer a PING in time.
    struct Silent: Error, CustomStringConvertible {
        var description: String { "the connection did not answer a ping within \(HTTP2ExchangeHandler.pingTimeout.nanoseconds / 1_000_000_000) s" }
    }

    /// Shared with the pool: set while a PING is unanswered.
    let health: KeepAlive.Health

    /// The highest client stream ID HTTP/2 allows (2³¹ − 1).
    static let lastStreamID = Int(Int32.max)
    /// The highest this connection uses: past it the connection is retired.
    let lastStreamID: Int

    init(authority: String, window: Int = HTTP2ExchangeHandler.unaryWindow, health: KeepAlive.Health = .init(),
         lastStreamID: Int = HTTP2ExchangeHandler.lastStreamID) {
        self.authority = authority
        self.window = window
        self.health = health
        self.lastStreamID = lastStreamID
    }

    /// The connection's window: at least the unary size, so streams paced one by one never
    /// block each other on the connection.
    private var connectionWindow: Int { max(window, Self.unaryWindow) }

    func channelActive(context: ChannelHandlerContext) {
        // The connection window starts at 64 KiB whatever the settings say: open it.
        let grow = HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connectionWindow - 65_535))
        context.writeAndFlush(wrapOutboundOut(grow), promise: nil)
        context.fireChannelActive()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        promise?.succeed()
        guard !closed && !goingAway else {
            exchange.fail(KeepAlive.Failure.notSent(health.closedError(ChannelError.ioOnClosedChannel)))
            return
        }
        if streams.count >= maxConcurrent {
            queued.append(exchange)
        } else {
            open(exchange, context: context)
        }
    }

    func flush(context: ChannelHandlerContext) {
        flushes.flush(context)
    }

    private func open(_ exchange: KeepAlive.Exchange, context: ChannelHandlerContext) {
        let id = nextStreamID
        guard Int(id) <= lastStreamID else {
            // Stream IDs never repeat on a connection: this one is done. It takes nothing new (the
            // call goes elsewhere, nothing was sent) and closes once its open streams end.
            retire(context: context)
            return exchange.fail(KeepAlive.Failure.notSent(StreamIDsUsedUp()))
        }
        if let sink = exchange.stream {
            let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            let loop = context.eventLoop
            let attached = sink.attach(release: { loop.execute { bound.value.handler.release(id, context: bound.value.context) } },
                                       reset: { loop.execute { bound.value.handler.reset(id, context: bound.value.context) } })
            guard attached else { return exchange.fail(CancellationError()) }  // its consumer gave up while it queued
        }
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
        streams[id] = Stream(promise: exchange.promise, sink: exchange.stream)
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
                if stream.sink != nil && status == 200 {
                    // Streamed: answer with the head now; the body follows through the sink.
                    stream.streaming = true
                    stream.promise.succeed(KeepAlive.Response(status: status, headers: stream.headers, body: ByteBuffer()))
                }
            }
            streams[frame.streamID] = stream
            if payload.endStream { finish(frame.streamID, context: context) }
        case .data(let payload):
            let length = payload.data.readableBytes + (payload.paddingBytes ?? 0)
            grantConnection(length, context: context)
            guard var stream = streams[frame.streamID] else { return }
            if case .byteBuffer(var bytes) = payload.data, bytes.readableBytes > 0 {
                if stream.streaming, let sink = stream.sink {
                    if !sink.deliver(bytes) {
                        stream.owed += length
                        streams[frame.streamID] = stream
                        if payload.endStream { finish(frame.streamID, context: context) }
                        return
                    }
                } else if stream.body == nil {
                    stream.body = bytes
                } else {
                    stream.body!.writeBuffer(&bytes)
                }
            }
            if !payload.endStream { grantStream(length, to: frame.streamID, &stream, context: context) }
            streams[frame.streamID] = stream
            if payload.endStream { finish(frame.streamID, context: context) }
        case .rstStream(let code):
            guard let stream = streams.removeValue(forKey: frame.streamID) else { return }
            let error = NIOHTTP2Errors.streamClosed(streamID: frame.streamID, errorCode: code)
            end(stream, code == .refusedStream ? KeepAlive.Failure.notSent(error) : KeepAlive.Failure.lost(error))
            openQueued(context: context)
        case .goAway(let lastStreamID, let code, _):
            goingAway = true
            // Streams above the last one the server processed never ran: safe to send again.
            for id in streams.keys where id > lastStreamID {
                if let stream = streams.removeValue(forKey: id) {
                    end(stream, KeepAlive.Failure.notSent(NIOHTTP2Errors.streamClosed(streamID: id, errorCode: code)))
                }
            }
            while let waiting = queued.popFirst() { waiting.fail(KeepAlive.Failure.notSent(ChannelError.outputClosed)) }
            if streams.isEmpty { context.close(promise: nil) }
        case .ping(_, ack: true):
            pingDeadline?.cancel()
            pingDeadline = nil
            health.suspect.store(false, ordering: .relaxed)
        case .settings(.settings(let settings)):
            handshaken = true
            for setting in settings where setting.parameter == .maxConcurrentStreams { maxConcurrent = max(1, setting.value) }
            openQueued(context: context)
        default:
            break
        }
    }

    /// Gives back what the server sent on the connection, in steps of a quarter window.
    private func grantConnection(_ length: Int, context: ChannelHandlerContext) {
        guard length > 0 else { return }
        connectionUnacknowledged += length
        if connectionUnacknowledged >= connectionWindow / 4 {
            context.write(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connectionUnacknowledged))), promise: nil)
            connectionUnacknowledged = 0
            context.flush()
        }
    }

    /// Gives back what the server sent on a stream that goes on, in steps of a quarter window.
    private func grantStream(_ length: Int, to id: HTTP2StreamID, _ stream: inout Stream, context: ChannelHandlerContext) {
        stream.unacknowledged += length
        if stream.unacknowledged >= window / 4 {
            context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: stream.unacknowledged))), promise: nil)
            stream.unacknowledged = 0
        }
    }

    /// A streamed response's consumer caught up: give the server the window withheld meanwhile.
    func release(_ id: HTTP2StreamID, context: ChannelHandlerContext) {
        guard var stream = streams[id], stream.owed > 0 else { return }
        let owed = stream.owed
        stream.owed = 0
        grantStream(owed, to: id, &stream, context: context)
        streams[id] = stream
    }

    /// A streamed response's consumer gave up: reset the stream (the other streams go on), and
    /// check that the connection still answers — a consumer most often gives up because its
    /// stream went silent (a partition drops packets without a word), and then every stream of the
    /// connection is as dead and a new connection is needed.
    func reset(_ id: HTTP2StreamID, context: ChannelHandlerContext) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(.cancel))), promise: nil)
        ping(context: context)
        end(stream, CancellationError())
        openQueued(context: context)
        if goingAway && streams.isEmpty { context.close(promise: nil) }
    }

    /// Sends a PING (unless one is out); without its answer within `pingTimeout` the connection
    /// is closed, failing its streams so their consumers start over on a new one. Until the
    /// answer, the pool sends new calls to other connections.
    private func ping(context: ChannelHandlerContext) {
        guard pingDeadline == nil, !closed else { return context.flush() }
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: 1), ack: false))), promise: nil)
        health.suspect.store(true, ordering: .relaxed)
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        pingDeadline = context.eventLoop.scheduleTask(in: Self.pingTimeout) {
            bound.value.handler.errorCaught(context: bound.value.context, error: Silent())
        }
    }

    private func finish(_ id: HTTP2StreamID, context: ChannelHandlerContext) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        if stream.streaming {
            stream.sink?.finish()
        } else if let status = stream.status {
            stream.promise.succeed(KeepAlive.Response(status: status, headers: stream.headers, body: stream.body ?? ByteBuffer()))
            stream.sink?.finish()
        } else {
            end(stream, KeepAlive.Failure.lost(KeepAlive.UnexpectedResponse()))
        }
        openQueued(context: context)
        if goingAway && streams.isEmpty { context.close(promise: nil) }
    }

    /// Fails a stream: its response if none was given yet, else its streamed body.
    private func end(_ stream: Stream, _ error: any Error) {
        if stream.streaming {
            stream.sink?.finish(throwing: error)
        } else {
            stream.promise.fail(error)
            stream.sink?.finish(throwing: error)
        }
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
        pingDeadline?.cancel()
        pingDeadline = nil
        let failure = KeepAlive.Failure.of(error, sessionUp: handshaken)
        for (_, stream) in streams { end(stream, failure) }
        streams.removeAll()
        while let waiting = queued.popFirst() { waiting.fail(KeepAlive.Failure.notSent(error)) }
    }
}
