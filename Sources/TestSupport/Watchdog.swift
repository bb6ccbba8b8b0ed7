import Foundation
import Synchronization
import Testing

/// A hung test must fail the run in minutes, not hold it until CI's limit. `@Suite(.watchdog)`
/// puts every test of the suite under one watchdog thread (a plain thread: it runs even when every
/// thread of Swift's cooperative pool is blocked, which async time limits cannot notice). It
/// ends the process with the names of the tests still running when
/// - a test has run longer than `COX_TEST_LIMIT_SECONDS` (600 by default), or
/// - the cooperative pool has not run a probe task for 120 s: every one of its threads is blocked
///   (with two cores there are two; two tests waiting synchronously on something async stop all).
public struct Watchdog: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        guard !test.isSuite else { return try await function() }
        let key = WatchdogThread.shared.started(test.name, in: test.id.moduleName)
        defer { WatchdogThread.shared.ended(key) }
        try await function()
    }
}

extension Trait where Self == Watchdog {
    /// See `Watchdog`.
    public static var watchdog: Watchdog { Watchdog() }
}

final class WatchdogThread: Sendable {
    static let shared = WatchdogThread()

    struct State {
        var running: [Int: (name: String, since: Date)] = [:]
        var next = 0
        var probeSent: Date?
    }
    let state = Mutex(State())
    let testLimit = Double(ProcessInfo.processInfo.environment["COX_TEST_LIMIT_SECONDS"] ?? "") ?? 600
    let poolLimit = 120.0

    private init() {
        Thread { [self] in watch() }.start()
    }

    func started(_ name: String, in module: String) -> Int {
        state.withLock { state in
            state.next += 1
            state.running[state.next] = ("\(module).\(name)", Date())
            return state.next
        }
    }

    func ended(_ key: Int) {
        state.withLock { _ = $0.running.removeValue(forKey: key) }
    }

    private func watch() {
        while true {
            Thread.sleep(forTimeInterval: 5)
            let now = Date()
            let (overdue, stalled, probe, running) = state.withLock { state -> ([String], Bool, Bool, [String]) in
                let overdue = state.running.values.filter { now.timeIntervalSince($0.since) > testLimit }.map(\.name)
                let stalled = state.probeSent.map { now.timeIntervalSince($0) > poolLimit } ?? false
                let probe = state.probeSent == nil
                if probe { state.probeSent = now }
                let running = state.running.values.sorted { $0.since < $1.since }.map { "\($0.name) (\(Int(now.timeIntervalSince($0.since))) s)" }
                return (overdue, stalled, probe, running)
            }
            if !overdue.isEmpty {
                fail("\(overdue.joined(separator: ", ")) ran longer than \(Int(testLimit)) s", running)
            }
            if stalled {
                fail("the concurrency pool has run nothing for \(Int(poolLimit)) s: every one of its threads is blocked", running)
            }
            // A late probe (5 s or more) is said, with what runs, once per stall: in-process servers
            // answer nothing meanwhile, and the failures that follow (deadlines of 10 s) point
            // elsewhere than the cause.
            let late = state.withLock { $0.probeSent.map { now.timeIntervalSince($0) } ?? 0 }
            if !probe && late >= 5 {
                let text = "watchdog: the concurrency pool has not run a probe for \(Int(late)) s; running: \(running.joined(separator: ", "))\n"
                FileHandle.standardError.write(Data(text.utf8))
            }
            if probe { Task.detached { [self] in state.withLock { $0.probeSent = nil } } }
        }
    }

    private func fail(_ reason: String, _ running: [String]) -> Never {
        let text = "\nwatchdog: \(reason); ending the test run. Tests still running:\n"
            + running.map { "  \($0)\n" }.joined()
        FileHandle.standardError.write(Data(text.utf8))
        FileHandle.standardOutput.write(Data(text.utf8))
        exit(1)
    }
}
