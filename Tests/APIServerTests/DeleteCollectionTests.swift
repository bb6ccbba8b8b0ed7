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
