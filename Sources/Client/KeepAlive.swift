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

    /// A request and where its response goes.
    struct Exchange {
        let head: HTTPRequestHead
        let body: ByteBuffer?
        let promise: EventLoopPromise<Response>
    }

    struct Slot {
        var channel: EventLoopFuture<any Channel>?
        var inflight = 0
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
    private let state: Mutex<Slots>

    init(_ version: Version, host: String, port: Int, tls: TLSConfiguration, connections: Int, connectTimeout: TimeAmount,
         group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        self.version = version
        self.host = host
        self.port = port
        hostHeader = (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
        var tls = tls
        tls.applicationProtocols = version == .http2 ? ["h2"] : ["http/1.1"]
        sslContext = try NIOSSLContext(configuration: tls)
        // SNI takes names only; an address is verified against the certificate's IP SANs.
        serverHostname = (try? SocketAddress(ipAddress: host, port: port)) == nil ? host : nil
        self.connectTimeout = connectTimeout
        self.group = group
        state = Mutex(Slots(slots: Array(repeating: Slot(), count: max(1, connections))))
    }

    /// One request and its whole response; fails at `deadline` (closing the connection, whose
    /// other calls then fail as `lost`).
    func execute(_ head: HTTPRequestHead, body: ByteBuffer?, deadline: NIODeadline) async throws -> Response {
        let picked = state.withLock { state -> (Int, EventLoopFuture<any Channel>)? in
            if state.shutDown { return nil }
            var best = 0
            for i in state.slots.indices where state.slots[i].inflight < state.slots[best].inflight { best = i }
            state.slots[best].inflight += 1
            if let channel = state.slots[best].channel { return (best, channel) }
            let made = connect()
            state.slots[best].channel = made
            return (best, made)
        }
        guard let (index, connecting) = picked else { throw Failure.shutDown }
        defer { state.withLock { $0.slots[index].inflight -= 1 } }
        let channel: any Channel
        do {
            channel = try await connecting.get()
        } catch {
            forget(index, connecting)
            throw Failure.notSent(error)
        }
        guard channel.isActive else {
            // Closed since (the server ended an idle connection): nothing was sent on it.
            forget(index, connecting)
            throw Failure.notSent(ChannelError.ioOnClosedChannel)
        }
        let promise = channel.eventLoop.makePromise(of: Response.self)
        channel.writeAndFlush(Exchange(head: head, body: body, promise: promise), promise: nil)
        let timer = channel.eventLoop.scheduleTask(deadline: deadline) { channel.close(promise: nil) }
        defer { timer.cancel() }
        return try await promise.futureResult.get()
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

    private func connect() -> EventLoopFuture<any Channel> {
        let sslContext = sslContext
        let serverHostname = serverHostname
        let version = version
        let authority = hostHeader
        let made = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname)
                    try channel.pipeline.syncOperations.addHandler(tls)
                    switch version {
                    case .http1:
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(HTTP1ExchangeHandler())
                    case .http2:
                        let settings = [HTTP2Setting(parameter: .maxConcurrentStreams, value: 100),
                                        HTTP2Setting(parameter: .initialWindowSize, value: HTTP2ExchangeHandler.window),
                                        HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize)]
                        try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client, initialSettings: settings))
                        try channel.pipeline.syncOperations.addHandler(HTTP2ExchangeHandler(authority: authority))
                    }
                }
            }
            .connect(host: host, port: port)
        return made
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

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        guard !closed else {
            exchange.promise.fail(KeepAlive.Failure.notSent(ChannelError.ioOnClosedChannel))
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
        let failure = KeepAlive.Failure.of(error, sessionUp: handshaken)
        while let promise = waiting.popFirst() { promise.fail(failure) }
    }
}
