import API
import Foundation
import Testing
import TestSupport

/// PATCH as a client sends it: the three patch types on objects and on /status, inside the
/// store's guarded update, with preconditions, dry runs and errors that name what failed.
@Suite("PATCH", .watchdog, .serialized)
struct PatchEndpointTests {
    static let deployments = "/apis/apps/v1/namespaces/default/deployments"

    @Test func theThreePatchTypesOnAnObjectAndItsStatus() async throws {
        let server = try await ServerHarness()
        #expect(try await server.request("POST", Self.deployments, body: TestObjects.deployment("web", replicas: 2).jsonString()).code == 201)
        let web = Self.deployments + "/web"
        // Strategic: the container list merges by name (the image changes, the rest stays).
        let strategic = try await server.request("PATCH", web, body: #"{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"main","image":"app:2"}]}}}}"#,
                                                 contentType: "application/strategic-merge-patch+json")
        #expect(strategic.code == 200, "\(strategic.body)")
        let patched = try Deployment(jsonString: strategic.body)
        #expect(patched.spec.replicas == 3 && patched.spec.template.spec.containers.map(\.image) == ["app:2"])
        #expect(!patched.spec.template.spec.containers[0].command.isEmpty, "the container's other fields stay")
        #expect(patched.metadata.generation == 2)
        // Merge: a label added, JSON patch: tested and replaced.
        #expect(try await server.request("PATCH", web, body: #"{"metadata":{"labels":{"tier":"front"}}}"#, contentType: "application/merge-patch+json").code == 200)
        let json = try await server.request("PATCH", web, body: #"[{"op":"test","path":"/metadata/labels/tier","value":"front"},{"op":"replace","path":"/spec/replicas","value":1}]"#,
                                            contentType: "application/json-patch+json")
        #expect(try json.code == 200 && Deployment(jsonString: json.body).spec.replicas == 1, "\(json.body)")
        // /status takes the status only; a spec in the same patch is ignored there.
        let status = try await server.request("PATCH", web + "/status", body: #"{"spec":{"replicas":7},"status":{"readyReplicas":1}}"#,
                                              contentType: "application/merge-patch+json")
        let afterStatus = try Deployment(jsonString: status.body)
        #expect(status.code == 200 && afterStatus.status.readyReplicas == 1 && afterStatus.spec.replicas == 1, "\(status.body)")
        // Server-side apply on /status: the status alone, owned in an entry of its own.
        let statusApply = try await server.request("PATCH", web + "/status?fieldManager=reporter",
                                                   body: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 8}\nstatus: {availableReplicas: 1}\n",
                                                   contentType: "application/apply-patch+yaml")
        let applied = try Deployment(jsonString: statusApply.body)
        #expect(statusApply.code == 200 && applied.status.availableReplicas == 1 && applied.spec.replicas == 1, "\(statusApply.body)")
        let reporter = applied.metadata.managedFields.first { $0.manager == "reporter" }
        #expect(reporter?.operation == "Apply" && reporter?.subresource == "status" && reporter?.fieldsV1 == #"{"f:status":{"f:availableReplicas":{}}}"#,
                "\(applied.metadata.managedFields)")
        let missingStatus = try await server.request("PATCH", Self.deployments + "/nope/status?fieldManager=reporter",
                                                     body: "apiVersion: apps/v1\nkind: Deployment\nstatus: {availableReplicas: 1}\n", contentType: "application/apply-patch+yaml")
        #expect(missingStatus.code == 404, "\(missingStatus.body)")
        // A plain update of the spec keeps that status.
        #expect(try await server.request("PATCH", web, body: #"{"status":{"readyReplicas":9}}"#, contentType: "application/merge-patch+json").code == 200)
        #expect(try Deployment(jsonString: try await server.request(web).body).status.readyReplicas == 1)

        // A resourceVersion in the patch is a precondition.
        let stale = try await server.request("PATCH", web, body: #"{"metadata":{"resourceVersion":"1"},"spec":{"replicas":5}}"#, contentType: "application/merge-patch+json")
        #expect(stale.code == 409 && stale.body.contains("the object has been modified"), "\(stale.body)")
        // A dry run answers and writes nothing.
        let dry = try await server.request("PATCH", web + "?dryRun=All", body: #"{"spec":{"replicas":6}}"#, contentType: "application/merge-patch+json")
        #expect(try dry.code == 200 && Deployment(jsonString: dry.body).spec.replicas == 6, "\(dry.body)")
        #expect(try Deployment(jsonString: try await server.request(web).body).spec.replicas == 1)

        // Errors name what failed.
        let failedTest = try await server.request("PATCH", web, body: #"[{"op":"test","path":"/spec/replicas","value":4}]"#, contentType: "application/json-patch+json")
        #expect(failedTest.code == 422 && failedTest.body.contains("test of /spec/replicas failed"), "\(failedTest.body)")
        let notJSON = try await server.request("PATCH", web, body: "{", contentType: "application/merge-patch+json")
        #expect(notJSON.code == 400, "\(notJSON.body)")
        let unknownType = try await server.request("PATCH", web, body: "{}", contentType: "application/json")
        #expect(unknownType.code == 415 && unknownType.body.contains("application/strategic-merge-patch+json"), "\(unknownType.body)")
        let invalid = try await server.request("PATCH", web, body: #"{"spec":{"replicas":-1}}"#, contentType: "application/merge-patch+json")
        #expect(invalid.code == 422 && invalid.json?["message"] == .string(#"Deployment.apps "web" is invalid: spec.replicas: Invalid value: "-1": must be greater than or equal to 0"#), "\(invalid.body)")
        // The details kubectl words its error from (`The Deployment "web" is invalid: spec.replicas: …`).
        let details = invalid.json?["details"]
        #expect(details?["kind"] == .string("Deployment") && details?["group"] == .string("apps") && details?["name"] == .string("web"), "\(invalid.body)")
        #expect(details?["causes"]?.elements?.first == .object([JSONMember("reason", .string("FieldValueInvalid")),
                                                                JSONMember("message", .string(#"Invalid value: "-1": must be greater than or equal to 0"#)),
                                                                JSONMember("field", .string("spec.replicas"))]), "\(invalid.body)")
        // A field the kind does not have: dropped with a Warning by default, 400 when strict.
        let unknownField = try await server.request("PATCH", web, body: #"{"spec":{"replicaz":2}}"#, contentType: "application/merge-patch+json", extra: ["-D", "-"])
        #expect(unknownField.code == 200 && unknownField.body.contains(#"warning: 299 - "unknown field \"spec.replicaz\"""#), "\(unknownField.body)")
        let strict = try await server.request("PATCH", web + "?fieldValidation=Strict", body: #"{"spec":{"replicaz":2}}"#, contentType: "application/merge-patch+json")
        #expect(strict.code == 400 && strict.body.contains(#"strict decoding error: unknown field \"spec.replicaz\""#), "\(strict.body)")
        let missing = try await server.request("PATCH", Self.deployments + "/nope", body: "{}", contentType: "application/merge-patch+json")
        #expect(missing.code == 404)
        await server.stop()
    }

    /// Twenty clients each add their own label at once: every label is there (each patch is
    /// applied to the object as stored when it is written, not as it was read).
    @Test func concurrentPatchesLoseNoUpdate() async throws {
        let server = try await ServerHarness()
        #expect(try await server.request("POST", Self.deployments, body: TestObjects.deployment("shared").jsonString()).code == 201)
        let codes = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<20 {
                group.addTask {
                    try await server.request("PATCH", Self.deployments + "/shared", body: #"{"metadata":{"labels":{"l\#(i)":"v"}}}"#,
                                             contentType: "application/merge-patch+json").code
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(codes.allSatisfy { $0 == 200 }, "\(codes)")
        let labels = try Deployment(jsonString: try await server.request(Self.deployments + "/shared").body).metadata.labels
        #expect((0..<20).allSatisfy { labels["l\($0)"] == "v" }, "\(labels.keys.sorted())")
        await server.stop()
    }

    /// A status write without a resourceVersion (the agent's reports are) keeps what others
    /// changed meanwhile: the labels patched between its read and its write used to be lost (the
    /// official Python client saw a label it had just applied vanish from a running pod).
    @Test func unconditionalStatusWritesLoseNoConcurrentChange() async throws {
        let server = try await ServerHarness()
        #expect(try await server.request("POST", Self.deployments, body: TestObjects.deployment("reported").jsonString()).code == 201)
        let codes = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<30 {
                group.addTask {
                    try await server.request("PATCH", Self.deployments + "/reported", body: #"{"metadata":{"labels":{"l\#(i)":"v"}}}"#,
                                             contentType: "application/merge-patch+json").code
                }
                group.addTask {
                    let status = #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"reported","namespace":"default"},"status":{"observedGeneration":\#(i)}}"#
                    return try await server.request("PUT", Self.deployments + "/reported/status", body: status).code
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(codes.allSatisfy { $0 == 200 }, "\(codes)")
        let labels = try Deployment(jsonString: try await server.request(Self.deployments + "/reported").body).metadata.labels
        #expect((0..<30).allSatisfy { labels["l\($0)"] == "v" }, "\(labels.keys.sorted())")
        await server.stop()
    }

    /// `/scale` reads and sets a Deployment's replicas: GET, PUT (its resourceVersion a
    /// precondition) and PATCH, as kubectl scale and autoscalers use it.
    @Test func theScaleSubresource() async throws {
        let server = try await ServerHarness()
        #expect(try await server.request("POST", Self.deployments, body: TestObjects.deployment("web", replicas: 2).jsonString()).code == 201)
        let path = Self.deployments + "/web/scale"
        let read = try #require(try await server.request(path).json)
        #expect(read["apiVersion"] == .string("autoscaling/v1") && read["kind"] == .string("Scale"))
        #expect(read["spec"]?["replicas"] == .int(2) && read["status"]?["selector"] == .string("app=web"))
        let put = try await server.request("PUT", path, body: #"{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":5}}"#)
        #expect(put.code == 200 && put.json?["spec"]?["replicas"] == .int(5), "\(put.body)")
        let stale = try await server.request("PUT", path, body: #"{"metadata":{"name":"web","resourceVersion":"1"},"spec":{"replicas":6}}"#)
        #expect(stale.code == 409, "\(stale.body)")
        let patched = try await server.request("PATCH", path, body: #"{"spec":{"replicas":3}}"#, contentType: "application/merge-patch+json")
        #expect(patched.code == 200 && patched.json?["spec"]?["replicas"] == .int(3), "\(patched.body)")
        let negative = try await server.request("PATCH", path, body: #"{"spec":{"replicas":-1}}"#, contentType: "application/merge-patch+json")
        #expect(negative.code == 422 && negative.body.contains("spec.replicas"), "\(negative.body)")
        let deployment = try Deployment(jsonString: try await server.request(Self.deployments + "/web").body)
        #expect(deployment.spec.replicas == 3 && deployment.metadata.generation == 3)
        #expect(try await server.request("/api/v1/namespaces/default/pods/x/scale").code == 404)
        await server.stop()
    }
}
