import API
import Logging
import Store
import Synchronization

/// Which namespaces exist and which are being deleted, held in memory from the store (a list at
/// start, then a watch), so the check every namespaced create needs costs no store read. A name
/// the cache has not seen yet (created a moment ago, its event not yet here) is looked up in the
/// store once and remembered.
public final class Namespaces: Sendable {
    /// Created at first start, as Kubernetes has them.
    public static let system = ["default", "kube-system", "kube-public", "kube-node-lease"]
    /// May not be deleted (Kubernetes' immortal namespaces).
    public static let undeletable: Set<String> = ["default", "kube-system", "kube-public"]

    /// Namespace name → whether it is being deleted.
    private let known = Mutex<[String: Bool]>([:])

    public init() {}

    public enum State: Sendable, Equatable { case active, terminating, missing }

    /// The namespace's state, from memory; on a miss, from the store.
    public func state(of name: String, in store: any ObjectStore) async throws -> State {
        if let terminating = known.withLock({ $0[name] }) { return terminating ? .terminating : .active }
        do {
            let namespace = try await store.get(Namespace.self, namespace: "", name: name)
            note(namespace)
            return namespace.metadata.hasDeletionTimestamp ? .terminating : .active
        } catch let error as StoreError where error.code == .notFound {
            return .missing
        }
    }

    func note(_ namespace: Namespace) {
        known.withLock { $0[namespace.metadata.name] = namespace.metadata.hasDeletionTimestamp }
    }

    /// Creates the system namespaces that are missing.
    public static func ensureSystem(in store: any ObjectStore, logger: Logger) async throws {
        for name in system {
            var namespace = Namespace()
            namespace.metadata.name = name
            namespace.applyDefaults()
            do {
                _ = try await store.create(try namespace.validated())
                logger.info("created namespace", metadata: ["namespace": "\(name)"])
            } catch let error as StoreError where error.code == .alreadyExists {
                continue
            }
        }
    }

    /// Every namespace not being deleted has a ServiceAccount named `default` (pods run as it
    /// unless they name another), made here for those that exist at start and on each create.
    public static func ensureDefaultServiceAccounts(in store: any ObjectStore, logger: Logger) async throws {
        for namespace in try await store.list(Namespace.self, options: ListOptions()).items where !namespace.metadata.hasDeletionTimestamp {
            try await ensureDefaultServiceAccount(namespace.metadata.name, in: store, logger: logger)
        }
    }

    public static func ensureDefaultServiceAccount(_ namespace: String, in store: any ObjectStore, logger: Logger) async throws {
        var account = ServiceAccount()
        account.metadata.name = "default"
        account.metadata.namespace = namespace
        account.applyDefaults()
        do {
            _ = try await store.create(try account.validated())
            logger.debug("created the default service account", metadata: ["namespace": "\(namespace)"])
        } catch let error as StoreError where error.code == .alreadyExists {}
    }

    /// Loads every namespace; returns the revision of the list.
    @discardableResult
    public func reload(from store: any ObjectStore) async throws -> Int64 {
        let result = try await store.list(Namespace.self, options: ListOptions())
        let loaded = Dictionary(result.items.map { ($0.metadata.name, $0.metadata.hasDeletionTimestamp) }, uniquingKeysWith: { _, last in last })
        known.withLock { $0 = loaded }
        return result.revision
    }

    /// Follows every change until cancelled; a watch that ends (compacted past) is followed by a
    /// reload and a new watch from there.
    public func follow(_ store: any ObjectStore, from revision: Int64, logger: Logger) async {
        var revision = revision
        while !Task.isCancelled {
            do {
                let watch = try store.watch(from: revision, options: .of(Namespace.self))
                defer { watch.cancel() }
                for try await event in watch {
                    guard let namespace = event.object as? Namespace else { continue }
                    if event.type == .deleted {
                        _ = known.withLock { $0.removeValue(forKey: namespace.metadata.name) }
                    } else {
                        note(namespace)
                    }
                    revision = event.revision
                }
            } catch {
                if Task.isCancelled { return }
                logger.info("namespace watch ended; reloading", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(200))
            }
            if Task.isCancelled { return }
            if let current = try? await reload(from: store) { revision = current }
        }
    }
}
