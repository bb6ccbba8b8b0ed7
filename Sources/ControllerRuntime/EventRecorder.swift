import API
import Client
import Foundation
import Logging
import Synchronization
import SwiftProtobuf

/// Writes Events about objects, as `kubectl describe` shows them. The same (object, type, reason,
/// message) again within the recorder's life bumps the existing Event's `count` and
/// `lastTimestamp` instead of writing a new one.
///
/// Events are best effort, as in Kubernetes: `record` never waits for the API server and never
/// fails its caller. Events queue (up to `queueCapacity`) for one writer that spends at most `qps`
/// writes a second (with a `burst`); when the queue is full, new events are dropped and counted
/// (`droppedCount`, and a warning at most every 10 s) — so a burst of work, such as thousands of
/// pods scheduled at once, is never slowed down by its own record keeping.
public final class EventRecorder: Sendable {
    public enum EventType: String, Sendable { case normal = "Normal", warning = "Warning" }

    public struct Options: Sendable {
        public var queueCapacity = 1000
        public var qps: Double = 100
        public var burst = 1000
        public init() {}
    }

    struct Pending: Sendable {
        var reference: ObjectReference
        var type: EventType
        var reason: String
        var message: String
        var time: Date
    }

    enum Item: Sendable {
        case event(Pending)
        case flush(CheckedContinuation<Void, Never>)
    }

    let queue: AsyncStream<Item>.Continuation
    let clock: any Clock
    let logger: Logger
    let dropped = Atomic<Int>(0)
    let lastDropWarning = Mutex<Date?>(nil)

    public init(client: APIClient, component: String, host: String = ProcessInfo.processInfo.hostName,
                clock: any Clock = SystemClock(), logger: Logger, options: Options = Options()) {
        let (stream, queue) = AsyncStream<Item>.makeStream(bufferingPolicy: .bufferingOldest(options.queueCapacity))
        self.queue = queue
        self.clock = clock
        self.logger = logger
        let writer = EventWriter(client: client, component: component, host: host, clock: clock, logger: logger)
        Task {
            var bucket = TokenBucketLimiter<Int>(qps: options.qps, burst: options.burst)
            for await item in stream {
                switch item {
                case .flush(let done):
                    done.resume()
                case .event(let pending):
                    let wait = bucket.when(0, now: clock.now)
                    if wait > .zero { try? await clock.sleep(until: clock.now.adding(wait)) }
                    await writer.write(pending)
                }
            }
        }
    }

    deinit { queue.finish() }

    /// Events dropped because the queue was full.
    public var droppedCount: Int { dropped.load(ordering: .relaxed) }

    /// Queues an event about `object` (returns at once).
    public func record<T: APIObject>(_ object: T, _ type: EventType, reason: String, message: String) {
        var reference = ObjectReference()
        reference.apiVersion = T.kindInfo.apiVersion
        reference.kind = T.kindInfo.kind
        reference.namespace = object.metadata.namespace
        reference.name = object.metadata.name
        reference.uid = object.metadata.uid
        reference.resourceVersion = object.metadata.resourceVersion
        record(reference, type, reason: reason, message: message)
    }

    public func record(_ reference: ObjectReference, _ type: EventType, reason: String, message: String) {
        let pending = Pending(reference: reference, type: type, reason: reason, message: message, time: clock.now)
        guard case .dropped = queue.yield(.event(pending)) else { return }
        let total = dropped.add(1, ordering: .relaxed).newValue
        let now = clock.now
        let warn = lastDropWarning.withLock { last in
            guard last.map({ now.timeIntervalSince($0) >= 10 }) ?? true else { return false }
            last = now
            return true
        }
        if warn {
            logger.warning("events are coming faster than they can be written; dropping some (events are best effort)",
                           metadata: ["droppedSoFar": "\(total)", "reason": "\(reason)"])
        }
    }

    /// Returns once every event queued before the call has been written (or given up on).
    public func flush() async {
        await withCheckedContinuation { done in
            if case .terminated = queue.yield(.flush(done)) { done.resume() }
        }
    }
}

/// The one writer behind a recorder: remembers what it wrote, to bump counts of repeats.
actor EventWriter {
    let client: APIClient
    let component: String
    let host: String
    let clock: any Clock
    let logger: Logger
    /// Dedup key → the Event written for it.
    var written: [String: (namespace: String, name: String)] = [:]
    /// Keeps names unique when two events come at the same instant (a fake clock's, say).
    var sequence: UInt64 = 0
    static let cacheLimit = 4096

    init(client: APIClient, component: String, host: String, clock: any Clock, logger: Logger) {
        self.client = client
        self.component = component
        self.host = host
        self.clock = clock
        self.logger = logger
    }

    func write(_ pending: EventRecorder.Pending) async {
        let reference = pending.reference
        let now = Google_Protobuf_Timestamp(date: pending.time)
        let key = [reference.uid, reference.kind, reference.namespace, reference.name, pending.type.rawValue, pending.reason, pending.message]
            .joined(separator: "\u{0}")
        // Events of cluster-scoped objects live in `default`, as in Kubernetes.
        let namespace = reference.namespace.isEmpty ? "default" : reference.namespace
        do {
            if let existing = written[key] {
                do {
                    var event = try await client.get(Event.self, namespace: existing.namespace, name: existing.name)
                    event.count += 1
                    event.lastTimestamp = now
                    _ = try await client.update(event)
                    return
                } catch let error as ClientError where error.code == 404 || error.code == 409 {
                    written[key] = nil  // gone (or raced): write a fresh one
                }
            }
            var event = Event()
            event.setTypeMeta()
            event.metadata.namespace = namespace
            sequence += 1
            event.metadata.name = "\(reference.name).\(String(UInt64(pending.time.timeIntervalSince1970 * 1e9) &+ sequence, radix: 16))"
            event.involvedObject = reference
            event.type = pending.type.rawValue
            event.reason = pending.reason
            event.message = pending.message
            event.source.component = component
            event.source.host = host
            event.reportingComponent = component
            event.reportingInstance = host
            event.firstTimestamp = now
            event.lastTimestamp = now
            event.count = 1
            let created = try await client.create(event)
            if written.count >= Self.cacheLimit { written.removeAll(keepingCapacity: true) }
            written[key] = (created.metadata.namespace, created.metadata.name)
        } catch {
            logger.warning("could not record an event", metadata: ["reason": "\(pending.reason)", "object": "\(reference.namespace)/\(reference.name)", "error": "\(error)"])
        }
    }
}
