import API
import Foundation
import Testing
import TestSupport
@testable import Store

/// Collects events from a watch until `count` have arrived.
func collect(_ watch: StoreWatch, count: Int) async throws -> [StoreEvent] {
    var events: [StoreEvent] = []
    while events.count < count {
        let batch = try await watch.next()
        if batch.isEmpty { break }
        events += batch
    }
    return events
}

@Suite("Store: watches", .watchdog)
struct StoreWatchTests {
    @Test(arguments: Backend.allCases) func watchSeesEveryChangeAfterItsRevisionOnceInOrder(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend) else { return }
        let store = tested.store
        defer { tested.close() }
        let a = try await store.create(TestObjects.pod("a", labels: ["app": "x"]))
        let start = store.currentRevision
        let watch = try store.watch(from: start, options: .of(Pod.self))
        var modified = a
        modified.metadata.labels["v"] = "2"
        _ = try await store.update(modified)
        _ = try await store.create(TestObjects.node("n"))
        _ = try await store.create(TestObjects.pod("b", namespace: "other"))
        _ = try await store.delete(Pod.self, namespace: "default", name: "a", resourceVersion: nil)
        let events = try await collect(watch, count: 3)
        #expect(events.map(\.type) == [.modified, .added, .deleted])
        #expect(events.map(\.revision) == [2, 4, 5].map(tested.rv))
        #expect(events.map(\.key.name) == ["a", "b", "a"])
        #expect(events[2].object.metadata.resourceVersion == String(tested.rv(5)))
        watch.cancel()

        let selective = try store.watch(from: tested.rv(0), options: WatchOptions(resource: "pods", namespace: "default", labelSelector: try Selector(parsing: "app=x")))
        let replayed = try await collect(selective, count: 3)
        #expect(replayed.map(\.revision) == [1, 2, 5].map(tested.rv))
    }

    @Test(arguments: Backend.allCases) func watchFromOldRevisionReplaysFromTheLogThenFollows(_ backend: Backend) async throws {
        // A tiny ring forces catch-up through the revision log (and watchers woken at every
        // commit, or the writer below would overrun it while they wait for the next wake).
        guard let tested = try await TestStore.open(backend, StoreSettings(watchRingCapacity: 4, watchWakeInterval: .zero)) else { return }
        let store = tested.store
        defer { tested.close() }
        for i in 0..<50 { _ = try await store.create(TestObjects.pod("p\(i)")) }
        let watch = try store.watch(from: tested.rv(10), options: WatchOptions())
        let writer = Task {
            for i in 50..<60 { _ = try await store.create(TestObjects.pod("p\(i)")) }
        }
        let events = try await collect(watch, count: 50)
        try await writer.value
        // etcd: a replay may write a marker (a revision of its own, no event) when its watch
        // could not otherwise tell it had read everything up to the ring.
        #expect(events.map(\.key.name) == (10..<60).map { "p\($0)" })
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.revision < $1.revision })
        if backend == .sqlite { #expect(events.map(\.revision) == tested.rvs(11...60)) }
    }

    @Test(arguments: Backend.allCases) func watchResumesAcrossReopen(_ backend: Backend) async throws {
        guard var tested = try await TestStore.open(backend) else { return }
        for i in 0..<5 { _ = try await tested.store.create(TestObjects.pod("p\(i)")) }
        tested = try await tested.reopen()
        let store = tested.store
        defer { tested.close() }
        let watch = try store.watch(from: tested.rv(3), options: WatchOptions())
        _ = try await store.create(TestObjects.pod("p5"))
        #expect(try await collect(watch, count: 3).map(\.revision) == [4, 5, 6].map(tested.rv))
    }

    @Test(arguments: Backend.allCases) func compactedHistoryIsAnErrorNeverAGap(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend, StoreSettings(watchRingCapacity: 8)) else { return }
        let store = tested.store
        defer { tested.close() }
        for i in 0..<40 { _ = try await store.create(TestObjects.pod("p\(i % 5)-\(i)")) }
        try await tested.compact(to: tested.rv(30))
        await expectStoreError(.compacted) { _ = try store.watch(from: tested.rv(5), options: WatchOptions()) }
        let fromCompaction = try store.watch(from: tested.rv(30), options: WatchOptions())
        #expect(try await collect(fromCompaction, count: 10).map(\.revision) == tested.rvs(31...40))
    }

    /// A watch that runs while compaction happens sees every change exactly once, in order, or
    /// ends with `compacted`; it never skips silently.
    @Test func watchAcrossConcurrentCompaction() async throws {
        for attempt in 0..<4 {
            let dir = TemporaryDirectory()
            let store = try openStore(dir) { $0.watchRingCapacity = 16 }
            for i in 0..<200 { _ = try await store.create(TestObjects.pod("p\(i % 7)-\(i)")) }
            let watch = try store.watch(from: 0, options: WatchOptions())
            let churn = Task {
                for i in 0..<200 {
                    var pod = TestObjects.pod("p\(i % 7)-\(i)")
                    pod.metadata.labels["round"] = "2"
                    _ = try await store.update(pod)
                    if i % 40 == 0 { try await store.compact(to: store.currentRevision - Int64(attempt * 5)) }
                }
            }
            var seen: [Int64] = []
            do {
                while seen.count < 400 {
                    let batch = try await watch.next()
                    seen += batch.map(\.revision)
                    // Slow consumer: give the writer and compactor room to race ahead.
                    await Task.yield()
                }
                #expect(seen == Array(1...400))
            } catch let error as StoreError {
                #expect(error.code == .compacted || error.code == .watcherTooSlow, "\(error)")
                // (Possibly nothing arrived: the first compaction can come before the first read.)
                #expect(seen == (0..<seen.count).map { Int64($0) + 1 }, "what arrived before the error has no gap")
            }
            try await churn.value
            store.close()
        }
    }

    @Test(arguments: Backend.allCases) func slowWatcherIsCutOffWithItsResumeRevisionAndWritersNeverWait(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend, StoreSettings(watchRingCapacity: 32)) else { return }
        let store = tested.store
        defer { tested.close() }
        let watch = try store.watch(from: tested.rv(0), options: WatchOptions())
        _ = try await store.create(TestObjects.pod("first"))
        let firstBatch = try await watch.next()
        #expect(firstBatch.map(\.revision) == [tested.rv(1)])
        // The watcher stops reading; 100 writes must still complete.
        for i in 0..<100 { _ = try await store.create(TestObjects.pod("p\(i)")) }
        #expect(tested.writes == 101)
        do {
            _ = try await watch.next()
            Issue.record("a watcher 100 events behind a 32-event ring must be cut off")
        } catch let error as StoreError {
            #expect(error.code == .watcherTooSlow)
            #expect(error.revision == tested.rv(1))
        }
        // Resuming from the reported revision works (from the log).
        let resumed = try store.watch(from: tested.rv(1), options: WatchOptions())
        #expect(try await collect(resumed, count: 100).map(\.revision) == tested.rvs(2...101))
    }

    /// With a selector, a change that brings an object into the selection is ADDED, one inside it
    /// MODIFIED, and one that takes it out DELETED with the object as it was selected, at the
    /// change's revision (Kubernetes' watch cache does the same) — live and replayed from the log.
    /// Before, a watcher never learnt that an object had left its selection.
    @Test(.timeLimit(.minutes(5)), arguments: Backend.allCases) func objectsEnterAndLeaveASelectorsWatchAsAddedAndDeleted(_ backend: Backend) async throws {
        // A ring of 2 events: a watch started afterwards from revision 0 replays from the log.
        guard let tested = try await TestStore.open(backend, StoreSettings(watchRingCapacity: 2)) else { return }
        let store = tested.store
        defer { tested.close() }
        let web = WatchOptions(resource: "pods", namespace: "default", labelSelector: try Selector(parsing: "app=web"))
        let live = try store.watch(from: tested.rv(0), options: web)
        var pod = try await store.create(TestObjects.pod("p"))              // 1: not selected
        pod.metadata.labels["app"] = "web"
        pod = try await store.update(pod)                                  // 2: enters
        pod.metadata.labels["v"] = "2"
        pod = try await store.update(pod)                                  // 3: changes inside
        pod.metadata.labels["app"] = "db"
        pod = try await store.update(pod)                                  // 4: leaves
        _ = try await store.delete(Pod.self, namespace: "default", name: "p", resourceVersion: nil)  // 5: not selected
        let replayed = try store.watch(from: tested.rv(0), options: web)
        for watch in [live, replayed] {
            let events = try await collect(watch, count: 3)
            #expect(events.map(\.type) == [.added, .modified, .deleted])
            #expect(events.map(\.revision) == [2, 3, 4].map(tested.rv))
            let left = try Pod(protobuf: events[2].protobufBytes)
            #expect(left.metadata.labels == ["app": "web", "v": "2"], "the object as the watch last selected it")
            #expect(left.metadata.resourceVersion == String(tested.rv(4)))
            #expect(events[2].object.metadata.resourceVersion == String(tested.rv(4)))
            watch.cancel()
        }

        // A pod bound to a node leaves the unbound pods' watch (a scheduler's) and enters the node's.
        let unbound = try store.watch(from: store.currentRevision, options: WatchOptions(resource: "pods", nodeName: ""))
        let node = try store.watch(from: store.currentRevision, options: WatchOptions(resource: "pods", nodeName: "n1"))
        var q = try await store.create(TestObjects.pod("q"))
        q.spec.nodeName = "n1"
        q = try await store.update(q)
        let fromUnbound = try await collect(unbound, count: 2)
        #expect(fromUnbound.map(\.type) == [.added, .deleted])
        #expect((fromUnbound.last?.object as? Pod)?.spec.nodeName == "")
        let fromNode = try await node.next()
        #expect(fromNode.map(\.type) == [.added])
        #expect(fromNode.map(\.revision) == [Int64(q.metadata.resourceVersion)])
    }

    /// A node agent's watch (`spec.nodeName=NODE`) is served from the node index: it gets exactly
    /// its node's pods, in order, from history and live; other nodes' churn — far more than the
    /// ring holds — neither reaches it nor cuts it off; losing one of its own events does.
    @Test(arguments: Backend.allCases) func aNodesWatchSeesItsPodsOnlyAndOutlastsOtherNodesChurn(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend, StoreSettings(watchRingCapacity: 32)) else { return }
        let store = tested.store
        defer { tested.close() }
        func pod(_ name: String, on node: String) -> Pod {
            var pod = TestObjects.pod(name)
            pod.spec.nodeName = node
            return pod
        }
        let live = try store.watch(from: tested.rv(0), options: WatchOptions(resource: "pods", nodeName: "a"))
        let all = try store.watch(from: tested.rv(0), options: WatchOptions(resource: "pods"))
        _ = try await store.create(pod("a-0", on: "a"))
        #expect(try await live.next().map { $0.object.metadata.name } == ["a-0"])
        #expect(try await all.next().map { $0.object.metadata.name } == ["a-0"])
        // 200 pods on node b (the ring holds 32), with one for node a in the middle.
        for i in 0..<200 {
            _ = try await store.create(pod(i == 100 ? "a-1" : "b-\(i)", on: i == 100 ? "a" : "b"))
        }
        _ = try await store.create(pod("a-2", on: "a"))
        // The unindexed watch, 200 events behind a 32-event ring, is cut off...
        await #expect(throws: StoreError.self) { _ = try await all.next() }
        // ...the node's watch lost a-1 (overwritten) and says so instead of skipping it.
        do {
            _ = try await live.next()
            Issue.record("a node watch whose own event was overwritten must be told to resume")
        } catch let error as StoreError {
            #expect(error.code == .watcherTooSlow)
            #expect(error.revision == tested.rv(1))
        }
        // Resumed from there it reads its pods from the log, then follows the ring: idle while
        // 100 more pods land on node b, it still gets a-3, and only a-1 … a-3.
        let resumed = try store.watch(from: tested.rv(1), options: WatchOptions(resource: "pods", nodeName: "a"))
        #expect(try await collect(resumed, count: 2).map { $0.object.metadata.name } == ["a-1", "a-2"])
        for i in 0..<100 { _ = try await store.create(pod("c-\(i)", on: "b")) }
        let a3 = try await store.create(pod("a-3", on: "a"))
        let last = try await resumed.next()
        #expect(last.map { $0.object.metadata.name } == ["a-3"])
        #expect(last.map(\.revision) == [Int64(a3.metadata.resourceVersion)])
        #expect(resumed.revision == store.currentRevision)
    }

    /// A bookmark tick or a cancel that lands between a watch's read and its wait is kept for
    /// that wait (a node's watch may otherwise sleep until its node's next pod, bookmarks and all).
    @Test(.timeLimit(.minutes(5))) func aWakeBeforeTheWaitIsNotLost() async {
        let hub = WatchHub(capacity: 8, head: 0)
        let id = hub.newWaiterID()
        hub.wake(id)
        await hub.waitForEvents(after: 0, node: "a", id: id)  // returns at once
        hub.wake(id)
        await hub.waitForEvents(after: 0, id: id)
        hub.forget(id)
    }

    @Test func cancellingAWaitingWatchReturnsPromptly() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        defer { store.close() }
        let watch = try store.watch(from: 0, options: WatchOptions())
        #expect(store.activeWatchers == 1)
        let waiting = Task { try await watch.next() }
        try await Task.sleep(for: .milliseconds(20))
        waiting.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiting.value }
        watch.cancel()
        #expect(store.activeWatchers == 0)
    }

    @Test func eachEncodingIsMadeOncePerEvent() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        defer { store.close() }
        let watches = try (0..<20).map { _ in try store.watch(from: 0, options: WatchOptions()) }
        _ = try await store.create(TestObjects.pod("a"))
        let encodes = Counter()
        var outputs: Set<[UInt8]> = []
        for watch in watches {
            let event = try #require(try await watch.next().first)
            outputs.insert(event.encoded("json") { e in
                encodes.increment()
                return e.object.jsonBytes()
            })
        }
        #expect(encodes.value == 1)
        #expect(outputs.count == 1)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
