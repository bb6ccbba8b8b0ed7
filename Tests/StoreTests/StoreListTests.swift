import Foundation
import API
import Testing
import TestSupport
@testable import Store

@Suite("Store: lists", .watchdog)
struct StoreListTests {
    @Test(arguments: Backend.allCases) func namespacesSelectorsAndOrder(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend) else { return }
        let store = tested.store
        defer { tested.close() }
        for (ns, name, tier) in [("b", "z", "web"), ("a", "y", "db"), ("a", "x", "web"), ("b", "w", "db")] {
            _ = try await store.create(TestObjects.pod(name, namespace: ns, labels: ["tier": tier]))
        }
        _ = try await store.create(TestObjects.node("n"))
        let all = try await store.list(Pod.self, options: ListOptions())
        #expect(all.items.map { "\($0.metadata.namespace)/\($0.metadata.name)" } == ["a/x", "a/y", "b/w", "b/z"])
        #expect(all.revision == tested.rv(5))
        #expect(all.continueToken == nil)
        #expect(try await store.list(Pod.self, options: ListOptions(namespace: "a")).items.map(\.metadata.name) == ["x", "y"])
        let web = try await store.list(Pod.self, options: ListOptions(labelSelector: try Selector(parsing: "tier=web")))
        #expect(web.items.map(\.metadata.name) == ["x", "z"])
        let byField = try await store.list(Pod.self, options: ListOptions(predicate: { $0.metadata.name == "w" }))
        #expect(byField.items.map(\.metadata.name) == ["w"])
        #expect(try await store.list(Node.self, options: ListOptions(namespace: "a")).items.count == 1, "namespace is ignored for cluster-scoped kinds")
    }

    @Test(arguments: Backend.allCases) func pagesComeFromOneRevision(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend) else { return }
        let store = tested.store
        defer { tested.close() }
        for i in 0..<25 { _ = try await store.create(TestObjects.pod(String(format: "p%02d", i))) }
        var first = try await store.list(Pod.self, options: ListOptions(limit: 10))
        #expect(first.items.count == 10)
        let token = try #require(first.continueToken)
        // Change the world between pages: delete one not yet listed, add one, modify one.
        _ = try await store.delete(Pod.self, namespace: "default", name: "p15", resourceVersion: nil)
        _ = try await store.create(TestObjects.pod("p99"))
        var changed = try await store.get(Pod.self, namespace: "default", name: "p20")
        changed.metadata.labels["changed"] = "yes"
        _ = try await store.update(changed)

        var names = first.items.map(\.metadata.name)
        var next: String? = token
        while let page = next {
            first = try await store.list(Pod.self, options: ListOptions(limit: 10, continueToken: page))
            #expect(first.revision == tested.rv(25))
            names += first.items.map(\.metadata.name)
            #expect(!first.items.contains { $0.metadata.labels["changed"] != nil }, "pages show the state at the first page's revision")
            next = first.continueToken
        }
        #expect(names == (0..<25).map { String(format: "p%02d", $0) })

        let filtered = try await store.list(Pod.self, options: ListOptions(labelSelector: try Selector(parsing: "changed=yes"), limit: 5))
        #expect(filtered.items.map(\.metadata.name) == ["p20"])
        #expect(filtered.continueToken == nil)
    }

    @Test(arguments: Backend.allCases) func continueTokensExpireWithCompaction(_ backend: Backend) async throws {
        guard let tested = try await TestStore.open(backend) else { return }
        let store = tested.store
        defer { tested.close() }
        for i in 0..<5 { _ = try await store.create(TestObjects.pod("p\(i)")) }
        let page = try await store.list(Pod.self, options: ListOptions(limit: 2))
        for i in 0..<3 { _ = try await store.update({ var p = TestObjects.pod("p\(i)"); p.metadata.labels["i"] = "\(i)"; return p }()) }
        try await tested.compact(to: store.currentRevision)
        await expectStoreError(.compacted) { _ = try await store.list(Pod.self, options: ListOptions(limit: 2, continueToken: page.continueToken)) }
        await expectStoreError(.invalid) { _ = try await store.list(Pod.self, options: ListOptions(continueToken: "garbage")) }
        #expect(try await store.list(Pod.self, options: ListOptions()).items.count == 5)
    }

    /// A list reads one row per object: its work does not follow the history the objects have,
    /// and neither does a continued list at a revision from before that history.
    @Test func listsDoNotReadHistory() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir)
        defer { store.close() }
        for i in 0..<20 { _ = try await store.create(TestObjects.pod(String(format: "p%02d", i))) }
        let fresh = try await store.list(Pod.self, options: ListOptions())
        let freshWork = store.lastListWork.load(ordering: .relaxed)
        let firstPage = try await store.list(Pod.self, options: ListOptions(limit: 5))
        for round in 0..<100 {
            for i in 0..<20 {
                _ = try await store.update(Pod.self, namespace: "default", name: String(format: "p%02d", i)) { pod in
                    pod.metadata.labels["round"] = "\(round)"
                }
            }
        }
        #expect(try store.logRevisions().count == 2_020, "the history is there, uncompacted")
        let churned = try await store.list(Pod.self, options: ListOptions())
        let churnedWork = store.lastListWork.load(ordering: .relaxed)
        #expect(churned.items.count == 20 && churned.items.allSatisfy { $0.metadata.labels["round"] == "99" })
        #expect(churnedWork <= freshWork * 3 / 2, "a list after 2,000 updates did \(churnedWork) steps, against \(freshWork) before")

        let rest = try await store.list(Pod.self, options: ListOptions(continueToken: firstPage.continueToken))
        let continuedWork = store.lastListWork.load(ordering: .relaxed)
        #expect(rest.items.map(\.metadata.name) == fresh.items.dropFirst(5).map(\.metadata.name))
        #expect(rest.items.allSatisfy { $0.metadata.labels["round"] == nil }, "the page shows its revision, before the updates")
        #expect(continuedWork <= freshWork * 3, "a continued list read \(continuedWork) steps, against \(freshWork) for a whole list before the updates")
    }

    /// A database made by an older version (no table of current objects, no incremental vacuum,
    /// 0644 files) is brought up to date when opened, and reads the same.
    @Test func anOlderDatabaseIsMigratedOnOpen() async throws {
        let dir = TemporaryDirectory()
        let path = dir.path + "/" + SQLiteStore.databaseFileName
        do {
            let store = try openStore(dir)
            for i in 0..<5 { _ = try await store.create(TestObjects.pod("p\(i)")) }
            _ = try await store.delete(Pod.self, namespace: "default", name: "p3", resourceVersion: nil)
            store.close()
        }
        do {
            let old = try SQLiteConnection(path: path)
            try old.execute("DROP TABLE current; DELETE FROM meta WHERE k = 'layout'; PRAGMA auto_vacuum=NONE; VACUUM;")
        }
        for file in [path, path + "-wal", path + "-shm"] { _ = chmod(file, 0o644) }
        _ = chmod(dir.path, 0o755)

        let store = try openStore(dir)
        defer { store.close() }
        #expect(try await store.list(Pod.self, options: ListOptions()).items.map(\.metadata.name) == ["p0", "p1", "p2", "p4"])
        await expectStoreError(.notFound) { _ = try await store.get(Pod.self, namespace: "default", name: "p3") }
        _ = try await store.create(TestObjects.pod("p3"))
        #expect(try await store.get(Pod.self, namespace: "default", name: "p3").metadata.resourceVersion == "7")
        for file in [path, path + "-wal", path + "-shm"] {
            #expect(try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int == 0o600, "\(file)")
        }
        #expect(try FileManager.default.attributesOfItem(atPath: dir.path)[.posixPermissions] as? Int == 0o700)
        let check = try SQLiteConnection(path: path)
        let mode = try check.prepare("PRAGMA auto_vacuum")
        #expect(try mode.step() && mode.int64(0) == 2, "incremental auto-vacuum")
    }
}
