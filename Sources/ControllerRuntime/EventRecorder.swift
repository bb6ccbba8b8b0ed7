import API
import Client
import Foundation
import Logging
import SwiftProtobuf

/// Writes Events about objects, as `kubectl describe` shows them. The same (object, type, reason,
/// message) again within the recorder's life bumps the existing Event's `count` and
/// `lastTimestamp` instead of writing a new one. Recording never fails the caller: an event that
/// cannot be written is logged and dropped.
public actor EventRecorder {
    public enum EventType: String, Sendable { case normal = "Normal", warning = "Warning" }

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

    public init(client: APIClient, component: String, host: String = ProcessInfo.processInfo.hostName,
                clock: any Clock = SystemClock(), logger: Logger) {
        self.client = client
        self.component = component
        self.host = host
        self.clock = clock
        self.logger = logger
    }

    /// Records an event about `object`.
    public func record<T: APIObject>(_ object: T, _ type: EventType, reason: String, message: String) async {
        var reference = ObjectReference()
        reference.apiVersion = T.kindInfo.apiVersion
        reference.kind = T.kindInfo.kind
        reference.namespace = object.metadata.namespace
        reference.name = object.metadata.name
        reference.uid = object.metadata.uid
        reference.resourceVersion = object.metadata.resourceVersion
        await record(reference, type, reason: reason, message: message)
    }

    public func record(_ reference: ObjectReference, _ type: EventType, reason: String, message: String) async {
        let now = Google_Protobuf_Timestamp(date: clock.now)
        let key = [reference.uid, reference.kind, reference.namespace, reference.name, type.rawValue, reason, message].joined(separator: "\u{0}")
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
            event.metadata.name = "\(reference.name).\(String(UInt64(clock.now.timeIntervalSince1970 * 1e9) &+ sequence, radix: 16))"
            event.involvedObject = reference
            event.type = type.rawValue
            event.reason = reason
            event.message = message
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
            logger.warning("could not record an event", metadata: ["reason": "\(reason)", "object": "\(reference.namespace)/\(reference.name)", "error": "\(error)"])
        }
    }
}
