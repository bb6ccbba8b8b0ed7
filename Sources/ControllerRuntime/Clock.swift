import Foundation

/// Where time-dependent code (backoff, token buckets, delayed requeues, leases) reads the time and
/// waits. `SystemClock` is the real one; tests use `FakeClock` (TestSupport) and move time by hand,
/// so nothing in a unit test sleeps for a backoff.
public protocol Clock: Sendable {
    var now: Date { get }
    /// Returns once `now >= deadline`; throws `CancellationError` when the task is cancelled.
    func sleep(until deadline: Date) async throws
}

extension Clock {
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now.adding(duration))
    }
}

public struct SystemClock: Clock {
    public init() {}
    public var now: Date { Date() }
    public func sleep(until deadline: Date) async throws {
        let seconds = deadline.timeIntervalSinceNow
        if seconds > 0 { try await Task.sleep(for: .nanoseconds(Int64(seconds * 1e9))) }
        try Task.checkCancellation()
    }
}

extension Date {
    public func adding(_ duration: Duration) -> Date { addingTimeInterval(duration.seconds) }
}

extension Duration {
    /// The duration in seconds as a Double (for Date arithmetic and printing).
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    public static func seconds(double value: Double) -> Duration { .nanoseconds(Int64(value * 1e9)) }
}
