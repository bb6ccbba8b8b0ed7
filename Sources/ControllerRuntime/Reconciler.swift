import API
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Names an object: `namespace/name`, or `name` for cluster-scoped kinds; `kind` (a group
/// resource such as `pods` or `replicasets.apps`) when one queue holds several kinds.
public struct ObjectKey: Hashable, Sendable, CustomStringConvertible, Comparable {
    public var kind: String
    public var namespace: String
    public var name: String

    public init(kind: String = "", namespace: String = "", name: String) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
    }

    /// The object's key, with its kind when `withKind` is set.
    public init<T: APIObject>(_ object: T, withKind: Bool = false) {
        self.init(kind: withKind ? T.kindInfo.groupResource : "", namespace: object.metadata.namespace, name: object.metadata.name)
    }

    public var description: String {
        let path = namespace.isEmpty ? name : "\(namespace)/\(name)"
        return kind.isEmpty ? path : "\(kind) \(path)"
    }
    public static func < (a: ObjectKey, b: ObjectKey) -> Bool { (a.kind, a.namespace, a.name) < (b.kind, b.namespace, b.name) }
}

/// What a reconcile asks of the queue when it did not fail.
public enum ReconcileResult: Sendable, Equatable {
    /// Converged (or waiting for a watch event): forget the key's backoff.
    case done
    /// Look again after this long (a time-based condition, such as a lease running out).
    case requeue(after: Duration)
}

/// An error that retrying cannot fix (an invalid object): logged, not retried.
public struct TerminalError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Drives one object toward its desired state. Level-triggered: it reads the current state (from
/// informer caches) and acts on the difference, so it is safe to run any number of times for one
/// key. A thrown error retries the key with backoff; `TerminalError` is not retried.
public protocol Reconciler: Sendable {
    func reconcile(_ key: ObjectKey) async throws -> ReconcileResult
}

/// Counts per controller, for `/metrics` and tests.
public final class ControllerStats: Sendable {
    struct Counts { var reconciles = 0, errors = 0, requeues = 0, active = 0, maxActive = 0 }
    let counts = Mutex(Counts())
    public init() {}
    public var reconciles: Int { counts.withLock { $0.reconciles } }
    public var errors: Int { counts.withLock { $0.errors } }
    /// The most reconciles this controller ran at the same moment.
    public var maxActive: Int { counts.withLock { $0.maxActive } }
    func begin() { counts.withLock { $0.reconciles += 1; $0.active += 1; $0.maxActive = max($0.maxActive, $0.active) } }
    func end(failed: Bool) { counts.withLock { $0.active -= 1; if failed { $0.errors += 1 } } }
}

/// Runs a reconciler: waits until its caches have synced, then N workers take keys from the queue.
/// Cancellation shuts the queue down; the workers finish the keys they hold and the run returns.
public final class Controller: Service, Sendable {
    public let name: String
    public let queue: WorkQueue<ObjectKey>
    let reconciler: any Reconciler
    let workers: Int
    let logger: Logger
    let waitForSync: @Sendable () async -> Void
    public let stats = ControllerStats()

    public init(name: String, queue: WorkQueue<ObjectKey>, reconciler: any Reconciler, workers: Int = 2,
                logger: Logger, waitForSync: @escaping @Sendable () async -> Void = {}) {
        self.name = name
        self.queue = queue
        self.reconciler = reconciler
        self.workers = max(1, workers)
        var logger = logger
        logger[metadataKey: "controller"] = .string(name)
        self.logger = logger
        self.waitForSync = waitForSync
    }

    public func run() async {
        let queue = self.queue
        await withTaskCancellationHandler {
            await waitForSync()
            guard !Task.isCancelled else { return }
            logger.debug("caches synced; workers starting", metadata: ["workers": "\(workers)"])
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<workers { group.addTask { await self.work() } }
            }
        } onCancel: {
            Task { await queue.shutDown() }
        }
        await queue.shutDownAndDrain()
    }

    func work() async {
        while let key = await queue.get() {
            await process(key)
            await queue.done(key)
        }
    }

    /// One reconcile of one key, and what the queue does with the key after it.
    public func process(_ key: ObjectKey) async {
        stats.begin()
        do {
            let result = try await reconciler.reconcile(key)
            stats.end(failed: false)
            await queue.forget(key)
            if case .requeue(let after) = result { await queue.addAfter(key, after) }
        } catch let error as TerminalError {
            stats.end(failed: true)
            await queue.forget(key)
            logger.error("reconcile failed and will not be retried", metadata: ["key": "\(key)", "error": "\(error)"])
        } catch is CancellationError {
            stats.end(failed: false)
        } catch {
            stats.end(failed: true)
            let failures = await queue.failures(key)
            logger.log(level: failures < 3 ? .debug : .warning, "reconcile failed; retrying with backoff",
                       metadata: ["key": "\(key)", "error": "\(error)", "failures": "\(failures + 1)"])
            await queue.addRateLimited(key)
        }
    }
}
