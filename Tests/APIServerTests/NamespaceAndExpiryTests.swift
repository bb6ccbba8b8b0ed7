import API
import APIServer
import Foundation
import Logging
import Store
import SwiftProtobuf
import Testing
import TestSupport

@Suite("Namespaces and Event expiry", .watchdog, .serialized)
struct NamespaceAndExpiryTests {
    /// Kubernetes' namespaces exist from the first start; a create in one that does not exist is
    /// 404, in one being deleted 403, as Kubernetes answers them; the immortal ones cannot go.
    @Test func namespacesExistFromTheFirstStartAndGuardCreates() async throws {
        let server = try await ServerHarness()
        defer { Task { await server.stop() } }
        let listed = try await server.request("/api/v1/namespaces")
        let names = try NamespaceList(jsonString: listed.body).items.map(\.metadata.name)
        #expect(names == ["default", "kube-node-lease", "kube-public", "kube-system"], "\(listed.body)")

        let missing = try await server.request("POST", "/api/v1/namespaces/nope/pods", body: podJSON("a", namespace: "nope"))
        #expect(missing.code == 404, "\(missing.body)")
        #expect(missing.json?["message"] == .string(#"namespaces "nope" not found"#), "\(missing.body)")
        #expect(missing.json?["details"]?["kind"] == .string("namespaces") && missing.json?["details"]?["name"] == .string("nope"))
        #expect(try await server.request("/api/v1/namespaces/nope/pods/a").code == 404)

        // Created, then used at once: the new namespace is found even before its event arrives.
        let created = try await server.request("POST", "/api/v1/namespaces", body: #"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team"}}"#)
        #expect(created.code == 201, "\(created.body)")
        let inTeam = try await server.request("POST", "/api/v1/namespaces/team/pods", body: podJSON("a", namespace: "team"))
        #expect(inTeam.code == 201, "\(inTeam.body)")

        // No namespace controller runs here: a deleted namespace with content stays Terminating.
        #expect(try await server.request("DELETE", "/api/v1/namespaces/team").code == 200)
        try await waitUntil("the cache sees the namespace terminating") {
            try await server.request("POST", "/api/v1/namespaces/team/pods", body: podJSON("probe", namespace: "team")).code == 403
        }
        let refused = try await server.request("POST", "/api/v1/namespaces/team/pods", body: podJSON("b", namespace: "team"))
        #expect(refused.json?["message"] == .string(#"pods "b" is forbidden: unable to create new content in namespace team because it is being terminated"#), "\(refused.body)")

        for name in ["default", "kube-system", "kube-public"] {
            let kept = try await server.request("DELETE", "/api/v1/namespaces/\(name)")
            #expect(kept.code == 403 && kept.json?["message"] == .string(#"namespaces "\#(name)" is forbidden: this namespace may not be deleted"#), "\(kept.body)")
        }
        #expect(try await server.request("/api/v1/namespaces/default").code == 200)
        await server.stop()
    }

    /// Events go a TTL after their last write (not their first); a watcher sees them deleted.
    @Test func eventsExpireAfterTheirLastWrite() async throws {
        let dir = TemporaryDirectory()
        let store = try SQLiteStore(directory: dir.path, logger: Logger(label: "test"))
        defer { store.close() }
        let now = Date()
        // The store sets creationTimestamp to the time of the create (now); a later write of an
        // Event moves its lastTimestamp (or eventTime), here an hour on.
        func event(_ name: String, lastTimestamp: Date? = nil, eventTime: Date? = nil) -> Event {
            var event = Event()
            event.metadata.name = name
            event.metadata.namespace = "default"
            event.involvedObject.kind = "Pod"
            event.involvedObject.name = "p"
            event.reason = "Test"
            if let lastTimestamp { event.lastTimestamp = Google_Protobuf_Timestamp(date: lastTimestamp) }
            if let eventTime { event.eventTime = Google_Protobuf_Timestamp(date: eventTime) }
            event.applyDefaults()
            return event
        }
        let hour: TimeInterval = 3600
        for object in [event("first"), event("renewed", lastTimestamp: now + hour), event("series", eventTime: now + hour)] {
            _ = try await store.create(object)
        }
        let watch = try store.watch(from: store.currentRevision, options: .of(Event.self))
        defer { watch.cancel() }
        #expect(try await EventExpiry.sweep(store, ttl: .seconds(3600), now: now + 0.9 * hour) == 0)
        #expect(try await EventExpiry.sweep(store, ttl: .seconds(3600), now: now + 1.5 * hour) == 1)
        var iterator = watch.makeAsyncIterator()
        let seen = try await iterator.next()
        #expect(seen?.type == .deleted && seen?.key.name == "first")
        #expect(try await store.list(Event.self, options: ListOptions()).items.map(\.metadata.name) == ["renewed", "series"])
        #expect(try await EventExpiry.sweep(store, ttl: .seconds(3600), now: now + 2.5 * hour) == 2)
    }
}
