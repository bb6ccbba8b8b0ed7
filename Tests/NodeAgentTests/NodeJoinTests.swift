import API
import Client
import Foundation
import PKI
import Testing
import TestSupport

/// A second host joining as `cox agent --server --token --ca-cert-hash` would: real `cox`
/// processes on loopback, the node certificate short-lived so its renewal happens in the test.
@Suite(.serialized, .watchdog) struct NodeJoinTests {
    @Test func aHostJoinsWithATokenRefusesAWrongCAAndRenewsItsCertificate() async throws {
        try await AgentCluster.run(serverArguments: ["--node-cert-lifetime", "15s"], firstAgent: false) { cluster in
            let printed = try await cluster.cox("token", "create", "--print-join-command")
            let words = printed.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").map(String.init)
            try #require(words.count == 8 && words[0...1] == ["cox", "agent"], "\(printed.output)")
            let (server, token, hash) = (words[3], words[5], words[7])
            let data = (cluster.dir.path as NSString).appendingPathComponent("agent-j1")
            let node = ["--node-name", "j1", "--data-dir", data, "--runtime", "fake", "--port", "0", "--heartbeat-seconds", "1"]

            // A wrong CA hash: refused before anything is sent, with both hashes named.
            let wrongHash = "sha256:" + String(repeating: "0", count: 64)
            let refused = try await Tools.runDetached(cluster.binary, ["agent", "--server", server, "--token", token, "--ca-cert-hash", wrongHash] + node)
            #expect(refused.status == 1 && refused.output.contains("refusing to join") && refused.output.contains(hash), "\(refused.output)")
            #expect(!FileManager.default.fileExists(atPath: "\(data)/node.kubeconfig"))
            // An unknown token with the right hash: the server refuses it, and the agent says what to do.
            let unknown = try await Tools.runDetached(cluster.binary, ["agent", "--server", server, "--token", "abcdef.0123456789abcdef", "--ca-cert-hash", hash] + node)
            #expect(unknown.status == 1 && unknown.output.contains("refused the bootstrap token"), "\(unknown.output)")
            #expect(try await cluster.client.list(Node.self, namespace: nil).items.isEmpty)

            // The right command: the node joins, with keys only its owner can read.
            cluster.agents["j1"] = try cluster.launch(["agent", "--server", server, "--token", token, "--ca-cert-hash", hash] + node, log: "agent-j1.log")
            try await eventually("node j1 is Ready") { try await Self.ready(cluster, "j1") }
            for key in ["node.key", "serving.key"] {
                let mode = try FileManager.default.attributesOfItem(atPath: "\(data)/pki/\(key)")[.posixPermissions] as? Int
                #expect(mode == 0o600, "\(key) mode \(String(mode ?? 0, radix: 8))")
            }
            var pod = TestObjects.pod("on-j1")
            pod.spec.nodeName = "j1"
            _ = try await cluster.client.create(pod)
            try await eventually("the pod on j1 runs") { try await cluster.get("on-j1").status.phase == "Running" }

            // The node acts as itself (not the admin), and renews its certificate before it expires.
            let audit = try String(contentsOfFile: "\(cluster.dir.path)/audit.log", encoding: .utf8)
            #expect(audit.contains(#""user":"cox:node:j1""#) && !audit.contains(token.split(separator: ".")[1]))
            let first = try String(contentsOfFile: "\(data)/pki/node.crt", encoding: .utf8)
            let expiry = try CertificateRequest.notValidAfter(first)
            try await eventually("the node certificate is renewed", timeout: 30) {
                (try? String(contentsOfFile: "\(data)/pki/node.crt", encoding: .utf8)) != first
            }
            #expect(Date() < expiry, "renewed before the old certificate expired")
            var second = TestObjects.pod("after-renewal")
            second.spec.nodeName = "j1"
            _ = try await cluster.client.create(second)
            try await eventually("a pod placed after the renewal runs") { try await cluster.get("after-renewal").status.phase == "Running" }
            #expect(try await Self.ready(cluster, "j1"))

            // Restarted without the token, the agent uses the credentials it has.
            if let agent = cluster.agents.removeValue(forKey: "j1") {
                kill(agent.pid, SIGTERM)
                await agent.wait()
            }
            cluster.agents["j1"] = try cluster.launch(["agent"] + node, log: "agent-j1-again.log")
            var third = TestObjects.pod("after-restart")
            third.spec.nodeName = "j1"
            _ = try await cluster.client.create(third)
            try await eventually("a pod placed after the restart runs") { try await cluster.get("after-restart").status.phase == "Running" }
            #expect(!cluster.log("agent-j1-again").contains("error"), "\(cluster.log("agent-j1-again"))")
        }
    }

    static func ready(_ cluster: AgentCluster, _ name: String) async throws -> Bool {
        let node = try? await cluster.client.get(Node.self, namespace: "", name: name)
        return node?.status.conditions.first { $0.type == "Ready" }?.status == "True"
    }
}
