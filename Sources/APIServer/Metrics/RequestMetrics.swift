import API
import Synchronization

/// Request counts by verb, resource and code, and latency by verb and resource, in the shape of
/// Kubernetes' `apiserver_request_total` and `apiserver_request_duration_seconds`.
final class RequestMetrics: Sendable {
    struct CountKey: Hashable, Sendable { let verb: String, resource: String, code: Int }
    struct LatencyKey: Hashable, Sendable { let verb: String, resource: String }

    /// Kubernetes' request-duration buckets (seconds).
    static let latencyBounds: [Double] = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60]

    private let counts = Mutex<[CountKey: UInt64]>([:])
    private let latencies = Mutex<[LatencyKey: Histogram]>([:])

    func record(verb: String, resource: String, code: Int, seconds: Double) {
        counts.withLock { $0[CountKey(verb: verb, resource: resource, code: code), default: 0] += 1 }
        let key = LatencyKey(verb: verb, resource: resource)
        let histogram = latencies.withLock { table in
            if let existing = table[key] { return existing }
            let created = Histogram(bounds: Self.latencyBounds)
            table[key] = created
            return created
        }
        histogram.observe(seconds)
    }

    func count(verb: String, resource: String, code: Int) -> UInt64 {
        counts.withLock { $0[CountKey(verb: verb, resource: resource, code: code)] ?? 0 }
    }

    func render(into lines: inout [String]) {
        lines.append("# HELP cox_apiserver_requests_total Requests answered, by verb, resource and HTTP code.")
        lines.append("# TYPE cox_apiserver_requests_total counter")
        let snapshot = counts.withLock { $0 }.sorted { ($0.key.resource, $0.key.verb, $0.key.code) < ($1.key.resource, $1.key.verb, $1.key.code) }
        for (key, value) in snapshot {
            lines.append("cox_apiserver_requests_total{verb=\"\(Self.escape(key.verb))\",resource=\"\(Self.escape(key.resource))\",code=\"\(key.code)\"} \(value)")
        }
        lines.append("# HELP cox_apiserver_request_duration_seconds Time to answer (for watches: to the start of the stream), by verb and resource.")
        lines.append("# TYPE cox_apiserver_request_duration_seconds histogram")
        let histograms = latencies.withLock { $0 }.sorted { ($0.key.resource, $0.key.verb) < ($1.key.resource, $1.key.verb) }
        for (key, histogram) in histograms {
            histogram.render("cox_apiserver_request_duration_seconds", labels: "verb=\"\(Self.escape(key.verb))\",resource=\"\(Self.escape(key.resource))\"", into: &lines)
        }
    }

    /// A label value as Prometheus' text format needs it: backslash, double quote and newline
    /// escaped (the values come from closed sets; this keeps a future one from breaking the page).
    static func escape(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// The resources served (plural names), and the subresources: the only values the
    /// `resource` label takes besides "" (no resource) and "other". Labels come from these closed
    /// sets so that no request, least of all a stranger's, can add a series.
    static let resources: Set<String> = Set(Kinds.all.map { $0.kindInfo.resource })
    static let subresources: Set<String> = ["status", "binding", "log", "eviction", "scale", "exec", "attach", "portforward", "proxy"]
    /// Anything outside the closed sets.
    static let other = "other"

    /// Kubernetes' verbs: get/list/watch/create/update/patch/delete; `resource` includes the
    /// subresource (`pods/status`). Paths that name no resource are counted under resource "";
    /// a resource or subresource not served, and a method not known, under "other".
    static func classify(method: String, path: String, isWatch: Bool) -> (verb: String, resource: String) {
        // One pass over the path: the API prefix and a namespace go, leaving resource/name/subresource.
        var segments = path.split(separator: "/", omittingEmptySubsequences: true)[...]
        let isAPI = segments.first == "api" || segments.first == "apis"
        if segments.first == "api" { segments = segments.dropFirst(2) } else if segments.first == "apis" { segments = segments.dropFirst(3) }
        if segments.first == "namespaces", segments.count >= 3, segments[segments.startIndex + 2] != "status" {
            segments = segments.dropFirst(2)
        }
        let verb = Self.verb(method: method, hasName: segments.count >= 2, isWatch: isWatch)
        guard isAPI, let resource = segments.first else { return (verb, "") }
        guard resources.contains(String(resource)), segments.count <= 3 else { return (verb, other) }
        guard segments.count == 3 else { return (verb, String(resource)) }
        let subresource = String(segments[segments.startIndex + 2])
        return (verb, subresources.contains(subresource) ? "\(resource)/\(subresource)" : other)
    }

    /// The request's Kubernetes verb, or "other" for a method outside HTTP's usual ones.
    static func verb(method: String, hasName: Bool, isWatch: Bool) -> String {
        switch method {
        case "GET": return isWatch ? "watch" : (hasName ? "get" : "list")
        case "HEAD": return "head"
        case "POST": return "create"
        case "PUT": return "update"
        case "PATCH": return "patch"
        case "DELETE": return hasName ? "delete" : "deletecollection"
        case "OPTIONS": return "options"
        default: return other
        }
    }
}
