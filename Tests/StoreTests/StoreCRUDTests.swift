import API
import Foundation
import Logging
import Testing
import TestSupport
@testable import Store

func openStore(_ dir: TemporaryDirectory, configure: (inout SQLiteStore.Options) -> Void = { _ in }) throws -> SQLiteStore {
    var options = SQLiteStore.Options()
    configure(&options)
    var logger = Logger(label: "cox.store.test")
    logger.logLevel = .warning
    return try SQLiteStore(directory: dir.path, options: options, logger: logger)
}

func expectStoreError(_ code: StoreError.Code, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async {
    do {
        try await body()
        Issue.record("expected \(code), got success", sourceLocation: sourceLocation)
    } catch let error as StoreError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Store: objects and revisions", .watchdog)
struct StoreCRUDTests {
    @Test(arguments: Backend.allCases) func createSetsServerFieldsAndRevisionsAreGlobal(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend) else { return }
        let store = tested.store
        defer { tested.close() }
        let a = try await store.create(TestObjects.pod("a"))
        let n = try await store.create(TestObjects.node("n1"))
        let b = try await store.create(TestObjects.pod("b", namespace: "other"))
        #expect([a, b].map(\.metadata.resourceVersion) == [tested.rv(1), tested.rv(3)].map(String.init))
        #expect(n.metadata.resourceVersion == String(tested.rv(2)))
        #expect(a.metadata.uid != b.metadata.uid)
        for uid in [a, b].map(\.metadata.uid) {
            #expect(uid.wholeMatch(of: /[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/) != nil, "\(uid) is a v4 UUID")
        }
        #expect(a.metadata.generation == 1)
        #expect(a.metadata.creationTimestamp.seconds > 1_700_000_000)
        #expect(tested.writes == 3)
        let fetched = try await store.get(Pod.self, namespace: "default", name: "a")
        #expect(fetched == a)
        await expectStoreError(.alreadyExists) { _ = try await store.create(TestObjects.pod("a")) }
        await expectStoreError(.notFound) { _ = try await store.get(Pod.self, namespace: "other", name: "a") }
        #expect(tested.writes == 3, "failed writes use no revision")
    }

    @Test(arguments: Backend.allCases) func updatesArePreconditionedAndGenerationFollowsSpec(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend) else { return }
        let store = tested.store
        defer { tested.close() }
        let created = try await store.create(TestObjects.pod("a"))

        var statusOnly = created
        statusOnly.status.phase = "Running"
        let afterStatus = try await store.update(statusOnly)
        #expect(afterStatus.metadata.generation == 1, "status changes do not bump generation")
        #expect(afterStatus.metadata.resourceVersion == String(tested.rv(2)))

        var stale = created
        stale.spec.containers[0].command = ["true"]
        await expectStoreError(.conflict) { _ = try await store.update(stale) }

        var fresh = afterStatus
        fresh.spec.containers[0].command = ["true"]
        fresh.metadata.uid = "forged"
        let afterSpec = try await store.update(fresh)
        #expect(afterSpec.metadata.generation == 2)
        #expect(afterSpec.metadata.uid == created.metadata.uid, "uid is immutable")
        #expect(afterSpec.metadata.creationTimestamp == created.metadata.creationTimestamp)

        let unchanged = try await store.update(afterSpec)
        #expect(unchanged.metadata.resourceVersion == afterSpec.metadata.resourceVersion, "a no-op update writes nothing")
        #expect(tested.writes == 3)

        var unconditional = afterSpec
        unconditional.metadata.resourceVersion = ""
        unconditional.metadata.labels["x"] = "y"
        #expect(try await store.update(unconditional).metadata.resourceVersion == String(tested.rv(4)))
        await expectStoreError(.notFound) { _ = try await store.update(TestObjects.pod("ghost")) }
    }

    @Test func objectsEvictedFromTheWritersCacheStillUpdateAndDeleteCorrectly() async throws {
        // The cache itself: bounded after every commit, and a rolled back batch leaves it as it was.
        let cache = LiveObjects(capacity: 10)
        for i in 0..<50 {
            cache.stage(ObjectKey(Pod.self, namespace: "default", name: "p\(i)"), (Int64(i), [], TestObjects.pod("p\(i)")))
            cache.commit()
            #expect(cache.objects.count <= 10)
        }
        let before = Set(cache.objects.keys)
        cache.stage(ObjectKey(Pod.self, namespace: "default", name: "extra"), (99, [], TestObjects.pod("extra")))
        cache.stageDeletion(before.first!)
        cache.rollback()
        #expect(Set(cache.objects.keys) == before)

        // A store whose cache holds 8 of 40 pods: each update and delete of an evicted pod reads it
        // back, and preconditions, generations and the returned state are what they would be cached.
        let dir = TemporaryDirectory()
        let store = try openStore(dir) { $0.liveObjectCapacity = 8 }
        defer { store.close() }
        var created: [Pod] = []
        for i in 0..<40 { created.append(try await store.create(TestObjects.pod("p\(i)"))) }
        for pod in created {
            var stale = pod
            stale.metadata.resourceVersion = "1"
            stale.spec.containers[0].command = ["stale"]
            if pod.metadata.name != "p0" { await expectStoreError(.conflict) { _ = try await store.update(stale) } }
            var changed = pod
            changed.spec.containers[0].command = ["true"]
            let updated = try await store.update(changed)
            #expect(updated.metadata.generation == 2)
            #expect(updated.metadata.uid == pod.metadata.uid)
        }
        for pod in created.reversed() {
            let current = try await store.get(Pod.self, namespace: "default", name: pod.metadata.name)
            let deleted = try await store.delete(Pod.self, namespace: "default", name: pod.metadata.name, resourceVersion: Int64(current.metadata.resourceVersion))
            #expect(deleted.spec.containers[0].command == ["true"], "the deletion returns the last state")
        }
        #expect(try await store.list(Pod.self, options: ListOptions()).items.isEmpty)
    }

    /// A change made inside the writer reads and writes with nothing in between: 50 concurrent
    /// increments of one counter all count, without a conflict; a change that throws writes nothing.
    @Test(arguments: Backend.allCases) func changesMadeInsideTheWriterNeverConflictAndAThrowWritesNothing(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend) else { return }
        let store = tested.store
        defer { tested.close() }
        let created = try await store.create(TestObjects.pod("counter", labels: ["n": "0"]))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<50 {
                group.addTask {
                    _ = try await store.update(Pod.self, namespace: "default", name: "counter") { pod in
                        pod.metadata.labels["n"] = String(Int(pod.metadata.labels["n"]!)! + 1)
                    }
                }
            }
            try await group.waitForAll()
        }
        let counted = try await store.get(Pod.self, namespace: "default", name: "counter")
        #expect(counted.metadata.labels["n"] == "50")
        #expect(counted.metadata.uid == created.metadata.uid)
        #expect(tested.writes == 51)

        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            _ = try await store.update(Pod.self, namespace: "default", name: "counter") { pod in
                pod.metadata.labels["n"] = "ignored"
                throw Refused()
            }
        }
        let unchanged = try await store.update(Pod.self, namespace: "default", name: "counter") { _ in }
        #expect(unchanged.metadata.resourceVersion == String(tested.rv(51)), "a change that changes nothing writes nothing")
        #expect(tested.writes == 51)
        #expect(try await store.get(Pod.self, namespace: "default", name: "counter").metadata.labels["n"] == "50")
        await expectStoreError(.notFound) { _ = try await store.update(Pod.self, namespace: "default", name: "ghost") { _ in } }
    }

    @Test(arguments: Backend.allCases) func deleteIsPreconditionedAndFinal(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend) else { return }
        let store = tested.store
        defer { tested.close() }
        let created = try await store.create(TestObjects.pod("a"))
        _ = try await store.update({ var p = created; p.metadata.labels["v"] = "2"; return p }())
        await expectStoreError(.conflict) { _ = try await store.delete(Pod.self, namespace: "default", name: "a", resourceVersion: tested.rv(1)) }
        let deleted = try await store.delete(Pod.self, namespace: "default", name: "a", resourceVersion: tested.rv(2))
        #expect(deleted.metadata.resourceVersion == String(tested.rv(3)))
        #expect(deleted.metadata.labels["v"] == "2", "the deletion returns the last state")
        await expectStoreError(.notFound) { _ = try await store.get(Pod.self, namespace: "default", name: "a") }
        await expectStoreError(.notFound) { _ = try await store.delete(Pod.self, namespace: "default", name: "a", resourceVersion: nil) }
        let again = try await store.create(TestObjects.pod("a"))
        #expect(again.metadata.uid != created.metadata.uid, "a re-created object is a new object")
    }

    @Test(arguments: Backend.allCases) func oversizedObjectsAreRefusedAndChangeNothing(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend, StoreSettings(maxObjectBytes: 64 * 1024)) else { return }
        let store = tested.store
        defer { tested.close() }
        _ = try await store.create(TestObjects.pod("small"))
        var big = TestObjects.pod("big")
        big.metadata.annotations["blob"] = String(repeating: "x", count: 100 * 1024)
        await expectStoreError(.tooLarge) { _ = try await store.create(big) }
        await expectStoreError(.notFound) { _ = try await store.get(Pod.self, namespace: "default", name: "big") }
        #expect(tested.writes == 1)
        await expectStoreError(.invalid) { _ = try await store.create(TestObjects.pod("")) }
        var badVersion = TestObjects.pod("small")
        badVersion.metadata.resourceVersion = "abc"
        await expectStoreError(.invalid) { _ = try await store.update(badVersion) }
    }

    @Test(arguments: Backend.allCases) func everythingSurvivesReopening(_ backend: Backend) async throws {
        guard var tested = try await TestStore.open(backend) else { return }
        for i in 0..<10 { _ = try await tested.store.create(TestObjects.pod("p\(i)")) }
        _ = try await tested.store.delete(Pod.self, namespace: "default", name: "p3", resourceVersion: nil)
        tested = try await tested.reopen()
        let store = tested.store
        defer { tested.close() }
        #expect(tested.writes == 11)
        let list = try await store.list(Pod.self, options: ListOptions())
        #expect(list.items.count == 9)
        #expect(try await store.create(TestObjects.pod("p3")).metadata.resourceVersion == String(tested.rv(12)))
    }

    @Test func concurrentWritesAreGroupedIntoFewerCommits() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        defer { store.close() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<256 {
                group.addTask { _ = try await store.create(TestObjects.pod("p\(i)")) }
            }
            try await group.waitForAll()
        }
        let commits = store.stats.commits.load(ordering: .relaxed)
        #expect(store.currentRevision == 256)
        #expect(commits < 256, "256 concurrent writes took \(commits) commits")
        #expect(store.stats.largestBatch.load(ordering: .relaxed) > 1)
    }

    @Test func oneTransactionPerWriteWhenGroupCommitIsOff() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir) { $0.groupCommit = false }
        defer { store.close() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<32 { group.addTask { _ = try await store.create(TestObjects.pod("p\(i)")) } }
            try await group.waitForAll()
        }
        #expect(store.stats.commits.load(ordering: .relaxed) == 32)
    }
}
