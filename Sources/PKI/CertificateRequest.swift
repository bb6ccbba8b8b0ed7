import Crypto
import Foundation
import SwiftASN1
import X509

/// The joining side of certificate signing: a fresh key and a PKCS#10 request for it, and what
/// a node needs to know about the certificate it got back.
public enum CertificateRequest {
    /// A new P-256 key and a request for `CN=commonName, O=organizations` (with subject
    /// alternative names for a serving certificate), both PEM.
    public static func make(commonName: String, organizations: [String], dnsNames: [String] = [], ipAddresses: [String] = []) throws
        -> (requestPEM: String, privateKeyPEM: String) {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            for organization in organizations { OrganizationName(organization) }
            CommonName(commonName)
        }
        var attributes = CertificateSigningRequest.Attributes()
        if !dnsNames.isEmpty || !ipAddresses.isEmpty {
            var names = dnsNames.map { GeneralName.dnsName($0) }
            for address in ipAddresses {
                guard let bytes = CertificateAuthority.ipAddressBytes(address) else { throw PKIError(message: "\"\(address)\" is not an IPv4 or IPv6 address") }
                names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
            }
            let extensions = try Certificate.Extensions { SubjectAlternativeNames(names) }
            attributes.insert(try CertificateSigningRequest.Attribute(ExtensionRequest(extensions: extensions)))
        }
        let request = try CertificateSigningRequest(version: .v1, subject: subject, privateKey: Certificate.PrivateKey(key),
                                                    attributes: attributes, signatureAlgorithm: .ecdsaWithSHA256)
        return (try request.serializeAsPEM().pemString, key.pemRepresentation)
    }

    /// When a PEM certificate stops being valid.
    public static func notValidAfter(_ pem: String) throws -> Date {
        do {
            return try Certificate(pemEncoded: pem).notValidAfter
        } catch {
            throw PKIError(message: "not a PEM certificate: \(error)")
        }
    }

    /// A DER certificate's subject as Kubernetes reads a client's: CN (the user) and O (the groups).
    public static func subject(der: [UInt8]) throws -> (commonName: String, organizations: [String]) {
        let names = subject(of: try Certificate(derEncoded: der).subject)
        return (names.commonName, names.organizations)
    }

    /// CN and O of a distinguished name, and the types of any other attributes it holds.
    public static func subject(of name: DistinguishedName) -> (commonName: String, organizations: [String], others: [String]) {
        var commonName = ""
        var organizations: [String] = []
        var others: [String] = []
        for rdn in name {
            for attribute in rdn {
                if attribute.type == .RDNAttributeType.commonName { commonName = "\(attribute.value)" }
                else if attribute.type == .RDNAttributeType.organizationName { organizations.append("\(attribute.value)") }
                else { others.append("\(attribute.type)") }
            }
        }
        return (commonName, organizations, others)
    }

    /// The PEM form of a DER certificate, and its key's `sha256:` hash (see `publicKeyHash`).
    public static func describe(der: [UInt8]) throws -> (pem: String, publicKeyHash: String) {
        let certificate = try Certificate(derEncoded: der)
        return (try certificate.serializeAsPEM().pemString, CertificateAuthority.publicKeyHash(of: certificate))
    }
}

extension Kubeconfig {
    /// Writes the kubeconfig with mode 0600 (it may hold a private key), atomically.
    public func write(to path: String) throws {
        try ClusterPKI.write(yaml(), to: path, mode: 0o600)
    }

    /// Writes text (a key or certificate) atomically with `mode`.
    public static func writeFile(_ text: String, to path: String, mode: Int) throws {
        try ClusterPKI.write(text, to: path, mode: mode)
    }
}
