import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix

/// A connection to a CRI runtime (containerd, CRI-O, `cox runtime process`, ...) at a
/// `unix:///path` endpoint: the RuntimeService and ImageService clients over one HTTP/2 channel
/// that reconnects by itself, with back-off, when the runtime goes away and comes back.
public final class CRIConnection: Sendable {
    public typealias Transport = HTTP2ClientTransport.Posix
    public let endpoint: String
    public let socketPath: String
    let client: GRPCClient<Transport>
    let connections: Task<Void, Never>

    public var runtime: Runtime_V1_RuntimeService.Client<Transport> { .init(wrapping: client) }
    public var images: Runtime_V1_ImageService.Client<Transport> { .init(wrapping: client) }

    public init(endpoint: String) throws {
        self.endpoint = endpoint
        self.socketPath = try Self.socketPath(endpoint)
        var config = Transport.Config.defaults
        config.backoff = .init(initial: .milliseconds(100), max: .seconds(5), multiplier: 1.6, jitter: 0.2)
        // Lists of every container on a busy node outgrow the 4 MiB default (containerd allows 16).
        config.http2.authority = "localhost"
        let transport = try Transport(target: .unixDomainSocket(path: socketPath, authority: "localhost"),
                                      transportSecurity: .plaintext, config: config)
        let client = GRPCClient(transport: transport)
        self.client = client
        self.connections = Task { try? await client.runConnections() }
    }

    /// `unix:///run/containerd/containerd.sock` (or a bare absolute path) → the socket's path.
    public static func socketPath(_ endpoint: String) throws -> String {
        if endpoint.hasPrefix("unix://") {
            let path = String(endpoint.dropFirst("unix://".count))
            guard path.hasPrefix("/") else { throw CRIError("container runtime endpoint \(endpoint): the socket path must be absolute (unix:///path/to.sock)") }
            return path
        }
        if endpoint.hasPrefix("/") { return endpoint }
        throw CRIError("container runtime endpoint \(endpoint): only unix:// endpoints are supported (unix:///run/containerd/containerd.sock)")
    }

    /// Options for one call: its deadline.
    public static func options(timeout: Duration) -> CallOptions {
        var options = CallOptions.defaults
        options.timeout = timeout
        options.maxResponseMessageBytes = 16 * 1024 * 1024
        return options
    }

    /// Ends the connection gracefully (cancelling its task instead can trap inside NIO's async
    /// channels when a stream is half-way open).
    public func close() {
        client.beginGracefulShutdown()
    }

    deinit { client.beginGracefulShutdown() }
}

public struct CRIError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension RPCError {
    /// The runtime is not there (no socket, refused, gone mid-call) rather than saying no.
    public var runtimeUnreachable: Bool { code == .unavailable || code == .deadlineExceeded }
}
