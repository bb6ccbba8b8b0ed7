import NIOCore
import NIOSSL
import X509

/// Who is calling: the subject of the verified client certificate (CN = user, O = groups), as
/// Kubernetes reads it. The TLS layer has already checked the certificate against the cluster CA.
public struct ClientIdentity: Sendable, Equatable {
    public let user: String
    public let groups: [String]

    /// The identity of the TLS peer on `channel`, or nil when it presented no certificate.
    /// Over HTTP/1.1 the TLS handler is in the request's channel; over HTTP/2 the request arrives
    /// on a stream channel whose parent (the connection) holds it.
    static func of(channel: any Channel) async throws -> ClientIdentity? {
        let der: [UInt8]? = try await channel.eventLoop.submit {
            for candidate in [channel, channel.parent].compactMap({ $0 }) {
                if let handler = try? candidate.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self) {
                    return try handler.peerCertificate?.toDERBytes()
                }
            }
            return nil
        }.get()
        guard let der else { return nil }
        let certificate = try Certificate(derEncoded: der)
        var user = ""
        var groups: [String] = []
        for rdn in certificate.subject {
            for attribute in rdn {
                if attribute.type == .RDNAttributeType.commonName { user = "\(attribute.value)" }
                if attribute.type == .RDNAttributeType.organizationName { groups.append("\(attribute.value)") }
            }
        }
        return user.isEmpty ? nil : ClientIdentity(user: user, groups: groups)
    }
}
