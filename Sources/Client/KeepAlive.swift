import Foundation
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// Unary calls over a few keep-alive TLS connections of its own, without AsyncHTTPClient: a
/// request is written to the connection with the fewest calls in flight. Over HTTP/1.1 its
/// response is the next one that connection reads (responses come in request order); over
/// HTTP/2 each call is a stream, handled as frames (HTTP2ExchangeHandler). No connection pool
/// state machine, no task and no channel per request: a call costs a fraction of what
/// AsyncHTTPClient spends on one (figures in BENCHMARKS.md).
///
/// Failures say whether the request may have reached the server: `notSent` (no connection, no
/// TLS session, or a stream the server refused) or `lost` (the connection broke after the
/// request was written), so callers retry only what is safe to retry.
final class KeepAlive: Sendable {
    enum Version: Sendable { case http1, http2 }

    struct UnexpectedResponse: Error, CustomStringConvertible {
        var description: String { "the server sent a response to no request" }
    }

    struct Response: Sendable {
        let status: Int
        let headers: HTTPHeaders
        let body: ByteBuffer
    }

    enum Failure: Error, CustomStringConvertible {
        /// Nothing was sent: no connection, or no TLS session on it.
        case notSent(any Error)
        /// The connection broke after the request was written.
        case lost(any Error)
        /// The client has been shut down.
        case shutDown

        var description: String {
            switch self {
            case .notSent(let error), .lost(let error): "\(error)"
            case .shutDown: "the client has been shut down"
            }
        }

        /// A connection's failure as its waiting calls see it: before the session was up (TLS,
        /// or HTTP/2's settings) nothing can have been sent.
        static func of(_ error: any Error, sessionUp: Bool) -> Failure {
            error as? Failure ?? (sessionUp ? .lost(error) : .notSent(error))
        }
    }

    /// A request and where its response goes: all of it to `promise`, or (HTTP/2, with
    /// `stream`) the head of a 200 to `promise` and the body, as it comes, to `stream`.
    struct Exchange: Sendable {
        let head: HTTPRequestHead
        let body: ByteBuffer?
        let promise: EventLoopPromise<Response>
        var stream: ResponseStream? = nil

        func fail(_ error: any Error) {
            promise.fail(error)
            stream?.finish(throwing: error)
        }
    }

    struct Slot {
        var channel: EventLoopFuture<any Channel>?
        var health = Health()
        var inflight = 0
    }

    /// Whether a connection is in doubt: its handler sent a PING (a stream of it went silent)
    /// and has no answer yet. New calls go elsewhere meanwhile.
    final class Health: Sendable {
        let suspect = Atomic<Bool>(false)
        /// The connection has used up its stream IDs: it takes no new calls, and closes once its
        /// streams are done; the pool connects afresh in its place.
        let retired = Atomic<Bool>(false)
        /// What first went wrong on the connection (a refused TLS handshake, say), for calls
        /// that find it closed afterwards: they report that, not "I/O on closed channel".
        let firstError = Mutex<String?>(nil)

        func closedError(_ fallback: any Error) -> any Error {
            firstError.withLock { $0 }.map { ConnectionError(description: $0) } ?? fallback
        }
    }

    /// The text of the error that closed a connection, as a later call sees it.
    struct ConnectionError: Error, CustomStringConvertible {
        let description: String
    }

    struct Slots {
        var slots: [Slot]
        var shutDown = false
    }

    let version: Version
    let host: String
    let port: Int
    let hostHeader: String
    let sslContext: NIOSSLContext
    let serverHostname: String?
    let connectTimeout: TimeAmount
    let group: any EventLoopGroup
    /// HTTP/2: each stream's receive window.
    let window: Int
    /// With a value, another connection opens once every one carries this many calls (for
    /// long-lived streams, which would otherwise queue behind each other for good).
    let growBeyond: Int?
    private let state: Mutex<Slots>
    /// The highest stream ID a connection uses before it is retired (HTTP/2's limit; tests lower it).
    let lastStreamID: Int

    init(_ version: Version, host: String, port: Int, tls: TLSConfiguration, connections: Int, connectTimeout: TimeAmount,
         window: Int = HTTP2ExchangeHandler.unaryWindow, growBeyond: Int? = nil,
         group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
         lastStreamID: Int = HTTP2ExchangeHandler.lastStreamID) throws {
        self.lastStreamID = lastStreamID
        self.version = version
        self.host = host
        self.port = port
        hostHeader = (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
        var tls = tls
        tls.applicationProtocols = version == .http2 ? ["h2"] : ["http/1.1"]
        // We close a connection when it has failed us (a deadline passed, a ping went unanswered):
        // its close_notify will not come either; NIOSSL's default is to wait 5 s for it, during
        // which the dead connection still looks open and takes new calls.
        tls.shutdownTimeout = .milliseconds(200)
        sslContext = try NIOSSLContext(configuration: tls)
        // SNI takes names only; an address is verified against the certificate's IP SANs.
        serverHostname = (try? SocketAddress(ipAddress: host, port: port)) == nil ? host : nil
        self.connectTimeout = connectTimeout
        self.window = window
        self.growBeyond = growBeyond
        self.group = group
        state = Mutex(Slots(slots: Array(repeating: Slot(), count: max(1, connections))))
    }

    /// One request and its whole response; fails at `deadline` (closing the connection, whose
    /// other calls then fail as `lost`).
    func execute(_ head: HTTPRequestHead, body: ByteBuffer?, deadline: NIODeadline) async throws -> Response {
        let (index, channel, health) = try await pick()
        defer { state.withLock { $0.slots[index].inflight -= 1 } }
        let promise = channel.eventLoop.makePromise(of: Response.self)
        send(Exchange(head: head, body: body, promise: promise), on: channel, health: health)
        let timer = channel.eventLoop.scheduleTask(deadline: deadline) { channel.close(promise: nil) }
        defer { timer.cancel() }
        return try await promise.futureResult.get()
    }

    /// HTTP/2 only: a request whose 200 response streams (a watch). Returns at the head, with the
    /// body to follow in the stream; any other status comes whole, with an ended stream. A head
    /// that has not come by `deadline`, or cancellation, resets the stream (not the connection).
    func stream(_ head: HTTPRequestHead, deadline: NIODeadline) async throws -> (Response, ResponseStream) {
        precondition(version == .http2, "streamed responses need HTTP/2")
        let (index, channel, health) = try await pick()
        let sink = ResponseStream()
        sink.whenEnded { [self] in state.withLock { $0.slots[index].inflight -= 1 } }
        let promise = channel.eventLoop.makePromise(of: Response.self)
        send(Exchange(head: head, body: nil, promise: promise, stream: sink), on: channel, health: health)
        let timer = channel.eventLoop.scheduleTask(deadline: deadline) { sink.cancel() }
        defer { timer.cancel() }
        let response = try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            sink.cancel()
        }
        return (response, sink)
    }

    /// Hands an exchange to the connection's handler; a connection that closed before the handler
    /// saw it (it checks, and answers, every exchange it sees) fails it as not sent.
    private func send(_ exchange: Exchange, on channel: any Channel, health: Health) {
        channel.writeAndFlush(exchange).whenFailure { exchange.fail(Failure.notSent(health.closedError($0))) }
    }

    /// The connection with the fewest calls in flight (connecting it if need be), counting this one.
    private func pick() async throws -> (Int, any Channel, Health) {
        let picked = state.withLock { state -> (Int, EventLoopFuture<any Channel>, Health)? in
            if state.shutDown { return nil }
            var best: Int?
            // A connection that used up its stream IDs finishes its calls on its own; its slot
            // connects afresh.
            for i in state.slots.indices where state.slots[i].health.retired.load(ordering: .relaxed) {
                state.slots[i].channel = nil
                state.slots[i].health = Health()
            }
            for i in state.slots.indices where state.slots[i].channel == nil || !state.slots[i].health.suspect.load(ordering: .relaxed) {
                if best.map({ state.slots[i].inflight < state.slots[$0].inflight }) ?? true { best = i }
            }
            if best == nil || growBeyond.map({ state.slots[best!].inflight >= $0 }) == true {
                state.slots.append(Slot())
                best = state.slots.count - 1
            }
            let index = best!
            state.slots[index].inflight += 1
            if let channel = state.slots[index].channel { return (index, channel, state.slots[index].health) }
            let health = Health()
            let made = connect(health)
            state.slots[index].channel = made
            state.slots[index].health = health
            return (index, made, health)
        }
        guard let (index, connecting, health) = picked else { throw Failure.shutDown }
        do {
            let channel = try await connecting.get()
            guard channel.isActive else {
                // Closed since (the server ended an idle connection, or refused the handshake):
                // nothing was sent on it.
                forget(index, connecting)
                throw Failure.notSent(health.closedError(ChannelError.ioOnClosedChannel))
            }
            return (index, channel, health)
        } catch {
            state.withLock { $0.slots[index].inflight -= 1 }
            forget(index, connecting)
            throw error as? Failure ?? Failure.notSent(error)
        }
    }

    func shutdown() async {
        let channels = state.withLock { state -> [EventLoopFuture<any Channel>] in
            state.shutDown = true
            defer { for i in state.slots.indices { state.slots[i].channel = nil } }
            return state.slots.compactMap(\.channel)
        }
        for channel in channels {
            if let open = try? await channel.get() { try? await open.close() }
        }
    }

    private func forget(_ index: Int, _ channel: EventLoopFuture<any Channel>) {
        state.withLock { state in
            if state.slots[index].channel === channel { state.slots[index].channel = nil }
        }
    }

    private func connect(_ health: Health) -> EventLoopFuture<any Channel> {
        let sslContext = sslContext
        let serverHostname = serverHostname
        let version = version
        let authority = hostHeader
        let window = window
        let connectTimeout = connectTimeout
        let lastStreamID = lastStreamID
        let made = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                    try channel.pipeline.syncOperations.addHandler(tls)
                    try channel.pipeline.syncOperations.addHandler(FirstErrorRecorder(health: health))
                    try channel.pipeline.syncOperations.addHandler(HandshakeDeadline(limit: connectTimeout))
                    switch version {
                    case .http1:
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(HTTP1ExchangeHandler())
                    case .http2:
                        let settings = [HTTP2Setting(parameter: .maxConcurrentStreams, value: 100),
                                        HTTP2Setting(parameter: .initialWindowSize, value: window),
                                        HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize)]
                        try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client, initialSettings: settings))
                        try channel.pipeline.syncOperations.addHandler(HTTP2ExchangeHandler(authority: authority, window: window, health: health, lastStreamID: lastStreamID))
                    }
                }
            }
            .connect(host: host, port: port)
        return made
    }
}

/// Keeps the first error a connection's pipeline saw (for calls that come after its close).
final class FirstErrorRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let health: KeepAlive.Health
    init(health: KeepAlive.Health) { self.health = health }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        health.firstError.withLock { if $0 == nil { $0 = "\(error)" } }
        context.fireErrorCaught(error)
    }
}

/// Closes a connection whose TLS handshake has not finished within `limit` of connecting: a
/// peer that accepts and then says nothing (a partition that drops packets, a hung server) would
/// otherwise hold the calls written to it until their deadlines, and look open all the while.
/// (The API server uses it too: a client that connects and never finishes its handshake holds
/// a connection, and with enough of them, every connection there is.)
public final class HandshakeDeadline: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = NIOAny

    struct Expired: Error, CustomStringConvertible {
        let limit: TimeAmount
        var description: String { "no TLS handshake within \(limit.nanoseconds / 1_000_000) ms of connecting" }
    }

    let limit: TimeAmount
    private var timer: Scheduled<Void>?

    public init(limit: TimeAmount) { self.limit = limit }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard timer == nil else { return }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let limit = limit
        timer = context.eventLoop.scheduleTask(in: limit) {
            bound.value.fireErrorCaught(Expired(limit: limit))
            bound.value.close(promise: nil)
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            timer?.cancel()
            timer = nil
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }
}

/// HTTP/1.1: writes each exchange's request and answers exchanges in order as their responses
/// arrive; when the connection ends, every exchange still waiting fails.
final class HTTP1ExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = KeepAlive.Exchange
    typealias OutboundOut = HTTPClientRequestPart

    private var waiting = CircularBuffer<EventLoopPromise<KeepAlive.Response>>()
    private var head: HTTPResponseHead?
    private var body: ByteBuffer?
    private var handshaken = false
    private var closed = false
    /// What closed the connection, for exchanges written after.
    private var failure: (any Error)?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        guard !closed else {
            exchange.promise.fail(KeepAlive.Failure.notSent(failure ?? ChannelError.ioOnClosedChannel))
            return
        }
        waiting.append(exchange.promise)
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        if let body = exchange.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let received):
            head = received
            body = nil
        case .body(var part):
            if body == nil { body = part } else { body!.writeBuffer(&part) }
        case .end:
            guard let received = head, let promise = waiting.popFirst() else {
                // A response nobody asked for: the connection can no longer be trusted.
                fail(KeepAlive.Failure.lost(KeepAlive.UnexpectedResponse()))
                context.close(promise: nil)
                return
            }
            head = nil
            let answer = KeepAlive.Response(status: Int(received.status.code), headers: received.headers, body: body ?? ByteBuffer())
            body = nil
            if !received.isKeepAlive {
                closed = true
                context.close(promise: nil)
            }
            promise.succeed(answer)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { handshaken = true }
        context.fireUserInboundEventTriggered(event)
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
        if self.failure == nil { self.failure = error }
        let failure = KeepAlive.Failure.of(error, sessionUp: handshaken)
        while let promise = waiting.popFirst() { promise.fail(failure) }
    }
}
