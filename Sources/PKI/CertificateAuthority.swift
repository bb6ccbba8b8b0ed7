import Crypto
import Foundation
import SwiftASN1
import X509

/// A certificate and its private key, both PEM-encoded.
public struct KeyPair: Sendable, Equatable {
    public let certificatePEM: String
    public let privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }
}

/// What a certificate is for: a serving certificate (TLS server auth, with subject alternative
/// names) or a client identity (CN = user, O = groups, as Kubernetes reads them).
public enum CertificateUsage: Sendable {
    case server(dnsNames: [String], ipAddresses: [String])
    case client
    /// Both: a member of a cluster that serves its peers and dials them (an etcd member's
    /// certificate; etcd also dials itself with its serving certificate).
    case peer(dnsNames: [String], ipAddresses: [String])
}

/// Why a certificate could not be made or read, in one sentence a person can act on.
public struct PKIError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// The cluster's certificate authority: an ECDSA P-256 key and a self-signed CA certificate. It
/// signs the serving certificate and every client identity.
public struct CertificateAuthority: Sendable {
    public static let caValidity: TimeInterval = 10 * 365 * 24 * 3600
    public static let leafValidity: TimeInterval = 365 * 24 * 3600
    /// Certificates are valid from a little before now, so a peer whose clock is slightly behind accepts them.
    public static let clockSkewAllowance: TimeInterval = 5 * 60

    public let certificate: Certificate
    /// The key's raw bytes (the CryptoKit key type is not Sendable; its bytes are).
    let keyBytes: Data
    var key: P256.Signing.PrivateKey {
        // Made from a valid key's own raw representation, so it always parses.
        try! P256.Signing.PrivateKey(rawRepresentation: keyBytes)
    }

    init(certificate: Certificate, key: P256.Signing.PrivateKey) {
        self.certificate = certificate
        self.keyBytes = key.rawRepresentation
    }

    public var certificatePEM: String { (try? certificate.serializeAsPEM().pemString) ?? "" }
    public var privateKeyPEM: String { key.pemRepresentation }

    /// A new CA named `commonName`.
    public static func create(commonName: String, now: Date = Date()) throws -> CertificateAuthority {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName(commonName) }
        let publicKey = Certificate.PublicKey(key.publicKey)
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now - clockSkewAllowance,
            notValidAfter: now + caValidity,
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        return CertificateAuthority(certificate: certificate, key: key)
    }

    /// Loads a CA from PEM text, checking that the key belongs to the certificate.
    public static func load(certificatePEM: String, privateKeyPEM: String) throws -> CertificateAuthority {
        let certificate: Certificate
        let key: P256.Signing.PrivateKey
        do {
            certificate = try Certificate(pemEncoded: certificatePEM)
            key = try P256.Signing.PrivateKey(pemRepresentation: privateKeyPEM)
        } catch {
            throw PKIError(message: "the cluster CA files are not a PEM certificate and P-256 key: \(error)")
        }
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw PKIError(message: "the cluster CA key does not belong to the CA certificate")
        }
        return CertificateAuthority(certificate: certificate, key: key)
    }

    /// Issues a certificate for `commonName` (and `organizations`, the groups of a client).
    public func issue(commonName: String, organizations: [String] = [], usage: CertificateUsage, now: Date = Date()) throws -> KeyPair {
        let leafKey = P256.Signing.PrivateKey()
        let leaf = try certify(publicKey: Certificate.PublicKey(leafKey.publicKey), commonName: commonName, organizations: organizations,
                               usage: usage, now: now)
        return KeyPair(certificatePEM: try leaf.serializeAsPEM().pemString, privateKeyPEM: leafKey.pemRepresentation)
    }

    /// Signs a certificate for someone else's key (a certificate signing request), valid for
    /// `lifetime` seconds (at most a leaf's usual year).
    public func certify(publicKey: Certificate.PublicKey, commonName: String, organizations: [String] = [], usage: CertificateUsage,
                        lifetime: TimeInterval = CertificateAuthority.leafValidity, now: Date = Date()) throws -> Certificate {
        let subject = try DistinguishedName {
            for organization in organizations { OrganizationName(organization) }
            CommonName(commonName)
        }
        var extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
            SubjectKeyIdentifier(hash: publicKey)
            AuthorityKeyIdentifier(keyIdentifier: try certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
        }
        switch usage {
        case .server(let dnsNames, let ipAddresses), .peer(let dnsNames, let ipAddresses):
            if case .peer = usage {
                try extensions.append(Certificate.Extension(ExtendedKeyUsage([.serverAuth, .clientAuth]), critical: false))
            } else {
                try extensions.append(Certificate.Extension(ExtendedKeyUsage([.serverAuth]), critical: false))
            }
            var names = dnsNames.map { GeneralName.dnsName($0) }
            for address in ipAddresses {
                guard let bytes = Self.ipAddressBytes(address) else { throw PKIError(message: "\"\(address)\" is not an IPv4 or IPv6 address") }
                names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
            }
            try extensions.append(Certificate.Extension(SubjectAlternativeNames(names), critical: false))
        case .client:
            try extensions.append(Certificate.Extension(ExtendedKeyUsage([.clientAuth]), critical: false))
        }
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now - Self.clockSkewAllowance,
            notValidAfter: now + min(lifetime, Self.leafValidity),
            issuer: certificate.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: Certificate.PrivateKey(key))
    }

    /// The 4 or 16 bytes of an IP address, or nil when `text` is not one.
    public static func ipAddressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    /// `sha256:<hex>` of the CA certificate's SubjectPublicKeyInfo, as `kubeadm join
    /// --discovery-token-ca-cert-hash` uses: how a joining node pins the CA.
    public var publicKeyHash: String { Self.publicKeyHash(of: certificate) }

    /// The hash of a PEM certificate's key (a kubeconfig's CA).
    public static func publicKeyHash(ofPEM pem: String) throws -> String {
        do {
            return publicKeyHash(of: try Certificate(pemEncoded: pem))
        } catch {
            throw PKIError(message: "not a PEM certificate: \(error)")
        }
    }

    public static func publicKeyHash(of certificate: Certificate) -> String {
        var serializer = DER.Serializer()
        try? serializer.serialize(certificate.publicKey)
        return "sha256:" + SHA256.hash(data: serializer.serializedBytes).map { String(format: "%02x", $0) }.joined()
    }
}
