import API
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

extension APIResponder {
    static let impersonateUser = HTTPField.Name("Impersonate-User")!
    static let impersonateGroup = HTTPField.Name("Impersonate-Group")!
    static let auditID = HTTPField.Name("Audit-Id")!

    /// The identity the request acts as: the caller's, or — with `Impersonate-User` (and
    /// `Impersonate-Group`) headers — another one, when the caller may `impersonate` it.
    func effectiveIdentity(_ request: Request, _ caller: ClientIdentity) throws -> ClientIdentity {
        guard let user = request.headers[Self.impersonateUser] else {
            if request.headers[Self.impersonateGroup] != nil {
                throw APIError(400, "BadRequest", "requested impersonation of groups without impersonating a user")
            }
            return caller
        }
        let groups = request.headers[values: Self.impersonateGroup]
        var asked = RequestAttributes(user: caller.user, groups: caller.groups, verb: "impersonate")
        asked.resource = "users"
        asked.name = user
        guard authorizer.authorize(asked) else { throw APIError(403, "Forbidden", asked.forbiddenMessage) }
        for group in groups {
            asked.resource = "groups"
            asked.name = group
            guard authorizer.authorize(asked) else { throw APIError(403, "Forbidden", asked.forbiddenMessage) }
        }
        return ClientIdentity(user: user, groups: groups)
    }

    /// What the request asks to do, for RBAC.
    static func attributes(_ request: Request, path: ResourcePath?, identity: ClientIdentity) -> RequestAttributes {
        let method = request.method
        guard let path else {
            var attributes = RequestAttributes(user: identity.user, groups: identity.groups, verb: method.rawValue.lowercased())
            attributes.isResourceRequest = false
            attributes.path = request.uri.path
            return attributes
        }
        let info = path.custom?.info ?? path.kind.kindInfo
        let watching = request.uri.queryParameters["watch"].map { $0 == "true" || $0 == "1" } ?? false
        let verb: String
        switch method {
        case .get: verb = path.name == nil ? (watching ? "watch" : "list") : "get"
        case .post: verb = "create"
        case .put: verb = "update"
        case .patch: verb = "patch"
        case .delete: verb = path.name == nil ? "deletecollection" : "delete"
        default: verb = method.rawValue.lowercased()
        }
        var attributes = RequestAttributes(user: identity.user, groups: identity.groups, verb: verb)
        attributes.apiGroup = info.group
        attributes.resource = info.resource
        attributes.subresource = path.subresource ?? ""
        attributes.name = path.name ?? ""
        // As Kubernetes does: a namespace object is in its own namespace.
        attributes.namespace = path.kind == Namespace.self ? (path.name ?? "") : (path.namespace ?? "")
        return attributes
    }

    func authorize(_ attributes: RequestAttributes) throws {
        guard authorizer.authorize(attributes) else {
            throw APIError(403, "Forbidden", attributes.forbiddenMessage)
        }
    }

    /// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: may I (or whom I
    /// impersonate) do this? Anyone authenticated may ask about themselves.
    func accessReview(_ request: inout Request, identity: ClientIdentity, format: WireFormat) async throws -> Response {
        guard request.method == .post else {
            throw APIError(405, "MethodNotAllowed", "selfsubjectaccessreviews can only be created")
        }
        let bytes = try await body(&request)
        var review: SelfSubjectAccessReview
        if request.headers[.contentType]?.hasPrefix(KubernetesProtobuf.mediaType) == true {
            do {
                review = try SelfSubjectAccessReview(json: try KubernetesProtobuf.json(bytes, kind: "SelfSubjectAccessReview"))
            } catch let error as KubernetesProtobuf.Unsupported {
                throw APIError(415, "UnsupportedMediaType", error.description)
            }
        } else {
            review = Self.requestFormat(request) == .protobuf ? try SelfSubjectAccessReview(protobuf: bytes) : try SelfSubjectAccessReview(jsonBytes: bytes)
        }
        var asked: RequestAttributes
        if review.spec.hasResourceAttributes {
            let resource = review.spec.resourceAttributes
            guard !resource.verb.isEmpty else { throw APIError(422, "Invalid", "spec.resourceAttributes.verb: Required value") }
            asked = RequestAttributes(user: identity.user, groups: identity.groups, verb: resource.verb)
            asked.apiGroup = resource.group
            asked.resource = resource.resource
            asked.subresource = resource.subresource
            asked.namespace = resource.namespace
            asked.name = resource.name
        } else if review.spec.hasNonResourceAttributes {
            let other = review.spec.nonResourceAttributes
            asked = RequestAttributes(user: identity.user, groups: identity.groups, verb: other.verb)
            asked.isResourceRequest = false
            asked.path = other.path
        } else {
            throw APIError(422, "Invalid", "spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified")
        }
        review.apiVersion = "authorization.k8s.io/v1"
        review.kind = "SelfSubjectAccessReview"
        review.status.allowed = authorizer.authorize(asked)
        if !review.status.allowed { review.status.reason = asked.forbiddenMessage }
        let out = format == .protobuf ? review.protoBytes() : review.jsonBytes()
        return Response(status: .created, headers: [.contentType: format.rawValue], body: .init(byteBuffer: ByteBuffer(bytes: out)))
    }
}
