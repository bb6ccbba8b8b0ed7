import API
import Client
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PKI
import Synchronization

/// A node's own credentials, from joining a cluster with a bootstrap token, in its data directory:
///
///     DATA/pki/ca.crt                    the cluster CA, pinned by its hash when joining
///     DATA/pki/node.crt, node.key        the node's client identity (CN=cox:node:NAME, O=cox:nodes; key 0600)
///     DATA/pki/serving.crt, serving.key  its log endpoint's serving certificate (key 0600)
///     DATA/node.kubeconfig               the client identity in kubectl's format (0600)
///
/// Certificates are renewed (new keys) when 70 % of their life has passed.
public struct NodeCredentials: Sendable {
    public let dataDirectory: String
    public let nodeName: String

    public init(dataDirectory: String, nodeName: String) {
        self.dataDirectory = dataDirectory
        self.nodeName = nodeName
    }

    public static let kubeconfigFile = "node.kubeconfig"
    public var kubeconfigPath: String { (dataDirectory as NSString).appendingPathComponent(Self.kubeconfigFile) }
    var pkiDirectory: String { (dataDirectory as NSString).appendingPathComponent("pki") }
    func path(_ name: String) -> String { (pkiDirectory as NSString).appendingPathComponent(name) }
    public var commonName: String { NodeIdentity.user(nodeName) }

    /// Why a node cannot join, in one sentence a person can act on.
    public struct JoinError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Whether this node has joined before (its kubeconfig exists).
    public var exist: Bool { FileManager.default.fileExists(atPath: kubeconfigPath) }

    // MARK: Joining

    /// Joins the cluster at `server`: pins its CA by `caCertHash` (nothing is sent to a server
    /// whose CA does not match), asks for a client certificate with the bootstrap `token`, and
    /// writes the credentials. Returns the node's kubeconfig.
    public func join(server: String, token: String, caCertHash: String, logger: Logger) async throws -> Kubeconfig {
        guard TokenFormat.parse(token) != nil else {
            throw JoinError(description: "--token: \"\(token.prefix(7))…\" is not a token (ID.SECRET, 6 and 16 characters of a-z and 0-9); make one with `cox token create`")
        }
        // With several servers (`--server a,b`), the first that answers is pinned.
        var pinned: String?
        var failure: (any Error)?
        for candidate in Kubeconfig.serverList(server) where pinned == nil {
            do {
                pinned = try await Self.pinCA(server: candidate, expectedHash: caCertHash)
            } catch let error as JoinError where error.description.contains("--ca-cert-hash") {
                throw error
            } catch {
                failure = error
            }
        }
        guard let caPEM = pinned else { throw failure ?? JoinError(description: "--server: no server given") }
        logger.info("the server's CA matches --ca-cert-hash; requesting a node certificate", metadata: ["server": "\(server)", "node": "\(nodeName)"])
        let bootstrap = try APIClient(kubeconfig: Kubeconfig(server: server, caPEM: caPEM, user: "bootstrap", token: token), timeout: .seconds(20))
        defer { Task { try? await bootstrap.shutdown() } }
        let kubeconfig: Kubeconfig
        do {
            kubeconfig = try await requestClientCertificate(using: bootstrap, server: server, caPEM: caPEM)
        } catch let error as ClientError where error.code == 401 {
            throw JoinError(description: "the server refused the bootstrap token (unknown, revoked or expired): make a new one with `cox token create` on the server")
        }
        try write([("ca.crt", caPEM, 0o644)])
        return kubeconfig
    }

    /// A new client certificate for this node through `client` (a bootstrap token when joining,
    /// the node's current certificate when renewing); written to disk before it is returned.
    func requestClientCertificate(using client: APIClient, server: String, caPEM: String) async throws -> Kubeconfig {
        let (request, key) = try CertificateRequest.make(commonName: commonName, organizations: [NodeIdentity.group])
        let certificate = try await client.requestCertificate(request, signerName: NodeIdentity.clientSigner,
                                                              usages: ["digital signature", "client auth"])
        try write([("node.key", key, 0o600), ("node.crt", certificate, 0o644)])
        let kubeconfig = Kubeconfig(server: server, caPEM: caPEM, user: commonName, clientCertificatePEM: certificate, clientKeyPEM: key)
        try kubeconfig.write(to: kubeconfigPath)
        return kubeconfig
    }

    /// A serving certificate for the node's log endpoint at `address`, signed on request (the
    /// node-serving CA; the API server trusts it for agents only).
    public func requestServingCertificate(using client: APIClient, address: String) async throws -> KeyPair {
        let isIP = CertificateAuthority.ipAddressBytes(address) != nil
        let (request, key) = try CertificateRequest.make(commonName: commonName, organizations: [NodeIdentity.group],
                                                         dnsNames: [nodeName] + (isIP ? [] : [address]), ipAddresses: isIP ? [address] : [])
        let certificate = try await client.requestCertificate(request, signerName: NodeIdentity.servingSigner,
                                                              usages: ["digital signature", "server auth"])
        try write([("serving.key", key, 0o600), ("serving.crt", certificate, 0o644)])
        return KeyPair(certificatePEM: certificate, privateKeyPEM: key)
    }

    /// Writes files into DATA/pki (0700), each atomically with its mode.
    func write(_ files: [(name: String, text: String, mode: Int)]) throws {
        try FileManager.default.createDirectory(atPath: pkiDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for file in files { try Kubeconfig.writeFile(file.text, to: path(file.name), mode: file.mode) }
    }

    /// The stored kubeconfig, or an error saying to join (again) when it is missing or expired.
    public func load() throws -> Kubeconfig {
        let kubeconfig = try Kubeconfig.load(path: kubeconfigPath)
        guard let certificate = kubeconfig.clientCertificatePEM else { throw JoinError(description: "\(kubeconfigPath) holds no client certificate") }
        let expiry = try CertificateRequest.notValidAfter(certificate)
        guard expiry > Date() else {
            throw JoinError(description: "the node certificate in \(kubeconfigPath) expired at \(expiry); join again with --server, --token and --ca-cert-hash")
        }
        return kubeconfig
    }

    /// When to renew the client certificate: 70 % of the way from when it was written to when it expires.
    public func renewalDate() throws -> Date {
        let certificate = try String(contentsOfFile: path("node.crt"), encoding: .utf8)
        let expiry = try CertificateRequest.notValidAfter(certificate)
        let written = (try? FileManager.default.attributesOfItem(atPath: path("node.crt"))[.modificationDate] as? Date) ?? Date()
        return written.addingTimeInterval(max(0, expiry.timeIntervalSince(written)) * 0.7)
    }

    /// Waits until `date`, then gets a new client certificate through `client` (made from
    /// `current`), retrying every few seconds while the server cannot be reached. Returns the new kubeconfig.
    public func renew(using client: APIClient, current: Kubeconfig, at date: Date, logger: Logger) async throws -> Kubeconfig {
        try await Task.sleep(for: .seconds(max(0, date.timeIntervalSinceNow)))
        while true {
            do {
                return try await requestClientCertificate(using: client, server: current.server, caPEM: current.caPEM)
            } catch {
                logger.warning("cannot renew the node certificate yet; retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(3))
            }
        }
    }

    // MARK: Pinning the CA

    /// The CA certificate (PEM) in the TLS chain `server` presents whose key hash is
    /// `expectedHash`. The connection only goes as far as the handshake: a server that cannot
    /// prove this CA is never sent anything.
    public static func pinCA(server: String, expectedHash: String, timeout: Duration = .seconds(10)) async throws -> String {
        guard expectedHash.hasPrefix("sha256:"), expectedHash.count == 71 else {
            throw JoinError(description: "--ca-cert-hash: \"\(expectedHash)\" is not sha256:<64 hex digits> (the server's `cox token create --print-join-command` prints it)")
        }
        guard let url = URL(string: server), url.scheme == "https", let bracketed = url.host else {
            throw JoinError(description: "--server: \"\(server)\" is not an https:// URL")
        }
        let host = bracketed.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let port = url.port ?? 443
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        // The chain is judged by the pinned hash below, not by a trust store this host has.
        tls.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: tls)
        let (chains, chain) = AsyncStream<[NIOSSLCertificate]>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let sniHost = CertificateAuthority.ipAddressBytes(host) == nil ? host : nil
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = try NIOSSLClientHandler(context: context, serverHostname: sniHost) { certificates, promise in
                            chain.yield(certificates)
                            chain.finish()
                            // End the handshake here: the chain is all this connection was for.
                            promise.succeed(NIOSSLVerificationResult.failed)
                        }
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            throw JoinError(description: "cannot connect to \(server): \(error)")
        }
        channel.closeFuture.whenComplete { _ in chain.finish() }
        let presented: [NIOSSLCertificate]? = try await withThrowingTaskGroup(of: [NIOSSLCertificate]?.self) { group in
            group.addTask { for await certificates in chains { return certificates }; return nil }
            group.addTask { try await Task.sleep(for: timeout); return nil }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
        _ = try? await channel.close().get()
        guard let presented, !presented.isEmpty else {
            throw JoinError(description: "\(server) did not present a TLS certificate chain (is it a Coxswain API server?)")
        }
        var seen: [String] = []
        for certificate in presented {
            let described = try CertificateRequest.describe(der: try certificate.toDERBytes())
            if described.publicKeyHash == expectedHash { return described.pem }
            seen.append(described.publicKeyHash)
        }
        throw JoinError(description: "refusing to join: no certificate \(server) presented has the key --ca-cert-hash names (\(expectedHash)); it presented \(seen.joined(separator: ", ")). Check the hash with `cox token create --print-join-command` on the server: a mismatch means a different cluster or someone in between")
    }
}
