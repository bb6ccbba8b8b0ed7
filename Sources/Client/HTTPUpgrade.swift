import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// The head of an HTTP/1.1 request as it came off the wire: what a proxy of upgraded connections
/// (exec, attach, port-forward: WebSocket or SPDY, whichever the client speaks) needs to decide,
/// to rewrite the target and to send it on unchanged otherwise.
public struct RawRequestHead: Sendable {
    public var method: String
    /// Path and query, as sent.
    public var target: String
    public var headers: [(name: String, value: String)]

    public init(method: String, target: String, headers: [(name: String, value: String)]) {
        self.method = method
        self.target = target
        self.headers = headers
    }

    /// The path, without the query.
    public var path: String { String(target.prefix { $0 != "?" }) }

    /// The query as sent (no `?`), empty when there is none.
    public var rawQuery: String {
        guard let mark = target.firstIndex(of: "?") else { return "" }
        return String(target[target.index(after: mark)...])
    }

    /// The query's pairs in order, decoded as Go's `url.ParseQuery` does (`+` is a space).
    public var query: [(key: String, value: String)] {
        rawQuery.split(separator: "&").compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String {
                let spaced = text.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            guard let key = parts.first, !key.isEmpty else { return nil }
            return (decode(key), parts.count > 1 ? decode(parts[1]) : "")
        }
    }

    /// The first value of the header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// Whether the request asks to switch protocols (`Connection: Upgrade` with an `Upgrade` header).
    public var isUpgrade: Bool {
        guard header("Upgrade") != nil, let connection = header("Connection") else { return false }
        return connection.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == "upgrade" }
    }

    /// Parses a request head (request line and header lines, ending with an empty line).
    /// nil when it is not one.
    public static func parse(_ bytes: some Collection<UInt8>) -> RawRequestHead? {
        guard let text = String(bytes: bytes, encoding: .utf8) else { return nil }
        var lines = text.components(separatedBy: "\r\n")
        guard !lines.isEmpty else { return nil }
        let requestLine = lines.removeFirst().split(separator: " ", omittingEmptySubsequences: true)
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1."), requestLine[1].hasPrefix("/") else { return nil }
        var headers: [(name: String, value: String)] = []
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { return nil }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, !name.contains(" ") else { return nil }
            headers.append((name, line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        return RawRequestHead(method: String(requestLine[0]), target: String(requestLine[1]), headers: headers)
    }

    /// The head as bytes for the wire.
    public func serialized() -> [UInt8] {
        var text = "\(method) \(target) HTTP/1.1\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        text += "\r\n"
        return Array(text.utf8)
    }

    /// A plain HTTP/1.1 answer that closes the connection (for refusals before any upgrade).
    public static func response(code: Int, reason: String, contentType: String, body: [UInt8]) -> [UInt8] {
        var text = "HTTP/1.1 \(code) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        text.reserveCapacity(text.utf8.count + body.count)
        return Array(text.utf8) + body
    }
}

/// Reads the first request head of an HTTP/1.1 connection and lets its owner decide: an ordinary
/// request (the sniffer hands the bytes on to the HTTP handlers set up after it and removes
/// itself) or an upgrade the owner serves itself (the bytes after the head are kept for it).
/// A connection that has sent no whole head within `headTimeout`, or more than `maxHeadBytes`
/// without one, is taken for ordinary: the HTTP handlers after it answer and time out as always.
public final class UpgradeSniffer: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    public enum Sniffed: Sendable {
        case ordinary
        case upgrade(RawRequestHead)
    }

    private let takes: @Sendable (RawRequestHead) -> Bool
    private let maxHeadBytes: Int
    private let headTimeout: TimeAmount
    private let promise: EventLoopPromise<Sniffed>
    private var buffered: ByteBuffer?
    private var decided = false
    private var context: ChannelHandlerContext?
    private var timeout: Scheduled<Void>?

    /// Completed on the channel's event loop once the first head was read (or given up on).
    public var sniffed: EventLoopFuture<Sniffed> { promise.futureResult }

    public init(eventLoop: any EventLoop, maxHeadBytes: Int = 16 * 1024, headTimeout: TimeAmount = .seconds(30),
                takes: @escaping @Sendable (RawRequestHead) -> Bool) {
        self.takes = takes
        self.maxHeadBytes = maxHeadBytes
        self.headTimeout = headTimeout
        promise = eventLoop.makePromise()
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timeout = context.eventLoop.scheduleTask(in: headTimeout) { loopBound.value.decide(.ordinary) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        self.context = nil
        if !decided {
            decided = true
            promise.fail(ChannelError.ioOnClosedChannel)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if buffered == nil { buffered = bytes } else { buffered!.writeBuffer(&bytes) }
        guard !decided, let buffer = buffered else { return }
        let view = buffer.readableBytesView
        if let end = Self.endOfHead(view) {
            if let head = RawRequestHead.parse(view[view.startIndex..<end]), takes(head) {
                buffered!.moveReaderIndex(forwardBy: end + 4 - view.startIndex)
                decide(.upgrade(head))
            } else {
                decide(.ordinary)
            }
        } else if view.count > maxHeadBytes {
            decide(.ordinary)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if !decided {
            decided = true
            timeout?.cancel()
            promise.fail(ChannelError.eof)
        }
        context.fireChannelInactive()
    }

    private func decide(_ sniffed: Sniffed) {
        guard !decided else { return }
        decided = true
        timeout?.cancel()
        promise.succeed(sniffed)
    }

    /// For an ordinary request, once the HTTP handlers are in place: hands on what was read and
    /// leaves the pipeline. Call on the channel's event loop.
    public func handOn() {
        guard let context else { return }
        if let buffered, buffered.readableBytes > 0 {
            self.buffered = nil
            context.fireChannelRead(wrapInboundOut(buffered))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// For an upgrade: the bytes that came after the head, and the sniffer leaves the pipeline
    /// (whatever arrives later goes to the handlers after it). Call on the channel's event loop.
    public func takeRest() -> ByteBuffer? {
        let rest = buffered
        buffered = nil
        if let context { context.pipeline.syncOperations.removeHandler(context: context, promise: nil) }
        return rest.flatMap { $0.readableBytes > 0 ? $0 : nil }
    }

    static func endOfHead(_ view: ByteBufferView) -> Int? {
        guard view.count >= 4 else { return nil }
        var index = view.startIndex
        let last = view.endIndex - 3
        while index < last {
            if view[index] == 13 && view[index + 1] == 10 && view[index + 2] == 13 && view[index + 3] == 10 { return index }
            index += 1
        }
        return nil
    }
}

/// Reads the answer to an upgrade request: its status code (and for a refusal, its body, up to
/// its length, the connection's end, 64 KiB or 5 s). Keeps every byte for whoever joins the
/// connection on (`takeAll`).
public final class ResponseHeadReader: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    public struct Answer: Sendable {
        public var code: Int
        public var body: String
    }

    private let promise: EventLoopPromise<Answer>
    private var buffered = ByteBuffer()
    private var code: Int?
    private var bodyStart = 0
    private var length: Int?
    private var done = false
    private var context: ChannelHandlerContext?
    private var timeout: Scheduled<Void>?

    public var answer: EventLoopFuture<Answer> { promise.futureResult }

    public init(eventLoop: any EventLoop) {
        promise = eventLoop.makePromise()
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timeout = context.eventLoop.scheduleTask(in: .seconds(5)) { loopBound.value.finish() }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        self.context = nil
        if !done {
            done = true
            promise.fail(ChannelError.ioOnClosedChannel)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffered.writeBuffer(&bytes)
        guard !done else { return }
        if code == nil {
            let view = buffered.readableBytesView
            guard let end = UpgradeSniffer.endOfHead(view) else {
                if view.count > 64 * 1024 { finish() }
                return
            }
            let text = String(decoding: view[view.startIndex..<end], as: UTF8.self)
            let lines = text.components(separatedBy: "\r\n")
            let status = lines.first?.split(separator: " ") ?? []
            code = status.count > 1 ? Int(status[1]) ?? 0 : 0
            bodyStart = end + 4 - view.startIndex
            length = lines.dropFirst().first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces)) }
            if code == 101 {
                finish()
                return
            }
        }
        let body = buffered.readableBytes - bodyStart
        if let length, body >= length { finish() } else if body > 64 * 1024 { finish() }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    private func finish() {
        guard !done else { return }
        done = true
        timeout?.cancel()
        guard let code else {
            promise.fail(ChannelError.eof)
            return
        }
        let view = buffered.readableBytesView
        let body = code == 101 ? "" : String(decoding: view.dropFirst(bodyStart).prefix(length ?? Int.max), as: UTF8.self)
        promise.succeed(Answer(code: code, body: body))
    }

    /// For a 101 whose connection this side goes on speaking: what came after the head goes to the
    /// handlers after the reader, which leaves the pipeline. Call on the channel's event loop.
    public func handOnAfterHead() {
        guard let context else { return }
        var rest = buffered
        buffered = ByteBuffer()
        rest.moveReaderIndex(forwardBy: min(bodyStart, rest.readableBytes))
        if rest.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(rest))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// Everything read so far (the answer's head included), and the reader leaves the pipeline.
    public func takeAll() -> ByteBuffer? {
        let all = buffered
        buffered = ByteBuffer()
        if let context { context.pipeline.syncOperations.removeHandler(context: context, promise: nil) }
        return all.readableBytes > 0 ? all : nil
    }
}

/// Joins two channels on one event loop: what one reads the other writes, with back-pressure
/// (a side reads only while the other can write), and when either closes, both do.
public final class SpliceHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var partner: SpliceHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    private init() {}

    /// Two handlers, one for each channel; both channels must be on the same event loop.
    public static func pair() -> (SpliceHandler, SpliceHandler) {
        let first = SpliceHandler(), second = SpliceHandler()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    /// Joins `a` and `b` (on `a`'s event loop, which must be `b`'s). With `sniffer` (in `a`'s
    /// pipeline), what it read after the head goes to `b` first, in the same turn of the event
    /// loop that puts the splice in its place (no byte in between is lost). Completes when both
    /// have closed.
    /// With `answer` (in `b`'s pipeline, having read `b`'s answer to the upgrade), that answer and
    /// what came after it go to `a` first, the same way.
    public static func join(_ a: any Channel, _ b: any Channel, sniffer: UpgradeSniffer?, answer: ResponseHeadReader? = nil) -> EventLoopFuture<Void> {
        precondition(a.eventLoop === b.eventLoop, "splicing needs both channels on one event loop")
        let handlers = Unchecked((pair(), sniffer, answer))
        return a.eventLoop.submit {
            let ((left, right), sniffer, answer) = handlers.value
            if let rest = sniffer?.takeRest() { b.writeAndFlush(rest, promise: nil) }
            if let read = answer?.takeAll() { a.writeAndFlush(read, promise: nil) }
            try b.pipeline.syncOperations.addHandler(right)
            try a.pipeline.syncOperations.addHandler(left)
        }.flatMap {
            a.closeFuture.and(b.closeFuture).map { _ in }
        }.flatMapError { error in
            a.close(promise: nil)
            b.close(promise: nil)
            return a.eventLoop.makeFailedFuture(error)
        }
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if !context.channel.isActive { partner?.partnerClosed() }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.context?.write(data, promise: nil)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerClosed()
        context.fireChannelInactive()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // No half-close across TLS: the end of one side's input ends the splice.
            context.close(promise: nil)
            partner?.partnerClosed()
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
        partner?.partnerClosed()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerWritable() }
        context.fireChannelWritabilityChanged()
    }

    public func read(context: ChannelHandlerContext) {
        if let partnerChannel = partner?.context?.channel, !partnerChannel.isWritable {
            pendingRead = true
        } else {
            context.read()
        }
    }

    private func partnerWritable() {
        if pendingRead, let context {
            pendingRead = false
            context.read()
        }
    }

    private func partnerClosed() {
        guard let context else { return }
        // What was written still goes out before the close.
        context.flush()
        context.close(promise: nil)
    }
}

/// Opens a connection for an upgraded stream: plain TCP or TLS, on a given event loop (so it can
/// be spliced to a channel there). With TLS it returns once the handshake is done (a peer that is
/// not who it should be is an error here, not a stream that ends without a word), and the peer's
/// certificate must name the host dialled: a DNS name is checked (and sent as SNI) as given, an
/// IP address against the certificate's IP addresses — as the context's verification says.
public enum StreamDialer {
    public static func connect(host: String, port: Int, tls: NIOSSLContext?, on eventLoop: any EventLoop,
                               timeout: TimeAmount = .seconds(5)) async throws -> any Channel {
        let isIP = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        let handshake = eventLoop.makePromise(of: Void.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: eventLoop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: isIP ? nil : host))
                            try channel.pipeline.syncOperations.addHandler(HandshakeWaiter(handshake))
                        } else {
                            handshake.succeed()
                        }
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            handshake.fail(error)
            throw error
        }
        let deadline = eventLoop.scheduleTask(in: timeout) { handshake.fail(ChannelError.connectTimeout(timeout)) }
        defer { deadline.cancel() }
        do {
            try await handshake.futureResult.get()
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return channel
    }
}

/// Completes a promise when the TLS handshake is done, or fails it with what ended it first.
final class HandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let promise: EventLoopPromise<Void>
    private var done = false

    init(_ promise: EventLoopPromise<Void>) { self.promise = promise }

    private func finish(_ error: (any Error)?) {
        guard !done else { return }
        done = true
        if let error { promise.fail(error) } else { promise.succeed() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event { finish(nil) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(ChannelError.eof)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish(ChannelError.ioOnClosedChannel)
    }
}

/// A value handed to an event loop's closure that only ever touches it there.
struct Unchecked<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
