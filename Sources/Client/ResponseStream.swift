import AsyncHTTPClient
import NIOCore
import Synchronization

/// A streamed response body (a watch, a followed log) arriving on an HTTP/2 stream of a shared
/// connection. The connection's handler yields chunks into it as they arrive; the consumer reads
/// them as an async sequence.
///
/// Backpressure is HTTP/2's own flow control: the handler gives the stream's window back to the
/// server only while less than `highWater` bytes wait unread here. A consumer that falls behind
/// stops the server from sending more on this stream (the server's watch cuts off a watcher it
/// cannot write to, with a revision to resume from), without holding up the other streams of the
/// connection. The consumer reopens the window once it has read half of what waited.
/// A consumer that stops reading (its task cancelled, the sequence dropped) resets the stream.
public final class ResponseStream: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    /// Unread bytes above which the server is not given more window.
    static let highWater = 512 * 1024

    let chunks: AsyncThrowingStream<ByteBuffer, any Error>
    private let continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation
    private let buffered = Atomic<Int>(0)
    private let stalled = Atomic<Bool>(false)
    /// How to reach the connection's handler for this stream, once the stream is open.
    private let upstream = Mutex<Upstream>(Upstream())

    struct Upstream {
        var cancelled = false
        var ended = false
        /// Sends the window owed to the server (on the connection's event loop).
        var release: (@Sendable () -> Void)?
        /// Resets the stream (on the connection's event loop).
        var reset: (@Sendable () -> Void)?
        /// Called once, when the stream ends or is cancelled.
        var onEnd: (@Sendable () -> Void)?
    }

    init() {
        (chunks, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { self?.cancel() }
        }
    }

    // MARK: The connection's side (its event loop)

    /// Connects the stream to its handler; false when the consumer already gave up.
    func attach(release: @escaping @Sendable () -> Void, reset: @escaping @Sendable () -> Void) -> Bool {
        upstream.withLock { upstream in
            guard !upstream.cancelled else { return false }
            upstream.release = release
            upstream.reset = reset
            return true
        }
    }

    /// Delivers a chunk; returns whether the stream's window may be given back now (false: it is
    /// owed until the consumer catches up and calls `release`).
    func deliver(_ bytes: ByteBuffer) -> Bool {
        let waiting = buffered.add(bytes.readableBytes, ordering: .relaxed).newValue
        continuation.yield(bytes)
        guard waiting > Self.highWater else { return true }
        stalled.store(true, ordering: .sequentiallyConsistent)
        // The consumer may have caught up between the add and the store: then it saw no stall.
        if buffered.load(ordering: .sequentiallyConsistent) <= Self.highWater / 2,
           stalled.exchange(false, ordering: .sequentiallyConsistent) {
            return true
        }
        return false
    }

    func finish(throwing error: (any Error)? = nil) {
        let onEnd = upstream.withLock { upstream -> (@Sendable () -> Void)? in
            upstream.ended = true
            upstream.release = nil
            upstream.reset = nil
            defer { upstream.onEnd = nil }
            return upstream.onEnd
        }
        continuation.finish(throwing: error)
        onEnd?()
    }

    /// Runs `body` once when the stream ends, is cancelled, or at once if it has.
    func whenEnded(_ body: @escaping @Sendable () -> Void) {
        let now = upstream.withLock { upstream -> Bool in
            if upstream.ended || upstream.cancelled { return true }
            upstream.onEnd = body
            return false
        }
        if now { body() }
    }

    // MARK: The consumer's side

    /// Bytes delivered but not yet read.
    var unread: Int { buffered.load(ordering: .relaxed) }

    /// Whether window is being withheld from the server because the consumer is behind.
    var heldBack: Bool { stalled.load(ordering: .relaxed) }

    /// Stops the stream: resets it if it is open, or keeps it from opening.
    func cancel() {
        let (reset, onEnd) = upstream.withLock { upstream -> ((@Sendable () -> Void)?, (@Sendable () -> Void)?) in
            guard !upstream.ended, !upstream.cancelled else { return (nil, nil) }
            upstream.cancelled = true
            defer { upstream.onEnd = nil }
            return (upstream.reset, upstream.onEnd)
        }
        reset?()
        continuation.finish(throwing: CancellationError())
        onEnd?()
    }

    private func consumed(_ count: Int) {
        let left = buffered.subtract(count, ordering: .sequentiallyConsistent).newValue
        guard left <= Self.highWater / 2, stalled.load(ordering: .relaxed),
              stalled.exchange(false, ordering: .sequentiallyConsistent) else { return }
        upstream.withLock { $0.release }?()
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let reader: Reader
        var chunks: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator

        public mutating func next() async throws -> ByteBuffer? {
            guard let chunk = try await chunks.next() else { return nil }
            reader.stream.consumed(chunk.readableBytes)
            return chunk
        }
    }

    /// Lives as long as the consumer's iterator: a consumer that stops reading (a `break` out of
    /// its loop) resets the stream rather than leaving it open until the server ends it.
    final class Reader: Sendable {
        let stream: ResponseStream
        init(_ stream: ResponseStream) { self.stream = stream }
        deinit { stream.cancel() }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(reader: Reader(self), chunks: chunks.makeAsyncIterator())
    }
}

/// A streamed response body (a watch, a followed log): its chunks as the server sends them.
public struct ResponseBody: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    enum Source: Sendable {
        case http2(ResponseStream)
        case http1(HTTPClientResponse.Body)
    }
    let source: Source

    init(_ source: Source) { self.source = source }

    /// Over HTTP/2, the stream itself (what it holds unread, whether it holds the server back).
    var http2: ResponseStream? {
        if case .http2(let stream) = source { return stream }
        return nil
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        enum Source {
            case http2(ResponseStream.AsyncIterator)
            case http1(HTTPClientResponse.Body.AsyncIterator)
        }
        var source: Source

        public mutating func next() async throws -> ByteBuffer? {
            switch source {
            case .http2(var iterator):
                defer { source = .http2(iterator) }
                return try await iterator.next()
            case .http1(var iterator):
                defer { source = .http1(iterator) }
                return try await iterator.next()
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        switch source {
        case .http2(let stream): AsyncIterator(source: .http2(stream.makeAsyncIterator()))
        case .http1(let body): AsyncIterator(source: .http1(body.makeAsyncIterator()))
        }
    }
}
