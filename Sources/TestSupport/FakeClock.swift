import ControllerRuntime
import Foundation
import Synchronization

/// A clock that moves only when a test says so. Sleepers wake when `advance` passes their
/// deadline; `waitForSleepers` lets a test wait until the code under test is asleep before moving time.
public final class FakeClock: Clock, Sendable {
    struct Sleeper { let deadline: Date; let continuation: CheckedContinuation<Void, any Error> }
    struct State { var now: Date; var sleepers: [UUID: Sleeper] = [:] }
    let state: Mutex<State>

    public init(now: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        state = Mutex(State(now: now))
    }

    public var now: Date { state.withLock { $0.now } }

    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    public func sleep(until deadline: Date) async throws {
        let id = UUID()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let result: Result<Void, any Error>? = state.withLock { state in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if deadline <= state.now { return .success(()) }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    return nil
                }
                if let result { continuation.resume(with: result) }
            }
        } onCancel: {
            state.withLock { $0.sleepers.removeValue(forKey: id) }?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    public func advance(by duration: Duration) {
        let woken: [Sleeper] = state.withLock { state in
            state.now = state.now.adding(duration)
            let due = state.sleepers.filter { $0.value.deadline <= state.now }
            for id in due.keys { state.sleepers[id] = nil }
            return due.values.sorted { $0.deadline < $1.deadline }
        }
        for sleeper in woken { sleeper.continuation.resume() }
    }

    /// Waits (in real time, briefly yielding) until at least `count` tasks sleep on this clock.
    public func waitForSleepers(_ count: Int, timeout: Duration = .seconds(10)) async throws {
        let start = ContinuousClock.now
        while sleeperCount < count {
            if ContinuousClock.now - start > timeout { throw FakeClockTimeout(expected: count, found: sleeperCount) }
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}

public struct FakeClockTimeout: Error, CustomStringConvertible {
    public let expected: Int
    public let found: Int
    public var description: String { "waited for \(expected) sleepers on the fake clock; \(found) are asleep" }
}
