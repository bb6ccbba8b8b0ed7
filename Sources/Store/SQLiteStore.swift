import API
import Foundation
import Logging
import Synchronization

/// The embedded store: SQLite in WAL mode with `synchronous=FULL`.
///
/// Layout: table `kv` is the revision log, its rowid the global revision. Every write appends a
/// row (the object's new state, or a tombstone with its last state). Table `current` holds, per
/// key, the revision of its newest row (a tombstone's too, until compaction drops it), so gets and
/// lists read one row per object whatever the length of the history. `meta` holds the current and
/// the compaction revision. Compaction deletes rows superseded at or before the compaction
/// revision, and tombstones at or before it:
///
///     rev  key         type      after compact(3):  rev  key        type
///      1   pods/a      ADDED                         3   pods/a     MODIFIED   (latest ≤ 3: kept)
///      2   pods/b      ADDED                         4   pods/b     DELETED
///      3   pods/a      MODIFIED                      5   pods/c     ADDED
///      4   pods/b      DELETED
///      5   pods/c      ADDED                       watch(from: 2) -> compacted; watch(from: 3) -> 4, 5
///
/// A list at revision R (a continued list) reads `current` in key order: a key whose newest row
/// is at or before R is read as it is; a key written since R is read at its newest row at or
/// before R (one index seek), so the cost follows the number of keys and of keys changed since R,
/// never the length of the history.
///
/// Pages freed by compaction go back to the file system (`auto_vacuum=INCREMENTAL`, reclaimed in
/// small steps by `reclaimSpace`). Every file the store makes is 0600.
///
/// Writes go through one writer thread that commits whatever is queued as one transaction and one
/// fsync (group commit); each caller resumes only after that commit.
public final class SQLiteStore: ObjectStore, Sendable {
    public struct Options: Sendable {
        /// Most writes committed together.
        public var maxBatch = 1_024
        /// Group commit on (default) or one transaction per write (the baseline for benchmarks).
        public var groupCommit = true
        /// Events kept in memory for watchers; a watcher further behind than this is cut off.
        public var watchRingCapacity = 16_384
        /// Watchers waiting for changes are woken at most this often: under a stream of small
        /// commits each writes one larger batch per interval instead of one per commit (see
        /// WatchHub). It is the most a change waits before a watch sends it.
        public var watchWakeInterval: Duration = .milliseconds(5)
        /// The key Secrets are encrypted with at rest (nil: stored as they are; an encrypted
        /// one found then fails its read).
        public var secretsKey: SecretsKey?
        /// Largest encoded object accepted (etcd's default request limit is 1.5 MiB).
        public var maxObjectBytes = 1_536 * 1_024
        /// Read connections kept open.
        public var readPoolSize = 4
        /// Objects the writer keeps decoded, so updates and deletes need no read (a miss costs
        /// one read and one decode).
        public var liveObjectCapacity = 100_000
        public init() {}
    }

    public static let databaseFileName = "state.db"

    let path: String
    let options: Options
    var values: ValueCodec { ValueCodec(secrets: options.secretsKey) }
    let logger: Logger
    let hub: WatchHub
    let writer: WriteQueue
    let readers: Mutex<[SQLiteConnection]>
    let revisions: RevisionState
    /// One process per data directory, for as long as the store is open.
    let directoryLock: DirectoryLock
    /// Write-path counters.
    public let stats = StoreStats()
    /// SQLite's work (VM steps) for the last list, for tests that check it does not follow history.
    let lastListWork = Atomic<Int>(0)

    /// Opens (creating if needed) the store in `directory`.
    /// Throws `DirectoryLock.InUse` when another process (or another store here) has the directory.
    public init(directory: String, options: Options = Options(), logger: Logger = Logger(label: "cox.store")) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.directoryLock = try DirectoryLock(directory: directory)
        self.path = (directory as NSString).appendingPathComponent(Self.databaseFileName)
        self.options = options
        self.logger = logger
        // Every object, tokens' hashes included: 0600. SQLite makes the WAL and shared-memory
        // files with the database file's mode, so the database is made first, 0600.
        try DataFiles.restrict(directory: directory, files: [path, path + "-wal", path + "-shm"], creating: path)
        let connection = try SQLiteConnection(path: path)
        try connection.execute("""
            PRAGMA auto_vacuum=INCREMENTAL;
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=FULL;
            PRAGMA journal_size_limit=\(Self.walSizeLimit);
            CREATE TABLE IF NOT EXISTS kv (
                rev INTEGER PRIMARY KEY,
                res TEXT NOT NULL,
                ns TEXT NOT NULL,
                name TEXT NOT NULL,
                type INTEGER NOT NULL,
                value BLOB NOT NULL
            );
            CREATE INDEX IF NOT EXISTS kv_key ON kv(res, ns, name, rev);
            CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
            INSERT OR IGNORE INTO meta(k, v) VALUES ('current_rev', 0), ('compact_rev', 0);
            """)
        try Self.migrate(connection, logger: logger)
        let current = try Self.readMeta(connection, "current_rev")
        let compacted = try Self.readMeta(connection, "compact_rev")
        self.revisions = RevisionState(current: current, compacted: compacted)
        self.hub = WatchHub(capacity: options.watchRingCapacity, head: current, minWakeInterval: options.watchWakeInterval)
        self.readers = Mutex([])
        self.writer = WriteQueue()
        let thread = Thread { [writer, hub, options, logger, revisions, stats] in
            WriterLoop(connection: connection, queue: writer, hub: hub, options: options, logger: logger, revisions: revisions, stats: stats).run()
        }
        thread.name = "cox-store-writer"
        thread.start()
        logger.info("store opened", metadata: ["path": "\(path)", "revision": "\(current)", "compacted": "\(compacted)"])
    }

    deinit {
        close()
    }

    /// Stops accepting writes, waits for queued ones to commit, and ends every watch.
    public func close() {
        writer.close()
        writer.waitUntilStopped()
        hub.close()
        directoryLock.release()
    }

    /// The WAL is truncated back to this after a checkpoint (the files' bound beyond the data).
    public static let walSizeLimit = 64 * 1024 * 1024

    /// Brings a database made by an older version up to the current layout: the `current` table
    /// (filled from the log), and incremental auto-vacuum (which an existing file only gets from a
    /// full VACUUM, done once).
    static func migrate(_ connection: SQLiteConnection, logger: Logger) throws {
        try connection.execute("""
            CREATE TABLE IF NOT EXISTS current (
                res TEXT NOT NULL,
                ns TEXT NOT NULL,
                name TEXT NOT NULL,
                rev INTEGER NOT NULL,
                type INTEGER NOT NULL,
                PRIMARY KEY (res, ns, name)
            ) WITHOUT ROWID;
            """)
        if try readMeta(connection, "layout") < 2 {
            try connection.execute("""
                BEGIN IMMEDIATE;
                DELETE FROM current;
                INSERT INTO current(res, ns, name, rev, type) SELECT res, ns, name, max(rev), type FROM kv GROUP BY res, ns, name;
                INSERT OR REPLACE INTO meta(k, v) VALUES ('layout', 2);
                COMMIT;
                """)
        }
        let vacuumMode = try connection.prepare("PRAGMA auto_vacuum")
        let mode = try vacuumMode.step() ? vacuumMode.int64(0) : 0
        vacuumMode.reset()
        if mode != 2 {
            logger.notice("converting the store to incremental auto-vacuum (once; rewrites the file)")
            try connection.execute("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")
        }
    }

    static func readMeta(_ connection: SQLiteConnection, _ key: String) throws -> Int64 {
        let statement = try connection.prepare("SELECT v FROM meta WHERE k = ?")
        statement.bind(1, key)
        return try statement.step() ? statement.int64(0) : 0
    }

    public var currentRevision: Int64 { revisions.value.withLock { $0.current } }
    public var compactedRevision: Int64 { revisions.value.withLock { $0.compacted } }

    public func renderMetrics(into lines: inout [String]) {
        lines += StoreStats.revisionLines(current: currentRevision, compacted: compactedRevision) + [
            "# HELP cox_store_commits_total Transactions committed (each one fsync).",
            "# TYPE cox_store_commits_total counter",
            "cox_store_commits_total \(stats.commits.load(ordering: .relaxed))",
            "# HELP cox_store_writes_total Writes committed; writes/commits is the mean group-commit batch.",
            "# TYPE cox_store_writes_total counter",
            "cox_store_writes_total \(stats.writes.load(ordering: .relaxed))",
            "# HELP cox_store_compacted_rows_total Rows removed from the revision log by compaction.",
            "# TYPE cox_store_compacted_rows_total counter",
            "cox_store_compacted_rows_total \(stats.compactedRows.load(ordering: .relaxed))",
            "# HELP cox_store_commit_batch_size Writes per commit (group commit).",
            "# TYPE cox_store_commit_batch_size histogram",
        ]
        stats.batchSizes.render("cox_store_commit_batch_size", labels: "", into: &lines)
    }
    /// Watches currently open.
    public var activeWatchers: Int { hub.activeWatchers }

    // MARK: - Writes

    func submit(_ op: WriteOp) async throws -> StoreEvent? {
        try await withCheckedThrowingContinuation { continuation in
            writer.enqueue(PendingWrite(op: op, continuation: continuation))
        }
    }

    public func create<T: APIObject>(_ object: T) async throws -> T {
        try object.checkStoreKey()
        let stored = object.asCreated()
        let bytes = stored.protobufBytes()
        guard let event = try await submit(.create(ObjectKey(of: stored), stored, bytes: bytes)) else { throw StoreError(.storage, "create returned nothing") }
        return event.object as! T
    }

    public func update<T: APIObject>(_ object: T) async throws -> T {
        try object.checkStoreKey()
        let expected = try object.expectedRevision()
        guard let event = try await submit(.update(ObjectKey(of: object), object, expected: expected)) else {
            // Nothing changed: the stored object is already what was asked for.
            return try await get(T.self, namespace: object.metadata.namespace, name: object.metadata.name)
        }
        return event.object as! T
    }

    public func update<T: APIObject>(_ type: T.Type, namespace: String, name: String,
                                     _ change: @escaping @Sendable (inout T) throws -> Void) async throws -> T {
        let key = ObjectKey(type, namespace: namespace, name: name)
        // The change runs on the writer thread: a custom resource's kind and schema (a task-local
        // of the request) go with it.
        let custom = CustomResources.current
        let erased: @Sendable (any APIObject) throws -> any APIObject = { current in
            try CustomResources.$current.withValue(custom) {
                var object = current as! T
                try change(&object)
                return object
            }
        }
        guard let event = try await submit(.modify(key, type, erased)) else {
            return try await get(T.self, namespace: namespace, name: name)
        }
        return event.object as! T
    }

    public func delete<T: APIObject>(_ type: T.Type, namespace: String, name: String, resourceVersion: Int64?) async throws -> T {
        let key = ObjectKey(type, namespace: namespace, name: name)
        guard let event = try await submit(.delete(key, type, expected: resourceVersion)) else { throw StoreError(.storage, "delete returned nothing") }
        return event.object as! T
    }


    // MARK: - Reads

    /// Runs `body` on a pooled read connection inside one read transaction (one snapshot).
    func read<R>(_ body: (SQLiteConnection) throws -> R) throws -> R {
        let pooled = readers.withLock { $0.popLast() }
        let connection = try pooled ?? {
            let c = try SQLiteConnection(path: path)
            try c.execute("PRAGMA query_only=1;")
            return c
        }()
        try connection.execute("BEGIN")
        let result: Result<R, Error> = Result { try body(connection) }
        connection.resetStatements()
        do {
            try connection.execute("COMMIT")
            readers.withLock { pool in
                if pool.count < options.readPoolSize { pool.append(connection) }
            }
        } catch {
            // A connection whose transaction did not end would keep an old snapshot: drop it.
            logger.warning("read transaction did not end cleanly; closing the connection", metadata: ["error": "\(error)"])
        }
        return try result.get()
    }

    public func get<T: APIObject>(_ type: T.Type, namespace: String, name: String) async throws -> T {
        let key = ObjectKey(type, namespace: namespace, name: name)
        return try read { connection in
            let statement = try connection.prepare(Self.currentRowSQL)
            statement.bind(1, key.resource).bind(2, key.namespace).bind(3, key.name)
            guard try statement.step(), statement.int64(0) != StoreEvent.EventType.deleted.rawValue else {
                throw StoreError(.notFound, "\(T.kindInfo.resource) \"\(name)\" not found")
            }
            var object = try T(protobuf: try values.plain(key.resource, statement.blob(1)))
            object.metadata.resourceVersion = String(statement.int64(2))
            return object
        }
    }

    public func list<T: APIObject>(_ type: T.Type, options: ListOptions) async throws -> ListResult<T> {
        let resource = T.kindInfo.groupResource
        let namespace = T.kindInfo.namespaced ? options.namespace : nil
        var start = ContinueToken(revision: 0, namespace: "", name: "")
        var hasStart = false
        if let token = options.continueToken, !token.isEmpty {
            guard let parsed = ContinueToken(encoded: token) else { throw StoreError(.invalid, "invalid continue token") }
            start = parsed
            hasStart = true
        }
        return try read { connection in
            let current = try Self.readMeta(connection, "current_rev")
            let compacted = try Self.readMeta(connection, "compact_rev")
            let revision = hasStart ? start.revision : options.revision ?? current
            if let exact = options.revision, !hasStart, exact > current {
                throw StoreError(.invalid, "revision \(exact) is newer than the store's (\(current))", revision: current)
            }
            if !hasStart, let exact = options.revision, exact < compacted {
                throw StoreError(.compacted, "revision \(exact) has been compacted (compacted up to \(compacted))", revision: compacted)
            }
            if revision < compacted {
                throw StoreError(.compacted, "the continue token is from revision \(revision), which has been compacted (compacted up to \(compacted)); start the list again", revision: compacted)
            }
            let sql = namespace == nil ? Self.listSQL : Self.listInNamespaceSQL
            var work = 0
            defer { lastListWork.store(work, ordering: .relaxed) }
            var items: [T] = []
            var cursor = (start.namespace, start.name)
            let pageSize = options.limit > 0 ? max(options.limit, 64) : 4_096
            scan: while true {
                let statement = try connection.prepare(sql)
                statement.bind(1, resource)
                if let namespace { statement.bind(2, namespace) }
                statement.bind(3, revision).bind(4, cursor.0).bind(5, cursor.1).bind(6, Int64(pageSize))
                var rows = 0
                while try statement.step() {
                    rows += 1
                    cursor = (statement.string(0), statement.string(1))
                    var object = try T(protobuf: try values.plain(resource, statement.blob(2)))
                    object.metadata.resourceVersion = String(statement.int64(3))
                    if !options.labelSelector.isEverything && !options.labelSelector.matches(object.metadata.labels) { continue }
                    if let predicate = options.predicate, !predicate(object) { continue }
                    items.append(object)
                    if options.limit > 0 && items.count == options.limit {
                        // More may remain: peek once more before handing out a token.
                        work += statement.takeWork()
                        statement.reset()
                        let more = try connection.prepare(sql)
                        more.bind(1, resource)
                        if let namespace { more.bind(2, namespace) }
                        more.bind(3, revision).bind(4, cursor.0).bind(5, cursor.1).bind(6, 1)
                        let token = try more.step() ? ContinueToken(revision: revision, namespace: cursor.0, name: cursor.1).encoded : nil
                        work += more.takeWork()
                        more.reset()
                        return ListResult(items: items, revision: revision, continueToken: token)
                    }
                }
                work += statement.takeWork()
                if rows < pageSize { break scan }
            }
            return ListResult(items: items, revision: revision, continueToken: nil)
        }
    }

    /// The newest row of one key: its type, value and revision.
    static let currentRowSQL = """
        SELECT c.type, k.value, k.rev FROM current AS c JOIN kv AS k ON k.rev = c.rev
        WHERE c.res = ?1 AND c.ns = ?2 AND c.name = ?3
        """

    /// One page of a list at revision ?3, after key (?4, ?5): every key of the resource in order,
    /// read at its newest row at or before ?3 (its current row unless written since).
    static let listSQL = listSQL(namespaceClause: "")
    static let listInNamespaceSQL = listSQL(namespaceClause: "AND c.ns = ?2")

    private static func listSQL(namespaceClause: String) -> String {
        """
        SELECT c.ns, c.name, k.value, k.rev FROM current AS c
        JOIN kv AS k ON k.rev = (CASE WHEN c.rev <= ?3 THEN c.rev ELSE
            (SELECT max(b.rev) FROM kv AS b WHERE b.res = c.res AND b.ns = c.ns AND b.name = c.name AND b.rev <= ?3) END)
        WHERE c.res = ?1 \(namespaceClause) AND (c.ns, c.name) > (?4, ?5) AND k.type != 2
        ORDER BY c.ns, c.name LIMIT ?6
        """
    }

    // MARK: - Watch

    public func watch(from revision: Int64, options: WatchOptions) throws -> StoreWatch {
        let compacted = compactedRevision
        if revision < compacted && !hub.covers(after: revision) {
            throw StoreError(.compacted, "revision \(revision) has been compacted (compacted up to \(compacted))", revision: compacted)
        }
        let withPrevious = options.selectsByContent
        return StoreWatch(hub: hub, from: revision, options: options) { [self] after, limit in
            let events = try self.history(after: after, limit: limit, withPrevious: withPrevious)
            return (events, events.last?.revision ?? after)
        }
    }

    /// Committed events after `after`, from the revision log; `withPrevious`: modifications carry
    /// the object before them (a watch with a selector needs it), one more indexed read each.
    func history(after: Int64, limit: Int, withPrevious: Bool = false) throws -> [StoreEvent] {
        try read { connection in
            let compacted = try Self.readMeta(connection, "compact_rev")
            if after < compacted {
                throw StoreError(.compacted, "revision \(after) has been compacted (compacted up to \(compacted))", revision: compacted)
            }
            let statement = try connection.prepare("SELECT rev, res, ns, name, type, value FROM kv WHERE rev > ? ORDER BY rev LIMIT ?")
            let before = try connection.prepare("SELECT rev, value FROM kv WHERE res = ? AND ns = ? AND name = ? AND rev < ? ORDER BY rev DESC LIMIT 1")
            statement.bind(1, after).bind(2, Int64(limit))
            var events: [StoreEvent] = []
            while try statement.step() {
                let resource = statement.string(1)
                // What no built-in kind is stored under is a custom resource's (plural.group): JSON.
                guard let kind = Kinds.lookup(groupResource: resource) ?? (resource.contains(".") ? CustomObject.self : nil) else {
                    throw StoreError(.storage, "unknown resource \"\(resource)\" in the revision log at revision \(statement.int64(0))")
                }
                let bytes = try values.plain(resource, statement.blob(5))
                let revision = statement.int64(0)
                var object = try kind.init(protobuf: bytes)
                object.metadata.resourceVersion = String(revision)
                let type = StoreEvent.EventType(rawValue: statement.int64(4)) ?? .modified
                let key = ObjectKey(resource: resource, namespace: statement.string(2), name: statement.string(3))
                var previous: (object: any APIObject, bytes: [UInt8])?
                if withPrevious && type == .modified {
                    // Compaction keeps the newest row at or before its target of every key, so
                    // the row before a modification after that target is still there.
                    before.bind(1, key.resource).bind(2, key.namespace).bind(3, key.name).bind(4, revision)
                    if try before.step() {
                        let priorBytes = try values.plain(resource, before.blob(1))
                        var prior = try kind.init(protobuf: priorBytes)
                        prior.metadata.resourceVersion = String(before.int64(0))
                        previous = (prior, priorBytes)
                    }
                    before.reset()
                }
                events.append(StoreEvent(revision: revision, type: type, key: key, object: object, bytes: bytes, previous: previous))
            }
            return events
        }
    }

    /// Revision and key of every row in the log, in order (for integrity checks).
    public func logRevisions() throws -> [(revision: Int64, key: ObjectKey, type: StoreEvent.EventType)] {
        try read { connection in
            let statement = try connection.prepare("SELECT rev, res, ns, name, type FROM kv ORDER BY rev")
            var out: [(Int64, ObjectKey, StoreEvent.EventType)] = []
            while try statement.step() {
                out.append((statement.int64(0), ObjectKey(resource: statement.string(1), namespace: statement.string(2), name: statement.string(3)),
                            StoreEvent.EventType(rawValue: statement.int64(4)) ?? .modified))
            }
            return out
        }
    }
}

/// Opaque list continuation: the revision of the first page and the last key returned.
struct ContinueToken {
    let revision: Int64
    let namespace: String
    let name: String

    init(revision: Int64, namespace: String, name: String) {
        self.revision = revision
        self.namespace = namespace
        self.name = name
    }

    var encoded: String {
        var w = JSONWriter()
        w.beginObject()
        w.key("rv"); w.int(revision)
        w.key("ns"); w.string(namespace)
        w.key("name"); w.string(name)
        w.endObject()
        return Data(w.bytes).base64EncodedString()
    }

    init?(encoded: String) {
        guard let data = Data(base64Encoded: encoded), let json = try? JSONParser.parse(bytes: data),
              case .int(let rv)? = json["rv"], case .string(let ns)? = json["ns"], case .string(let name)? = json["name"] else { return nil }
        self.init(revision: rv, namespace: ns, name: name)
    }
}

extension SQLiteStore {
    /// The resources that have live objects (for `cox store migrate`).
    public func liveResources() throws -> [String] {
        try read { connection in
            let statement = try connection.prepare("SELECT DISTINCT res FROM current WHERE type != 2 ORDER BY res")
            var resources: [String] = []
            while try statement.step() { resources.append(statement.string(0)) }
            return resources
        }
    }

    /// Up to `limit` live objects of `resource` after the key (`namespace`, `name`), in key order:
    /// their keys and stored encodings (Secrets decrypted), exactly as stored, for copying to
    /// another store.
    public func liveObjects(of resource: String, after: (namespace: String, name: String) = ("", ""), limit: Int) throws -> [(key: ObjectKey, bytes: [UInt8])] {
        try read { connection in
            let statement = try connection.prepare("""
                SELECT c.ns, c.name, k.value FROM current AS c JOIN kv AS k ON k.rev = c.rev
                WHERE c.res = ?1 AND c.type != 2 AND (c.ns, c.name) > (?2, ?3) ORDER BY c.ns, c.name LIMIT ?4
                """)
            statement.bind(1, resource).bind(2, after.namespace).bind(3, after.name).bind(4, Int64(limit))
            var objects: [(ObjectKey, [UInt8])] = []
            while try statement.step() {
                objects.append((ObjectKey(resource: resource, namespace: statement.string(0), name: statement.string(1)),
                                try values.plain(resource, statement.blob(2))))
            }
            return objects
        }
    }
}
