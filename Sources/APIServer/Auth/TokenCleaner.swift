import API
import Foundation
import Logging
import Store

/// Deletes tokens once they have expired (as Kubernetes' token cleaner does for bootstrap
/// tokens): they are refused from then on anyway, and `cox up` makes a fresh one at every start.
public enum TokenCleaner {
    /// Deletes every token that expired before `now`; returns their names.
    @discardableResult
    public static func sweep(_ store: any ObjectStore, now: Date) async throws -> [String] {
        var removed: [String] = []
        for token in try await store.list(Token.self, options: ListOptions()).items where token.spec.hasExpires && token.spec.expires.date < now {
            do {
                _ = try await store.delete(Token.self, namespace: "", name: token.metadata.name, resourceVersion: Int64(token.metadata.resourceVersion))
                removed.append(token.metadata.name)
            } catch let error as StoreError where error.code == .notFound || error.code == .conflict {
                continue  // revoked or replaced meanwhile
            }
        }
        return removed
    }

    /// Sweeps every `interval` until cancelled.
    static func run(_ store: any ObjectStore, every interval: Duration, logger: Logger) async {
        while !Task.isCancelled {
            do {
                let removed = try await sweep(store, now: Date())
                if !removed.isEmpty { logger.info("deleted expired tokens", metadata: ["tokens": "\(removed.joined(separator: ", "))"]) }
            } catch {
                logger.warning("cannot delete expired tokens", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }
}
