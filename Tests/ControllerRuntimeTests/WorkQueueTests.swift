import ControllerRuntime
import Foundation
import Testing
import TestSupport

@Suite(.watchdog) struct RateLimiterTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func perKeyBackoffDoublesFrom5msToTheCapAndForgetResets() {
        var limiter = ExponentialBackoffLimiter<String>()
        let delays = (0..<5).map { _ in limiter.when("a", now: now) }
        #expect(delays == [.milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(40), .milliseconds(80)])
        // Another key has its own count.
        #expect(limiter.when("b", now: now) == .milliseconds(5))
        // 5 ms · 2^18 = 1,310.72 s > 1,000 s: capped from the 19th failure on.
        for _ in 5..<18 { _ = limiter.when("a", now: now) }
        #expect(limiter.when("a", now: now) == .seconds(1000))
        #expect(limiter.failures("a") == 19)
        limiter.forget("a")
        #expect(limiter.failures("a") == 0)
        #expect(limiter.when("a", now: now) == .milliseconds(5))
    }

    @Test func aKeyThatFailsForeverStaysAtTheCap() {
        var limiter = ExponentialBackoffLimiter<String>()
        var last = Duration.zero
        for _ in 0..<5000 { last = limiter.when("x", now: now) }
        #expect(last == .seconds(1000))
    }

    @Test func tokenBucketAllowsTheBurstThenSpacesByQPS() {
        var bucket = TokenBucketLimiter<String>(qps: 10, burst: 3)
        let burst = (0..<3).map { bucket.when("k\($0)", now: now) }
        #expect(burst == [.zero, .zero, .zero])
        // Tokens are reserved from the future: 100 ms, then 200 ms.
        #expect(bucket.when("k3", now: now) == .milliseconds(100))
        #expect(bucket.when("k4", now: now) == .milliseconds(200))
        // A second later the debt is paid and 8 tokens are back (up to the burst of 3).
        #expect(bucket.when("k5", now: now.addingTimeInterval(1)) == .zero)
    }

    @Test func controllerLimiterTakesTheLongerOfBoth() {
        var limiter = ControllerRateLimiter<String>(perKey: .init(), overall: .init(qps: 1, burst: 1))
        #expect(limiter.when("a", now: now) == .milliseconds(5))   // bucket had a token
        #expect(limiter.when("b", now: now) == .seconds(1))        // bucket empty: 1 s beats 5 ms
    }
}

@Suite(.watchdog) struct WorkQueueTests {
    @Test func duplicatesCollapseAndOrderIsFirstIn() async {
        let queue = WorkQueue<String>(clock: FakeClock())
        for key in ["a", "b", "a", "c", "b"] { await queue.add(key) }
        #expect(await queue.count == 3)
        #expect(await queue.get() == "a")
        #expect(await queue.get() == "b")
        #expect(await queue.get() == "c")
    }

    @Test func aKeyIsNeverHandedToTwoWorkersAtOnce() async {
        let queue = WorkQueue<String>(clock: FakeClock())
        await queue.add("a")
        #expect(await queue.get() == "a")
        // Added again while being processed: not handed out, held until done.
        await queue.add("a")
        await queue.add("b")
        #expect(await queue.get() == "b")
        #expect(await queue.count == 0)
        await queue.done("b")
        await queue.done("a")
        #expect(await queue.count == 1)
        #expect(await queue.get() == "a")
    }

    @Test func aWaitingWorkerGetsTheNextKey() async throws {
        let queue = WorkQueue<String>(clock: FakeClock())
        let worker = Task { await queue.get() }
        try await waitUntil("the worker waits") { await queue.idleWorkers == 1 }
        await queue.add("x")
        #expect(await worker.value == "x")
        #expect(await queue.count == 0)
    }

    @Test func rateLimitedKeysWaitTheirBackoffOnTheClock() async throws {
        let clock = FakeClock()
        let queue = WorkQueue<String>(clock: clock, limiter: ExponentialBackoffLimiter<String>(base: .milliseconds(5), cap: .seconds(1000)))
        await queue.addRateLimited("a")   // 5 ms
        await queue.addRateLimited("a")   // 10 ms, but the earlier deadline wins
        try await clock.waitForSleepers(1)
        #expect(await queue.count == 0)
        clock.advance(by: .milliseconds(4))
        #expect(await queue.count == 0)
        clock.advance(by: .milliseconds(1))
        #expect(await queue.get() == "a")
        #expect(await queue.failures("a") == 2)
        await queue.done("a")
        await queue.forget("a")
        #expect(await queue.failures("a") == 0)
    }

    @Test func delayedAddsKeepTheEarliestDeadline() async throws {
        let clock = FakeClock()
        let queue = WorkQueue<String>(clock: clock)
        await queue.addAfter("a", .seconds(10))
        await queue.addAfter("a", .seconds(2))
        await queue.addAfter("a", .seconds(5))
        #expect(await queue.delayedCount == 1)
        try await clock.waitForSleepers(1)
        clock.advance(by: .seconds(2))
        #expect(await queue.get() == "a")
        #expect(await queue.delayedCount == 0)
    }

    @Test func shutDownReleasesWaitersAndDrainWaitsForKeysInProgress() async throws {
        let queue = WorkQueue<String>(clock: FakeClock())
        await queue.add("busy")
        #expect(await queue.get() == "busy")
        async let idle = queue.get()
        try await Task.sleep(for: .milliseconds(10))
        let drained = Task { await queue.shutDownAndDrain(); return Date() }
        #expect(await idle == nil)
        await queue.add("late")
        #expect(await queue.get() == nil)
        try await Task.sleep(for: .milliseconds(20))
        let finishedAt = Date()
        await queue.done("busy")
        #expect(await drained.value >= finishedAt)
    }
}
