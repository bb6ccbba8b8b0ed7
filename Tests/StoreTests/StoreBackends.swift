import API
import Etcd
import Foundation
import Logging
import Testing
import TestSupport
@testable import Store

/// The backends the shared store tests run against: the embedded store, and etcd (a real etcd 3.4
/// member of the test's own, over mutual TLS).
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case etcd
    var testDescription: String { rawValue }
}

/// Settings the shared tests vary, applied to either backend.
struct StoreSettings: Sendable {
    var watchRingCapacity: Int?
    var watchWakeInterval: Duration?
    var maxObjectBytes: Int?
}

/// A store under test on either backend. Revisions are the backend's own: etcd's count from
/// its cluster's first (a fresh member is at revision 1), so the tests speak of `rv(n)`, the
/// revision after the store's n-th write.
final class TestStore: Sendable {
    let backend: Backend
    let store: any ObjectStore
    let dir: TemporaryDirectory
    let cluster: EtcdCluster?
    let settings: StoreSettings
    /// The store's revision before the test's first write.
    let base: Int64

    private init(backend: Backend, store: any ObjectStore, dir: TemporaryDirectory, cluster: EtcdCluster?, settings: StoreSettings, base: Int64?) {
        self.backend = backend
        self.store = store
        self.dir = dir
        self.cluster = cluster
        self.settings = settings
        self.base = base ?? store.currentRevision
    }

    /// A new store, nil when the backend's peer (etcd) is missing (a failure with COX_REQUIRE_PEERS).
    static func open(_ backend: Backend, _ settings: StoreSettings = StoreSettings(),
                     sourceLocation: SourceLocation = #_sourceLocation) async throws -> TestStore? {
        let dir = TemporaryDirectory()
        switch backend {
        case .sqlite:
            return TestStore(backend: backend, store: try openSQLite(dir, settings), dir: dir, cluster: nil, settings: settings, base: nil)
        case .etcd:
            guard Tools.peer("etcd", sourceLocation: sourceLocation) != nil else { return nil }
            let cluster = try EtcdCluster(size: 1)
            try await cluster.waitUntilServing()
            return TestStore(backend: backend, store: try await openEtcd(cluster, settings), dir: dir, cluster: cluster, settings: settings, base: nil)
        }
    }

    static func openSQLite(_ dir: TemporaryDirectory, _ settings: StoreSettings) throws -> SQLiteStore {
        try openStore(dir) { options in
            if let ring = settings.watchRingCapacity { options.watchRingCapacity = ring }
            if let wake = settings.watchWakeInterval { options.watchWakeInterval = wake }
            if let bytes = settings.maxObjectBytes { options.maxObjectBytes = bytes }
        }
    }

    static func openEtcd(_ cluster: EtcdCluster, _ settings: StoreSettings) async throws -> EtcdStore {
        var options = EtcdStore.Options(endpoints: cluster.endpoints, tls: cluster.tls)
        if let ring = settings.watchRingCapacity { options.watchRingCapacity = ring }
        if let wake = settings.watchWakeInterval { options.watchWakeInterval = wake }
        if let bytes = settings.maxObjectBytes { options.maxObjectBytes = bytes }
        var logger = Logger(label: "cox.store.test")
        logger.logLevel = .warning
        return try await EtcdStore(options: options, logger: logger)
    }

    /// The same data opened again (a restarted server), the old store closed.
    func reopen() async throws -> TestStore {
        store.close()
        switch backend {
        case .sqlite:
            return TestStore(backend: backend, store: try Self.openSQLite(dir, settings), dir: dir, cluster: nil, settings: settings, base: base)
        case .etcd:
            return TestStore(backend: backend, store: try await Self.openEtcd(cluster!, settings), dir: dir, cluster: cluster, settings: settings, base: base)
        }
    }

    /// The revision after the store's n-th write.
    func rv(_ n: Int) -> Int64 { base + Int64(n) }
    func rvs(_ range: ClosedRange<Int>) -> [Int64] { range.map(rv) }

    /// The store's revision counted as `rv` counts.
    var writes: Int64 { store.currentRevision - base }

    func compact(to revision: Int64) async throws {
        switch store {
        case let sqlite as SQLiteStore: try await sqlite.compact(to: revision)
        case let etcd as EtcdStore: try await etcd.compact(to: revision)
        default: Issue.record("no compaction for \(type(of: store))")
        }
    }

    func close() { store.close() }
}
