import Hummingbird
import NIOCore

/// Per-request context: Hummingbird's core storage plus the connection, for the TLS peer identity.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    /// The request is an HTTP/2 stream served as frames (HTTP2Connection): its task is cancelled
    /// when the stream or the connection closes, so a watch needs no close observer of its own.
    public var cancelledWithStream = false

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }

    /// Bodies are capped by the API server itself (so it can answer 413 with a Status).
    public var maxUploadSize: Int { Int.max }
}
