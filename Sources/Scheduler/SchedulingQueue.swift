import ControllerRuntime
import Foundation
import Synchronization

/// Pods waiting for a decision. New and changed pods are tried at once; a pod that failed waits
/// its backoff (1 s doubling to 10 s by default); a pod that fits nowhere is parked until the
/// cluster changes in a way that may help (a node joins or changes, a placed pod goes) — never
/// retried by polling. A change that happens while a pod is being decided sends it back through
/// its backoff instead of parking it, so no change is missed between the decision and the parking.
public final class SchedulingQueue: Sendable {
    struct State {
        var parked: Set<ObjectKey> = []
        /// Counts cluster changes; a decision remembers the count it started at.
        var moves: UInt64 = 0
        var attempts: [ObjectKey: (count: Int, last: Date)] = [:]
    }

    let work: WorkQueue<ObjectKey>
    let state = Mutex(State())
    let clock: any Clock
    let initialBackoff: Duration
    let maxBackoff: Duration

    public init(clock: any Clock = SystemClock(), initialBackoff: Duration = .seconds(1), maxBackoff: Duration = .seconds(10)) {
        self.clock = clock
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        work = WorkQueue(clock: clock)
    }

    /// A new or changed pod: try it now.
    public func add(_ key: ObjectKey) {
        state.withLock { _ = $0.parked.remove(key) }
        Task { await work.add(key) }
    }

    /// The next pod to decide; nil once shut down. Hand it back with `done`.
    public func pop() async -> ObjectKey? { await work.get() }
    public func done(_ key: ObjectKey) async { await work.done(key) }
    public func shutDown() async { await work.shutDown() }

    /// The change count a decision starts at.
    public var moveCycle: UInt64 { state.withLock { $0.moves } }

    /// The pod was placed, bound elsewhere, or deleted: forget its history.
    public func forget(_ key: ObjectKey) {
        state.withLock { state in
            state.attempts[key] = nil
            state.parked.remove(key)
        }
    }

    /// The pod fits nowhere as of the change count `cycle`.
    public func unschedulable(_ key: ObjectKey, cycle: UInt64) {
        let retry: Duration? = state.withLock { state in
            let delay = Self.count(&state, key, now: clock.now, initial: initialBackoff, cap: maxBackoff)
            if state.moves != cycle { return delay }
            state.parked.insert(key)
            return nil
        }
        if let retry { Task { await work.addAfter(key, retry) } }
    }

    /// The attempt failed for another reason (the binding was refused): retry after the backoff.
    public func failed(_ key: ObjectKey) {
        let delay = state.withLock { Self.count(&$0, key, now: clock.now, initial: initialBackoff, cap: maxBackoff) }
        Task { await work.addAfter(key, delay) }
    }

    /// The cluster changed in a way that may help parked pods: each goes back once its backoff
    /// has passed.
    public func moveAllParked() {
        let now = clock.now
        let moved: [(ObjectKey, Duration)] = state.withLock { state in
            state.moves &+= 1
            let keys = state.parked
            state.parked = []
            return keys.map { key in
                guard let attempt = state.attempts[key] else { return (key, .zero) }
                let ready = attempt.last.adding(Self.backoff(attempt.count, initial: initialBackoff, cap: maxBackoff))
                return (key, ready > now ? .seconds(double: ready.timeIntervalSince(now)) : .zero)
            }
        }
        guard !moved.isEmpty else { return }
        Task { for (key, delay) in moved { await work.addAfter(key, delay) } }
    }

    public var parkedCount: Int { state.withLock { $0.parked.count } }
    /// Pods waiting to be tried: ready now or after a backoff (parked pods are not among them).
    public func pendingCount() async -> Int { await work.count + work.delayedCount }
    public func isParked(_ key: ObjectKey) -> Bool { state.withLock { $0.parked.contains(key) } }

    static func count(_ state: inout State, _ key: ObjectKey, now: Date, initial: Duration, cap: Duration) -> Duration {
        let count = (state.attempts[key]?.count ?? 0) + 1
        state.attempts[key] = (count, now)
        return backoff(count, initial: initial, cap: cap)
    }

    /// `initial · 2^(attempts-1)`, capped.
    static func backoff(_ attempts: Int, initial: Duration, cap: Duration) -> Duration {
        let seconds = initial.seconds * pow(2, Double(min(max(attempts - 1, 0), 30)))
        return seconds >= cap.seconds ? cap : .seconds(double: seconds)
    }
}
