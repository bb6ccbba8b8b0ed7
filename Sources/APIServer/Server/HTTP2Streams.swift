import API
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOSSL
import NIOTLS
import ServiceLifecycle
import Synchronization
import Client

/// The server's connections: TLS, then by ALPN either HTTP/2 served as frames (below) or
/// HTTP/1.1 served by Hummingbird.
///
/// Over HTTP/2 a request is an entry in a dictionary and a task, not a channel with its own
/// pipeline and async bridges (what swift-nio-http2's multiplexer builds for every stream, and
/// with it Hummingbird's HTTP/2: a third of the server's CPU per request went there). Streams
/// are answered by `APIResponder` directly; a stream the client resets, or a connection that
/// closes, cancels its requests (a watch ends at once). On graceful shutdown a connection sends
/// GOAWAY, finishes the streams it has, and closes.
struct APIServerChannel: ServerChildChannel {
    enum Negotiated: Sendable {
        /// Decided by the first request's head.
        case http1(EventLoopFuture<HTTP1Decision>)
        case http2(HTTP2Connection)
    }

    enum HTTP1Decision: Sendable {
        case ordinary(HTTP1Channel.Value)
        /// exec, attach or port-forward: the connection is proxied to the pod's agent.
        case upgrade(RawRequestHead, UpgradeSniffer)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    let sslContext: NIOSSLContext
    let http1: HTTP1Channel
    let api: APIResponder
    let logger: Logger

    /// Open connections per source address (shared by every listener of the process).
    let connections: ConnectionCounter

    init(tls: TLSConfiguration, hummingbird: @escaping HTTPChannelHandler.Responder, api: APIResponder, logger: Logger) throws {
        var tls = tls
        tls.applicationProtocols = ["h2", "http/1.1"]
        sslContext = try NIOSSLContext(configuration: tls)
        let limits = api.limits
        http1 = HTTP1Channel(responder: hummingbird, configuration: .init(idleTimeout: TimeAmount(limits.idleTimeout)))
        self.api = api
        self.logger = logger
        connections = ConnectionCounter(limit: limits.maxConnectionsPerAddress)
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let address = channel.remoteAddress?.ipAddress ?? ""
            guard connections.open(address) else {
                channel.close(promise: nil)
                throw ConnectionCounter.OverLimit(address: address, limit: connections.limit)
            }
            channel.closeFuture.whenComplete { [connections] _ in connections.close(address) }
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
            // A client that connects and never finishes its handshake is let go.
            try channel.pipeline.syncOperations.addHandler(HandshakeDeadline(limit: TimeAmount(api.limits.handshakeTimeout)))
            let alpn = NIOTypedApplicationProtocolNegotiationHandler<Negotiated> { result, channel in
                switch result {
                case .negotiated("h2"):
                    return channel.eventLoop.makeCompletedFuture {
                        let settings = [HTTP2Setting(parameter: .maxConcurrentStreams, value: HTTP2Connection.maxStreams),
                                        HTTP2Setting(parameter: .initialWindowSize, value: HTTP2Connection.window),
                                        HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize)]
                        try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .server, initialSettings: settings))
                        let connection = HTTP2Connection(channel: channel, api: api, logger: logger)
                        try channel.pipeline.syncOperations.addHandler(HTTP2StreamsHandler(connection: connection))
                        return .http2(connection)
                    }
                case .negotiated("http/1.1"), .fallback:
                    // The first request's head decides: an upgrade to a pod stream is proxied,
                    // anything else goes to Hummingbird's HTTP/1.1 handlers. (Answered at once:
                    // this handler holds the connection's bytes back until it has its answer.)
                    return channel.eventLoop.makeCompletedFuture {
                        let sniffer = UpgradeSniffer(eventLoop: channel.eventLoop, headTimeout: TimeAmount(api.limits.idleTimeout),
                                                     takes: APIResponder.isPodStream)
                        try channel.pipeline.syncOperations.addHandler(sniffer)
                        let decided = sniffer.sniffed.flatMap { [http1] sniffed -> EventLoopFuture<HTTP1Decision> in
                            switch sniffed {
                            case .ordinary:
                                return http1.setup(channel: channel, logger: logger).map { value in
                                    sniffer.handOn()
                                    return .ordinary(value)
                                }
                            case .upgrade(let head):
                                return channel.eventLoop.makeSucceededFuture(.upgrade(head, sniffer))
                            }
                        }
                        return .http1(decided)
                    }
                case .negotiated:
                    return channel.close().flatMapThrowing { throw NIOHTTP2Errors.invalidALPNToken() }
                }
            }
            try channel.pipeline.syncOperations.addHandler(alpn)
            return Value(negotiated: alpn.protocolNegotiationResult, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        guard let negotiated = try? await value.negotiated.get() else { return }
        switch negotiated {
        case .http1(let decided):
            // A connection that has not sent its first head yet is closed on graceful shutdown
            // (Hummingbird closes its idle connections then; this one is not Hummingbird's yet).
            let channel = value.channel
            let decision = await withGracefulShutdownHandler {
                try? await decided.get()
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
            switch decision {
            case .ordinary(let connection)?:
                await http1.handle(value: connection, logger: logger)
            case .upgrade(let head, let sniffer)?:
                // exec, attach, port-forward: the stream ends on graceful shutdown.
                await withGracefulShutdownHandler {
                    await api.serveStream(head, sniffer: sniffer, channel: channel)
                } onGracefulShutdown: {
                    channel.close(promise: nil)
                }
            case nil:
                value.channel.close(promise: nil)
            }
        case .http2(let connection):
            await connection.run()
        }
    }
}

/// Open connections by source address, with a cap per address.
final class ConnectionCounter: Sendable {
    struct OverLimit: Error, CustomStringConvertible {
        let address: String
        let limit: Int
        var description: String { "\(address) already holds \(limit) connections (the limit per address)" }
    }

    let limit: Int
    private let open = Mutex<[String: Int]>([:])

    init(limit: Int) { self.limit = limit }

    /// Counts a new connection from `address`; false (and not counted) when it is over the limit.
    func open(_ address: String) -> Bool {
        open.withLock { counts in
            let now = counts[address, default: 0]
            if limit > 0 && now >= limit { return false }
            counts[address] = now + 1
            return true
        }
    }

    func close(_ address: String) {
        open.withLock { counts in
            let left = counts[address, default: 1] - 1
            counts[address] = left > 0 ? left : nil
        }
    }
}

/// One HTTP/2 connection's requests: each runs as a task of its own; the connection lives
/// until it closes and its tasks have ended.
final class HTTP2Connection: Sendable {
    /// Concurrent streams a client may open (Kubernetes' API server allows 250 by default).
    static let maxStreams = 250
    /// Our receive window per stream and for the connection: a request body up to the 3 MiB
    /// cap never waits for a window update. The connection's window is given back only as
    /// bodies are handed to their requests, so it is also the most one connection's unfinished
    /// bodies can hold.
    static let window = 4 * 1024 * 1024
    /// Less than this left of the connection's window counts as spent (no body could finish).
    static let windowSlack = 16 * 1024

    let channel: any Channel
    let api: APIResponder
    let logger: Logger
    /// Where writes (create, update, delete) run: on the connection's event loop, so a request
    /// is read, answered and its response written on one thread. Reads (a list can be large, a
    /// watch lasts) run on the concurrency pool and never hold the loop.
    let executor: EventLoopExecutor

    init(channel: any Channel, api: APIResponder, logger: Logger) {
        self.channel = channel
        self.api = api
        self.logger = logger
        executor = EventLoopExecutor(channel.eventLoop)
    }

    /// Until the connection is closed (by the client, by an error, or after a graceful
    /// shutdown's GOAWAY once its streams are done) and every request task has ended.
    func run() async {
        let channel = channel
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await channel.closeFuture.get()
            } onGracefulShutdown: {
                channel.pipeline.handler(type: HTTP2StreamsHandler.self).whenSuccess { $0.goAway() }
            }
        } onCancel: {
            channel.close(promise: nil)
        }
        if let handler = try? await channel.pipeline.handler(type: HTTP2StreamsHandler.self).get() {
            await handler.tasksEnded()
        }
    }

    /// Answers one request on `stream` and writes the response as frames.
    func serve(_ head: HTTPRequest, body: ByteBuffer, stream: HTTP2StreamID) async {
        var context = APIRequestContext(source: ApplicationRequestContextSource(channel: channel, logger: logger))
        context.cancelledWithStream = true
        let request = Request(head: head, body: RequestBody(buffer: body))
        let response: Response
        do {
            response = try await api.respond(to: request, context: context)
        } catch {
            logger.error("request failed", metadata: ["path": "\(head.path ?? "")", "error": "\(error)"])
            response = Response(status: .internalServerError)
        }
        var fields = response.headers
        if let length = response.body.contentLength, fields[.contentLength] == nil { fields[.contentLength] = String(length) }
        var writer = HTTP2BodyWriter(channel: channel, stream: stream, status: response.status, fields: fields,
                                     wholeLength: response.body.contentLength)
        if response.body.contentLength == nil {
            // A stream (a watch) answers at once: a client waits for the head before it reads
            // the body, and a quiet watch may have nothing to send for minutes.
            writer.headSent = true
            writer.inFlight = channel.writeAndFlush(HTTP2StreamsHandler.Outbound(stream: stream, part: .head(response.status, fields, body: nil, endStream: false)))
        }
        do {
            try await response.body.write(writer)
        } catch {
            // The stream or connection went away mid-response; nothing more to send.
            channel.writeAndFlush(HTTP2StreamsHandler.Outbound(stream: stream, part: .reset(.cancel)), promise: nil)
        }
    }
}

/// Writes one response: its head with the first data (or alone), then data frames, each waiting
/// until the one before was written (a watch's consumer that reads slowly slows its watch, not
/// the server's memory).
struct HTTP2BodyWriter: ResponseBodyWriter {
    let channel: any Channel
    let stream: HTTP2StreamID
    let status: HTTPResponse.Status
    let fields: HTTPFields
    /// The body's length when known: a first write that long is the whole body.
    let wholeLength: Int?
    var headSent = false
    var ended = false
    var inFlight: EventLoopFuture<Void>?

    mutating func write(_ buffer: ByteBuffer) async throws {
        if let inFlight { try await inFlight.get() }
        if !headSent {
            headSent = true
            let whole = wholeLength == buffer.readableBytes
            ended = whole
            inFlight = channel.writeAndFlush(HTTP2StreamsHandler.Outbound(stream: stream, part: .head(status, fields, body: buffer, endStream: whole)))
        } else {
            inFlight = channel.writeAndFlush(HTTP2StreamsHandler.Outbound(stream: stream, part: .data(buffer, endStream: false)))
        }
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        if ended { return }
        if let inFlight { try await inFlight.get() }
        let part: HTTP2StreamsHandler.Part = headSent ? .data(ByteBuffer(), endStream: true) : .head(status, fields, body: nil, endStream: true)
        try await channel.writeAndFlush(HTTP2StreamsHandler.Outbound(stream: stream, part: part)).get()
    }
}

/// Turns frames into requests and responses into frames, on the connection's event loop.
final class HTTP2StreamsHandler: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = Outbound
    typealias OutboundOut = HTTP2Frame

    enum Part {
        case head(HTTPResponse.Status, HTTPFields, body: ByteBuffer?, endStream: Bool)
        case data(ByteBuffer, endStream: Bool)
        case reset(NIOHTTP2.HTTP2ErrorCode)
    }

    struct Outbound {
        let stream: HTTP2StreamID
        let part: Part
    }

    struct Stream {
        var head: HTTPRequest?
        var body = ByteBuffer()
        var dispatched = false
        /// The client has sent its whole request.
        var requestEnded = false
        var task: Task<Void, Never>?
        /// When the body must have arrived by (cancelled once it has).
        var bodyDeadline: Scheduled<Void>?
    }

    let connection: HTTP2Connection
    let maxBody: Int
    /// Bytes of request bodies this server holds, across connections (over its cap: 429).
    let budget: BodyBudget
    private var streams: [HTTP2StreamID: Stream] = [:]
    /// Bytes held in this connection's bodies not yet handed to a request. The client may send
    /// only as much as its window allows, and the window is given back only as bytes leave this
    /// buffer (dispatched or discarded), so this never passes `HTTP2Connection.window`.
    private var buffered = 0
    /// Whether the TLS peer presented a client certificate (read once, at the first stream).
    private var certified: Bool?
    /// Closes the connection once it has had no stream for the idle timeout.
    private var idleTimer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    private var unacknowledged = 0
    private var lastStreamID = HTTP2StreamID.rootStream
    private var goingAway = false
    private var running = 0
    private var whenIdle: [CheckedContinuation<Void, Never>] = []
    /// Responses written from many request tasks share a flush (and so TLS records and a syscall).
    private let flushes = DeferredFlush()

    init(connection: HTTP2Connection) {
        self.connection = connection
        maxBody = connection.api.limits.maxBodyBytes
        budget = connection.api.bodyBudget
    }

    /// Whether the connection's TLS peer presented a certificate (the TLS layer verified it
    /// against the cluster CA; without one, only a bearer token can identify a request).
    private func isCertified(_ context: ChannelHandlerContext) -> Bool {
        if let certified { return certified }
        let handler = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
        let known = (try? handler?.peerCertificate) != nil
        certified = known
        return known
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive {
            openWindow(context: context)
            armIdleTimer(context: context)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        openWindow(context: context)
        armIdleTimer(context: context)
        context.fireChannelActive()
    }

    /// With no stream open and no request running, the connection goes (GOAWAY, then close)
    /// after the idle timeout, unless a stream opens first.
    private func armIdleTimer(context: ChannelHandlerContext) {
        guard idleTimer == nil, streams.isEmpty, running == 0, !goingAway else { return }
        let loop = NIOLoopBound(self, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: TimeAmount(connection.api.limits.idleTimeout)) {
            let handler = loop.value
            handler.idleTimer = nil
            if handler.streams.isEmpty && handler.running == 0 { handler.goAway() }
        }
    }

    private func disarmIdleTimer() {
        idleTimer?.cancel()
        idleTimer = nil
    }

    private func openWindow(context: ChannelHandlerContext) {
        // The connection's window starts at 64 KiB whatever the settings say.
        let grow = HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: HTTP2Connection.window - 65_535))
        context.writeAndFlush(wrapOutboundOut(grow), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let id = frame.streamID
        switch frame.payload {
        case .headers(let payload):
            if var stream = streams[id] {
                // Trailers end the request.
                if payload.endStream {
                    stream.requestEnded = true
                    streams[id] = stream
                    dispatch(id, context: context)
                }
                return
            }
            guard !goingAway, let head = Self.request(payload.headers) else {
                context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(goingAway ? .refusedStream : .protocolError))), promise: nil)
                return
            }
            if id > lastStreamID { lastStreamID = id }
            disarmIdleTimer()
            streams[id] = Stream(head: head, requestEnded: payload.endStream)
            // A caller with neither a certificate nor a bearer token is answered at once (401, or
            // a health check), its body never read: no stranger gets memory held for it.
            let anonymous = !isCertified(context) && head.headerFields[.authorization] == nil
            if payload.endStream || anonymous {
                dispatch(id, context: context)
            } else {
                // A body that trickles in (or never comes) holds the stream no longer than this.
                let limit = connection.api.limits.requestTimeout
                let loop = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
                streams[id]?.bodyDeadline = context.eventLoop.scheduleTask(in: TimeAmount(limit)) {
                    var error = APIError(408, "Timeout", "the request body did not arrive within \(limit)")
                    error.retryAfterSeconds = nil
                    loop.value.handler.refuse(id, context: loop.value.context, error)
                }
                // A bearer token is checked now, while the body comes: a bad one is answered 401
                // at once and what the body had sent is let go, so a made-up token holds no memory
                // or budget for longer than one token lookup.
                if !isCertified(context), let authorization = head.headerFields[.authorization] {
                    let api = connection.api
                    let eventLoop = context.eventLoop
                    Task {
                        var refusal: APIError?
                        do {
                            if try await api.authenticateBearer(authorization: authorization) == nil { refusal = .unauthorized }
                        } catch let error as APIError {
                            refusal = error
                        } catch {
                            refusal = .unauthorized
                        }
                        guard let refusal else { return }
                        eventLoop.execute { loop.value.handler.refuse(id, context: loop.value.context, refusal) }
                    }
                }
            }
        case .data(let payload):
            let length = payload.data.readableBytes + (payload.paddingBytes ?? 0)
            guard var stream = streams[id], !stream.dispatched else {
                // Not kept (answered already, or unknown): the window goes back at once.
                grant(length, context: context)
                return
            }
            var kept = 0
            if case .byteBuffer(var bytes) = payload.data {
                // One byte past the cap is enough for the responder to answer 413.
                let room = maxBody + 1 - stream.body.readableBytes
                if bytes.readableBytes > room { bytes = bytes.getSlice(at: bytes.readerIndex, length: max(0, room))! }
                kept = bytes.readableBytes
                stream.body.writeBuffer(&bytes)
            }
            // Padding and what is cut off past the cap are not held.
            grant(length - kept, context: context)
            buffered += kept
            stream.requestEnded = payload.endStream
            streams[id] = stream
            guard budget.take(kept) else {
                // This chunk was not counted: it leaves the body (and goes back to the window)
                // here; the rest of the body, counted, goes with the refusal.
                if var refused = streams[id] {
                    refused.body.moveWriterIndex(to: refused.body.writerIndex - kept)
                    streams[id] = refused
                }
                buffered -= kept
                grant(kept, context: context)
                refuse(id, context: context, APIError.tooManyRequests("the server holds as many request bodies as it may (\(budget.limit) bytes)"))
                return
            }
            if payload.endStream || stream.body.readableBytes > maxBody {
                dispatch(id, context: context)
            } else if buffered >= HTTP2Connection.window - HTTP2Connection.windowSlack {
                // The connection's window is spent on bodies that are not complete: none can
                // finish. The largest one is refused, so the others can.
                let largest = streams.filter { !$0.value.dispatched }.max { $0.value.body.readableBytes < $1.value.body.readableBytes }
                refuse(largest?.key ?? id, context: context,
                       APIError.tooManyRequests("this connection holds as much unfinished request body as it may (\(HTTP2Connection.window) bytes)"))
            }
        case .rstStream:
            if let stream = streams.removeValue(forKey: id) {
                stream.task?.cancel()
                stream.bodyDeadline?.cancel()
                if !stream.dispatched {
                    buffered -= stream.body.readableBytes
                    budget.give(stream.body.readableBytes)
                    grant(stream.body.readableBytes, context: context)
                }
            }
            closeIfDone(context: context)
            armIdleTimer(context: context)
        default:
            break
        }
    }

    /// The request's head from HTTP/2 header fields; nil when a required pseudo-header is missing.
    static func request(_ headers: HPACKHeaders) -> HTTPRequest? {
        var method: HTTPRequest.Method?
        var scheme: String?
        var authority: String?
        var path: String?
        var fields = HTTPFields()
        for (name, value, _) in headers {
            switch name {
            case ":method": method = HTTPRequest.Method(value)
            case ":scheme": scheme = value
            case ":authority": authority = value
            case ":path": path = value
            default:
                if name.hasPrefix(":") { return nil }
                if let fieldName = HTTPField.Name(name) { fields.append(HTTPField(name: fieldName, value: value)) }
            }
        }
        guard let method, let path else { return nil }
        return HTTPRequest(method: method, scheme: scheme, authority: authority, path: path, headerFields: fields)
    }

    private func dispatch(_ id: HTTP2StreamID, context: ChannelHandlerContext) {
        guard var stream = streams[id], !stream.dispatched, let head = stream.head else { return }
        stream.dispatched = true
        stream.bodyDeadline?.cancel()
        let body = stream.body
        stream.body = ByteBuffer()
        // The body leaves this connection's buffer: its window goes back to the client. It stays
        // in the server's budget until its request is done.
        let size = body.readableBytes
        buffered -= size
        grant(size, context: context)
        running += 1
        let connection = connection
        let loop = context.eventLoop
        let budget = budget
        // Writes run on the connection's event loop, reads on the concurrency pool (no preference).
        let executor: (any TaskExecutor)? = head.method == .get ? nil : connection.executor
        stream.task = Task(executorPreference: executor) {
            await connection.serve(head, body: body, stream: id)
            budget.give(size)
            if loop.inEventLoop { self.taskEnded() } else { loop.execute { self.taskEnded() } }
        }
        streams[id] = stream
    }

    /// Answers a stream whose body will not be read with `error` (its Status), drops what it
    /// had sent and gives that back to the window and the budget; the request is not carried out.
    private func refuse(_ id: HTTP2StreamID, context: ChannelHandlerContext, _ error: APIError) {
        guard var stream = streams[id], !stream.dispatched else { return }
        let size = stream.body.readableBytes
        stream.dispatched = true
        stream.bodyDeadline?.cancel()
        stream.body = ByteBuffer()
        streams[id] = stream
        buffered -= size
        budget.give(size)
        grant(size, context: context)
        var fields = HTTPFields()
        fields[.contentType] = WireFormat.json.rawValue
        if let retry = error.retryAfterSeconds { fields[.retryAfter] = String(retry) }
        let body = ByteBuffer(bytes: error.status.jsonBytes())
        fields[.contentLength] = String(body.readableBytes)
        context.channel.writeAndFlush(Outbound(stream: id, part: .head(HTTPResponse.Status(code: error.code), fields, body: body, endStream: true)), promise: nil)
    }

    private func taskEnded() {
        running -= 1
        if running == 0, let context { armIdleTimer(context: context) }
        if running == 0 {
            let waiting = whenIdle
            whenIdle = []
            for continuation in waiting { continuation.resume() }
        }
    }

    /// Returns once no request task is running (after the connection closed, none starts).
    func tasksEnded() async {
        await withCheckedContinuation { continuation in
            connection.channel.eventLoop.execute {
                if self.running == 0 { continuation.resume() } else { self.whenIdle.append(continuation) }
            }
        }
    }

    /// Gives the connection back what the client sent (a stream's window is larger than any
    /// body accepted).
    private func grant(_ length: Int, context: ChannelHandlerContext) {
        guard length > 0 else { return }
        unacknowledged += length
        if unacknowledged >= HTTP2Connection.window / 4 {
            context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: unacknowledged))), promise: nil)
            unacknowledged = 0
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let outbound = unwrapOutboundIn(data)
        let id = outbound.stream
        guard let stream = streams[id] else {
            promise?.fail(CancellationError())  // reset by the client, or the connection closed
            return
        }
        let last: Bool
        switch outbound.part {
        case .head(_, _, _, let endStream), .data(_, let endStream): last = endStream
        case .reset: last = true
        }
        // A stream's last frame: once it is written (not merely queued) the stream is done, and a
        // connection that is going away may close; closing earlier would drop it.
        let written = last ? context.eventLoop.makePromise(of: Void.self) : nil
        if let written {
            if let promise { written.futureResult.cascade(to: promise) }
            written.futureResult.whenComplete { _ in self.closeIfDone(context: context) }
        }
        let framePromise = written ?? promise
        switch outbound.part {
        case .head(let status, let fields, let body, let endStream):
            var headers = HPACKHeaders()
            headers.reserveCapacity(fields.count + 1)
            headers.add(name: ":status", value: String(status.code))
            for field in fields {
                // Values that differ per response (a length, a request id) would only push the
                // reusable ones out of the connection's HPACK table, and cost a search to add.
                let perResponse = field.name == .contentLength || field.name == APIResponder.auditID
                headers.add(name: field.name.canonicalName, value: field.value, indexing: perResponse ? .nonIndexable : .indexable)
            }
            let hasBody = (body?.readableBytes ?? 0) > 0
            context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers, endStream: endStream && !hasBody)))),
                          promise: hasBody ? nil : framePromise)
            if hasBody, let body {
                context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body), endStream: endStream)))), promise: framePromise)
            }
        case .data(let buffer, let endStream):
            context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(buffer), endStream: endStream)))), promise: framePromise)
        case .reset(let code):
            context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(code))), promise: framePromise)
        }
        guard last else { return }
        if case .reset = outbound.part {} else if !stream.requestEnded {
            // Answered before the client finished sending (413): it need not go on.
            context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(.noError))), promise: nil)
        }
        streams[id] = nil
        armIdleTimer(context: context)
    }

    func flush(context: ChannelHandlerContext) {
        flushes.flush(context)
    }

    /// Graceful shutdown: no new streams; the connection closes once its streams are done.
    func goAway() {
        guard let context, !goingAway else { return }
        goingAway = true
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil))), promise: nil)
        closeIfDone(context: context)
    }

    private func closeIfDone(context: ChannelHandlerContext) {
        if goingAway && streams.isEmpty { context.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The server allows half-closure (for HTTP/1.1); an HTTP/2 client that closes its side
        // (TLS close_notify, FIN) is gone: close ours at once, or it waits for our close_notify.
        if case .inputClosed = event as? ChannelEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarmIdleTimer()
        for (_, stream) in streams {
            stream.task?.cancel()
            stream.bodyDeadline?.cancel()
            if !stream.dispatched { budget.give(stream.body.readableBytes) }
        }
        buffered = 0
        streams.removeAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Stream-level protocol errors are answered by NIOHTTP2Handler itself; a connection-level
        // one ends the connection.
        if error is NIOHTTP2Errors.StreamClosed || error is NIOHTTP2Errors.NoSuchStream { return }
        context.close(promise: nil)
    }
}

/// Runs the jobs of the tasks that prefer it on one event loop.
final class EventLoopExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop

    init(_ loop: any EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(on: executor) }
    }
}
