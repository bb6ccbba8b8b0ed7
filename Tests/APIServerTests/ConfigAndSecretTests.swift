import API
import Foundation
import Testing
import TestSupport

/// ConfigMaps, Secrets and ServiceAccounts as Kubernetes has them, Secrets encrypted on disk.
@Suite("ConfigMaps, Secrets, ServiceAccounts", .watchdog, .serialized)
struct ConfigAndSecretTests {
    @Test func secretsAreBase64OnTheWireAndEncryptedOnDisk() async throws {
        let server = try await ServerHarness()
        let secrets = "/api/v1/namespaces/default/secrets"
        // stringData is merged into data (it wins) and never stored or read back.
        let created = try await server.request("POST", secrets, body: #"{"metadata":{"name":"db"},"data":{"user":"YWRtaW4="},"stringData":{"password":"hunter2-plain"}}"#)
        #expect(created.code == 201, "\(created.body)")
        let secret = try Secret(jsonString: try await server.request(secrets + "/db").body)
        #expect(secret.type == "Opaque" && secret.stringData.isEmpty)
        #expect(secret.data == ["user": "YWRtaW4=", "password": Data("hunter2-plain".utf8).base64EncodedString()])
        // Not in the database file in the clear, in any form.
        let database = try Data(contentsOf: URL(fileURLWithPath: (server.dir.path as NSString).appendingPathComponent("state.db")))
        let wal = (try? Data(contentsOf: URL(fileURLWithPath: (server.dir.path as NSString).appendingPathComponent("state.db-wal")))) ?? Data()
        for needle in ["hunter2-plain", Data("hunter2-plain".utf8).base64EncodedString()] {
            #expect(database.range(of: Data(needle.utf8)) == nil && wal.range(of: Data(needle.utf8)) == nil, "\(needle) is on disk in the clear")
        }
        #expect(wal.range(of: Data("cox:enc:aesgcm:v1:key1:".utf8)) != nil || database.range(of: Data("cox:enc:aesgcm:v1:key1:".utf8)) != nil)
        let key = try FileManager.default.attributesOfItem(atPath: (server.dir.path as NSString).appendingPathComponent("secrets.key"))
        #expect((key[.posixPermissions] as? Int) == 0o600)
        // Not base64: refused, naming the key and not the value.
        let bad = try await server.request("POST", secrets, body: #"{"metadata":{"name":"bad"},"data":{"k":"not base64!"}}"#)
        #expect(bad.code == 422 && bad.body.contains("data[k]") && !bad.body.contains("not base64!"), "\(bad.body)")
        // The type never changes; immutable data stays as it is.
        let retype = try await server.request("PATCH", secrets + "/db", body: #"{"type":"kubernetes.io/tls"}"#, contentType: "application/merge-patch+json")
        #expect(retype.code == 422 && retype.body.contains("type: Invalid value: \\\"kubernetes.io/tls\\\": field is immutable"), "\(retype.body)")
        #expect(try await server.request("PATCH", secrets + "/db", body: #"{"immutable":true}"#, contentType: "application/merge-patch+json").code == 200)
        let frozen = try await server.request("PATCH", secrets + "/db", body: #"{"stringData":{"password":"new"}}"#, contentType: "application/merge-patch+json")
        #expect(frozen.code == 422 && frozen.body.contains("data: Forbidden: field is immutable when `immutable` is set"), "\(frozen.body)")
        await server.stop()
        // Read back after a restart, with the key from the data directory.
        let again = try await ServerHarness(dir: server.dir)
        #expect(try Secret(jsonString: try await again.request(secrets + "/db").body).data["password"] == Data("hunter2-plain".utf8).base64EncodedString())
        await again.stop()
    }

    @Test func configMapsServiceAccountsAndTheDefaultAccount() async throws {
        let server = try await ServerHarness()
        let maps = "/api/v1/namespaces/default/configmaps"
        #expect(try await server.request("POST", maps, body: #"{"metadata":{"name":"app"},"data":{"mode":"fast"},"binaryData":{"blob":"AAEC"}}"#).code == 201)
        let duplicate = try await server.request("POST", maps, body: #"{"metadata":{"name":"dup"},"data":{"k":"1"},"binaryData":{"k":"AAEC"}}"#)
        #expect(duplicate.code == 422 && duplicate.body.contains("binaryData: Invalid value: \\\"k\\\": duplicate of key present in data"), "\(duplicate.body)")
        let badKey = try await server.request("POST", maps, body: #"{"metadata":{"name":"key"},"data":{"no/slash":"1"}}"#)
        #expect(badKey.code == 422 && badKey.body.contains("a valid config key must consist of alphanumeric characters"), "\(badKey.body)")
        // Every namespace has a default service account, a new one too; pods run as it.
        #expect(try await server.request("/api/v1/namespaces/kube-system/serviceaccounts/default").code == 200)
        #expect(try await server.request("POST", "/api/v1/namespaces", body: #"{"metadata":{"name":"team"}}"#).code == 201)
        #expect(try await server.request("/api/v1/namespaces/team/serviceaccounts/default").code == 200)
        let pod = try Pod(jsonString: try await server.request("POST", "/api/v1/namespaces/team/pods", body: podJSON("p", namespace: "team")).body)
        #expect(pod.spec.serviceAccountName == "default")
        await server.stop()
    }
}
