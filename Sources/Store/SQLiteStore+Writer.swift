import API
import Foundation
import Logging
import Synchronization

/// One write the writer thread applies inside a batch.
enum WriteOp: @unchecked Sendable {
    case create(ObjectKey, any APIObject)
    case update(ObjectKey, any APIObject, expected: Int64?)
    case delete(ObjectKey, any APIObject.Type, expected: Int64?)
    case compact(Int64)
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

    func enqueue(_ write: PendingWrite) {
        condition.lock()
        if closed {
            condition.unlock()
            write.continuation.resume(throwing: StoreError(.closed, "the store is closed"))
            return
        }
        pending.append(write)
        condition.signal()
        condition.unlock()
    }

    /// Blocks until writes are queued; nil once closed and drained.
    func take(max: Int) -> [PendingWrite]? {
        condition.lock()
        defer { condition.unlock() }
        while pending.isEmpty && !closed { condition.wait() }
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
    let logger: Logger
    let revisions: RevisionState
    let stats: StoreStats

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
        do {
            try connection.execute("BEGIN IMMEDIATE")
            for write in batch {
                do {
                    if case .compact(let target) = write.op {
                        compacted = try compact(to: min(target, revision), current: compacted)
                        outcomes.append(.success(nil))
                        continue
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
        } catch {
            connection.resetStatements()
            try? connection.execute("ROLLBACK")
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

    func current(_ key: ObjectKey) throws -> (revision: Int64, bytes: [UInt8])? {
        let statement = try connection.prepare("SELECT rev, type, value FROM kv WHERE res = ? AND ns = ? AND name = ? ORDER BY rev DESC LIMIT 1")
        statement.bind(1, key.resource).bind(2, key.namespace).bind(3, key.name)
        guard try statement.step(), statement.int64(1) != StoreEvent.EventType.deleted.rawValue else { return nil }
        return (statement.int64(0), statement.blob(2))
    }

    func insert(_ key: ObjectKey, revision: Int64, type: StoreEvent.EventType, bytes: [UInt8]) throws {
        if bytes.count > options.maxObjectBytes {
            throw StoreError(.tooLarge, "\(key) is \(bytes.count) bytes encoded, more than the limit of \(options.maxObjectBytes)")
        }
        let statement = try connection.prepare("INSERT INTO kv(rev, res, ns, name, type, value) VALUES (?, ?, ?, ?, ?, ?)")
        statement.bind(1, revision).bind(2, key.resource).bind(3, key.namespace).bind(4, key.name).bind(5, type.rawValue).bind(6, bytes)
        try statement.run()
    }

    func apply(_ op: WriteOp, revision: Int64) throws -> StoreEvent? {
        switch op {
        case .create(let key, let object): return try create(key, object, revision: revision)
        case .update(let key, let object, let expected): return try update(key, object, expected: expected, revision: revision)
        case .delete(let key, let type, let expected): return try delete(key, type, expected: expected, revision: revision)
        case .compact: return nil
        }
    }

    func create<T: APIObject>(_ key: ObjectKey, _ object: T, revision: Int64) throws -> StoreEvent {
        if try current(key) != nil {
            throw StoreError(.alreadyExists, "\(T.kindInfo.resource) \"\(key.name)\" already exists")
        }
        var stored = object
        stored.setTypeMeta()
        stored.metadata.uid = UUID().uuidString.lowercased()
        stored.metadata.creationTimestamp = Timestamp.nowSeconds()
        stored.metadata.generation = 1
        stored.metadata.resourceVersion = String(revision)
        let bytes = stored.protobufBytes()
        try insert(key, revision: revision, type: .added, bytes: bytes)
        return StoreEvent(revision: revision, type: .added, key: key, object: stored, bytes: bytes)
    }

    func update<T: APIObject>(_ key: ObjectKey, _ object: T, expected: Int64?, revision: Int64) throws -> StoreEvent? {
        guard let (currentRevision, currentBytes) = try current(key) else {
            throw StoreError(.notFound, "\(T.kindInfo.resource) \"\(key.name)\" not found")
        }
        if let expected, expected != currentRevision {
            throw StoreError(.conflict, "Operation cannot be fulfilled on \(T.kindInfo.groupResource) \"\(key.name)\": the object has been modified; please apply your changes to the latest version and try again",
                             revision: currentRevision)
        }
        let existing = try T(serializedBytes: currentBytes)
        var stored = object
        stored.setTypeMeta()
        stored.metadata.uid = existing.metadata.uid
        stored.metadata.creationTimestamp = existing.metadata.creationTimestamp
        stored.metadata.generation = existing.metadata.generation + (stored.specDiffers(from: existing) ? 1 : 0)
        stored.metadata.resourceVersion = existing.metadata.resourceVersion
        if stored.isEqualTo(message: existing) { return nil }
        stored.metadata.resourceVersion = String(revision)
        let bytes = stored.protobufBytes()
        try insert(key, revision: revision, type: .modified, bytes: bytes)
        return StoreEvent(revision: revision, type: .modified, key: key, object: stored, bytes: bytes)
    }

    func delete<T: APIObject>(_ key: ObjectKey, _ type: T.Type, expected: Int64?, revision: Int64) throws -> StoreEvent {
        guard let (currentRevision, currentBytes) = try current(key) else {
            throw StoreError(.notFound, "\(T.kindInfo.resource) \"\(key.name)\" not found")
        }
        if let expected, expected != currentRevision {
            throw StoreError(.conflict, "Operation cannot be fulfilled on \(T.kindInfo.groupResource) \"\(key.name)\": the object has been modified; please apply your changes to the latest version and try again",
                             revision: currentRevision)
        }
        var last = try T(serializedBytes: currentBytes)
        last.metadata.resourceVersion = String(revision)
        let bytes = last.protobufBytes()
        try insert(key, revision: revision, type: .deleted, bytes: bytes)
        return StoreEvent(revision: revision, type: .deleted, key: key, object: last, bytes: bytes)
    }

    /// Deletes every row at or before `target` that a later row of the same key (also at or before
    /// `target`) supersedes, and tombstones at or before `target`.
    func compact(to target: Int64, current: Int64) throws -> Int64 {
        guard target > current else { return current }
        let delete = try connection.prepare("""
            DELETE FROM kv WHERE rev <= ?1 AND (type = 2 OR EXISTS (
                SELECT 1 FROM kv AS b WHERE b.res = kv.res AND b.ns = kv.ns AND b.name = kv.name AND b.rev > kv.rev AND b.rev <= ?1))
            """)
        delete.bind(1, target)
        try delete.run()
        let removed = sqlite3Changes()
        let meta = try connection.prepare("UPDATE meta SET v = ? WHERE k = ?")
        meta.bind(1, target).bind(2, "compact_rev")
        try meta.run()
        logger.debug("compacted", metadata: ["revision": "\(target)", "rows": "\(removed)"])
        return target
    }

    func sqlite3Changes() -> Int64 { connection.changes }
}

/// The current and compaction revisions, shared by the writer thread and readers.
final class RevisionState: Sendable {
    let value: Mutex<(current: Int64, compacted: Int64)>
    init(current: Int64, compacted: Int64) { value = Mutex((current, compacted)) }
}
