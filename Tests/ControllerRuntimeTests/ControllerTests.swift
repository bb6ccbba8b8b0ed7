import ControllerRuntime
import Foundation
import Logging
import Testing
import TestSupport

/// A reconciler that does what each key's script says and records what happened.
final class ScriptedReconciler: Reconciler {
    enum Step: Sendable { case fail, terminal, requeue(Duration), done }
    let script: MutexBox<[String: [Step]]>
    let calls = MutexBox<[String]>([])
    let running = MutexBox<[String: Int]>([:])
    let overlap = MutexBox(false)

    init(_ script: [String: [Step]]) { self.script = MutexBox(script) }

    struct Failure: Error {}

    func reconcile(_ key: ObjectKey) async throws -> ReconcileResult {
        calls.withLock { $0.append(key.name) }
        running.withLock { running in
            running[key.name, default: 0] += 1
            if running[key.name]! > 1 { overlap.withLock { $0 = true } }
        }
        try? await Task.sleep(for: .milliseconds(2))
        running.withLock { $0[key.name]! -= 1 }
        let step = script.withLock { script -> Step in
            guard var steps = script[key.name], !steps.isEmpty else { return .done }
            let step = steps.removeFirst()
            script[key.name] = steps
            return step
        }
        switch step {
        case .fail: throw Failure()
        case .terminal: throw TerminalError("cannot be fixed by retrying")
        case .requeue(let after): return .requeue(after: after)
        case .done: return .done
        }
    }

    func count(_ name: String) -> Int { calls.withLock { $0.filter { $0 == name }.count } }
}

@Suite(.watchdog) struct ControllerTests {
    static var logger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    @Test func errorsRetryWithBackoffTerminalErrorsDoNotAndRequeueWaitsItsTime() async throws {
        let clock = FakeClock()
        let queue = WorkQueue<ObjectKey>(clock: clock, limiter: ExponentialBackoffLimiter<ObjectKey>(base: .seconds(1), cap: .seconds(60)))
        let reconciler = ScriptedReconciler(["flaky": [.fail, .fail, .done], "broken": [.terminal], "timer": [.requeue(.seconds(30)), .done]])
        let controller = Controller(name: "test", queue: queue, reconciler: reconciler, workers: 2, logger: Self.logger)
        let run = Task { await controller.run() }
        defer { run.cancel() }
        for name in ["flaky", "broken", "timer"] { await queue.add(ObjectKey(name: name)) }
        try await waitUntil("each key ran once") { ["flaky", "broken", "timer"].allSatisfy { reconciler.count($0) == 1 } }
        try await waitUntil("flaky and timer wait on the clock") { await queue.delayedCount == 2 }

        clock.advance(by: .seconds(1))                      // flaky's first backoff: 1 s
        try await waitUntil("flaky retried") { reconciler.count("flaky") == 2 }
        try await waitUntil("flaky waits again") { await queue.delayedCount == 2 }
        clock.advance(by: .seconds(1))                      // 1 s is not enough now: 2 s
        try await Task.sleep(for: .milliseconds(50))
        #expect(reconciler.count("flaky") == 2)
        clock.advance(by: .seconds(1))
        try await waitUntil("flaky retried after 2 s") { reconciler.count("flaky") == 3 }
        // The success (recorded when the reconcile starts) forgets the backoff once it returns.
        try await waitUntil("success forgets the backoff") { await queue.failures(ObjectKey(name: "flaky")) == 0 }

        clock.advance(by: .seconds(27))                     // 30 s since timer's requeue
        try await waitUntil("timer ran again") { reconciler.count("timer") == 2 }
        try await Task.sleep(for: .milliseconds(50))
        #expect(reconciler.count("broken") == 1, "a terminal error is not retried")
        #expect(controller.stats.errors == 3)
        run.cancel()
        await run.value
    }

    @Test func manyWorkersNeverReconcileOneKeyTwiceAtOnce() async throws {
        let queue = WorkQueue<ObjectKey>(clock: FakeClock())
        let reconciler = ScriptedReconciler([:])
        let controller = Controller(name: "test", queue: queue, reconciler: reconciler, workers: 8, logger: Self.logger)
        let run = Task { await controller.run() }
        // Keys added over and over while being reconciled.
        for round in 0..<50 {
            for key in 0..<4 { await queue.add(ObjectKey(name: "k\(key)")) }
            if round % 10 == 0 { try await Task.sleep(for: .milliseconds(3)) }
        }
        try await waitUntil("the queue is drained") { await queue.count == 0 }
        try await Task.sleep(for: .milliseconds(50))
        run.cancel()
        await run.value
        #expect(!reconciler.overlap.withLock { $0 }, "a key was reconciled by two workers at once")
        #expect(controller.stats.maxActive > 1, "workers did run in parallel")
        // Duplicates collapse: far fewer reconciles than the 200 adds.
        #expect(controller.stats.reconciles < 200)
    }
}
