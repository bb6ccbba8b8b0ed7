import API
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Store
import SwiftProtobuf

extension APIResponder {
    /// The identity of an `Authorization: Bearer ID.SECRET` token: a stored Token whose hash
    /// matches and which has not expired (checked against the store on every request, so a
    /// deleted token stops working at once). nil without the header; 401 for a bad token.
    func authenticateBearer(_ request: Request) async throws -> ClientIdentity? {
        try await authenticateBearer(authorization: request.headers[.authorization])
    }

    /// The same from the `Authorization` header alone (HTTP/2 checks it at a stream's HEADERS,
    /// before its body has come).
    func authenticateBearer(authorization header: String?) async throws -> ClientIdentity? {
        guard let header else { return nil }
        let token = String(header.dropFirst("Bearer ".count)).trimmingCharacters(in: .whitespaces)
        guard header.hasPrefix("Bearer "), let (id, _) = TokenFormat.parse(token) else {
            throw APIError(401, "Unauthorized", "Unauthorized: the Authorization header is not \"Bearer ID.SECRET\"")
        }
        let invalid = APIError(401, "Unauthorized", "Unauthorized: the bearer token is unknown, revoked or expired")
        guard let stored = try? await store.get(Token.self, namespace: "", name: id), stored.matches(token) else { throw invalid }
        if stored.spec.hasExpires && stored.spec.expires.date <= Date() { throw invalid }
        switch stored.spec.usage {
        case TokenFormat.bootstrap: return ClientIdentity(user: "system:bootstrap:\(id)", groups: [TokenFormat.bootstrappersGroup])
        case TokenFormat.authentication: return ClientIdentity(user: stored.spec.user, groups: stored.spec.groups)
        default: throw invalid
        }
    }

    /// `POST /apis/certificates.k8s.io/v1/certificatesigningrequests`: approved and signed in the
    /// answer (201, `status.certificate`), or refused with the reason.
    func signingRequest(_ request: inout Request, identity: ClientIdentity, format: WireFormat, audited: Caller) async throws -> Response {
        guard request.method == .post else {
            throw APIError(405, "MethodNotAllowed", "certificate signing requests are answered when created and not stored: only POST is served")
        }
        guard let signer else { throw APIError(503, "ServiceUnavailable", "this server does not sign certificates") }
        let bytes = try await body(&request)
        var csr = Self.requestFormat(request) == .protobuf ? try API.CertificateSigningRequest(protobuf: bytes) : try API.CertificateSigningRequest(jsonBytes: bytes)
        if csr.metadata.name.isEmpty { csr.metadata.name = (csr.metadata.generateName.isEmpty ? "csr-" : csr.metadata.generateName) + Self.randomSuffix() }
        audited.attributes?.name = csr.metadata.name
        let pem: String
        do {
            pem = try signer.sign(csr, requester: identity)
        } catch let refused as CertificateSigner.Refused {
            let reason = refused.code == 403 ? "Forbidden" : "Invalid"
            throw APIError(refused.code, reason, "CertificateSigningRequest \"\(csr.metadata.name)\" \(refused.code == 403 ? "is forbidden" : "is invalid"): \(refused.message)")
        }
        let now = Date()
        csr.apiVersion = "certificates.k8s.io/v1"
        csr.kind = "CertificateSigningRequest"
        csr.metadata.uid = UUID().uuidString.lowercased()
        csr.metadata.creationTimestamp = Google_Protobuf_Timestamp(date: now)
        csr.spec.username = identity.user
        csr.spec.groups = identity.groups
        var approved = CertificateSigningRequestCondition()
        approved.type = "Approved"
        approved.status = "True"
        approved.reason = "AutoApproved"
        approved.message = "node certificate for \(identity.user) approved by the API server"
        approved.lastUpdateTime = Google_Protobuf_Timestamp(date: now)
        csr.status.conditions = [approved]
        csr.status.certificate = Data(pem.utf8)
        let out = format == .protobuf ? csr.protoBytes() : csr.jsonBytes()
        return Response(status: .created, headers: [.contentType: format.rawValue], body: .init(byteBuffer: ByteBuffer(bytes: out)))
    }

    /// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`, `cox auth
    /// whoami`): who the server takes the caller for. Answered in JSON.
    func selfReview(_ request: Request, identity: ClientIdentity) throws -> Response {
        guard request.method == .post else { throw APIError(405, "MethodNotAllowed", "selfsubjectreviews can only be created") }
        var groups = identity.groups
        if !groups.contains(Authorizer.authenticatedGroup) { groups.append(Authorizer.authenticatedGroup) }
        let review: JSONValue = .object([
            JSONMember("kind", .string("SelfSubjectReview")), JSONMember("apiVersion", .string("authentication.k8s.io/v1")),
            JSONMember("metadata", .object([JSONMember("creationTimestamp", .null)])),
            JSONMember("status", .object([JSONMember("userInfo", .object([
                JSONMember("username", .string(identity.user)), JSONMember("groups", .array(groups.map { .string($0) })),
            ]))])),
        ])
        var response = Self.json(review)
        response.status = .created
        return response
    }
}
