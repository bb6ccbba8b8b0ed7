import API
import Foundation
import Logging
import Store

/// Deletes Events a while after their last write, as Kubernetes' `--event-ttl` does (there
/// through an etcd lease on every write of an Event): a busy cluster writes Events all day, and
/// without this they pile up for good. Watchers see each expiry as a DELETED event.
public enum EventExpiry {
    /// The time of an Event's last write as it records it: the latest of its lastTimestamp,
    /// eventTime and creationTimestamp.
    static func lastWrite(_ event: Event) -> Date {
        var latest = event.metadata.hasCreationTimestamp ? event.metadata.creationTimestamp.date : .distantPast
        if event.hasLastTimestamp { latest = max(latest, event.lastTimestamp.date) }
        if event.hasEventTime { latest = max(latest, event.eventTime.date) }
        return latest
    }

    /// Deletes every Event last written more than `ttl` before `now`; returns how many went. An
    /// Event changed meanwhile (its resourceVersion moved) is kept until the next sweep.
    @discardableResult
    public static func sweep(_ store: any ObjectStore, ttl: Duration, now: Date) async throws -> Int {
        let cutoff = now.addingTimeInterval(-TimeInterval(ttl.components.seconds))
        var removed = 0
        var page = ListOptions(limit: 500)
        repeat {
            let result = try await store.list(Event.self, options: page)
            for event in result.items where lastWrite(event) < cutoff {
                do {
                    _ = try await store.delete(Event.self, namespace: event.metadata.namespace, name: event.metadata.name,
                                               resourceVersion: Int64(event.metadata.resourceVersion))
                    removed += 1
                } catch let error as StoreError where error.code == .notFound || error.code == .conflict {
                    continue
                }
            }
            page.continueToken = result.continueToken
        } while page.continueToken != nil
        return removed
    }

    /// Sweeps every `interval` until cancelled.
    static func run(_ store: any ObjectStore, ttl: Duration, every interval: Duration, logger: Logger) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
            do {
                let removed = try await sweep(store, ttl: ttl, now: Date())
                if removed > 0 { logger.info("deleted expired events", metadata: ["events": "\(removed)", "ttl": "\(ttl)"]) }
            } catch {
                logger.warning("cannot delete expired events; will retry", metadata: ["error": "\(error)"])
            }
        }
    }
}
