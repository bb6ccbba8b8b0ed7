import Foundation
import Logging

extension SQLiteStore {
    /// Most revisions one compaction transaction covers: a long backlog is compacted in steps, so
    /// writes queued behind compaction wait for one step, not for the whole backlog.
    static let compactionStep: Int64 = 10_000
    /// Most pages one reclaim transaction returns to the file system (4 MiB of 4 KiB pages).
    static let reclaimStep = 1_024

    /// Drops history at and before `revision` (each key keeps its newest row at or before it;
    /// tombstones at or before it go). Watches and list continuations from older revisions then
    /// fail with `compacted`. Done in steps of `compactionStep` revisions, one transaction each.
    public func compact(to revision: Int64) async throws {
        var from = compactedRevision
        let target = min(revision, currentRevision)
        while from < target {
            let next = min(target, from + Self.compactionStep)
            _ = try await submit(.compact(next))
            from = next
        }
    }

    /// Returns the pages that compaction freed to the file system, a step (one transaction) at a
    /// time, until none is left or `maxSteps` were taken. Returns the pages still free.
    @discardableResult
    public func reclaimSpace(maxSteps: Int = .max) async throws -> Int {
        var steps = 0
        var remaining = Int.max
        while steps < maxSteps {
            _ = try await submit(.reclaim(pages: Self.reclaimStep))
            steps += 1
            let free = stats.freePages.load(ordering: .relaxed)
            if free == 0 || free >= remaining { return free }
            remaining = free
        }
        return stats.freePages.load(ordering: .relaxed)
    }

    /// Compacts history older than `window` for as long as the task runs: every `tick` it notes
    /// the current revision, and compacts up to the newest revision noted at least `window` ago
    /// (as kube-apiserver compacts etcd every 5 minutes), then returns the freed pages to the file
    /// system. History therefore spans between `window` and `window + tick`. Returns when cancelled.
    public func runCompactor(window: Duration, tick: Duration, clock: some Clock<Duration> = ContinuousClock()) async {
        await CompactionSchedule.run(window: window, tick: tick, clock: clock, current: { self.currentRevision },
                                     compacted: { self.compactedRevision }, logger: logger) { target in
            let before = self.stats.compactedRows.load(ordering: .relaxed)
            try await self.compact(to: target)
            let free = try await self.reclaimSpace()
            self.logger.info("compacted the store", metadata: [
                "revision": "\(target)", "rows": "\(self.stats.compactedRows.load(ordering: .relaxed) - before)", "freePages": "\(free)"])
        }
    }
}

/// When to compact to what: the revisions noted over time, and the newest one at least `window`
/// old. Pure, so its rule is tested without a clock.
public struct CompactionSchedule: Sendable {
    public let window: Duration
    /// (time since start, revision), oldest first; only the ones not yet old enough, plus the
    /// newest old-enough one.
    private var notes: [(at: Duration, revision: Int64)] = []

    public init(window: Duration) { self.window = window }

    /// Every `tick`, notes the current revision and, once one noted `window` ago is newer than
    /// the compacted revision, compacts to it; until cancelled. A failed compaction is logged and
    /// tried again at the next tick.
    static func run(window: Duration, tick: Duration, clock: some Clock<Duration>, current: () -> Int64, compacted: () -> Int64,
                    logger: Logger, compact: (Int64) async throws -> Void) async {
        var schedule = CompactionSchedule(window: window)
        let start = clock.now
        while !Task.isCancelled {
            do {
                try await clock.sleep(for: tick)
            } catch {
                return
            }
            guard let target = schedule.record(at: start.duration(to: clock.now), revision: current()), target > compacted() else { continue }
            do {
                try await compact(target)
            } catch {
                logger.warning("compaction failed; will retry", metadata: ["error": "\(error)", "revision": "\(target)"])
            }
        }
    }

    /// Notes `revision` as current at time `now`, and returns the revision that was current
    /// `window` ago (the newest noted at or before `now - window`), if any.
    public mutating func record(at now: Duration, revision: Int64) -> Int64? {
        notes.append((now, revision))
        var target: Int64?
        while let first = notes.first, now - first.at >= window {
            target = first.revision
            notes.removeFirst()
        }
        return target
    }
}

/// What the store's files hold against what they take, for `cox bench churn` and `/metrics`.
public struct StorageFootprint: Sendable {
    /// Rows in the revision log (live objects, history not yet compacted, tombstones).
    public var logRows: Int
    /// Live objects, and the bytes of their encodings.
    public var liveObjects: Int
    public var liveBytes: Int
    /// The database file and its WAL, in bytes.
    public var fileBytes: Int
    public var walBytes: Int
}

extension SQLiteStore {
    /// Counts rows and live bytes (a full scan of the current objects: not for a hot path).
    public func footprint() throws -> StorageFootprint {
        let (rows, live, bytes) = try read { connection in
            let count = try connection.prepare("SELECT count(*) FROM kv")
            let rows = try count.step() ? Int(count.int64(0)) : 0
            let sizes = try connection.prepare("SELECT count(*), coalesce(sum(length(k.value)), 0) FROM current AS c JOIN kv AS k ON k.rev = c.rev WHERE c.type != 2")
            guard try sizes.step() else { return (rows, 0, 0) }
            return (rows, Int(sizes.int64(0)), Int(sizes.int64(1)))
        }
        func size(_ file: String) -> Int {
            ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber)?.intValue ?? 0
        }
        return StorageFootprint(logRows: rows, liveObjects: live, liveBytes: bytes, fileBytes: size(path), walBytes: size(path + "-wal"))
    }
}
