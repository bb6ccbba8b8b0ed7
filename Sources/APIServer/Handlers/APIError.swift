import API
import Hummingbird
import Store

/// A failed request, as the Kubernetes `Status` object it is answered with.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public let code: Int
    public let reason: String
    public let message: String
    public var causes: [StatusCause] = []
    public var retryAfterSeconds: Int?
    public var kind = ""
    public var group = ""
    public var name = ""

    public init(_ code: Int, _ reason: String, _ message: String) {
        self.code = code
        self.reason = reason
        self.message = message
    }

    public var description: String { "\(code) \(reason): \(message)" }

    static func badRequest(_ message: String) -> APIError { APIError(400, "BadRequest", message) }
    static func notFound(_ message: String) -> APIError { APIError(404, "NotFound", message) }
    /// 429 with a Retry-After of one second.
    static func tooManyRequests(_ message: String) -> APIError {
        var error = APIError(429, "TooManyRequests", message + "; retry after 1 second")
        error.retryAfterSeconds = 1
        return error
    }
    static let unauthorized = APIError(401, "Unauthorized", "Unauthorized: a client certificate signed by the cluster CA or a valid bearer token is required")
    static func methodNotAllowed(_ method: String) -> APIError { APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource: \(method)") }

    /// The Status object.
    var status: Status {
        var status = Status()
        status.apiVersion = "v1"
        status.kind = "Status"
        status.status = "Failure"
        status.message = message
        status.reason = reason
        status.code = Int32(code)
        if !causes.isEmpty || !kind.isEmpty || !name.isEmpty || retryAfterSeconds != nil {
            status.details.causes = causes
            status.details.kind = kind
            status.details.group = group
            status.details.name = name
            if let retryAfterSeconds { status.details.retryAfterSeconds = Int32(retryAfterSeconds) }
        }
        return status
    }

    /// Maps anything thrown while serving to the Status a Kubernetes client expects.
    static func from(_ error: any Error, kind: String = "", name: String = "") -> APIError {
        var mapped: APIError
        switch error {
        case let error as APIError:
            return error
        case let error as StoreError:
            switch error.code {
            case .notFound: mapped = APIError(404, "NotFound", error.message)
            case .alreadyExists: mapped = APIError(409, "AlreadyExists", error.message)
            case .conflict: mapped = APIError(409, "Conflict", error.message)
            case .compacted: mapped = APIError(410, "Expired", error.message)
            case .watcherTooSlow: mapped = APIError(410, "Expired", error.message)
            case .tooLarge: mapped = APIError(413, "RequestEntityTooLarge", error.message)
            case .invalid: mapped = APIError(422, "Invalid", error.message)
            case .unavailable:
                mapped = APIError(503, "ServiceUnavailable", error.message)
                mapped.retryAfterSeconds = 1
            case .timeout: mapped = APIError(504, "Timeout", error.message)
            default: mapped = APIError(500, "InternalError", error.message)
            }
        case let error as ValidationError:
            mapped = APIError(422, "Invalid", error.description)
            mapped.causes = error.errors.map { fieldError in
                var cause = StatusCause()
                cause.reason = fieldError.causeType
                cause.field = fieldError.field
                cause.message = fieldError.body
                return cause
            }
            // kubectl words it from these: `The ConfigMap "x" is invalid: data: Forbidden: …`.
            mapped.kind = error.kind
            mapped.group = error.group
            mapped.name = error.name
        case let error as JSONDecodeError:
            mapped = .badRequest("error decoding the request body: \(error)")
        case let error as JSONSyntaxError:
            mapped = .badRequest("error decoding the request body: \(error)")
        case let error as ProtobufDecodeError:
            mapped = .badRequest("error decoding the request body: \(error)")
        case let error as SelectorParseError:
            mapped = .badRequest(error.description)
        default:
            mapped = APIError(500, "InternalError", "an internal error occurred: \(error)")
        }
        if !kind.isEmpty { mapped.kind = kind }
        if !name.isEmpty { mapped.name = name }
        return mapped
    }
}
