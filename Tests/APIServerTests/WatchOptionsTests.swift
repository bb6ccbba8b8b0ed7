import API
import Testing

/// How a list or watch picks where it starts, as Kubernetes clients ask: one object by name, the
/// watch-list (`sendInitialEvents`), exact-revision lists, and the combinations Kubernetes refuses.
@Suite struct WatchOptionsTests {
    func events(_ body: String) throws -> [JSONValue] {
        try body.split(separator: "\n").map { try JSONParser.parse(String($0)) }
    }

    @Test func aWatchOfOneObjectByNameSeesOnlyThatObject() async throws {
        let server = try await ServerHarness()
        let first = try Pod(jsonString: try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("first")).body)
        #expect(try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("second")).code == 201)
        #expect(try await server.request("PATCH", "/api/v1/namespaces/default/pods/first", body: #"{"metadata":{"labels":{"seen":"yes"}}}"#,
                                         contentType: "application/merge-patch+json").code == 200)
        #expect(try await server.request("PATCH", "/api/v1/namespaces/default/pods/second", body: #"{"metadata":{"labels":{"seen":"yes"}}}"#,
                                         contentType: "application/merge-patch+json").code == 200)
        let since = (Int(first.metadata.resourceVersion) ?? 1) - 1
        let watched = try await server.request("/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Dfirst&resourceVersion=\(since)")
        let lines = try events(watched.body)
        #expect(lines.map { $0["type"] } == [.string("ADDED"), .string("MODIFIED")], "\(lines)")
        #expect(lines.allSatisfy { $0["object"]?["metadata"]?["name"] == .string("first") })
        await server.stop()
    }

    @Test func aWatchListSendsTheObjectsThenABookmarkEndingThem() async throws {
        let server = try await ServerHarness()
        for name in ["a", "b"] {
            #expect(try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON(name)).code == 201)
        }
        let list = try await server.request("/api/v1/namespaces/default/pods")
        guard case .string(let revision) = list.json?["metadata"]?["resourceVersion"] else { Issue.record("no revision: \(list.body)"); return }
        // Not older than the list's revision: the objects as they are now, then the end marker at that revision.
        let watched = try await server.request("/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1&sendInitialEvents=true"
                                               + "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=\(revision)")
        #expect(watched.code == 200, "\(watched.body)")
        let lines = try events(watched.body)
        #expect(lines.map { $0["type"] } == [.string("ADDED"), .string("ADDED"), .string("BOOKMARK")], "\(lines)")
        #expect(lines.prefix(2).map { $0["object"]?["metadata"]?["name"] } == [.string("a"), .string("b")])
        let marker = try #require(lines.last?["object"]?["metadata"])
        #expect(marker["annotations"]?["k8s.io/initial-events-end"] == .string("true"))
        #expect(marker["resourceVersion"] == .string(revision))
        // sendInitialEvents=false from a revision: only what changed since.
        #expect(try await server.request("DELETE", "/api/v1/namespaces/default/pods/a?gracePeriodSeconds=0").code == 200)
        let since = try await server.request("/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1&sendInitialEvents=false"
                                             + "&resourceVersionMatch=NotOlderThan&resourceVersion=\(revision)")
        #expect(try events(since.body).map { $0["type"] } == [.string("DELETED")], "\(since.body)")
        await server.stop()
    }

    @Test func anExactListReadsThePastAndTheFutureIsRefused() async throws {
        let server = try await ServerHarness()
        let first = try Pod(jsonString: try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("early")).body)
        #expect(try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("late")).code == 201)
        let past = try await server.request("/api/v1/namespaces/default/pods?resourceVersion=\(first.metadata.resourceVersion)&resourceVersionMatch=Exact")
        #expect(past.json?["items"]?.elements?.map { $0["metadata"]?["name"] } == [.string("early")], "\(past.body)")
        #expect(past.json?["metadata"]?["resourceVersion"] == .string(first.metadata.resourceVersion))
        let now = try await server.request("/api/v1/namespaces/default/pods?resourceVersion=\(first.metadata.resourceVersion)&resourceVersionMatch=NotOlderThan")
        #expect(now.json?["items"]?.elements?.count == 2)
        let future = try await server.request("/api/v1/namespaces/default/pods?resourceVersion=999999")
        #expect(future.code == 504 && future.json?["message"] == .string("Too large resource version: 999999, current: \(Int(first.metadata.resourceVersion)! + 1)"), "\(future.body)")
        #expect(future.json?["details"]?["retryAfterSeconds"] == .int(1))
        await server.stop()
    }

    @Test func combinationsKubernetesRefusesAreNamed() async throws {
        let server = try await ServerHarness()
        let cases: [(String, String)] = [
            ("watch=true&resourceVersionMatch=NotOlderThan",
             "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"),
            ("watch=true&sendInitialEvents=true",
             "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"),
            ("resourceVersionMatch=Exact",
             "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"),
            ("resourceVersion=0&resourceVersionMatch=Exact",
             #"resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0""#),
            ("resourceVersion=1&resourceVersionMatch=Newest",
             #"resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", """#),
            ("sendInitialEvents=true", "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"),
        ]
        for (query, message) in cases {
            let reply = try await server.request("/api/v1/pods?\(query)")
            #expect(reply.code == 422, "\(query): \(reply.body)")
            #expect(reply.json?["message"] == .string(#"ListOptions.meta.k8s.io "" is invalid: "# + message), "\(query)")
            #expect(reply.json?["details"]?["causes"]?.elements?.first?["field"] == .string(String(message.prefix { $0 != ":" })))
        }
        await server.stop()
    }
}
