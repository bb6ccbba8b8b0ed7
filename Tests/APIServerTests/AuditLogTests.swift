import API
import APIServer
import Client
import Foundation
import Logging
import PKI
import Testing
import TestSupport

/// The audit log of a real server: one line per change and per denial, with the right user, and
/// never a body or a credential; rotated by size.
@Suite(.serialized, .watchdog) struct AuditLogTests {
    static func lines(_ path: String) throws -> [JSONValue] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { try JSONParser.parse(String($0)) }
    }

    @Test func changesAndDenialsAreOnRecordWithTheirIdentity() async throws {
        try await InProcessAPI.with { api in
            let log = (api.dir.path as NSString).appendingPathComponent("audit.log")
            let attributes = try FileManager.default.attributesOfItem(atPath: log)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
            var pod = TestObjects.pod("audited")
            pod.spec.containers[0].command = ["sh", "-c", "echo secret-marker"]
            _ = try await api.client.create(pod)
            _ = try await api.client.list(Pod.self, namespace: "default")  // a read: not on record
            _ = try await api.client.delete(Pod.self, namespace: "default", name: "audited", gracePeriodSeconds: 0)
            // Each denial is asked until it is answered (a refused create changes nothing, so a
            // second ask is safe): on a loaded machine a first connection may not get through,
            // and then there is nothing on record (a CI failure).
            func denied(_ client: APIClient, _ name: String) async -> Int {
                var code = -1
                for _ in 0..<3 where code != 403 {
                    code = await RBACServerTests.code { _ = try await client.create(TestObjects.pod(name)) }
                }
                return code
            }
            let alice = try RBACServerTests.client(api, user: "alice", groups: ["viewers"])
            #expect(await denied(alice, "denied") == 403)
            try? await alice.shutdown()
            let asBob = try APIClient(kubeconfig: try Kubeconfig.load(path: api.kubeconfigPath), timeout: InProcessAPI.deadline, maxAttempts: 1,
                                      impersonate: ("bob", []))
            #expect(await denied(asBob, "by-bob") == 403)
            try? await asBob.shutdown()

            let lines = try Self.lines(log)
            let mine = lines.filter { $0["resource"] == .string("pods") }
            try #require(mine.count == 4, "four changes of pods on record: \(mine)")
            #expect(mine.map { $0["verb"] } == [.string("create"), .string("delete"), .string("create"), .string("create")], "\(mine)")
            #expect(mine.map { $0["user"] } == [.string("admin"), .string("admin"), .string("alice"), .string("bob")])
            #expect(mine.map { $0["code"] } == [.int(201), .int(200), .int(403), .int(403)])
            #expect(mine[3]["impersonatedBy"] == .string("admin"))
            #expect(mine[1]["name"] == .string("audited") && mine[1]["namespace"] == .string("default") && mine[1]["sourceIP"] == .string("127.0.0.1"), "\(mine[1])")
            #expect(mine.allSatisfy { $0["requestID"] != nil && $0["requestID"] != .string("") && $0["latencyMs"] != nil && $0["time"] != nil })
            let ids = mine.compactMap { if case .string(let id) = $0["requestID"] { id } else { nil } }
            #expect(Set(ids).count == mine.count && ids.allSatisfy { $0.count == 36 && $0.split(separator: "-").map(\.count) == [8, 4, 4, 4, 12] },
                    "request ids are distinct and shaped as UUIDs: \(ids)")
            // A request without a client certificate (curl) is on record too, as anonymous.
            let curl = try #require(Tools.find("curl"))
            let anonymous = try await Tools.runDetached(curl, ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", "\(api.dir.path)/pki/ca.crt",
                                                               "https://127.0.0.1:\(api.port)/api/v1/namespaces/default/pods"])
            #expect(anonymous.output == "401")
            let last = try #require(try Self.lines(log).last)
            #expect(last["user"] == .string("system:anonymous") && last["code"] == .int(401) && last["verb"] == .string("list"), "\(last)")
            let text = try String(contentsOfFile: log, encoding: .utf8)
            #expect(!text.contains("secret-marker") && !text.contains("BEGIN"), "no bodies, no key material")
        }
    }

    @Test func theLogIsRotatedBySize() throws {
        let dir = TemporaryDirectory()
        let path = (dir.path as NSString).appendingPathComponent("audit.log")
        let log = try AuditLog(path: path, maxBytes: 2_000, keep: 2, logger: Logger(label: "test"))
        var attributes = RequestAttributes(user: "admin", groups: ["system:masters"], verb: "create")
        attributes.resource = "pods"
        attributes.namespace = "default"
        for i in 0..<60 {
            attributes.name = "pod-\(i)"
            log.record(AuditLog.Entry(requestID: "id-\(i)", user: "admin", groups: ["system:masters"], impersonatedBy: nil, sourceIP: "127.0.0.1",
                                      attributes: attributes, method: "POST", path: "/api/v1/namespaces/default/pods", code: 201, latencySeconds: 0.001))
        }
        let sizes = try [path, path + ".1", path + ".2"].map { try FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int ?? 0 }
        #expect(sizes.allSatisfy { $0 > 0 && $0 <= 2_000 }, "\(sizes)")
        #expect(!FileManager.default.fileExists(atPath: path + ".3"), "only `keep` old files")
        let newest = try Self.lines(path).last
        #expect(newest?["name"] == .string("pod-59"))
    }

    /// A log that cannot be written never stops auditing silently: the failure is counted and
    /// shown in /metrics, changes are refused (503) until a line goes on record again, and then
    /// they go on, on record.
    @Test func changesWaitForAWritableLog() async throws {
        let dir = TemporaryDirectory()
        let path = (dir.path as NSString).appendingPathComponent("audit.log")
        // Every write to /dev/full fails with ENOSPC: a full disk.
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: "/dev/full")
        let server = try await ServerHarness(dir: dir)
        defer { Task { await server.stop() } }
        let first = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("first"))
        #expect(first.code == 201, "the change under way when the disk filled is carried out (and in the server log): \(first.body)")
        let refused = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("second"))
        #expect(refused.code == 503 && refused.json?["reason"] == .string("ServiceUnavailable"), "\(refused.body)")
        #expect(try await server.request("/api/v1/namespaces/default/pods/second").code == 404, "a refused change is not carried out")
        #expect(try await server.request("/api/v1/namespaces/default/pods/first").code == 200, "reads go on")
        let metrics = try await server.request("/metrics").body
        #expect(metrics.contains("cox_audit_failing 1"), "\(metrics)")
        #expect(!metrics.contains("cox_audit_errors_total 0\n"))

        try FileManager.default.removeItem(atPath: path)  // the operator makes room
        let again = try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("third"))
        #expect(again.code == 201, "\(again.body)")
        let lines = try Self.lines(path)
        #expect(lines.first?["stage"] == .string("RequestReceived") && lines.first?["user"] == .string("admin"), "\(lines)")
        #expect(lines.count == 2 && lines.last?["verb"] == .string("create") && lines.last?["code"] == .int(201)
                && lines.last?["requestID"] == lines.first?["requestID"], "the received line, then the change's own: \(lines)")
        #expect(try await server.request("/metrics").body.contains("cox_audit_failing 0"))
        await server.stop()
    }
}
