import API
import Foundation
import PKI
import SwiftASN1
import X509

/// Answers certificate signing requests (`certificates.k8s.io/v1`) the way a node needs them,
/// and only those: a node client certificate (`CN=cox:node:NAME, O=cox:nodes`, signer
/// `kubernetes.io/kube-apiserver-client-kubelet`) for a bootstrap token or for that node renewing
/// its own, and a node serving certificate (signer `kubernetes.io/kubelet-serving`, from a CA of its
/// own) for that node. Requests are approved and signed at once and not stored; anything else is
/// refused with the reason.
struct CertificateSigner: Sendable {
    static let path = ["apis", "certificates.k8s.io", "v1", "certificatesigningrequests"]
    static let group = "certificates.k8s.io"
    static let resource = "certificatesigningrequests"
    static let clientSigner = NodeIdentity.clientSigner
    static let servingSigner = NodeIdentity.servingSigner

    let clusterCA: CertificateAuthority
    let nodeServingCA: CertificateAuthority
    /// Longest lifetime a node certificate gets (a request may ask for less).
    let maxLifetime: TimeInterval

    struct Refused: Error {
        let code: Int
        let message: String
    }

    /// The issued certificate (PEM) for `request`, asked by `requester`.
    func sign(_ request: API.CertificateSigningRequest, requester: ClientIdentity, now: Date = Date()) throws -> String {
        let spec = request.spec
        let csr: X509.CertificateSigningRequest
        do {
            csr = try X509.CertificateSigningRequest(pemEncoded: String(decoding: spec.request, as: UTF8.self))
        } catch {
            throw Refused(code: 422, message: "spec.request: Invalid value: not a PEM-encoded PKCS#10 certificate request (\(error))")
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw Refused(code: 422, message: "spec.request: Invalid value: the request's signature does not match its public key")
        }
        let (commonName, organizations, others) = CertificateRequest.subject(of: csr.subject)
        if let other = others.first {
            throw Refused(code: 422, message: "spec.request: Invalid value: the subject may hold only CN and O, not \(other)")
        }
        guard let nodeName = NodeIdentity.nodeName(ofUser: commonName), NameSyntax.subdomainProblem(nodeName) == nil,
              organizations == [NodeIdentity.group] else {
            throw Refused(code: 422, message: "spec.request: Invalid value: subject \"CN=\(commonName), O=\(organizations.joined(separator: "+"))\": only node certificates (CN=\(NodeIdentity.userPrefix)NAME, O=\(NodeIdentity.group)) are signed here")
        }
        var lifetime = maxLifetime
        if spec.hasExpirationSeconds {
            guard spec.expirationSeconds >= 10 else {
                throw Refused(code: 422, message: "spec.expirationSeconds: Invalid value: \(spec.expirationSeconds): may not specify a duration less than 10 seconds")
            }
            lifetime = min(lifetime, TimeInterval(spec.expirationSeconds))
        }
        let isSelf = requester.user == commonName && requester.groups.contains(NodeIdentity.group)
        let certificate: Certificate
        switch spec.signerName {
        case Self.clientSigner:
            guard isSelf || requester.groups.contains(TokenFormat.bootstrappersGroup) else {
                throw Refused(code: 403, message: "\(requester.user) may not request a client certificate for \(commonName): only a bootstrap token (joining) or that node itself (renewing) may")
            }
            certificate = try clusterCA.certify(publicKey: csr.publicKey, commonName: commonName, organizations: organizations,
                                                usage: .client, lifetime: lifetime, now: now)
        case Self.servingSigner:
            guard isSelf else {
                throw Refused(code: 403, message: "\(requester.user) may not request a serving certificate for \(commonName): only that node itself may")
            }
            var dnsNames: [String] = []
            var addresses: [String] = []
            let requested: SubjectAlternativeNames?
            do {
                requested = try csr.attributes.extensionRequest?.extensions.subjectAlternativeNames
            } catch {
                throw Refused(code: 422, message: "spec.request: Invalid value: unreadable extension request (\(error))")
            }
            for name in requested.map(Array.init) ?? [] {
                switch name {
                case .dnsName(let dns): dnsNames.append(dns)
                case .ipAddress(let bytes): addresses.append(Self.address(Array(bytes.bytes)))
                default: throw Refused(code: 422, message: "spec.request: Invalid value: subject alternative names may be DNS names and IP addresses only")
                }
            }
            guard !dnsNames.isEmpty || !addresses.isEmpty, dnsNames.count + addresses.count <= 16 else {
                throw Refused(code: 422, message: "spec.request: Invalid value: a serving certificate needs 1 to 16 subject alternative names")
            }
            certificate = try nodeServingCA.certify(publicKey: csr.publicKey, commonName: commonName, organizations: organizations,
                                                    usage: .server(dnsNames: dnsNames, ipAddresses: addresses), lifetime: lifetime, now: now)
        default:
            throw Refused(code: 422, message: "spec.signerName: Unsupported value: \"\(spec.signerName)\": supported values: \"\(Self.clientSigner)\", \"\(Self.servingSigner)\"")
        }
        return try certificate.serializeAsPEM().pemString
    }

    /// An IPv4 or IPv6 address in its usual text form.
    static func address(_ bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        guard bytes.count == 4 || bytes.count == 16, inet_ntop(family, bytes, &buffer, socklen_t(buffer.count)) != nil else { return "" }
        return String(cString: buffer)
    }
}
