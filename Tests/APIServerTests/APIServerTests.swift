import API
import APIServer
import Foundation
import Testing
import TestSupport

@Suite("API server over TLS", .watchdog, .serialized)
struct APIServerTests {
    @Test func anonymousRequestsGet401ExceptHealth() async throws {
        let server = try await ServerHarness()
        defer { Task { await server.stop() } }
        #expect(try await server.request("/livez", authenticated: false).body == "ok")
        let denied = try await server.request("/api/v1/namespaces/default/pods", authenticated: false)
        #expect(denied.code == 401)
        #expect(denied.json?["reason"] == .string("Unauthorized"))
        #expect(denied.json?["kind"] == .string("Status"))
        await server.stop()
    }

    @Test func crudConflictsAndErrorsAreKubernetesShaped() async throws {
        let server = try await ServerHarness()
        let created = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("web", labels: ["app": "web"]))
        #expect(created.code == 201, "\(created.body)")
        let pod = try Pod(jsonString: created.body)
        let base = ServerHarness.bootRevision
        #expect(pod.metadata.resourceVersion == "\(base + 1)" && !pod.metadata.uid.isEmpty)

        #expect(try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("web")).json?["reason"] == .string("AlreadyExists"))
        let fetched = try await server.request("/api/v1/namespaces/default/pods/web")
        #expect(try Pod(jsonString: fetched.body) == pod)

        var changed = pod
        changed.metadata.labels["v"] = "2"
        let updated = try await server.request("PUT", "/api/v1/namespaces/default/pods/web", body: changed.jsonString())
        #expect(try updated.code == 200 && Pod(jsonString: updated.body).metadata.resourceVersion == "\(base + 2)")
        let stale = try await server.request("PUT", "/api/v1/namespaces/default/pods/web", body: changed.jsonString())
        #expect(stale.code == 409 && stale.json?["reason"] == .string("Conflict"))

        // Spec and status are written separately.
        var withStatus = try Pod(jsonString: updated.body)
        withStatus.status.phase = "Running"
        withStatus.spec.containers[0].command = ["ignored"]
        let statusReply = try await server.request("PUT", "/api/v1/namespaces/default/pods/web/status", body: withStatus.jsonString())
        let afterStatus = try Pod(jsonString: statusReply.body)
        #expect(afterStatus.status.phase == "Running" && afterStatus.spec.containers[0].command == ["sleep", "3600"])

        let invalid = try await server.request("POST", "/api/v1/namespaces/default/pods", body: #"{"metadata":{"name":"Bad_Name"},"spec":{"containers":[{"name":"c","command":["x"]}]}}"#)
        #expect(invalid.code == 422 && invalid.body.contains(#"metadata.name: Invalid value: \"Bad_Name\""#), "\(invalid.body)")
        let malformed = try await server.request("POST", "/api/v1/namespaces/default/pods", body: #"{"metadata": {"#)
        #expect(malformed.code == 400 && malformed.json?["reason"] == .string("BadRequest"))
        // Unknown fields: Strict fails the request naming every one, as Kubernetes words it; the
        // default (Warn) drops them and names each in a Warning header; Ignore just drops them.
        let withUnknown = #"{"metadata":{"name":"a"},"spec":{"containerz":[],"containers":[{"name":"c","command":["x"],"nmae":"y"}]}}"#
        let unknown = try await server.request("POST", "/api/v1/namespaces/default/pods?fieldValidation=Strict", body: withUnknown)
        #expect(unknown.code == 400 && unknown.body.contains(#"Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containerz\", unknown field \"spec.containers[0].nmae\""#), "\(unknown.body)")
        let warned = try await server.request("POST", "/api/v1/namespaces/default/pods", body: withUnknown, extra: ["-D", "-"])
        #expect(warned.code == 201 && warned.body.contains(#"warning: 299 - "unknown field \"spec.containerz\"""#)
                && warned.body.contains(#"warning: 299 - "unknown field \"spec.containers[0].nmae\"""#), "\(warned.body)")
        let ignored = try await server.request("POST", "/api/v1/namespaces/default/pods?fieldValidation=Ignore", body: withUnknown.replacingOccurrences(of: #""a""#, with: #""b""#), extra: ["-D", "-"])
        #expect(ignored.code == 201 && !ignored.body.contains("warning:"), "\(ignored.body)")
        let bogus = try await server.request("POST", "/api/v1/namespaces/default/pods?fieldValidation=Loud", body: podJSON("c"))
        #expect(bogus.code == 400 && bogus.body.contains(#"fieldValidation: Unsupported value: \"Loud\""#), "\(bogus.body)")
        let wrongNamespace = try await server.request("POST", "/api/v1/namespaces/other/pods", body: podJSON("x"))
        #expect(wrongNamespace.code == 400)
        #expect(try await server.request("/api/v1/namespaces/default/pods/nope").code == 404)
        #expect(try await server.request("/api/v1/namespaces/default/widgets").code == 404)

        let deleted = try await server.request("DELETE", "/api/v1/namespaces/default/pods/web")
        #expect(deleted.code == 200)
        #expect(try await server.request("/api/v1/namespaces/default/pods/web").code == 404)
        await server.stop()
    }

    @Test func everyKindHasItsPaths() async throws {
        let server = try await ServerHarness()
        let node = try await server.request("POST", "/api/v1/nodes", body: TestObjects.node("n1").jsonString())
        #expect(node.code == 201, "\(node.body)")
        #expect(try await server.request("/api/v1/nodes/n1").code == 200)
        #expect(try await server.request("POST", "/api/v1/namespaces", body: #"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a"}}"#).code == 201)
        #expect(try await server.request("/api/v1/namespaces/team-a").json?["status"]?["phase"] == .string("Active"))
        let deployment = try await server.request("POST", "/apis/apps/v1/namespaces/default/deployments",
                                            body: #"{"metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","command":["x"]}]}}}}"#)
        #expect(deployment.code == 201, "\(deployment.body)")
        #expect(try await server.request("/apis/apps/v1/deployments").json?["items"].map { if case .array(let a) = $0 { a.count } else { 0 } } == 1)
        let lease = try await server.request("POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", body: #"{"metadata":{"name":"l"},"spec":{"holderIdentity":"me"}}"#)
        #expect(lease.code == 201, "\(lease.body)")
        // Discovery.
        #expect(try await server.request("/api").json?["versions"] == .array([.string("v1")]))
        #expect(try await server.request("/apis/apps/v1").body.contains(#""name":"deployments""#))
        #expect(try await server.request("/version").json?["major"] == .string("1"))
        await server.stop()
    }

    @Test func selectorsAndPagination() async throws {
        let server = try await ServerHarness()
        for i in 0..<7 {
            _ = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("p\(i)", labels: ["parity": i % 2 == 0 ? "even" : "odd"]))
        }
        let odd = try await server.request("/api/v1/namespaces/default/pods?labelSelector=parity%3Dodd")
        #expect(odd.body.components(separatedBy: #""kind":"Pod""#).count - 1 == 3)
        let byName = try await server.request("/api/v1/pods?fieldSelector=metadata.name%3Dp4")
        #expect(byName.body.components(separatedBy: #""kind":"Pod""#).count - 1 == 1)
        #expect(try await server.request("/api/v1/pods?fieldSelector=spec.bogus%3Dx").code == 400)
        #expect(try await server.request("/api/v1/pods?labelSelector=a%20in%20(").code == 400)

        var names: [String] = []
        var token = ""
        repeat {
            let page = try await server.request("/api/v1/namespaces/default/pods?limit=3" + (token.isEmpty ? "" : "&continue=\(token)"))
            let list = try PodList(jsonString: page.body)
            names += list.items.map(\.metadata.name)
            token = list.metadata.continue.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        } while !token.isEmpty
        #expect(names == (0..<7).map { "p\($0)" })
        await server.stop()
    }

    /// `kubectl create --dry-run=server` sends `?dryRun=All` (`kubectl delete`, a DeleteOptions body):
    /// the create, update or delete is checked as a real one and nothing is written. A write that cannot be
    /// dry-run here is refused, not carried out.
    @Test func dryRunsAreCheckedAndWriteNothing() async throws {
        let server = try await ServerHarness()
        func revision() async throws -> String? {
            if case .string(let rv)? = try await server.request("/api/v1/namespaces/default/pods").json?["metadata"]?["resourceVersion"] { return rv }
            return nil
        }
        let start = try #require(try await revision())
        let dry = try await server.request("POST", "/api/v1/namespaces/default/pods?dryRun=All", body: #"{"metadata":{"name":"web"},"spec":{"containers":[{"name":"c","command":["x"]}]}}"#)
        #expect(dry.code == 201, "\(dry.body)")
        let answered = try Pod(jsonString: dry.body)
        #expect(answered.kind == "Pod" && answered.metadata.name == "web" && !answered.metadata.uid.isEmpty && answered.metadata.resourceVersion.isEmpty)
        #expect(answered.spec.restartPolicy == "Always", "defaults are applied as for a real create")
        #expect(try await server.request("/api/v1/namespaces/default/pods/web").code == 404)
        let invalid = try await server.request("POST", "/api/v1/namespaces/default/pods?dryRun=All", body: #"{"metadata":{"name":"Bad_Name"},"spec":{"containers":[{"name":"c","command":["x"]}]}}"#)
        #expect(invalid.code == 422, "\(invalid.body)")
        let unsupported = try await server.request("POST", "/api/v1/namespaces/default/pods?dryRun=Yes", body: podJSON("other"))
        #expect(unsupported.code == 400 && unsupported.body.contains(#"dryRun: Unsupported value: \"Yes\""#), "\(unsupported.body)")
        #expect(try await server.request("/api/v1/namespaces/default/pods/other").code == 404)

        let created = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("web"))
        #expect(created.code == 201)
        let taken = try await server.request("POST", "/api/v1/namespaces/default/pods?dryRun=All", body: podJSON("web"))
        #expect(taken.code == 409 && taken.json?["reason"] == .string("AlreadyExists"), "\(taken.body)")
        var changed = try Pod(jsonString: created.body)
        changed.metadata.labels["changed"] = "yes"
        let put = try await server.request("PUT", "/api/v1/namespaces/default/pods/web?dryRun=All", body: changed.jsonString())
        let wouldBe = try Pod(jsonString: put.body)
        #expect(put.code == 200 && wouldBe.metadata.labels["changed"] == "yes" && wouldBe.metadata.resourceVersion == changed.metadata.resourceVersion, "\(put.body)")
        var outdated = changed
        outdated.metadata.resourceVersion = "1"
        #expect(try await server.request("PUT", "/api/v1/namespaces/default/pods/web?dryRun=All", body: outdated.jsonString()).code == 409)
        var running = changed
        running.status.phase = "Running"
        let status = try await server.request("PUT", "/api/v1/namespaces/default/pods/web/status?dryRun=All", body: running.jsonString())
        #expect(status.code == 200 && (try? Pod(jsonString: status.body))?.status.phase == "Running", "\(status.body)")
        let binding = try await server.request("POST", "/api/v1/namespaces/default/pods/web/binding?dryRun=All",
                                               body: #"{"metadata":{"name":"web"},"target":{"kind":"Node","name":"n1"}}"#)
        #expect(binding.code == 400 && binding.body.contains("was not carried out"), "\(binding.body)")
        // A dry-run delete answers what the deletion would do and does nothing: an unbound pod would
        // go at once; a bound one would be marked for its grace period.
        let delete = try await server.request("DELETE", "/api/v1/namespaces/default/pods/web?dryRun=All")
        #expect(delete.code == 200 && (try? Pod(jsonString: delete.body))?.metadata.name == "web", "\(delete.body)")
        let stale = try await server.request("DELETE", "/api/v1/namespaces/default/pods/web?dryRun=All&resourceVersion=1")
        #expect(stale.code == 409, "a precondition is checked as for a real delete: \(stale.body)")
        #expect(try await server.request("DELETE", "/api/v1/namespaces/default/pods/ghost?dryRun=All").code == 404)
        var bound = TestObjects.pod("bound")
        bound.spec.nodeName = "n1"
        #expect(try await server.request("POST", "/api/v1/namespaces/default/pods", body: bound.jsonString()).code == 201)
        let graceful = try Pod(jsonString: try await server.request("DELETE", "/api/v1/namespaces/default/pods/bound?dryRun=All").body)
        #expect(graceful.metadata.hasDeletionTimestamp && graceful.metadata.deletionGracePeriodSeconds == 30)
        #expect(try Pod(jsonString: try await server.request("/api/v1/namespaces/default/pods/bound").body).metadata.hasDeletionTimestamp == false)
        let signing = try await server.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests?dryRun=All", body: "{}")
        #expect(signing.code == 400 && signing.body.contains("no certificate was signed"), "\(signing.body)")
        let kept = try Pod(jsonString: try await server.request("/api/v1/namespaces/default/pods/web").body)
        #expect(kept.metadata.labels["changed"] == nil && !kept.metadata.hasDeletionTimestamp && kept.status.phase != "Running" && kept.spec.nodeName.isEmpty)
        // kubectl sends its options in a DELETE's body (DeleteOptions): honoured, or refused.
        let uid = try await server.request("DELETE", "/api/v1/namespaces/default/pods/bound", body: #"{"preconditions":{"uid":"x"}}"#)
        #expect(uid.code == 409 && uid.body.contains("Precondition failed: UID in precondition: x, UID in object meta: "), "\(uid.body)")
        let unknown = try await server.request("DELETE", "/api/v1/namespaces/default/pods/bound", body: #"{"preconditions":{"owner":"x"}}"#)
        #expect(unknown.code == 400 && unknown.body.contains("preconditions.owner is not supported"), "\(unknown.body)")
        let badDry = try await server.request("DELETE", "/api/v1/namespaces/default/pods/bound", body: #"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["Yes"]}"#)
        #expect(badDry.code == 400, "\(badDry.body)")
        let bodyDry = try await server.request("DELETE", "/api/v1/namespaces/default/pods/bound", body: #"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"],"propagationPolicy":"Background"}"#)
        #expect(bodyDry.code == 200, "\(bodyDry.body)")
        // The two real creates are the only writes.
        #expect(try await revision() == "\((Int(start) ?? -10) + 2)")
        let now = try await server.request("DELETE", "/api/v1/namespaces/default/pods/bound", body: #"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0}"#)
        #expect(now.code == 200, "\(now.body)")
        #expect(try await server.request("/api/v1/namespaces/default/pods/bound").code == 404, "gracePeriodSeconds 0 from the body: gone at once")
        await server.stop()
    }

    @Test func protobufBothWays() async throws {
        let server = try await ServerHarness()
        let file = (server.dir.path as NSString).appendingPathComponent("pod.pb")
        try Data(TestObjects.pod("binary").protobufBytes()).write(to: URL(fileURLWithPath: file))
        let created = try await server.request("POST", "/api/v1/namespaces/default/pods", bodyFile: file, contentType: WireFormat.protobuf.rawValue, accept: WireFormat.protobuf.rawValue,
                                         outputFile: (server.dir.path as NSString).appendingPathComponent("reply.pb"))
        #expect(created.code == 201)
        let reply = try Data(contentsOf: URL(fileURLWithPath: (server.dir.path as NSString).appendingPathComponent("reply.pb")))
        let pod = try Pod(protobuf: Array(reply))
        #expect(pod.metadata.name == "binary" && pod.metadata.resourceVersion == "\(ServerHarness.bootRevision + 1)")
        let garbage = (server.dir.path as NSString).appendingPathComponent("garbage.pb")
        try Data([0x1A, 0xFF, 0xFF, 0x01]).write(to: URL(fileURLWithPath: garbage))
        let bad = try await server.request("POST", "/api/v1/namespaces/default/pods", bodyFile: garbage, contentType: WireFormat.protobuf.rawValue)
        #expect(bad.code == 400 && bad.body.contains("malformed protobuf"))
        await server.stop()
    }

    @Test func watchStreamsChangesAfterARevisionAndEndsOnTimeout() async throws {
        let server = try await ServerHarness()
        _ = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("a"))
        _ = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("b"))
        _ = try await server.request("DELETE", "/api/v1/namespaces/default/pods/a")
        _ = try await server.request("POST", "/api/v1/nodes", body: TestObjects.node("n").jsonString())
        let base = ServerHarness.bootRevision
        let watched = try await server.request("/api/v1/namespaces/default/pods?watch=true&resourceVersion=\(base + 1)&timeoutSeconds=1")
        let lines = watched.body.split(separator: "\n").map { try! JSONParser.parse(String($0)) }
        #expect(lines.map { $0["type"] } == [.string("ADDED"), .string("DELETED")])
        #expect(lines.map { $0["object"]?["metadata"]?["resourceVersion"] } == [.string("\(base + 2)"), .string("\(base + 3)")])
        // Without a resourceVersion: the current objects, then changes.
        let fresh = try await server.request("/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1")
        #expect(fresh.body.split(separator: "\n").count == 1 && fresh.body.contains(#""name":"b""#))
        await server.stop()
    }

    @Test func idleWatchesSendBookmarksAndVanishedClientsAreNoticed() async throws {
        let server = try await ServerHarness { $0.limits.bookmarkInterval = .milliseconds(200) }
        _ = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("a"))
        let base = ServerHarness.bootRevision
        let idle = try await server.request("/api/v1/namespaces/default/pods?watch=true&resourceVersion=\(base + 1)&timeoutSeconds=1&allowWatchBookmarks=true")
        let lines = idle.body.split(separator: "\n").map { try! JSONParser.parse(String($0)) }
        #expect(!lines.isEmpty && lines.allSatisfy { $0["type"] == .string("BOOKMARK") }, "\(idle.body)")
        #expect(lines.first?["object"]?["metadata"]?["resourceVersion"] == .string("\(base + 1)"))
        #expect(lines.first?["object"]?["kind"] == .string("Pod"))
        // A client that did not ask for bookmarks (kubectl get -w) gets none: it would take one for an object.
        let unasked = try await server.request("/api/v1/namespaces/default/pods?watch=true&resourceVersion=\(base + 1)&timeoutSeconds=1")
        #expect(unasked.code == 200 && unasked.body.isEmpty, "\(unasked.body)")

        // A client that goes away (curl gives up after 1 s) frees its server-side watch.
        _ = try await server.request("/api/v1/namespaces/default/pods?watch=true&resourceVersion=1", extra: ["--max-time", "1"])
        var watchers = -1
        for _ in 0..<50 {  // bounded: 50 × 100 ms
            let metrics = try await server.request("/metrics").body
            let line = metrics.split(separator: "\n").first { $0.hasPrefix("cox_apiserver_watchers ") }
            watchers = Int(line?.split(separator: " ").last ?? "") ?? -1
            if watchers == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(watchers == 0, "the watch of a disconnected client must end")
        await server.stop()
    }

    /// Malformed bodies of many shapes each get a 4xx Status, and the server stays up.
    @Test func malformedBodiesGet4xxAndTheServerStaysUp() async throws {
        let server = try await ServerHarness()
        let good = TestObjects.pod("fuzz").protobufBytes()
        var generator = SeededGenerator(seed: 42)
        var bodies: [(String, [UInt8], WireFormat)] = [
            ("deep JSON", Array((String(repeating: "[", count: 5_000) + String(repeating: "]", count: 5_000)).utf8), .json),
            ("deep object", Array((String(repeating: #"{"a":"#, count: 3_000) + "1" + String(repeating: "}", count: 3_000)).utf8), .json),
            ("wrong kind", Array(TestObjects.node("n").jsonString().utf8), .json),
            ("huge string", Array(#"{"metadata":{"name":""#.utf8) + Array(repeating: UInt8(ascii: "a"), count: 1_000_000) + Array(#""}}"#.utf8), .json),
            ("not UTF-8", [0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x3A, 0x31, 0x7D], .json),
            ("empty", [], .json),
            ("array", Array("[1,2,3]".utf8), .json),
            ("number for object", Array(#"{"metadata":5}"#.utf8), .json),
        ]
        for cut in stride(from: 1, to: good.count, by: max(1, good.count / 12)) {
            bodies.append(("truncated protobuf at \(cut)", Array(good.prefix(cut)), .protobuf))
        }
        for i in 0..<12 {
            var mutated = good
            for _ in 0..<4 { mutated[Int.random(in: 0..<mutated.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            bodies.append(("mutated protobuf \(i)", mutated, .protobuf))
        }
        for (label, body, format) in bodies {
            let file = (server.dir.path as NSString).appendingPathComponent("body")
            try Data(body).write(to: URL(fileURLWithPath: file))
            let reply = try await server.request("POST", "/api/v1/namespaces/default/pods", bodyFile: file, contentType: format.rawValue)
            if (200..<300).contains(reply.code) {
                // A random mutation can still be a valid pod; then it must really be stored.
                #expect(format == .protobuf, "\(label) was accepted")
                continue
            }
            #expect((400..<500).contains(reply.code), "\(label): \(reply.code) \(reply.body.prefix(200))")
            #expect(reply.json?["kind"] == .string("Status"), "\(label): \(reply.body.prefix(200))")
            #expect(try await server.request("/livez", authenticated: false).body == "ok", "the server died on \(label)")
        }
        await server.stop()
    }

    @Test func bindingGracefulDeletionAndPodSpecImmutability() async throws {
        let server = try await ServerHarness()
        _ = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("web"))
        let binding = #"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"web"},"target":{"kind":"Node","name":"n1"}}"#
        let bound = try await server.request("POST", "/api/v1/namespaces/default/pods/web/binding", body: binding)
        #expect(bound.code == 201 && bound.json?["status"] == .string("Success"), "\(bound.body)")
        let again = try await server.request("POST", "/api/v1/namespaces/default/pods/web/binding", body: binding.replacingOccurrences(of: "n1", with: "n2"))
        #expect(again.code == 409 && again.body.contains(#"already assigned to node \"n1\""#), "\(again.body)")

        // The spec is fixed once created (but for images), and the node only changes by binding.
        var pod = try Pod(jsonString: try await server.request("/api/v1/namespaces/default/pods/web").body)
        var moved = pod
        moved.spec.nodeName = "n2"
        let move = try await server.request("PUT", "/api/v1/namespaces/default/pods/web", body: moved.jsonString())
        #expect(move.code == 422 && move.body.contains("spec.nodeName: Forbidden"), "\(move.body)")
        var changed = pod
        changed.spec.containers[0].command = ["true"]
        #expect(try await server.request("PUT", "/api/v1/namespaces/default/pods/web", body: changed.jsonString()).code == 422)
        pod.spec.containers[0].image = "busybox:2"
        #expect(try await server.request("PUT", "/api/v1/namespaces/default/pods/web", body: pod.jsonString()).code == 200)

        // A pod on a node is only marked for deletion; its agent finishes it with grace 0.
        let marked = try await server.request("DELETE", "/api/v1/namespaces/default/pods/web")
        let terminating = try Pod(jsonString: marked.body)
        #expect(marked.code == 200 && terminating.metadata.hasDeletionTimestamp && terminating.metadata.deletionGracePeriodSeconds == 30)
        #expect(try await server.request("/api/v1/namespaces/default/pods/web").code == 200)
        #expect(try await server.request("DELETE", "/api/v1/namespaces/default/pods/web?gracePeriodSeconds=0").code == 200)
        #expect(try await server.request("/api/v1/namespaces/default/pods/web").code == 404)
        // An unbound pod goes at once.
        _ = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("loose"))
        _ = try await server.request("DELETE", "/api/v1/namespaces/default/pods/loose")
        #expect(try await server.request("/api/v1/namespaces/default/pods/loose").code == 404)
        await server.stop()
    }

    @Test func limitsAnswer413And429() async throws {
        let server = try await ServerHarness { $0.limits.maxBodyBytes = 4096 }
        let big = podJSON("big").replacingOccurrences(of: #""labels":{}"#, with: "") .replacingOccurrences(of: "sleep", with: String(repeating: "s", count: 8000))
        let tooLarge = try await server.request("POST", "/api/v1/namespaces/default/pods", body: big)
        #expect(tooLarge.code == 413 && tooLarge.json?["reason"] == .string("RequestEntityTooLarge"), "\(tooLarge.body)")
        await server.stop()
        let busy = try await ServerHarness { $0.limits.maxInflightRequests = 0 }
        let refused = try await busy.request("/api/v1/namespaces/default/pods", extra: ["-D", "-"])
        #expect(refused.body.contains("429") && refused.body.lowercased().contains("retry-after: 1"), "\(refused.body)")
        await busy.stop()
    }

    @Test func objectsAndWatchesSurviveARestart() async throws {
        let dir = TemporaryDirectory()
        let first = try await ServerHarness(dir: dir)
        _ = try await first.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("kept"))
        await first.stop()
        let second = try await ServerHarness(dir: dir)
        #expect(try await second.request("/api/v1/namespaces/default/pods/kept").code == 200)
        _ = try await second.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("new"))
        let resumed = try await second.request("/api/v1/namespaces/default/pods?watch=true&resourceVersion=\(ServerHarness.bootRevision + 1)&timeoutSeconds=1")
        #expect(resumed.body.split(separator: "\n").count == 1 && resumed.body.contains(#""name":"new""#))
        await second.stop()
    }

    @Test func independentToolsInteroperate() async throws {
        let server = try await ServerHarness()
        _ = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("seen"))
        // A Table's rows carry the object's metadata by default, the object or nothing on request.
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io"
        let rows = try await server.request("/api/v1/namespaces/default/pods", accept: table)
        #expect(rows.body.contains(#""object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"seen""#), "\(rows.body)")
        #expect(!rows.body.contains(#""spec""#))
        let bare = try await server.request("/api/v1/namespaces/default/pods?includeObject=None", accept: table)
        #expect(bare.code == 200 && bare.body.contains(#""cells":["seen""#) && !bare.body.contains(#""object""#), "\(bare.body)")
        let full = try await server.request("/api/v1/namespaces/default/pods/seen?includeObject=Object", accept: table)
        #expect(full.body.contains(#""object":{"apiVersion":"v1","kind":"Pod""#) && full.body.contains(#""name":"IP""#), "\(full.body)")
        let unsupported = try await server.request("/api/v1/namespaces/default/pods?includeObject=All", accept: table)
        #expect(unsupported.code == 400 && unsupported.body.contains(#"includeObject: Unsupported value: \"All\""#), "\(unsupported.body)")
        if let openssl = Tools.peer("openssl") {
            let handshake = try await Tools.runDetached(openssl, ["s_client", "-connect", "127.0.0.1:\(server.port)", "-CAfile", "\(server.pki)/ca.crt",
                                                    "-verify_return_error", "-verify_hostname", "localhost", "-brief"], input: "")
            #expect(handshake.output.contains("Verification: OK"), "\(handshake.output)")
            // TLS 1.1 offered by a client that allows it (SECLEVEL=0: OpenSSL 3 would otherwise
            // refuse on its own side): the server answers with a protocol-version alert.
            let old = try await Tools.runDetached(openssl, ["s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_1",
                                                            "-cipher", "DEFAULT@SECLEVEL=0", "-brief"], input: "")
            #expect(old.output.contains("alert protocol version") && !old.output.contains("Verification: OK"), "TLS 1.1 must be refused: \(old.output)")
            for version in ["1_2", "1_3"] {
                let modern = try await Tools.runDetached(openssl, ["s_client", "-connect", "127.0.0.1:\(server.port)", "-tls\(version)",
                                                                   "-CAfile", "\(server.pki)/ca.crt", "-brief"], input: "")
                #expect(modern.output.contains("Protocol version: TLSv\(version.replacingOccurrences(of: "_", with: "."))"), "\(modern.output)")
            }
            // TLS 1.2 without forward secrecy or AEAD (a CBC suite) is not offered.
            let cbc = try await Tools.runDetached(openssl, ["s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_2",
                                                            "-cipher", "ECDHE-ECDSA-AES128-SHA", "-brief"], input: "")
            #expect(cbc.output.contains("alert handshake failure") && !cbc.output.contains("Protocol version"), "a CBC suite must be refused: \(cbc.output)")
        }
        if let kubectl = Tools.peer("kubectl") {
            let raw = try await Tools.runDetached(kubectl, ["--kubeconfig", server.kubeconfig, "get", "--raw", "/api/v1/namespaces/default/pods"])
            #expect(raw.status == 0 && raw.output.contains(#""name":"seen""#), "\(raw.output)")
            let whoami = try await Tools.runDetached(kubectl, ["--kubeconfig", server.kubeconfig, "auth", "whoami"])
            #expect(whoami.status == 0 && whoami.output.contains("admin") && whoami.output.contains("system:masters"), "\(whoami.output)")
            // kubectl's server-side dry run (?dryRun=All) reports the create and stores nothing.
            let manifest = (server.dir.path as NSString).appendingPathComponent("dry.yaml")
            try "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dry\nspec:\n  containers:\n  - name: c\n    command: [sleep, \"1\"]\n"
                .write(toFile: manifest, atomically: true, encoding: .utf8)
            let dry = try await Tools.runDetached(kubectl, ["--kubeconfig", server.kubeconfig, "create", "--dry-run=server", "-f", manifest])
            #expect(dry.status == 0 && dry.output.contains("pod/dry created (server dry run)"), "\(dry.output)")
            #expect(try await server.request("/api/v1/namespaces/default/pods/dry").code == 404)
            let dryDelete = try await Tools.runDetached(kubectl, ["--kubeconfig", server.kubeconfig, "delete", "pod", "seen", "--dry-run=server"])
            #expect(dryDelete.status == 0 && dryDelete.output.contains(#"pod "seen" deleted (server dry run)"#), "\(dryDelete.output)")
            #expect(try await server.request("/api/v1/namespaces/default/pods/seen").code == 200)
            // kubectl asks for a Table and prints the server's columns.
            let table = try await Tools.runDetached(kubectl, ["--kubeconfig", server.kubeconfig, "get", "pods"])
            #expect(table.status == 0 && table.output.hasPrefix("NAME   READY   STATUS    RESTARTS   AGE\nseen   0/1     Pending   0"), "\(table.output)")
            // -o wide shows kubectl's wide columns; -A takes the namespace from each row's
            // object, which is only its metadata unless kubectl asks for more.
            let wide = try await Tools.runDetached(kubectl, ["--kubeconfig", server.kubeconfig, "get", "pods", "-o", "wide"])
            #expect(wide.status == 0 && wide.output.split(separator: "\n").first?.split(separator: " ", omittingEmptySubsequences: true)
                .joined(separator: " ") == "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES", "\(wide.output)")
            let everywhere = try await Tools.runDetached(kubectl, ["--kubeconfig", server.kubeconfig, "get", "pods", "-A"])
            #expect(everywhere.status == 0 && everywhere.output.contains("\ndefault     seen   0/1     Pending"), "\(everywhere.output)")
            // kubectl's own watch with a label selector: a pod labelled into the selection is
            // ADDED, changed inside it MODIFIED, labelled out of it DELETED; no bookmark is
            // printed as an object. The watch ends by itself (--request-timeout).
            async let watched = Tools.runDetached(kubectl, ["--kubeconfig", server.kubeconfig, "get", "pods", "-l", "app=web",
                                                            "--watch-only", "--output-watch-events", "--request-timeout=6s"])
            var attached = false
            for _ in 0..<100 where !attached {
                let metrics = try await server.request("/metrics").body
                attached = metrics.split(separator: "\n").contains { $0 == "cox_apiserver_watchers 1" }
                if !attached { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(attached, "kubectl's watch never attached")
            for labels in [["app": "web"], ["app": "web", "v": "2"], ["app": "db", "v": "2"]] {
                #expect(try await server.request("PUT", "/api/v1/namespaces/default/pods/seen", body: podJSON("seen", labels: labels)).code == 200)
            }
            let events = try await watched
            let lines = events.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).prefix(2).joined(separator: " ") }
            #expect(lines == ["EVENT NAME", "ADDED seen", "MODIFIED seen", "DELETED seen"], "\(events.output)")
        }
        // A client certificate from another CA fails the handshake.
        let other = TemporaryDirectory()
        let foreign = try PKIForTests.bootstrap(other.path)
        let rejected = try await Tools.runDetached(server.curl, ["-sS", "--cacert", "\(server.pki)/ca.crt", "--cert", "\(foreign)/admin.crt", "--key", "\(foreign)/admin.key",
                                                   "-o", "/dev/null", "-w", "%{http_code}", server.base + "/api/v1/namespaces/default/pods"])
        #expect(rejected.status != 0, "curl must fail the TLS handshake: \(rejected.output)")
        await server.stop()
    }
}

import PKI
enum PKIForTests {
    /// Another cluster's PKI; returns its pki directory.
    static func bootstrap(_ dir: String) throws -> String {
        _ = try ClusterPKI.bootstrap(dataDirectory: dir)
        return (dir as NSString).appendingPathComponent("pki")
    }
}

