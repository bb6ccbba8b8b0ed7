import API
import ControllerRuntime
import Foundation
import Scheduler
import Testing
import TestSupport

/// The scheduler's cache and queue on a fake clock: assumptions are seen by the next decision and
/// undone when a binding fails; parked pods come back on cluster changes, never by polling.
@Suite(.watchdog) struct CacheTests {
    static func cluster(_ names: [String], cpu: String = "1", clock: FakeClock = FakeClock()) -> SchedulerCache {
        let cache = SchedulerCache(clock: clock)
        for name in names { cache.setNode(FrameworkTests.node(name, cpu: cpu).node) }
        return cache
    }

    static func bound(_ pod: Pod, to node: String) -> Pod {
        var placed = pod
        placed.spec.nodeName = node
        return placed
    }

    @Test func theNextDecisionSeesAnAssumptionAndAFailedBindingUndoesIt() {
        let cache = Self.cluster(["a", "b"])
        let first = FrameworkTests.pod("first", cpu: "800m")
        let second = FrameworkTests.pod("second", cpu: "800m")
        let one = cache.schedule(PodInfo(first), with: .standard)
        #expect(one.node == "a")
        #expect(cache.isAssumed(key: "default/first"))
        #expect(cache.requested(on: "a")?.milliCPU == 800)
        // Before any watch event: the second pod does not fit next to the first.
        #expect(cache.schedule(PodInfo(second), with: .standard).node == "b")
        // The first binding fails: its cpu is free again, and a third pod may use it.
        cache.forget(key: "default/first")
        #expect(!cache.isAssumed(key: "default/first"))
        #expect(cache.requested(on: "a") == Resources())
        #expect(cache.schedule(PodInfo(FrameworkTests.pod("third", cpu: "800m")), with: .standard).node == "a")
    }

    @Test func theWatchConfirmsOrOverrulesAnAssumption() {
        let cache = Self.cluster(["a", "b"])
        let pod = FrameworkTests.pod("p", cpu: "500m")
        #expect(cache.schedule(PodInfo(pod), with: .standard).node == "a")
        // Another scheduler bound it to b first: the watch says so; the refused binding's forget
        // must not undo what the watch showed.
        cache.addPod(Self.bound(pod, to: "b"))
        cache.forget(key: "default/p")
        #expect(cache.requested(on: "a") == Resources())
        #expect(cache.requested(on: "b")?.milliCPU == 500)
        #expect(cache.assumedCount == 0)
        // Deleted: its resources are free.
        cache.removePod(key: "default/p")
        #expect(cache.requested(on: "b") == Resources())
    }

    @Test func anAssumptionTheWatchNeverConfirmsExpires() {
        let clock = FakeClock()
        let cache = Self.cluster(["a"], clock: clock)
        #expect(cache.schedule(PodInfo(FrameworkTests.pod("p", cpu: "500m")), with: .standard).node == "a")
        cache.finishBinding(key: "default/p")
        clock.advance(by: .seconds(29))
        _ = cache.schedule(PodInfo(FrameworkTests.pod("q", cpu: "100m")), with: .standard)
        #expect(cache.isAssumed(key: "default/p"), "within the TTL")
        clock.advance(by: .seconds(2))
        _ = cache.schedule(PodInfo(FrameworkTests.pod("r", cpu: "100m")), with: .standard)
        #expect(!cache.isAssumed(key: "default/p"))
        #expect(cache.requested(on: "a")?.milliCPU == 200, "q and r stay; p expired")
    }

    @Test func podsOnANodeNotYetSeenCountOnceItAppears() {
        let cache = Self.cluster([])
        cache.addPod(Self.bound(FrameworkTests.pod("early", cpu: "900m"), to: "late"))
        #expect(cache.nodeCount == 0)
        cache.setNode(FrameworkTests.node("late", cpu: "1").node)
        #expect(cache.requested(on: "late")?.milliCPU == 900)
        #expect(cache.schedule(PodInfo(FrameworkTests.pod("p", cpu: "200m")), with: .standard).node == nil)
    }

    @Test func parkedPodsReturnOnAClusterChangeAfterTheirBackoff() async throws {
        let clock = FakeClock()
        let queue = SchedulingQueue(clock: clock)
        let key = ObjectKey(namespace: "default", name: "p")
        queue.add(key)
        #expect(await queue.pop() == key)
        let cycle = queue.moveCycle
        queue.unschedulable(key, cycle: cycle)
        await queue.done(key)
        #expect(queue.isParked(key))
        // Time alone brings nothing back.
        clock.advance(by: .seconds(60))
        #expect(queue.isParked(key))
        // A node joins: the pod's 1 s backoff is long over, so it is ready at once.
        queue.moveAllParked()
        #expect(!queue.isParked(key))
        #expect(await queue.pop() == key)
        // Fails again (second attempt: 2 s backoff); the next change comes 0.5 s later.
        queue.unschedulable(key, cycle: queue.moveCycle)
        await queue.done(key)
        clock.advance(by: .milliseconds(500))
        queue.moveAllParked()
        try await clock.waitForSleepers(1)
        clock.advance(by: .milliseconds(1500))
        #expect(await queue.pop() == key)
        await queue.done(key)
    }

    @Test func aChangeDuringTheDecisionIsNotMissed() async throws {
        let clock = FakeClock()
        let queue = SchedulingQueue(clock: clock)
        let key = ObjectKey(namespace: "default", name: "p")
        queue.add(key)
        #expect(await queue.pop() == key)
        let cycle = queue.moveCycle
        queue.moveAllParked()  // a node joined while the pod was being decided
        queue.unschedulable(key, cycle: cycle)
        await queue.done(key)
        #expect(!queue.isParked(key), "retried after its backoff instead of waiting for another change")
        try await clock.waitForSleepers(1)
        clock.advance(by: .seconds(1))
        #expect(await queue.pop() == key)
        await queue.done(key)
    }
}
