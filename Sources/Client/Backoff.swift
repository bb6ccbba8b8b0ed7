/// Capped exponential backoff with full jitter: each wait is uniform in [0, min(cap, base·2ⁿ)],
/// so clients that failed together do not come back together.
public struct Backoff: Sendable {
    public let base: Duration
    public let cap: Duration
    var attempt = 0

    public init(base: Duration, cap: Duration) {
        self.base = base
        self.cap = cap
    }

    /// The ceiling of the next wait, before jitter.
    public var ceiling: Duration {
        let factor = 1 << min(attempt, 30)
        let grown = base * factor
        return grown > cap || grown < base ? cap : grown
    }

    public mutating func next<G: RandomNumberGenerator>(using generator: inout G) -> Duration {
        let limit = ceiling
        attempt += 1
        let nanoseconds = Int64(limit.components.seconds) * 1_000_000_000 + limit.components.attoseconds / 1_000_000_000
        return .nanoseconds(Int64.random(in: 0...max(nanoseconds, 1), using: &generator))
    }

    public mutating func next() -> Duration {
        var generator = SystemRandomNumberGenerator()
        return next(using: &generator)
    }

    public mutating func reset() { attempt = 0 }
}
