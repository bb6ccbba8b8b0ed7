import API
import APIServer
import Client
import Foundation
import Logging
import NodeAgent
import PKI
import Store
import SwiftProtobuf
import Testing
import TestSupport

/// Issue #7's negative matrix, each row asserted against a real server over TLS: who is refused,
/// with which code, and that the refusal is not an accident of a missing object.
@Suite(.serialized, .watchdog) struct SecurityMatrixTests {
    typealias R = RBACServerTests

    static func tokenClient(_ api: InProcessAPI, _ token: String, server: String? = nil) throws -> APIClient {
        let admin = try Kubeconfig.load(path: api.kubeconfigPath)
        return try APIClient(kubeconfig: Kubeconfig(server: server ?? admin.server, caPEM: admin.caPEM, user: "token", token: token),
                             timeout: .seconds(10), maxAttempts: 1)
    }

    static func boundPod(_ name: String, node: String) -> Pod {
        var pod = TestObjects.pod(name)
        pod.spec.nodeName = node
        return pod
    }

    static func clientRequest(commonName: String, organizations: [String]) throws -> String {
        try CertificateRequest.make(commonName: commonName, organizations: organizations).requestPEM
    }

    /// Directly, and through a TCP proxy (the fallacy "the network is secure": a network path
    /// in between changes nothing about who may do what).
    @Test(arguments: [false, true]) func everyRowOfTheNegativeMatrixIsRefused(throughProxy: Bool) async throws {
        try await InProcessAPI.with { api in
            let proxy = throughProxy ? try await FaultProxy(port: api.port, seed: 5) : nil
            defer { if let proxy { Task { await proxy.close() } } }
            let port = proxy?.port ?? api.port
            let server = "https://127.0.0.1:\(port)"
            let admin = api.client
            for name in ["a", "b"] { _ = try await admin.create(TestObjects.node(name)) }
            _ = try await admin.create(Self.boundPod("on-a", node: "a"))
            _ = try await admin.create(Self.boundPod("on-b", node: "b"))

            // No credentials: 401, except the two health paths.
            let curl = try #require(Tools.find("curl"))
            let pki = (api.dir.path as NSString).appendingPathComponent("pki")
            func anonymous(_ path: String) async throws -> String {
                try await Tools.runDetached(curl, ["-s", "--cacert", "\(pki)/ca.crt", "-o", "/dev/null", "-w", "%{http_code}",
                                                   "\(server)\(path)"]).output
            }
            #expect(try await anonymous("/api/v1/namespaces/default/pods") == "401")
            #expect(try await anonymous("/metrics") == "401")
            #expect(try await anonymous("/livez") == "200")

            // A viewer writing: 403 (while reading works, so the identity itself is fine).
            var binding = RoleBinding()
            binding.metadata.namespace = "default"
            binding.metadata.name = "viewers"
            binding.roleRef.kind = "ClusterRole"
            binding.roleRef.name = "view"
            binding.subjects = [RBACRuleTests.subject("Group", "viewers")]
            _ = try await admin.create(binding)
            let viewer = try R.client(api, user: "vera", groups: ["viewers"], server: server)
            defer { Task { try? await viewer.shutdown() } }
            try await waitUntil("the viewer binding takes effect") { await R.code { _ = try await viewer.list(Pod.self, namespace: "default") } == 200 }
            #expect(await R.code { _ = try await viewer.create(TestObjects.pod("new")) } == 403)
            #expect(await R.code { _ = try await viewer.delete(Pod.self, namespace: "default", name: "on-a") } == 403)

            // Node a: its own Node, Lease and pods; nothing of node b's.
            let nodeA = try R.client(api, user: "cox:node:a", groups: ["cox:nodes"], server: server)
            defer { Task { try? await nodeA.shutdown() } }
            var ownNode = try await nodeA.get(Node.self, namespace: "", name: "a")
            ownNode.metadata.labels["checked"] = "yes"
            #expect(await R.code { _ = try await nodeA.update(ownNode) } == 200)
            #expect(await R.code { _ = try await nodeA.updateStatus(try await nodeA.get(Node.self, namespace: "", name: "a")) } == 200)
            var otherNode = try await admin.get(Node.self, namespace: "", name: "b")
            otherNode.spec.unschedulable = true
            #expect(await R.code { _ = try await nodeA.update(otherNode) } == 403, "node a writing node b's Node")
            #expect(await R.code { _ = try await nodeA.updateStatus(otherNode) } == 403, "node a writing node b's Node status")
            #expect(await R.code { _ = try await nodeA.get(Node.self, namespace: "", name: "b") } == 403)
            #expect(await R.code { _ = try await nodeA.create(TestObjects.node("c")) } == 403, "node a registering another node")
            #expect(await R.code { _ = try await nodeA.list(Node.self, namespace: nil) } == 403)

            var ownPod = try await nodeA.get(Pod.self, namespace: "default", name: "on-a")
            ownPod.status.phase = "Running"
            #expect(await R.code { _ = try await nodeA.updateStatus(ownPod) } == 200)
            #expect(await R.code { _ = try await nodeA.get(Pod.self, namespace: "default", name: "on-b") } == 403, "node a reading a pod bound to b")
            var foreignPod = try await admin.get(Pod.self, namespace: "default", name: "on-b")
            foreignPod.status.phase = "Failed"
            #expect(await R.code { _ = try await nodeA.updateStatus(foreignPod) } == 403, "node a writing a pod bound to b")
            #expect(await R.code { _ = try await nodeA.delete(Pod.self, namespace: "default", name: "on-b") } == 403)
            #expect(await R.code { _ = try await nodeA.list(Pod.self, namespace: nil) } == 403, "node a listing every pod")
            #expect(await R.code { _ = try await nodeA.list(Pod.self, namespace: nil, fieldSelector: "spec.nodeName=b") } == 403)
            let mine = try await nodeA.list(Pod.self, namespace: nil, fieldSelector: "spec.nodeName=a").items.map(\.metadata.name)
            #expect(mine == ["on-a"])
            #expect(await R.code { _ = try await nodeA.create(TestObjects.pod("sneaky")) } == 403)
            var lease = Lease()
            lease.metadata.namespace = "kube-node-lease"
            lease.metadata.name = "a"
            #expect(await R.code { _ = try await nodeA.create(lease) } == 200)
            lease.metadata.name = "b"
            #expect(await R.code { _ = try await nodeA.create(lease) } == 403, "node a writing node b's Lease")
            #expect(try await admin.get(Pod.self, namespace: "default", name: "on-b").status.phase != "Failed", "b's pod untouched")

            // Secrets and ConfigMaps: only those a pod bound to the node takes its environment from.
            for name in ["for-a", "for-b"] {
                var secret = Secret()
                secret.metadata.name = name
                secret.metadata.namespace = "default"
                secret.stringData = ["k": "v"]
                _ = try await admin.create(secret)
            }
            var referencing = Self.boundPod("with-secret", node: "a")
            var fromSecret = EnvVar()
            fromSecret.name = "K"
            fromSecret.valueFrom.secretKeyRef.name = "for-a"
            fromSecret.valueFrom.secretKeyRef.key = "k"
            referencing.spec.containers[0].env = [fromSecret]
            _ = try await admin.create(referencing)
            #expect(await R.code { _ = try await nodeA.get(Secret.self, namespace: "default", name: "for-a") } == 200)
            #expect(await R.code { _ = try await nodeA.get(Secret.self, namespace: "default", name: "for-b") } == 403, "a secret no pod of a's names")
            #expect(await R.code { _ = try await nodeA.list(Secret.self, namespace: "default") } == 403, "node a listing secrets")
            #expect(await R.code { _ = try await nodeA.get(ConfigMap.self, namespace: "default", name: "for-a") } == 403, "a config map no pod of a's names")

            // Tokens: a valid one works; an expired or revoked one is 401.
            let live = try await TokenFixtures.create(admin, user: "robot", expires: Date().addingTimeInterval(3600))
            let expired = try await TokenFixtures.create(admin, user: "robot", expires: Date().addingTimeInterval(-1))
            var robotBinding = binding
            robotBinding.metadata.name = "robot"
            robotBinding.subjects = [RBACRuleTests.subject("User", "robot")]
            _ = try await admin.create(robotBinding)
            let liveClient = try Self.tokenClient(api, live, server: server)
            defer { Task { try? await liveClient.shutdown() } }
            try await waitUntil("the robot binding takes effect") { await R.code { _ = try await liveClient.list(Pod.self, namespace: "default") } == 200 }
            #expect(await R.code { _ = try await liveClient.create(TestObjects.pod("by-robot")) } == 403, "a token is held to its user's roles")
            let expiredClient = try Self.tokenClient(api, expired, server: server)
            defer { Task { try? await expiredClient.shutdown() } }
            #expect(await R.code { _ = try await expiredClient.list(Pod.self, namespace: "default") } == 401, "an expired token")
            _ = try await admin.delete(Token.self, namespace: "", name: String(live.prefix(6)))
            #expect(await R.code { _ = try await liveClient.list(Pod.self, namespace: "default") } == 401, "a revoked token")
            let guessed = try Self.tokenClient(api, String(expired.prefix(7)) + "0000000000000000", server: server)
            defer { Task { try? await guessed.shutdown() } }
            #expect(await R.code { _ = try await guessed.list(Pod.self, namespace: "default") } == 401, "a known ID with a wrong secret")

            // A bootstrap token may ask for a node client certificate and nothing else.
            let bootstrap = try await TokenFixtures.create(admin, user: nil, expires: Date().addingTimeInterval(600))
            let joining = try Self.tokenClient(api, bootstrap, server: server)
            defer { Task { try? await joining.shutdown() } }
            #expect(await R.code { _ = try await joining.list(Pod.self, namespace: "default") } == 403)
            let me = try await joining.whoAmI()
            #expect(me.user == "system:bootstrap:\(bootstrap.prefix(6))" && me.groups == ["system:bootstrappers", "system:authenticated"], "\(me)")
            let issued = try await joining.requestCertificate(try Self.clientRequest(commonName: "cox:node:c", organizations: ["cox:nodes"]),
                                                              signerName: "kubernetes.io/kube-apiserver-client-kubelet", usages: ["client auth"])
            #expect(issued.contains("BEGIN CERTIFICATE"))
            let masters = await R.code {
                _ = try await joining.requestCertificate(try Self.clientRequest(commonName: "admin", organizations: ["system:masters"]),
                                                         signerName: "kubernetes.io/kube-apiserver-client-kubelet", usages: ["client auth"])
            }
            #expect(masters == 422, "a bootstrap token asking for an admin certificate")
            #expect(await R.code {
                _ = try await joining.requestCertificate(try CertificateRequest.make(commonName: "cox:node:c", organizations: ["cox:nodes"], ipAddresses: ["127.0.0.1"]).requestPEM,
                                                         signerName: "kubernetes.io/kubelet-serving", usages: ["server auth"])
            } == 403, "a bootstrap token asking for a serving certificate")
            #expect(await R.code {
                _ = try await nodeA.requestCertificate(try Self.clientRequest(commonName: "cox:node:b", organizations: ["cox:nodes"]),
                                                       signerName: "kubernetes.io/kube-apiserver-client-kubelet", usages: ["client auth"])
            } == 403, "node a asking for node b's certificate")
            #expect(await R.code { _ = try await viewer.requestCertificate(try Self.clientRequest(commonName: "cox:node:v", organizations: ["cox:nodes"]),
                                                                           signerName: "kubernetes.io/kube-apiserver-client-kubelet", usages: ["client auth"]) } == 403)

            // A joining agent given the wrong CA hash refuses before it sends anything, and says why.
            let caPEM = try String(contentsOfFile: "\(pki)/ca.crt", encoding: .utf8)
            let rightHash = try CertificateAuthority.publicKeyHash(ofPEM: caPEM)
            let wrongHash = "sha256:" + String(repeating: "0", count: 64)
            do {
                _ = try await NodeCredentials.pinCA(server: server, expectedHash: wrongHash)
                Issue.record("an agent pinned a CA whose hash does not match")
            } catch let error as NodeCredentials.JoinError {
                #expect(error.description.contains("refusing to join") && error.description.contains(rightHash), "\(error)")
            }
            let pinned = try await NodeCredentials.pinCA(server: server, expectedHash: rightHash)
            #expect(try CertificateAuthority.publicKeyHash(ofPEM: pinned) == rightHash)

            // A client certificate from another CA is refused in the TLS handshake (no HTTP answer at all).
            let other = TemporaryDirectory()
            let foreign = try PKIForTests.bootstrap(other.path)
            let rejected = try await Tools.runDetached(curl, ["-sS", "--cacert", "\(pki)/ca.crt", "--cert", "\(foreign)/admin.crt", "--key", "\(foreign)/admin.key",
                                                              "-o", "/dev/null", "-w", "%{http_code}", "\(server)/api/v1/namespaces/default/pods"])
            #expect(rejected.status != 0 && rejected.output.hasSuffix("000"), "\(rejected.output)")

            // Nothing any refused identity tried took effect, and the audit log never holds a token.
            let names = try await admin.list(Pod.self, namespace: "default").items.map(\.metadata.name).sorted()
            #expect(names == ["on-a", "on-b", "with-secret"])
            let audit = try String(contentsOfFile: (api.dir.path as NSString).appendingPathComponent("audit.log"), encoding: .utf8)
            for token in [live, expired, bootstrap] { #expect(!audit.contains(String(token.dropFirst(7))), "a token secret in the audit log") }
            #expect(audit.contains(#""user":"cox:node:a""#) && audit.contains(#""code":403"#))
            #expect(audit.contains(#""user":"system:bootstrap:\#(bootstrap.prefix(6))""#), "the bootstrap token's identity is on record")
            if let proxy { #expect(proxy.counters.connections >= 5, "the requests went through the proxy: \(proxy.counters)") }
        }
    }
}

@Suite(.watchdog) struct TokenCleanerTests {
    @Test func expiredTokensAreDeletedAndTheOthersKept() async throws {
        let dir = TemporaryDirectory()
        let store = try SQLiteStore(directory: dir.path, logger: Logger(label: "test"))
        defer { store.close() }
        let now = Date()
        func token(_ id: String, expires: Date?, user: String? = "robot") -> Token {
            var token = Token()
            token.metadata.name = id
            token.spec.usage = user == nil ? TokenFormat.bootstrap : TokenFormat.authentication
            token.spec.user = user ?? ""
            token.spec.secretHash = Token.hash(id + ".0123456789abcdef")
            if let expires { token.spec.expires = Google_Protobuf_Timestamp(date: expires) }
            token.applyDefaults()
            return token
        }
        for object in [token("old111", expires: now.addingTimeInterval(-60), user: nil), token("new111", expires: now.addingTimeInterval(60)),
                       token("forevr", expires: nil)] {
            _ = try await store.create(try object.validated())
        }
        #expect(try await TokenCleaner.sweep(store, now: now) == ["old111"])
        let left = try await store.list(Token.self, options: ListOptions()).items.map(\.metadata.name).sorted()
        #expect(left == ["forevr", "new111"])
        #expect(try await TokenCleaner.sweep(store, now: now.addingTimeInterval(120)) == ["new111"])
    }

    @Test func tokensAreValidatedAndNeverAcceptedAsSystemIdentities() throws {
        var token = Token()
        token.metadata.name = "abc123"
        token.spec.usage = TokenFormat.authentication
        token.spec.user = "system:kube-scheduler"
        token.spec.secretHash = "sha256:xyz"
        let errors = token.validate().map(\.description)
        #expect(errors.contains { $0.hasPrefix("spec.secretHash: Invalid value") }, "\(errors)")
        #expect(errors.contains { $0.contains("tokens may not act as system: identities") }, "\(errors)")
        token.spec.user = ""
        token.spec.usage = TokenFormat.bootstrap
        token.spec.secretHash = Token.hash("abc123.0123456789abcdef")
        #expect(token.validate().map(\.description) == ["spec.expires: Required value: bootstrap tokens must expire"])
        #expect(TokenFormat.parse("abc123.0123456789abcdef") != nil && TokenFormat.parse("ABC123.0123456789abcdef") == nil)
        #expect(TokenFormat.parse(TokenFormat.generate()) != nil)
    }
}

enum TokenFixtures {
    /// A token made directly (any expiry, also a past one); nil user: a bootstrap token.
    static func create(_ admin: APIClient, user: String?, expires: Date) async throws -> String {
        let secret = TokenFormat.generate()
        var token = Token()
        token.metadata.name = String(secret.prefix(6))
        token.spec.usage = user == nil ? TokenFormat.bootstrap : TokenFormat.authentication
        token.spec.user = user ?? ""
        token.spec.secretHash = Token.hash(secret)
        token.spec.expires = Google_Protobuf_Timestamp(date: expires)
        _ = try await admin.create(token)
        return secret
    }
}
