import API

/// Where a list or watch starts: `resourceVersion`, `resourceVersionMatch` and
/// `sendInitialEvents`, checked with Kubernetes' rules and answered with its messages.
extension APIResponder {
    /// Kubernetes' ListOptions validation: a combination it refuses is 422 on `ListOptions`, each
    /// problem named by its field.
    static func validateListOptions(_ query: QueryParameters, watch: Bool) throws {
        let match = query["resourceVersionMatch"] ?? ""
        let version = query["resourceVersion"] ?? ""
        let continued = !(query["continue"] ?? "").isEmpty
        let sendInitial = query["sendInitialEvents"]
        var problems: [(field: String, reason: String, message: String)] = []
        func forbidden(_ field: String, _ detail: String) { problems.append((field, "FieldValueForbidden", "\(field): Forbidden: \(detail)")) }
        func unsupported(_ supported: [String]) {
            let list = supported.map { "\"\($0)\"" }.joined(separator: ", ")
            problems.append(("resourceVersionMatch", "FieldValueNotSupported",
                             "resourceVersionMatch: Unsupported value: \"\(match)\": supported values: \(list)"))
        }
        if watch {
            if sendInitial != nil && match != "NotOlderThan" {
                forbidden("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
            }
            if !match.isEmpty {
                if sendInitial == nil { forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided") }
                if match != "NotOlderThan" { unsupported(["NotOlderThan"]) }
                if continued { forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided") }
            }
        } else {
            if !match.isEmpty {
                if version.isEmpty { forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided") }
                if continued { forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided") }
                if match != "Exact" && match != "NotOlderThan" { unsupported(["Exact", "NotOlderThan", ""]) }
                if match == "Exact" && version == "0" { forbidden("resourceVersionMatch", "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"") }
            }
            if sendInitial != nil { forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list") }
        }
        guard !problems.isEmpty else { return }
        let listed = problems.count == 1 ? problems[0].message : "[" + problems.map(\.message).joined(separator: ", ") + "]"
        var error = APIError(422, "Invalid", "ListOptions.meta.k8s.io \"\" is invalid: \(listed)")
        error.kind = "ListOptions"
        error.causes = problems.map { problem in
            var cause = StatusCause()
            cause.reason = problem.reason
            cause.field = problem.field
            cause.message = problem.message
            return cause
        }
        throw error
    }

    /// A `resourceVersion` as a revision: nil for none or "0" (any), else the number, which the
    /// store must have reached (Kubernetes answers one from the future 504 "Too large resource
    /// version"; a client retries after a second).
    /// (On etcd, a version from another server may be newer than this one has seen: the store is
    /// asked for the cluster's before the version is called too large.)
    func requestedRevision(_ query: QueryParameters) async throws -> Int64? {
        let text = query["resourceVersion"] ?? ""
        if text.isEmpty || text == "0" { return nil }
        guard let revision = Int64(text), revision > 0 else {
            throw APIError.badRequest("resourceVersion must be a revision number, not \"\(text)\"")
        }
        var current = store.currentRevision
        if revision > current { current = try await store.latestRevision() }
        if revision > current {
            var error = APIError(504, "Timeout", "Too large resource version: \(revision), current: \(current)")
            error.retryAfterSeconds = 1
            throw error
        }
        return revision
    }

    /// `sendInitialEvents` as Go's ParseBool reads it.
    static func flag(_ value: String?) -> Bool? {
        guard let value else { return nil }
        return ["1", "t", "T", "true", "TRUE", "True"].contains(value)
    }
}
