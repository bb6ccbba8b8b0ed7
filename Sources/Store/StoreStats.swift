import API
import Synchronization

/// Counters of the store's write path, for `/metrics` and for tests that check batching.
public final class StoreStats: Sendable {
    /// Transactions committed.
    public let commits = Atomic<Int>(0)
    /// Writes acknowledged (including failed preconditions, which use no revision).
    public let writes = Atomic<Int>(0)
    /// Largest number of writes in one commit.
    public let largestBatch = Atomic<Int>(0)
    /// Commits that failed (nothing in them was applied).
    public let failedCommits = Atomic<Int>(0)
    /// Rows removed from the revision log by compaction.
    public let compactedRows = Atomic<Int>(0)
    /// Free pages in the database file after the last reclaim (0 once all went back).
    public let freePages = Atomic<Int>(0)
    /// Writes per commit (group-commit batch sizes).
    public let batchSizes = Histogram(bounds: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])

    func recordCommit(batch: Int) {
        commits.add(1, ordering: .relaxed)
        writes.add(batch, ordering: .relaxed)
        batchSizes.observe(Double(batch))
        var current = largestBatch.load(ordering: .relaxed)
        while batch > current {
            let (exchanged, original) = largestBatch.compareExchange(expected: current, desired: batch, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
    }
}

extension StoreStats {
    /// The `/metrics` lines every backend has: its current and compacted revisions.
    static func revisionLines(current: Int64, compacted: Int64) -> [String] {
        [
            "# HELP cox_store_revision The store's current revision.",
            "# TYPE cox_store_revision gauge",
            "cox_store_revision \(current)",
            "# HELP cox_store_compacted_revision Revision up to which history has been compacted.",
            "# TYPE cox_store_compacted_revision gauge",
            "cox_store_compacted_revision \(compacted)",
        ]
    }
}
