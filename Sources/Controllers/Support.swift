import API
import Client
import ControllerRuntime
import Foundation
import Logging
import SwiftProtobuf

/// What every built-in controller is given: the API client, the shared informers, an event
/// recorder, the clock and a logger.
public struct ControllerContext: Sendable {
    public let client: APIClient
    public let informers: InformerFactory
    public let recorder: EventRecorder
    public let clock: any Clock
    public let logger: Logger

    public init(client: APIClient, informers: InformerFactory, recorder: EventRecorder, clock: any Clock = SystemClock(), logger: Logger) {
        self.client = client
        self.informers = informers
        self.recorder = recorder
        self.clock = clock
        self.logger = logger
    }

    /// A work queue on this context's clock.
    public func queue() -> WorkQueue<ObjectKey> { WorkQueue(clock: clock) }
}

extension Pod {
    /// Not finished and not being deleted: it counts toward its owner's replicas.
    public var isActive: Bool {
        !metadata.hasDeletionTimestamp && status.phase != "Succeeded" && status.phase != "Failed"
    }

    public var isReady: Bool { status.conditions.contains { $0.type == "Ready" && $0.status == "True" } }

    /// Ready for at least `minReadySeconds` by `now`.
    public func isAvailable(minReadySeconds: Int32, now: Date) -> Bool {
        guard let ready = status.conditions.first(where: { $0.type == "Ready" && $0.status == "True" }) else { return false }
        guard minReadySeconds > 0 else { return true }
        return ready.lastTransitionTime.date.addingTimeInterval(Double(minReadySeconds)) <= now
    }
}

extension ObjectMeta {
    /// The owner reference marked as the managing controller.
    public var controllerReference: OwnerReference? { ownerReferences.first { $0.controller } }
}

extension APIObject {
    /// A reference to this object as its dependents' managing controller.
    public func controllerReference() -> OwnerReference {
        var reference = OwnerReference()
        reference.apiVersion = Self.kindInfo.apiVersion
        reference.kind = Self.kindInfo.kind
        reference.name = metadata.name
        reference.uid = metadata.uid
        reference.controller = true
        reference.blockOwnerDeletion = true
        return reference
    }
}

/// What a controller expects its informers to show after its own writes: creates and deletes not
/// yet seen. Until they are seen (or five minutes pass), it does not count pods again, so a slow
/// watch never makes it create (or delete) twice.
public final class Expectations: Sendable {
    struct Record { var adds: Int; var deletes: Set<String>; var since: Date }
    let records = MutexBox<[ObjectKey: Record]>([:])
    let clock: any Clock
    static let ttl: TimeInterval = 300

    public init(clock: any Clock) { self.clock = clock }

    /// True when nothing is outstanding (or the record is too old to trust).
    public func satisfied(_ key: ObjectKey) -> Bool {
        records.withLock { records in
            guard let record = records[key] else { return true }
            if record.adds <= 0 && record.deletes.isEmpty { return true }
            return clock.now.timeIntervalSince(record.since) > Self.ttl
        }
    }

    public func expect(_ key: ObjectKey, adds: Int = 0, deletes: Set<String> = []) {
        records.withLock { $0[key] = Record(adds: adds, deletes: deletes, since: clock.now) }
    }

    public func creationObserved(_ key: ObjectKey) {
        records.withLock { records in
            if records[key] != nil { records[key]!.adds -= 1 }
        }
    }

    public func deletionObserved(_ key: ObjectKey, pod: String) {
        records.withLock { records in
            _ = records[key]?.deletes.remove(pod)
        }
    }

    public func forget(_ key: ObjectKey) { records.withLock { $0[key] = nil } }

    /// A pod event as the controllers of `kind` see it: a create or deletion one of them waited
    /// for is observed, and the keys of the pod's controlling owners of that kind (before and
    /// after the change) come back, to be reconciled.
    public func observe(_ event: InformerEvent<Pod>, ownerKind kind: String) -> [ObjectKey] {
        func owner(_ pod: Pod) -> ObjectKey? {
            guard let reference = pod.metadata.controllerReference, reference.kind == kind else { return nil }
            return ObjectKey(namespace: pod.metadata.namespace, name: reference.name)
        }
        let podKey = "\(event.object.metadata.namespace)/\(event.object.metadata.name)"
        switch event {
        case .added(let pod):
            guard let key = owner(pod) else { return [] }
            creationObserved(key)
            return [key]
        case .updated(let old, let new):
            if new.metadata.hasDeletionTimestamp && !old.metadata.hasDeletionTimestamp, let key = owner(new) {
                deletionObserved(key, pod: podKey)
            }
            return [owner(old), owner(new)].compactMap { $0 }
        case .deleted(let pod):
            guard let key = owner(pod) else { return [] }
            deletionObserved(key, pod: podKey)
            return [key]
        }
    }
}

/// Pods a controller creates and deletes for one owner, as Kubernetes' controllers do: its
/// expectations set first (so a slow watch never makes it act twice), one event per pod
/// (`SuccessfulCreate` "Created pod: NAME", `SuccessfulDelete`), a failed create recorded
/// (`FailedCreate`) and thrown once the others ran.
struct PodControl {
    let context: ControllerContext
    let expectations: Expectations

    /// Creates the pods at once; answers how many were created.
    @discardableResult
    func create<Owner: APIObject>(_ pods: [Pod], for owner: Owner, key: ObjectKey) async throws -> Int {
        guard !pods.isEmpty else { return 0 }
        expectations.expect(key, adds: pods.count)
        var created: [String] = []
        var failures: [any Error] = []
        let client = context.client
        await withTaskGroup(of: Result<String, any Error>.self) { group in
            for pod in pods {
                group.addTask {
                    do { return .success(try await client.create(pod).metadata.name) } catch { return .failure(error) }
                }
            }
            for await outcome in group {
                switch outcome {
                case .success(let name): created.append(name)
                case .failure(let error):
                    expectations.creationObserved(key)  // it will never be seen
                    failures.append(error)
                }
            }
        }
        for name in created.sorted() { context.recorder.record(owner, .normal, reason: "SuccessfulCreate", message: "Created pod: \(name)") }
        if let first = failures.first {
            context.recorder.record(owner, .warning, reason: "FailedCreate", message: "Error creating: \(first)")
            throw first
        }
        return created.count
    }

    /// Deletes the pods (one already gone is fine).
    func delete<Owner: APIObject>(_ victims: [Pod], of owner: Owner, key: ObjectKey) async throws {
        guard !victims.isEmpty else { return }
        expectations.expect(key, deletes: Set(victims.map { "\($0.metadata.namespace)/\($0.metadata.name)" }))
        var failures: [any Error] = []
        for pod in victims {
            let podKey = "\(pod.metadata.namespace)/\(pod.metadata.name)"
            do {
                _ = try await context.client.delete(Pod.self, namespace: pod.metadata.namespace, name: pod.metadata.name)
                context.recorder.record(owner, .normal, reason: "SuccessfulDelete", message: "Deleted pod: \(pod.metadata.name)")
            } catch let error as ClientError where error.code == 404 {
                expectations.deletionObserved(key, pod: podKey)
            } catch {
                expectations.deletionObserved(key, pod: podKey)
                failures.append(error)
            }
        }
        if let first = failures.first { throw first }
    }
}
