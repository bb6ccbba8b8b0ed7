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

    /// The work and its timer; whichever ends first answers, and cancels the other.
    final class Race<T: Sendable>: Sendable {
        struct State {
            var continuation: CheckedContinuation<T, any Error>?
            var work: Task<Void, Never>?
            var timer: Task<Void, Never>?
            var finished = false
        }
        let state = Mutex(State())

        func start(_ continuation: CheckedContinuation<T, any Error>, limit: Duration, _ operation: @escaping @Sendable () async throws -> T) {
            let cancelledEarly = state.withLock { state in
                state.continuation = continuation
                return state.finished
            }
            if cancelledEarly { return finish(.failure(CancellationError())) }
            let timer = Task {
                guard (try? await Task.sleep(for: limit)) != nil else { return }
                self.finish(.failure(Exceeded()))
            }
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
                timer.cancel()
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
            timer?.cancel()
            continuation.resume(with: result)
        }
    }
}
