import API
import Foundation
import Testing
import TestSupport

/// DELETE of a collection with selectors (`deletecollection`, as client libraries send it).
@Suite("deletecollection", .watchdog, .serialized)
struct DeleteCollectionTests {
    @Test func deletesWhatTheSelectorsPickAndNothingElse() async throws {
        let server = try await ServerHarness()
        let pods = "/api/v1/namespaces/default/pods"
        for (name, app) in [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b")] {
            #expect(try await server.request("POST", pods, body: podJSON(name, labels: ["app": app])).code == 201)
        }
        // A dry run answers with what it would delete and deletes nothing.
        let dry = try await server.request("DELETE", pods + "?labelSelector=app%3Da&dryRun=All")
        #expect(dry.code == 200 && dry.json?["items"]?.elements?.count == 3, "\(dry.body)")
        #expect(try await server.request(pods).json?["items"]?.elements?.count == 4)
        // Label and field selectors together.
        let one = try await server.request("DELETE", pods + "?labelSelector=app%3Da&fieldSelector=metadata.name%3Da2")
        #expect(one.code == 200 && one.json?["kind"] == .string("PodList") && one.json?["items"]?.elements?.count == 1, "\(one.body)")
        let rest = try await server.request("DELETE", pods + "?labelSelector=app%3Da")
        #expect(rest.code == 200 && rest.json?["items"]?.elements?.map { $0["metadata"]?["name"] } == [.string("a1"), .string("a3")], "\(rest.body)")
        let left = try #require(try await server.request(pods).json?["items"]?.elements)
        #expect(left.map { $0["metadata"]?["name"] } == [.string("b1")])
        await server.stop()
    }
}

/// `pods/eviction` (policy/v1), as kubectl drain sends it: the pod's graceful deletion.
@Suite("Eviction", .watchdog)
struct EvictionTests {
    @Test func anEvictionDeletesThePod() async throws {
        let server = try await ServerHarness()
        let pods = "/api/v1/namespaces/default/pods"
        #expect(try await server.request("POST", pods, body: podJSON("victim")).code == 201)
        let body = #"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"victim","namespace":"default"},"deleteOptions":{"gracePeriodSeconds":0}}"#
        let dry = try await server.request("POST", pods + "/victim/eviction?dryRun=All", body: body)
        #expect(dry.code == 201, "\(dry.body)")
        #expect(try await server.request(pods + "/victim").code == 200, "a dry run evicts nothing")
        let evicted = try await server.request("POST", pods + "/victim/eviction", body: body)
        #expect(evicted.code == 201 && evicted.json?["status"] == .string("Success"), "\(evicted.body)")
        #expect(try await server.request(pods + "/victim").code == 404)
        let mismatch = try await server.request("POST", pods + "/other/eviction", body: body)
        #expect(mismatch.code == 400 && mismatch.body.contains("does not match"), "\(mismatch.body)")
        #expect(try await server.request("POST", pods + "/gone/eviction", body: #"{"metadata":{"name":"gone"}}"#).code == 404)
        await server.stop()
    }
}
