import Synchronization

/// A Prometheus-style cumulative histogram with fixed upper bounds: cheap to observe from many
/// threads, rendered in the text exposition format. Used for request latency and commit batch sizes.
public final class Histogram: Sendable {
    public let bounds: [Double]
    private struct State {
        var counts: [UInt64]
        var sum = 0.0
        var count: UInt64 = 0
    }
    private let state: Mutex<State>

    public init(bounds: [Double]) {
        precondition(bounds == bounds.sorted(), "histogram bounds must ascend")
        self.bounds = bounds
        self.state = Mutex(State(counts: Array(repeating: 0, count: bounds.count)))
    }

    public func observe(_ value: Double) {
        // First bucket whose bound holds the value; values past the last bound count only in +Inf.
        var low = 0, high = bounds.count
        while low < high {
            let mid = (low + high) / 2
            if bounds[mid] < value { low = mid + 1 } else { high = mid }
        }
        state.withLock { state in
            if low < state.counts.count { state.counts[low] += 1 }
            state.sum += value
            state.count += 1
        }
    }

    /// (cumulative counts per bound, sum, count).
    public var snapshot: (buckets: [UInt64], sum: Double, count: UInt64) {
        state.withLock { state in
            var running: UInt64 = 0
            let cumulative = state.counts.map { running += $0; return running }
            return (cumulative, state.sum, state.count)
        }
    }

    /// Sample lines for `name` with `labels` (already rendered, e.g. `verb="get",code="200"`, or empty).
    public func render(_ name: String, labels: String, into lines: inout [String]) {
        let (buckets, sum, count) = snapshot
        let prefix = labels.isEmpty ? "" : labels + ","
        for (bound, cumulative) in zip(bounds, buckets) {
            lines.append("\(name)_bucket{\(prefix)le=\"\(Self.format(bound))\"} \(cumulative)")
        }
        lines.append("\(name)_bucket{\(prefix)le=\"+Inf\"} \(count)")
        let suffix = labels.isEmpty ? "" : "{\(labels)}"
        lines.append("\(name)_sum\(suffix) \(Self.format(sum))")
        lines.append("\(name)_count\(suffix) \(count)")
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}
