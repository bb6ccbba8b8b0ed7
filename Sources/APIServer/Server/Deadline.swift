import Synchronization

/// The server-side limit on one request: an answer that takes longer becomes 504 Timeout, as
/// Kubernetes' `--request-timeout` does. The work itself may still finish (a store write already
/// queued is not undone), which is why clients retry only idempotent calls.
enum Deadline {
    struct Exceeded: Error {}

    /// Runs `operation`, throwing `Exceeded` when it has not finished after `limit`. The operation
    /// is cancelled then, and may complete in the background if it ignores cancellation.
    static func run<T: Sendable>(within limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let race = Race<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                race.start(continuation, limit: limit, operation)
            }
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }

    /// The work and its deadline; whichever ends first answers, and cancels the other.
    final class Race<T: Sendable>: Sendable {
        struct State {
            var continuation: CheckedContinuation<T, any Error>?
            var work: Task<Void, Never>?
            var timer: UInt64?
            var finished = false
        }
        let state = Mutex(State())

        func start(_ continuation: CheckedContinuation<T, any Error>, limit: Duration, _ operation: @escaping @Sendable () async throws -> T) {
            let cancelledEarly = state.withLock { state in
                state.continuation = continuation
                return state.finished
            }
            if cancelledEarly { return finish(.failure(CancellationError())) }
            let timer = DeadlineTimer.shared.add(at: .now + limit) { self.finish(.failure(Exceeded())) }
            let work = Task {
                let result: Result<T, any Error>
                do { result = .success(try await operation()) } catch { result = .failure(error) }
                self.finish(result)
            }
            state.withLock { state in
                state.timer = timer
                state.work = work
            }
            // Either may have finished before the handles were stored.
            if state.withLock({ $0.finished }) {
                DeadlineTimer.shared.remove(timer)
                work.cancel()
            }
        }

        func finish(_ result: Result<T, any Error>) {
            let (continuation, work, timer) = state.withLock { state in
                state.finished = true
                defer { state.continuation = nil }
                return (state.continuation, state.work, state.timer)
            }
            guard let continuation else { return }
            work?.cancel()
            if let timer { DeadlineTimer.shared.remove(timer) }
            continuation.resume(with: result)
        }
    }
}

/// One clock for every request deadline: a request adds its deadline when it starts and removes
/// it when it ends (a lock and a dictionary entry); one task wakes every `tick` while any are
/// pending and fires those that have passed. A timer per request (a task sleeping on a dispatch
/// timer, then cancelled) cost about 4 % of the server's CPU under `cox bench sched`. Deadlines
/// fire up to one tick late, which a limit of seconds does not notice.
final class DeadlineTimer: Sendable {
    static let shared = DeadlineTimer(tick: .milliseconds(50))

    struct Entry {
        let at: ContinuousClock.Instant
        let fire: @Sendable () -> Void
    }
    struct State {
        var entries: [UInt64: Entry] = [:]
        var nextID: UInt64 = 0
        var ticking = false
    }
    let tick: Duration
    let state = Mutex(State())

    init(tick: Duration) { self.tick = tick }

    /// Calls `fire` once `at` has passed, unless removed first.
    func add(at: ContinuousClock.Instant, fire: @escaping @Sendable () -> Void) -> UInt64 {
        let (id, start) = state.withLock { state -> (UInt64, Bool) in
            state.nextID += 1
            state.entries[state.nextID] = Entry(at: at, fire: fire)
            defer { state.ticking = true }
            return (state.nextID, !state.ticking)
        }
        if start { Task.detached { await self.run() } }
        return id
    }

    func remove(_ id: UInt64) {
        state.withLock { _ = $0.entries.removeValue(forKey: id) }
    }

    /// Ticks until nothing is pending.
    private func run() async {
        while true {
            try? await Task.sleep(for: tick)
            let now = ContinuousClock.now
            let (due, idle) = state.withLock { state -> ([Entry], Bool) in
                let ids = state.entries.compactMap { $0.value.at <= now ? $0.key : nil }
                let due = ids.compactMap { state.entries.removeValue(forKey: $0) }
                if state.entries.isEmpty { state.ticking = false }
                return (due, state.entries.isEmpty)
            }
            for entry in due { entry.fire() }
            if idle { return }
        }
    }
}
