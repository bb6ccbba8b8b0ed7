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
            lines.append("cox_apiserver_requests_total{verb=\"\(key.verb)\",resource=\"\(key.resource)\",code=\"\(key.code)\"} \(value)")
        }
        lines.append("# HELP cox_apiserver_request_duration_seconds Time to answer (for watches: to the start of the stream), by verb and resource.")
        lines.append("# TYPE cox_apiserver_request_duration_seconds histogram")
        let histograms = latencies.withLock { $0 }.sorted { ($0.key.resource, $0.key.verb) < ($1.key.resource, $1.key.verb) }
        for (key, histogram) in histograms {
            histogram.render("cox_apiserver_request_duration_seconds", labels: "verb=\"\(key.verb)\",resource=\"\(key.resource)\"", into: &lines)
        }
    }

    /// Kubernetes' verbs: get/list/watch/create/update/patch/delete; `resource` includes the
    /// subresource (`pods/status`). Paths that name no resource are counted under resource "".
    static func classify(method: String, path: String, isWatch: Bool) -> (verb: String, resource: String) {
        var segments = path.split(separator: "/", omittingEmptySubsequences: true)[...]
        if segments.first == "api" { segments = segments.dropFirst(2) }
        else if segments.first == "apis" { segments = segments.dropFirst(3) }
        else { return (method.lowercased(), "") }
        if segments.first == "namespaces", segments.count >= 3, segments[segments.startIndex + 2] != "status" {
            segments = segments.dropFirst(2)
        }
        guard let resource = segments.first else { return (method.lowercased(), "") }
        let hasName = segments.count >= 2
        let subresource = segments.count >= 3 ? "/" + segments[segments.startIndex + 2] : ""
        let verb: String
        switch method {
        case "GET": verb = isWatch ? "watch" : (hasName ? "get" : "list")
        case "POST": verb = "create"
        case "PUT": verb = "update"
        case "PATCH": verb = "patch"
        case "DELETE": verb = hasName ? "delete" : "deletecollection"
        default: verb = method.lowercased()
        }
        return (verb, String(resource) + subresource)
    }
}
