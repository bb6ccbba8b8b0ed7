import Logging

extension SQLiteStore {
    /// Compacts the revision log every `interval`, keeping the last `retainRevisions` revisions of
    /// history for watchers and list continuations. Returns when the task is cancelled.
    public func runCompactor(interval: Duration, retainRevisions: Int64) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
            let target = currentRevision - retainRevisions
            guard target > compactedRevision else { continue }
            do {
                try await compact(to: target)
            } catch {
                logger.warning("compaction failed; will retry", metadata: ["error": "\(error)", "revision": "\(target)"])
            }
        }
    }
}
