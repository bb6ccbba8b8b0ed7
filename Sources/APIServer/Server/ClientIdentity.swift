import NIOCore
import NIOSSL
import Synchronization
import PKI

/// Who is calling: the subject of the verified client certificate (CN = user, O = groups), as
/// Kubernetes reads it. The TLS layer has already checked the certificate against the cluster CA.
public struct ClientIdentity: Sendable, Equatable {
    public let user: String
    public let groups: [String]

    /// The identity of the TLS peer on `channel`, or nil when it presented no certificate.
    /// Over HTTP/1.1 the TLS handler is in the request's channel; over HTTP/2 the request arrives
    /// on a stream channel whose parent (the connection) holds it. Read once per connection: the
    /// certificate cannot change on it, and parsing it per request cost 5 % of the server's CPU.
    /// Known connections are answered where the request runs; only a connection's first request
    /// goes to its event loop (a hop there and back per request cost two thread switches).
    static func of(channel: any Channel) async throws -> ClientIdentity? {
        if let known = ConnectionIdentities.shared.lookup(channel: channel) { return known }
        return try await channel.eventLoop.submit {
            // A listening socket (an HTTP/1.1 connection's parent) may be on another event loop:
            // its pipeline is not ours to touch from here.
            for candidate in [channel, channel.parent].compactMap({ $0 }) where candidate.eventLoop.inEventLoop {
                guard let handler = try? candidate.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self) else { continue }
                let identity = try handler.peerCertificate.map { try parse(der: try $0.toDERBytes()) } ?? nil
                ConnectionIdentities.shared.remember(identity, for: candidate)
                return identity
            }
            return nil
        }.get()
    }

    static func parse(der: [UInt8]) throws -> ClientIdentity? {
        let subject = try CertificateRequest.subject(der: der)
        return subject.commonName.isEmpty ? nil : ClientIdentity(user: subject.commonName, groups: subject.organizations)
    }
}

/// Identities by TLS connection. An entry holds its connection weakly and counts only while that
/// very connection is alive, so a new connection that happens to reuse a freed one's address
/// never inherits its identity.
final class ConnectionIdentities: Sendable {
    static let shared = ConnectionIdentities()

    final class Entry: @unchecked Sendable {
        weak var connection: (any Channel)?
        let identity: ClientIdentity?
        init(connection: any Channel, identity: ClientIdentity?) {
            self.connection = connection
            self.identity = identity
        }
    }

    let entries = Mutex<[ObjectIdentifier: Entry]>([:])

    /// The identity remembered for the connection `channel` is (HTTP/1.1) or belongs to (an HTTP/2
    /// stream): `.some(nil)` for a connection without a client certificate, nil when not known.
    func lookup(channel: any Channel) -> ClientIdentity?? {
        entries.withLock { entries in
            for candidate in [channel, channel.parent] {
                guard let candidate, let entry = entries[ObjectIdentifier(candidate)], entry.connection === candidate else { continue }
                return .some(entry.identity)
            }
            return nil
        }
    }

    func remember(_ identity: ClientIdentity?, for connection: any Channel) {
        entries.withLock { entries in
            if entries.count >= 4096 { entries = entries.filter { $0.value.connection != nil } }
            entries[ObjectIdentifier(connection)] = Entry(connection: connection, identity: identity)
        }
    }
}
