import API
import Foundation
import Logging
import Synchronization

/// One write the writer thread applies inside a batch.
enum WriteOp: @unchecked Sendable {
    /// The object is ready to store (uid, creationTimestamp, generation set) and `bytes` is its
    /// encoding, made by the caller so that encoding runs in parallel, off the writer thread.
    case create(ObjectKey, any APIObject, bytes: [UInt8])
    case update(ObjectKey, any APIObject, expected: Int64?)
    /// The current object, changed by the closure on the writer thread, becomes the update.
    case modify(ObjectKey, any APIObject.Type, @Sendable (any APIObject) throws -> any APIObject)
    case delete(ObjectKey, any APIObject.Type, expected: Int64?)
    /// Compacts the revision log up to the revision (see `SQLiteStore.compact(to:)`).
    case compact(Int64)
    /// Returns up to this many free pages to the file system (incremental vacuum); the result's
    /// event is nil, and the pages still free after it are reported through `StoreStats`.
    case reclaim(pages: Int)
}

final class PendingWrite: @unchecked Sendable {
    let op: WriteOp
    let continuation: CheckedContinuation<StoreEvent?, Error>

    init(op: WriteOp, continuation: CheckedContinuation<StoreEvent?, Error>) {
        self.op = op
        self.continuation = continuation
    }
}

/// Writes waiting for the writer thread. Callers enqueue and suspend; the thread takes everything
/// queued at once, which is what makes commits grouped.
final class WriteQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var pending: [PendingWrite] = []
    private var closed = false
    private var stopped = false
    /// Whether the writer thread sleeps in `take`; only then does an enqueue need to wake it
    /// (a futex call per write otherwise).
    private var writerWaiting = false

    func enqueue(_ write: PendingWrite) {
        condition.lock()
        if closed {
            condition.unlock()
            write.continuation.resume(throwing: StoreError(.closed, "the store is closed"))
            return
        }
        pending.append(write)
        if writerWaiting { condition.signal() }
        condition.unlock()
    }

    /// Blocks until writes are queued; nil once closed and drained.
    func take(max: Int) -> [PendingWrite]? {
        condition.lock()
        defer { condition.unlock() }
        while pending.isEmpty && !closed {
            writerWaiting = true
            condition.wait()
            writerWaiting = false
        }
        if pending.isEmpty { return nil }
        let count = min(max, pending.count)
        let batch = Array(pending.prefix(count))
        pending.removeFirst(count)
        return batch
    }

    /// Refuses new writes; the writer thread finishes what is queued, then stops.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// Called by the writer thread as it exits.
    func markStopped() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    func waitUntilStopped() {
        condition.lock()
        while !stopped { condition.wait() }
        condition.unlock()
    }
}

/// The writer thread's loop: take a batch, apply it in one transaction, commit (one fsync),
/// publish the events in revision order, then resume the callers.
struct WriterLoop {
    let connection: SQLiteConnection
    let queue: WriteQueue
    let hub: WatchHub
    let options: SQLiteStore.Options
    var values: ValueCodec { ValueCodec(secrets: options.secretsKey) }
    let logger: Logger
    let revisions: RevisionState
    let stats: StoreStats
    let live: LiveObjects

    init(connection: SQLiteConnection, queue: WriteQueue, hub: WatchHub, options: SQLiteStore.Options, logger: Logger,
         revisions: RevisionState, stats: StoreStats) {
        self.connection = connection
        self.queue = queue
        self.hub = hub
        self.options = options
        self.logger = logger
        self.revisions = revisions
        self.stats = stats
        self.live = LiveObjects(capacity: options.liveObjectCapacity)
    }

    func run() {
        let maxBatch = options.groupCommit ? options.maxBatch : 1
        while let batch = queue.take(max: maxBatch) {
            process(batch)
        }
        queue.markStopped()
    }

    func process(_ batch: [PendingWrite]) {
        let (startRevision, startCompacted) = revisions.value.withLock { ($0.current, $0.compacted) }
        var revision = startRevision
        var compacted = startCompacted
        var outcomes: [Result<StoreEvent?, Error>] = []
        outcomes.reserveCapacity(batch.count)
        var events: [StoreEvent] = []
        var reclaimed = false
        do {
            try connection.execute("BEGIN IMMEDIATE")
            for write in batch {
                do {
                    switch write.op {
                    case .compact(let target):
                        compacted = try compact(to: min(target, revision), current: compacted)
                        outcomes.append(.success(nil))
                        continue
                    case .reclaim(let pages):
                        try reclaim(pages: pages)
                        reclaimed = true
                        outcomes.append(.success(nil))
                        continue
                    default: break
                    }
                    if let event = try apply(write.op, revision: revision + 1) {
                        revision += 1
                        events.append(event)
                        outcomes.append(.success(event))
                    } else {
                        outcomes.append(.success(nil))
                    }
                } catch {
                    outcomes.append(.failure(error))
                }
            }
            let meta = try connection.prepare("UPDATE meta SET v = ? WHERE k = ?")
            meta.bind(1, revision).bind(2, "current_rev")
            try meta.run()
            connection.resetStatements()
            try connection.execute("COMMIT")
            live.commit()
            if reclaimed && stats.freePages.load(ordering: .relaxed) == 0 {
                // The file shrinks once the WAL's frames reach it: copy them now, without waiting
                // for readers (a reader's snapshot only leaves the rest to a later checkpoint).
                do {
                    try connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                } catch {
                    logger.warning("checkpoint after reclaiming space failed", metadata: ["error": "\(error)"])
                }
            }
        } catch {
            connection.resetStatements()
            try? connection.execute("ROLLBACK")
            live.rollback()
            logger.error("store commit failed; batch not applied", metadata: ["error": "\(error)", "writes": "\(batch.count)"])
            stats.failedCommits.add(1, ordering: .relaxed)
            let failure = StoreError(.storage, "the write could not be made durable: \(error)")
            for write in batch { write.continuation.resume(throwing: failure) }
            return
        }
        stats.recordCommit(batch: batch.count)
        revisions.value.withLock { $0 = (revision, compacted) }
        hub.publish(events)
        for (write, outcome) in zip(batch, outcomes) {
            write.continuation.resume(with: outcome)
        }
    }

    // MARK: - Applying one write

    /// The live object at `key` and the revision of its last write, from the cache of live objects
    /// or, on a miss, from the database.
    func current(_ key: ObjectKey, as type: (some APIObject).Type) throws -> (revision: Int64, bytes: [UInt8], object: any APIObject)? {
        if let cached = live.objects[key] { return cached }
        let statement = try connection.prepare(SQLiteStore.currentRowSQL)
        statement.bind(1, key.resource).bind(2, key.namespace).bind(3, key.name)
        guard try statement.step(), statement.int64(0) != StoreEvent.EventType.deleted.rawValue else { return nil }
        let revision = statement.int64(2)
        let bytes = try values.plain(key.resource, statement.blob(1))
        var object = try type.init(protobuf: bytes)
        object.metadata.resourceVersion = String(revision)
        return (revision, bytes, object)
    }

    /// Whether a live object has this key.
    func exists(_ key: ObjectKey) throws -> Bool {
        if live.objects[key] != nil { return true }
        let statement = try connection.prepare("SELECT type FROM current WHERE res = ? AND ns = ? AND name = ?")
        statement.bind(1, key.resource).bind(2, key.namespace).bind(3, key.name)
        return try statement.step() && statement.int64(0) != StoreEvent.EventType.deleted.rawValue
    }

    func insert(_ key: ObjectKey, revision: Int64, type: StoreEvent.EventType, bytes: [UInt8]) throws {
        if bytes.count > options.maxObjectBytes {
            throw StoreError(.tooLarge, "\(key) is \(bytes.count) bytes encoded, more than the limit of \(options.maxObjectBytes)")
        }
        let statement = try connection.prepare("INSERT INTO kv(rev, res, ns, name, type, value) VALUES (?, ?, ?, ?, ?, ?)")
        statement.bind(1, revision).bind(2, key.resource).bind(3, key.namespace).bind(4, key.name).bind(5, type.rawValue)
            .bind(6, try values.stored(key.resource, bytes))
        try statement.run()
        let current = try connection.prepare("INSERT OR REPLACE INTO current(res, ns, name, rev, type) VALUES (?, ?, ?, ?, ?)")
        current.bind(1, key.resource).bind(2, key.namespace).bind(3, key.name).bind(4, revision).bind(5, type.rawValue)
        try current.run()
    }

    func apply(_ op: WriteOp, revision: Int64) throws -> StoreEvent? {
        switch op {
        case .create(let key, let object, let bytes): return try create(key, object, bytes: bytes, revision: revision)
        case .update(let key, let object, let expected): return try update(key, object, expected: expected, revision: revision)
        case .modify(let key, let type, let change): return try modify(key, type, change, revision: revision)
        case .delete(let key, let type, let expected): return try delete(key, type, expected: expected, revision: revision)
        case .compact, .reclaim: return nil
        }
    }

    func create<T: APIObject>(_ key: ObjectKey, _ object: T, bytes: [UInt8], revision: Int64) throws -> StoreEvent {
        if try exists(key) {
            throw StoreError(.alreadyExists, "\(key.resourceName) \"\(key.name)\" already exists")
        }
        try insert(key, revision: revision, type: .added, bytes: bytes)
        var stored = object
        stored.metadata.resourceVersion = String(revision)
        live.stage(key, (revision, bytes, stored))
        return StoreEvent(revision: revision, type: .added, key: key, object: stored, bytes: bytes)
    }

    func update<T: APIObject>(_ key: ObjectKey, _ object: T, expected: Int64?, revision: Int64) throws -> StoreEvent? {
        guard let (currentRevision, currentBytes, currentObject) = try current(key, as: T.self) else {
            throw StoreError(.notFound, "\(key.resourceName) \"\(key.name)\" not found")
        }
        if let expected, expected != currentRevision {
            throw StoreError.modified(groupResource: key.resource, key.name, current: currentRevision)
        }
        let existing = currentObject as! T
        var stored = object.asUpdate(of: existing)
        if stored.isEqualTo(message: existing) { return nil }
        stored.metadata.resourceVersion = ""
        let bytes = stored.protobufBytes()
        try insert(key, revision: revision, type: .modified, bytes: bytes)
        stored.metadata.resourceVersion = String(revision)
        live.stage(key, (revision, bytes, stored))
        return StoreEvent(revision: revision, type: .modified, key: key, object: stored, bytes: bytes, previous: (existing, currentBytes))
    }

    func modify<T: APIObject>(_ key: ObjectKey, _ type: T.Type, _ change: (any APIObject) throws -> any APIObject, revision: Int64) throws -> StoreEvent? {
        guard let (currentRevision, _, currentObject) = try current(key, as: T.self) else {
            throw StoreError(.notFound, "\(key.resourceName) \"\(key.name)\" not found")
        }
        guard var changed = try change(currentObject) as? T else {
            throw StoreError(.invalid, "a change of \(key) returned another kind of object")
        }
        // The object's identity is the key's, whatever the change did to its name.
        changed.metadata.namespace = key.namespace
        changed.metadata.name = key.name
        return try update(key, changed, expected: currentRevision, revision: revision)
    }

    func delete<T: APIObject>(_ key: ObjectKey, _ type: T.Type, expected: Int64?, revision: Int64) throws -> StoreEvent {
        guard let (currentRevision, currentBytes, currentObject) = try current(key, as: T.self) else {
            throw StoreError(.notFound, "\(key.resourceName) \"\(key.name)\" not found")
        }
        if let expected, expected != currentRevision {
            throw StoreError.modified(groupResource: key.resource, key.name, current: currentRevision)
        }
        // The tombstone keeps the last state; its version is the deletion's revision.
        try insert(key, revision: revision, type: .deleted, bytes: currentBytes)
        var last = currentObject as! T
        last.metadata.resourceVersion = String(revision)
        live.stageDeletion(key)
        return StoreEvent(revision: revision, type: .deleted, key: key, object: last, bytes: currentBytes)
    }

    /// Deletes every row at or before `target` that a later row of the same key (also at or before
    /// `target`) supersedes, and tombstones at or before `target`.
    ///
    /// Rows at or before the previous compaction revision are already one per key and no
    /// tombstone, so only the rows written since are visited: each deletes the row before it of
    /// its key (which may be older than the previous compaction), and tombstones go themselves.
    /// The cost follows the rows in (previous, target], not the whole log.
    func compact(to target: Int64, current previous: Int64) throws -> Int64 {
        guard target > previous else { return previous }
        let superseded = try connection.prepare("""
            DELETE FROM kv WHERE rev IN (
                SELECT (SELECT max(b.rev) FROM kv AS b WHERE b.res = a.res AND b.ns = a.ns AND b.name = a.name AND b.rev < a.rev)
                FROM kv AS a WHERE a.rev > ?1 AND a.rev <= ?2)
            """)
        superseded.bind(1, previous).bind(2, target)
        try superseded.run()
        var removed = connection.changes
        // Tombstones in the range leave the log, and leave `current` when still the key's newest row.
        let tombstones = try connection.prepare("SELECT rev, res, ns, name FROM kv WHERE rev > ?1 AND rev <= ?2 AND type = 2")
        let forget = try connection.prepare("DELETE FROM current WHERE res = ?1 AND ns = ?2 AND name = ?3 AND rev = ?4")
        tombstones.bind(1, previous).bind(2, target)
        while try tombstones.step() {
            forget.bind(1, tombstones.string(1)).bind(2, tombstones.string(2)).bind(3, tombstones.string(3)).bind(4, tombstones.int64(0))
            try forget.run()
            forget.reset()
        }
        tombstones.reset()
        let dropTombstones = try connection.prepare("DELETE FROM kv WHERE rev > ?1 AND rev <= ?2 AND type = 2")
        dropTombstones.bind(1, previous).bind(2, target)
        try dropTombstones.run()
        removed += connection.changes
        let meta = try connection.prepare("UPDATE meta SET v = ? WHERE k = ?")
        meta.bind(1, target).bind(2, "compact_rev")
        try meta.run()
        stats.compactedRows.add(Int(removed), ordering: .relaxed)
        logger.debug("compacted", metadata: ["revision": "\(target)", "rows": "\(removed)"])
        return target
    }

    /// Moves up to `pages` free pages to the end of the file and truncates it (SQLite's
    /// incremental vacuum); records how many remain free.
    func reclaim(pages: Int) throws {
        try connection.execute("PRAGMA incremental_vacuum(\(max(1, pages)))")
        let free = try connection.prepare("PRAGMA freelist_count")
        let remaining = try free.step() ? free.int64(0) : 0
        free.reset()
        stats.freePages.store(Int(remaining), ordering: .relaxed)
    }

    func sqlite3Changes() -> Int64 { connection.changes }
}

/// The current and compaction revisions, shared by the writer thread and readers.
final class RevisionState: Sendable {
    let value: Mutex<(current: Int64, compacted: Int64)>
    init(current: Int64, compacted: Int64) { value = Mutex((current, compacted)) }
}

/// The writer thread's cache of live objects, so updates and deletes need no decode. Changes made
/// inside a transaction are staged and become visible to later writes in the same batch at once,
/// but are dropped if the commit fails. Bounded by `capacity`: past it, entries are evicted at
/// random (a miss costs one read and one decode).
final class LiveObjects {
    typealias Entry = (revision: Int64, bytes: [UInt8], object: any APIObject)
    let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    private(set) var objects: [ObjectKey: Entry] = [:]
    private var undo: [ObjectKey: Entry?] = [:]

    func stage(_ key: ObjectKey, _ entry: Entry) {
        if undo[key] == nil { undo[key] = .some(objects[key]) }
        objects[key] = entry
    }

    func stageDeletion(_ key: ObjectKey) {
        if undo[key] == nil { undo[key] = .some(objects[key]) }
        objects[key] = nil
    }

    func commit() {
        undo.removeAll(keepingCapacity: true)
        guard objects.count > capacity else { return }
        // Evict a hundredth of the capacity at once, taken in the dictionary's order (its hashing
        // is seeded per process, so the choice is as good as random). Picking one random key per
        // commit walked the keys to reach it: once the cache was full, every commit cost time in
        // proportion to its size (15 % of a loaded server's CPU past 100,000 objects).
        let excess = objects.count - capacity + max(1, capacity / 100)
        for key in Array(objects.keys.prefix(excess)) { objects[key] = nil }
    }

    func rollback() {
        for (key, previous) in undo { objects[key] = previous }
        undo.removeAll(keepingCapacity: true)
    }
}
