import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix

/// A connection to an etcd member's client URL (`http://host:port`, or `https://host:port` with
/// the cluster's CA and a client certificate, as kube-apiserver's `--etcd-cafile`,
/// `--etcd-certfile`, `--etcd-keyfile`): the KV, Watch and Maintenance clients over one HTTP/2
/// channel that reconnects by itself, with back-off, when the member goes away and comes back.
/// (Failing over between members is the store's job: one connection per member.)
public final class EtcdConnection: Sendable {
    public typealias Transport = HTTP2ClientTransport.Posix

    /// Files of the PKI to reach members over mutual TLS.
    public struct TLSFiles: Sendable {
        public var caFile: String
        public var certFile: String
        public var keyFile: String
        public init(caFile: String, certFile: String, keyFile: String) {
            self.caFile = caFile
            self.certFile = certFile
            self.keyFile = keyFile
        }
    }

    public let endpoint: String
    let client: GRPCClient<Transport>
    let connections: Task<Void, Never>

    public var kv: Etcdserverpb_KV.Client<Transport> { .init(wrapping: client) }
    public var watch: Etcdserverpb_Watch.Client<Transport> { .init(wrapping: client) }
    public var maintenance: Etcdserverpb_Maintenance.Client<Transport> { .init(wrapping: client) }

    public init(endpoint: String, tls: TLSFiles? = nil) throws {
        self.endpoint = endpoint
        guard let url = URL(string: endpoint), let host = url.host, let scheme = url.scheme, ["http", "https"].contains(scheme) else {
            throw EtcdError("etcd server \(endpoint): expected http://HOST:PORT or https://HOST:PORT")
        }
        if scheme == "https" && tls == nil {
            throw EtcdError("etcd server \(endpoint): https needs --etcd-cafile, --etcd-certfile and --etcd-keyfile")
        }
        let port = url.port ?? 2379
        var config = Transport.Config.defaults
        config.backoff = .init(initial: .milliseconds(100), max: .seconds(3), multiplier: 1.6, jitter: 0.2)
        // A member behind a partition answers nothing and closes nothing: pings find out (a
        // watch stream would otherwise wait on it forever). etcd accepts a ping every 5 s.
        config.connection.keepalive = .init(time: .seconds(10), timeout: .seconds(5), allowWithoutCalls: true)
        let security: Transport.TransportSecurity
        if scheme == "https", let tls {
            security = .mTLS(certificateChain: [.file(path: tls.certFile, format: .pem)], privateKey: .file(path: tls.keyFile, format: .pem)) {
                $0.trustRoots = .certificates([.file(path: tls.caFile, format: .pem)])
            }
        } else {
            security = .plaintext
        }
        // An address is dialled as one (a DNS target would send it as the TLS server name,
        // which TLS forbids for addresses); the certificate is checked against the CA.
        let transport: Transport
        if IPv4Address(host) != nil {
            transport = try Transport(target: .ipv4(address: host, port: port), transportSecurity: security, config: config)
        } else if host.contains(":") {
            transport = try Transport(target: .ipv6(address: host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: port),
                                      transportSecurity: security, config: config)
        } else {
            transport = try Transport(target: .dns(host: host, port: port), transportSecurity: security, config: config)
        }
        let client = GRPCClient(transport: transport)
        self.client = client
        self.connections = Task { try? await client.runConnections() }
    }

    /// Options for one call: its deadline (a member without quorum does not answer: the call
    /// must end anyway).
    public static func options(timeout: Duration) -> CallOptions {
        var options = CallOptions.defaults
        options.timeout = timeout
        options.maxResponseMessageBytes = 64 * 1024 * 1024
        return options
    }

    public func close() { client.beginGracefulShutdown() }

    deinit { client.beginGracefulShutdown() }
}

/// An IPv4 literal (four decimal bytes).
struct IPv4Address {
    init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) else { return nil }
    }
}

public struct EtcdError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Etcdserverpb_RangeRequest {
    /// The end of the range of every key with `prefix` (the prefix with its last byte plus one,
    /// as etcd's clients make it).
    public static func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]  // every key
    }
}
