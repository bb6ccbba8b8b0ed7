import Foundation
import NIOCore
import NIOPosix
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
        // At most `COX_TEST_PARALLEL` (12) tests run at once: two cores running fifty tests'
        // servers, agents and kubectls at the same moment left event loops unscheduled for
        // seconds and TLS handshakes timed out; twelve at a time took as long in all.
        await TestSlots.shared.acquire()
        defer { TestSlots.shared.release() }
        let key = WatchdogThread.shared.started(test.name, in: test.id.moduleName)
        defer { WatchdogThread.shared.ended(key) }
        try await function()
    }
}

/// Turns for tests to run (see `Watchdog`): a counting semaphore that suspends, never blocks.
final class TestSlots: Sendable {
    static let shared = TestSlots(limit: Int(ProcessInfo.processInfo.environment["COX_TEST_PARALLEL"] ?? "") ?? 12)

    struct State {
        var free: Int
        var waiting: [CheckedContinuation<Void, Never>] = []
    }
    let state: Mutex<State>

    init(limit: Int) { state = Mutex(State(free: max(1, limit))) }

    func acquire() async {
        let granted = state.withLock { state -> Bool in
            guard state.free > 0 else { return false }
            state.free -= 1
            return true
        }
        if granted { return }
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.free > 0 {
                    state.free -= 1
                    return true
                }
                state.waiting.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiting.isEmpty {
                state.free += 1
                return nil
            }
            return state.waiting.removeFirst()  // the turn passes on
        }
        next?.resume()
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
        Thread { [self] in watchEventLoops() }.start()
    }

    /// Every second, a task on each event loop of NIO's shared group (the in-process servers' and
    /// clients'); one that runs 2 s or more late is said, with what runs — and with
    /// `COX_TEST_STALL_GDB=1`, gdb writes every thread's stack to `/tmp/cox-stall-PID-N.txt`.
    private func watchEventLoops() {
        let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())
        var dumps = 0
        while true {
            let slept = Date()
            Thread.sleep(forTimeInterval: 1)
            let overslept = Date().timeIntervalSince(slept) - 1
            if overslept >= 3 {
                // This thread itself was not run: the whole process (or machine) stood still.
                FileHandle.standardError.write(Data("watchdog: a 1 s sleep took \(Int(overslept + 1)) s: the process was not run; \(Self.machineLoad())\n".utf8))
            }
            let sent = Date()
            let ran = Mutex<[Int: Date]>([:])
            for (index, loop) in loops.enumerated() { loop.execute { ran.withLock { $0[index] = Date() } } }
            Thread.sleep(forTimeInterval: 2)
            let late = ran.withLock { ran in loops.indices.filter { ran[$0] == nil } }
            guard !late.isEmpty else { continue }
            let running = state.withLock { state in state.running.values.map(\.name).sorted() }
            FileHandle.standardError.write(Data("watchdog: event loops \(late) have not run a task for \(Int(Date().timeIntervalSince(sent))) s; \(Self.machineLoad()); running: \(running.joined(separator: ", "))\n".utf8))
            if ProcessInfo.processInfo.environment["COX_TEST_STALL_GDB"] == "1", dumps < 3, let gdb = Tools.find("gdb") {
                dumps += 1
                let path = "/tmp/cox-stall-\(getpid())-\(dumps).txt"
                _ = try? Tools.run("/bin/sh", ["-c", "\(gdb) -p \(getpid()) -batch -ex 'set pagination off' -ex 'thread apply all bt 40' > \(path) 2>&1"], timeout: 60)
                FileHandle.standardError.write(Data("watchdog: stacks in \(path)\n".utf8))
            }
        }
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
                let text = "watchdog: the concurrency pool has not run a probe for \(Int(late)) s; \(Self.machineLoad()); running: \(running.joined(separator: ", "))\n"
                FileHandle.standardError.write(Data(text.utf8))
            }
            if probe { Task.detached { [self] in state.withLock { $0.probeSent = nil } } }
        }
    }

    /// The load average and the busiest processes, for a stall's report.
    static func machineLoad() -> String {
        let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        let busiest = (try? Tools.run("/bin/ps", ["-eo", "pcpu,stat,comm", "--sort=-pcpu"], timeout: 5).output)?
            .split(separator: "\n").dropFirst().prefix(5).map { $0.split(separator: " ").joined(separator: " ") }.joined(separator: "; ") ?? "?"
        return "load \(load); busiest: \(busiest)"
    }

    private func fail(_ reason: String, _ running: [String]) -> Never {
        let text = "\nwatchdog: \(reason); ending the test run. Tests still running:\n"
            + running.map { "  \($0)\n" }.joined()
        FileHandle.standardError.write(Data(text.utf8))
        FileHandle.standardOutput.write(Data(text.utf8))
        exit(1)
    }
}
