import API
import Foundation
import Testing
import TestSupport
@testable import Store

@Suite("Store: concurrency, durability, compaction", .watchdog)
struct StoreConcurrencyTests {
    /// N tasks increment a counter in one object with read-modify-write under a resourceVersion
    /// precondition. No increment is lost, and each revision has exactly one winner.
    @Test(arguments: Backend.allCases) func preconditionedUpdatesLoseNothing(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend) else { return }
        let store = tested.store
        defer { tested.close() }
        var pod = TestObjects.pod("counter")
        pod.metadata.annotations["count"] = "0"
        _ = try await store.create(pod)
        // etcd: every attempt is three round trips and a conflict costs one more; fewer rounds keep it short.
        let tasks = 16, incrementsEach = backend == .etcd ? 10 : 25
        let watch = try store.watch(from: store.currentRevision, options: WatchOptions())
        let (wins, conflicts) = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for _ in 0..<tasks {
                group.addTask {
                    var wins = 0, conflicts = 0
                    while wins < incrementsEach {
                        var current = try await store.get(Pod.self, namespace: "default", name: "counter")
                        current.metadata.annotations["count"] = String(Int(current.metadata.annotations["count"]!)! + 1)
                        do {
                            _ = try await store.update(current)
                            wins += 1
                        } catch let error as StoreError where error.code == .conflict {
                            conflicts += 1
                        }
                    }
                    return (wins, conflicts)
                }
            }
            return try await group.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
        }
        let final = try await store.get(Pod.self, namespace: "default", name: "counter")
        #expect(wins == tasks * incrementsEach)
        #expect(final.metadata.annotations["count"] == String(tasks * incrementsEach))
        #expect(tested.writes == Int64(1 + tasks * incrementsEach), "one revision per winning update, none for the \(conflicts) conflicts")
        let events = try await collect(watch, count: tasks * incrementsEach)
        #expect(events.map { $0.object.metadata.annotations["count"]! } == (1...(tasks * incrementsEach)).map(String.init),
                "the log holds every value exactly once, in order")
    }

    /// The database file stays bounded under churn when the log is compacted.
    @Test func compactionKeepsTheFileBounded() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        defer { store.close() }
        let dbPath = (dir.path as NSString).appendingPathComponent(SQLiteStore.databaseFileName)
        func churn(_ rounds: Int) async throws {
            for _ in 0..<rounds {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<50 {
                        group.addTask {
                            var pod = Samples.pod()
                            pod.metadata = ObjectMeta()
                            pod.metadata.name = "p\(i)"
                            pod.metadata.namespace = "default"
                            pod.metadata.labels["r"] = UUID().uuidString.lowercased()
                            _ = try await store.update(pod)
                        }
                    }
                    try await group.waitForAll()
                }
                try await store.compact(to: store.currentRevision - 100)
            }
        }
        for i in 0..<50 { _ = try await store.create({ var p = Samples.pod(); p.metadata = ObjectMeta(); p.metadata.name = "p\(i)"; p.metadata.namespace = "default"; return p }()) }
        try await churn(20)
        let sizeAfterWarmup = try FileManager.default.attributesOfItem(atPath: dbPath)[.size] as! Int
        try await churn(80)
        let sizeAfterChurn = try FileManager.default.attributesOfItem(atPath: dbPath)[.size] as! Int
        let rows = try store.logRevisions().count
        #expect(rows <= 50 + 100 + 50, "only the retained history and the live objects remain (\(rows) rows)")
        #expect(sizeAfterChurn <= sizeAfterWarmup * 2, "4× more writes must not grow the file: \(sizeAfterWarmup) → \(sizeAfterChurn) bytes")
    }

    /// The background compactor compacts what is older than its window, gives the freed pages
    /// back to the file system, and stops when cancelled.
    @Test func backgroundCompactorRunsUntilCancelled() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        defer { store.close() }
        for i in 0..<10 { _ = try await store.create(TestObjects.pod("p\(i)")) }
        for round in 1...2 {
            for i in 0..<10 { _ = try await store.update(TestObjects.pod("p\(i)", labels: ["round": "\(round)"])) }
        }
        let compactor = Task { await store.runCompactor(window: .milliseconds(50), tick: .milliseconds(10)) }
        // Bounded wait for the window to pass (not a timing assertion: 1,000 × 10 ms at most).
        for _ in 0..<1_000 where store.compactedRevision < 30 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(store.compactedRevision == 30)
        compactor.cancel()
        await compactor.value
        // Revisions 1–10 created p0…p9, 11–20 and 21–30 updated them: only the last of each is kept.
        #expect(try store.logRevisions().map(\.revision) == Array(21...30))
        let live = try await store.list(Pod.self, options: ListOptions())
        #expect(live.items.allSatisfy { $0.metadata.labels["round"] == "2" } && live.items.count == 10, "compaction never changes live objects")
    }

    /// The window rule: compact to the newest revision noted at least a window ago.
    @Test func compactionScheduleKeepsOneWindowOfHistory() {
        var schedule = CompactionSchedule(window: .seconds(300))
        #expect(schedule.record(at: .seconds(30), revision: 10) == nil)
        #expect(schedule.record(at: .seconds(60), revision: 20) == nil)
        #expect(schedule.record(at: .seconds(329), revision: 90) == nil, "nothing is 300 s old yet")
        #expect(schedule.record(at: .seconds(330), revision: 95) == 10)
        #expect(schedule.record(at: .seconds(400), revision: 99) == 20, "the newest of those old enough")
        #expect(schedule.record(at: .seconds(401), revision: 99) == nil, "nothing new became old enough")
        #expect(schedule.record(at: .seconds(700), revision: 120) == 99)
    }
}
