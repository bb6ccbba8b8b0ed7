import NIOCore

/// A channel handler's flushes, each run after the writes already queued on its event loop.
///
/// Requests (on a client) and responses (on the server) are written and flushed one by one from
/// many tasks; under load several reach the loop in one turn. Flushed where they arrive, each
/// would be a TLS record and a `write` syscall of its own; deferred, the writes queued before the
/// flush runs leave together. Used from the handler's `flush(context:)`, on its event loop only.
public final class DeferredFlush: @unchecked Sendable {
    private var queued = false

    public init() {}

    public func flush(_ context: ChannelHandlerContext) {
        guard !queued else { return }
        queued = true
        context.eventLoop.execute {
            self.queued = false
            context.flush()
        }
    }
}
