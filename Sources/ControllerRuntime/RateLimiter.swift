import Foundation

/// How long a key waits before its next attempt.
public protocol RateLimiter<Key>: Sendable {
    associatedtype Key: Hashable & Sendable
    /// The wait before `key` is tried again now, counting this as one more failure.
    mutating func when(_ key: Key, now: Date) -> Duration
    /// Forgets the key's failures (it succeeded).
    mutating func forget(_ key: Key)
    /// Failures counted for the key since it was last forgotten.
    func failures(_ key: Key) -> Int
}

/// Per-key exponential backoff: `base · 2^failures`, capped. The exponent is checked before it is
/// applied, so a key that fails forever stays at the cap instead of overflowing.
public struct ExponentialBackoffLimiter<Key: Hashable & Sendable>: RateLimiter {
    public let base: Duration
    public let cap: Duration
    var counts: [Key: Int] = [:]

    public init(base: Duration = .milliseconds(5), cap: Duration = .seconds(1000)) {
        self.base = base
        self.cap = cap
    }

    public mutating func when(_ key: Key, now: Date) -> Duration {
        let exponent = counts[key, default: 0]
        counts[key] = exponent + 1
        let delay = base.seconds * pow(2, Double(min(exponent, 1023)))
        return !delay.isFinite || delay >= cap.seconds ? cap : .seconds(double: delay)
    }

    public mutating func forget(_ key: Key) { counts[key] = nil }
    public func failures(_ key: Key) -> Int { counts[key, default: 0] }
}

/// An overall token bucket: `qps` tokens a second, at most `burst` saved. A request without a
/// token reserves one from the future and waits for it, so the waits grow with the backlog.
public struct TokenBucketLimiter<Key: Hashable & Sendable>: RateLimiter {
    public let qps: Double
    public let burst: Double
    var tokens: Double
    var last: Date?

    public init(qps: Double = 10, burst: Int = 100) {
        self.qps = qps
        self.burst = Double(burst)
        self.tokens = Double(burst)
    }

    public mutating func when(_ key: Key, now: Date) -> Duration {
        if let last { tokens = min(burst, tokens + max(0, now.timeIntervalSince(last)) * qps) }
        last = now
        tokens -= 1
        return tokens >= 0 ? .zero : .seconds(double: -tokens / qps)
    }

    public mutating func forget(_ key: Key) {}
    public func failures(_ key: Key) -> Int { 0 }
}

/// The controllers' limiter: the longer of the per-key backoff (5 ms doubling to 1,000 s) and the
/// overall bucket (10 per second, bursts of 100) — one key cannot hog retries, and a storm of
/// failing keys cannot hammer the API server.
public struct ControllerRateLimiter<Key: Hashable & Sendable>: RateLimiter {
    public var perKey: ExponentialBackoffLimiter<Key>
    public var overall: TokenBucketLimiter<Key>

    public init(perKey: ExponentialBackoffLimiter<Key> = .init(), overall: TokenBucketLimiter<Key> = .init()) {
        self.perKey = perKey
        self.overall = overall
    }

    public mutating func when(_ key: Key, now: Date) -> Duration {
        max(perKey.when(key, now: now), overall.when(key, now: now))
    }

    public mutating func forget(_ key: Key) { perKey.forget(key) }
    public func failures(_ key: Key) -> Int { perKey.failures(key) }
}
