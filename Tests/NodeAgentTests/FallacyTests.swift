import API
import Client
import Foundation
import PKI
import ControllerRuntime
import Testing
import TestSupport

/// The eight fallacies of distributed computing, each a scenario against real `cox` processes on
/// loopback with a `FaultProxy` between the parties. Each test would fail if the rule it names
/// were broken; the README's fallacy table points here. Each runs twice: on a server with the
/// embedded store, and on one that keeps its state in etcd (`EtcdFallacyTests` puts the faults
/// between that server and etcd).
/// Where the cluster's server keeps its state.
enum ClusterStore: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case etcd
    var testDescription: String { rawValue }
    /// etcd members to start (behind fault proxies) for `AgentCluster`.
    var etcdMembers: Int { self == .etcd ? 1 : 0 }
}

@Suite(.serialized, .watchdog) struct FallacyTests {
    /// The admin's kubeconfig, pointed at the proxy instead of the server.
    static func throughProxy(_ cluster: AgentCluster, _ proxy: FaultProxy) throws -> Kubeconfig {
        var kubeconfig = try Kubeconfig.load(path: cluster.kubeconfig)
        kubeconfig.server = "https://127.0.0.1:\(proxy.port)"
        return kubeconfig
    }

    static func writeKubeconfig(_ kubeconfig: Kubeconfig, _ cluster: AgentCluster, _ name: String) throws -> String {
        let path = (cluster.dir.path as NSString).appendingPathComponent(name)
        try kubeconfig.write(to: path)
        return path
    }

    /// 1. The network is reliable. Every third new connection is reset and every open one is cut
    /// each second, while 500 pods are applied and then re-applied with a change (1,000 applies):
    /// each apply takes effect exactly once (one object per name, its uid never replaced, the
    /// change present), and an informer that followed it all through the same faults ends equal
    /// to the server's list.
    @Test(arguments: ClusterStore.allCases) func theNetworkIsReliable(_ store: ClusterStore) async throws {
        try await AgentCluster.run(serverArguments: ["--no-scheduler"], firstAgent: false, etcdMembers: store.etcdMembers) { cluster in
            let proxy = try await FaultProxy(port: cluster.port, seed: 1)
            defer { Task { await proxy.close() } }
            proxy.set(.init(resetEveryNthConnection: 3))
            let client = try APIClient(kubeconfig: try Self.throughProxy(cluster, proxy), timeout: .seconds(20), connectTimeout: .seconds(2))
            defer { Task { try? await client.shutdown() } }
            let informer = Informer<Pod>(client: client)
            let following = Task { await informer.run() }
            defer { following.cancel() }
            let cutting = Task {
                while !Task.isCancelled {
                    try await Task.sleep(for: .seconds(1))
                    proxy.dropConnections()
                }
            }
            defer { cutting.cancel() }

            let count = 500
            var uids: [String: String] = [:]
            var failures = 0
            for round in 1...2 {
                for index in 0..<count {
                    var pod = TestObjects.pod("p\(index)", labels: ["round": "\(round)"])
                    pod.spec.terminationGracePeriodSeconds = 1
                    // A caller that is told "failed" tries again, as a person or script would.
                    var done = false
                    for _ in 0..<20 where !done {
                        do {
                            try await client.apply(pod)
                            done = true
                        } catch {
                            failures += 1
                        }
                    }
                    #expect(done, "p\(index) was never applied")
                    if round == 1, let stored = try? await cluster.client.get(Pod.self, namespace: "default", name: "p\(index)") {
                        uids[stored.metadata.name] = stored.metadata.uid
                    }
                }
            }
            cutting.cancel()
            let stored = try await cluster.client.list(Pod.self, namespace: "default").items
            #expect(stored.count == count, "one pod per name")
            #expect(stored.allSatisfy { $0.metadata.labels["round"] == "2" }, "no update lost")
            #expect(stored.allSatisfy { uids[$0.metadata.name] == $0.metadata.uid }, "no pod replaced by a second create")
            let counters = proxy.counters
            #expect(counters.resets > 0 && counters.drops > 0, "the faults happened: \(counters)")
            try await eventually("the informer's cache equals the server's list", timeout: 30) {
                let server = try await cluster.client.list(Pod.self, namespace: "default").items
                let cached = informer.list(namespace: "default")
                return Dictionary(uniqueKeysWithValues: server.map { ($0.metadata.name, $0.metadata.resourceVersion) })
                    == Dictionary(uniqueKeysWithValues: cached.map { ($0.metadata.name, $0.metadata.resourceVersion) })
            }
            print("fallacy 1 (\(store)): \(counters.connections) connections, \(counters.resets) reset, \(counters.drops) cut; \(failures) applies reported failure and were repeated")
        }
    }

    /// 2. Latency is zero. With 300 ms added each way, `cox get` and `cox apply` still finish
    /// inside their deadlines; with more latency than a call's deadline, the error names the
    /// deadline; a `cox get -w` that is interrupted frees its server-side watch within a second.
    @Test(arguments: ClusterStore.allCases) func latencyIsZero(_ store: ClusterStore) async throws {
        try await AgentCluster.run(serverArguments: ["--no-scheduler"], firstAgent: false, etcdMembers: store.etcdMembers) { cluster in
            let proxy = try await FaultProxy(port: cluster.port, seed: 2)
            defer { Task { await proxy.close() } }
            proxy.set(.init(latency: .milliseconds(300), jitter: .milliseconds(50)))
            let slow = try Self.writeKubeconfig(try Self.throughProxy(cluster, proxy), cluster, "slow.kubeconfig")
            let manifest = (cluster.dir.path as NSString).appendingPathComponent("pod.yaml")
            try TestObjects.pod("slow").jsonString().write(toFile: manifest, atomically: true, encoding: .utf8)
            let applied = try await Tools.runDetached(cluster.binary, ["apply", "-f", manifest, "--kubeconfig", slow])
            #expect(applied.status == 0 && applied.output.contains("pod/slow created"), "\(applied.output)")
            let got = try await Tools.runDetached(cluster.binary, ["get", "pods", "--kubeconfig", slow])
            #expect(got.status == 0 && got.output.contains("slow"), "\(got.output)")

            // Slower than the deadline: a timeout that says which deadline.
            proxy.set(.init(latency: .seconds(3)))
            let timedOut = try await Tools.runDetached(cluster.binary, ["get", "pods", "--kubeconfig", slow, "--request-timeout", "1s"])
            #expect(timedOut.status != 0 && timedOut.output.contains("within the deadline of 1 s"), "\(timedOut.output)")

            // An interrupted watch is let go by the server at once.
            proxy.set(.init(latency: .milliseconds(300)))
            let before = try await Self.watchers(cluster)
            let watcher = try cluster.launch(["get", "pods", "-w", "--kubeconfig", slow], log: "watch.log")
            try await eventually("the watch is open on the server") { try await Self.watchers(cluster) == before + 1 }
            kill(watcher.pid, SIGINT)
            await watcher.wait()
            let stopped = Date()
            try await eventually("the server-side watch is freed", timeout: 5) { try await Self.watchers(cluster) == before }
            let freed = Date().timeIntervalSince(stopped)
            #expect(freed < 1, "freed \(freed) s after Ctrl-C")
            print("fallacy 2 (\(store)): the watch was freed \(String(format: "%.2f", freed)) s after Ctrl-C (polling included)")
        }
    }

    /// Lists the default namespace's pods, then watches from a revision for a second, with the
    /// Python `kubernetes` client; prints `LIST|TYPE name revision labels` lines.
    static let pythonClient = """
        import sys
        from kubernetes import client, config, watch
        config.load_kube_config(config_file=sys.argv[1])
        api = client.CoreV1Api()
        def line(kind, pod):
            labels = ",".join(f"{k}={v}" for k, v in sorted((pod.metadata.labels or {}).items()))
            print(f"{kind} {pod.metadata.name} {pod.metadata.resource_version} {labels}")
        for pod in sorted(api.list_namespaced_pod("default").items, key=lambda p: p.metadata.name):
            line("LIST", pod)
        for event in watch.Watch().stream(api.list_namespaced_pod, "default", resource_version=sys.argv[2], timeout_seconds=1):
            if event["type"] != "BOOKMARK":
                line(event["type"], event["object"])
        """

    static func watchers(_ cluster: AgentCluster) async throws -> Int {
        try await metric(cluster, "cox_apiserver_watchers")
    }

    /// 6. There is one administrator. Two users change the same Deployment from the same
    /// revision: one write wins, the other gets 409 Conflict, re-reads and applies its change on
    /// top — both changes survive, and the audit log shows each user's writes.
    @Test(arguments: ClusterStore.allCases) func thereIsOneAdministrator(_ store: ClusterStore) async throws {
        try await AgentCluster.run(serverArguments: ["--no-scheduler", "--no-controllers"], firstAgent: false, etcdMembers: store.etcdMembers) { cluster in
            _ = try await cluster.client.create(TestObjects.deployment("shared"))
            let authority = try ClusterPKI.loadAuthority(directory: "\(cluster.dir.path)/pki")
            let admin = try Kubeconfig.load(path: cluster.kubeconfig)
            func user(_ name: String) throws -> APIClient {
                let identity = try authority.issue(commonName: name, organizations: ["system:masters"], usage: .client)
                return try APIClient(kubeconfig: Kubeconfig(server: admin.server, caPEM: admin.caPEM, user: name,
                                                            clientCertificatePEM: identity.certificatePEM, clientKeyPEM: identity.privateKeyPEM),
                                     timeout: .seconds(10), maxAttempts: 1)
            }
            let alice = try user("alice"), bob = try user("bob")
            defer { Task { try? await alice.shutdown(); try? await bob.shutdown() } }
            var byAlice = try await alice.get(Deployment.self, namespace: "default", name: "shared")
            var byBob = try await bob.get(Deployment.self, namespace: "default", name: "shared")
            byAlice.spec.replicas = 3
            byBob.metadata.labels["owner"] = "bob"
            _ = try await alice.update(byAlice)
            do {
                _ = try await bob.update(byBob)
                Issue.record("bob's write from a stale revision was accepted: alice's change would be lost")
            } catch let error as ClientError {
                #expect(error.code == 409, "\(error)")
            }
            // Bob retries on fresh state.
            try await bob.modify(Deployment.self, namespace: "default", name: "shared", attempts: 3) { $0.metadata.labels["owner"] = "bob" }
            let final = try await cluster.client.get(Deployment.self, namespace: "default", name: "shared")
            #expect(final.spec.replicas == 3 && final.metadata.labels["owner"] == "bob", "both changes survive")
            let audit = try String(contentsOfFile: "\(cluster.dir.path)/audit.log", encoding: .utf8).split(separator: "\n")
            let updates = audit.filter { $0.contains(#""resource":"deployments""#) && $0.contains(#""verb":"update""#) }
            #expect(updates.contains { $0.contains(#""user":"alice""#) && $0.contains(#""code":200"#) }, "\(updates)")
            #expect(updates.contains { $0.contains(#""user":"bob""#) && $0.contains(#""code":409"#) }, "\(updates)")
            #expect(updates.contains { $0.contains(#""user":"bob""#) && $0.contains(#""code":200"#) }, "\(updates)")
        }
    }

    /// 8. The network is homogeneous. Clients that speak only JSON (curl; the Python `kubernetes`
    /// client from PyPI) and one that speaks only protobuf (`cox`'s client) see the same objects
    /// and the same watch events.
    @Test(arguments: ClusterStore.allCases) func theNetworkIsHomogeneous(_ store: ClusterStore) async throws {
        try await AgentCluster.run(serverArguments: ["--no-scheduler", "--no-controllers"], firstAgent: false, etcdMembers: store.etcdMembers) { cluster in
            let start = try await cluster.client.list(Pod.self, namespace: "default").resourceVersion
            for index in 0..<5 { _ = try await cluster.client.create(TestObjects.pod("h\(index)", labels: ["i": "\(index)"])) }
            try await cluster.client.modify(Pod.self, namespace: "default", name: "h1", attempts: 3) { $0.metadata.labels["changed"] = "yes" }
            _ = try await cluster.client.delete(Pod.self, namespace: "default", name: "h2")

            let protobufClient = try APIClient(kubeconfig: try Kubeconfig.load(path: cluster.kubeconfig), format: .protobuf, timeout: .seconds(10))
            defer { Task { try? await protobufClient.shutdown() } }
            let viaProtobuf = try await protobufClient.list(Pod.self, namespace: "default").items
            let curl = ["-s", "--cacert", "\(cluster.dir.path)/pki/ca.crt", "--cert", "\(cluster.dir.path)/pki/admin.crt",
                        "--key", "\(cluster.dir.path)/pki/admin.key", "-H", "Accept: application/json"]
            let listed = try await Tools.runDetached("/usr/bin/curl", curl + ["https://127.0.0.1:\(cluster.port)/api/v1/namespaces/default/pods"]).output
            let viaJSON = try PodList(jsonBytes: Array(listed.utf8)).items
            #expect(viaJSON.map { $0.jsonBytes() } == viaProtobuf.map { $0.jsonBytes() }, "the same objects, field for field")
            #expect(viaJSON.count == 4)

            // The same events from the same revision, in the same order.
            let watched = try await Tools.runDetached("/usr/bin/curl", curl + [
                "https://127.0.0.1:\(cluster.port)/api/v1/namespaces/default/pods?watch=true&resourceVersion=\(start)&timeoutSeconds=1"]).output
            let jsonEvents = watched.split(separator: "\n").compactMap { line -> String? in
                guard let event = try? JSONParser.parse(String(line)), case .string(let type)? = event["type"], type != "BOOKMARK",
                      let object = event["object"] else { return nil }
                return "\(type) \((try? Pod(json: object))?.jsonString() ?? "?")"
            }
            var request = WatchRequest(namespace: "default", resourceVersion: start)
            request.timeoutSeconds = 1
            let protobufEvents = try await protobufClient.watchEvents(Pod.self, request, format: .protobuf)
            #expect(jsonEvents.count == 7 && jsonEvents == protobufEvents, "JSON: \(jsonEvents.map { $0.prefix(40) })\nprotobuf: \(protobufEvents.map { $0.prefix(40) })")

            // The Python `kubernetes` client (JSON, its own HTTP and TLS stack, its own models)
            // lists and watches the same: names, revisions, labels and event types.
            let python = try await Tools.runDetached("/usr/bin/env", ["python3", "-c", Self.pythonClient, cluster.kubeconfig, start])
            let summary = { (pod: Pod) in "\(pod.metadata.name) \(pod.metadata.resourceVersion) \(pod.metadata.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))" }
            let expected = viaProtobuf.map { "LIST " + summary($0) } + protobufEvents.map { line -> String in
                let (kind, json) = (line.prefix { $0 != " " }, line.drop { $0 != " " }.dropFirst())
                return "\(kind) " + ((try? Pod(jsonBytes: Array(json.utf8))).map(summary) ?? "?")
            }
            #expect(python.status == 0 && python.output.split(separator: "\n").map(String.init) == expected,
                    "python kubernetes client:\n\(python.output)\nexpected:\n\(expected.joined(separator: "\n"))")
        }
    }

    static func metric(_ cluster: AgentCluster, _ name: String) async throws -> Int {
        Int(try await cluster.client.metric(name) ?? -1)
    }

    /// 7. Transport cost is zero. Twenty watchers (ten protobuf, ten JSON) follow 100 pod
    /// changes: the server encodes each event once per format, not once per watcher
    /// (`cox_watch_event_encodes_total` in /metrics).
    @Test(arguments: ClusterStore.allCases) func transportCostIsZero(_ store: ClusterStore) async throws {
        try await AgentCluster.run(serverArguments: ["--no-scheduler", "--no-controllers"], firstAgent: false, etcdMembers: store.etcdMembers) { cluster in
            let start = try await cluster.client.list(Pod.self, namespace: "default").resourceVersion
            let clients = try [WireFormat.protobuf, .json].map { try APIClient(kubeconfig: try Kubeconfig.load(path: cluster.kubeconfig), format: $0, timeout: .seconds(10)) }
            defer { Task { for client in clients { try? await client.shutdown() } } }
            let before = try await Self.metric(cluster, "cox_watch_event_encodes_total")
            let changes = 100
            let received = MutexBox(0)
            let watchers = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<20 {
                        let client = clients[index % 2]
                        group.addTask {
                            var request = WatchRequest(namespace: "default", resourceVersion: start)
                            request.timeoutSeconds = 10
                            var seen = 0
                            for try await event in client.watch(Pod.self, request) {
                                if case .added = event { seen += 1 }
                                if seen == changes { break }
                            }
                            received.withLock { $0 += seen }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            try await eventually("20 watches are open") { try await Self.watchers(cluster) == 20 }
            for index in 0..<changes { _ = try await cluster.client.create(TestObjects.pod("t\(index)")) }
            try await watchers.value
            #expect(received.withLock { $0 } == 20 * changes, "every watcher saw every event")
            let encodes = try await Self.metric(cluster, "cox_watch_event_encodes_total") - before
            #expect(encodes == 2 * changes, "\(encodes) encodings for \(changes) events to 20 watchers in 2 formats")
            print("fallacy 7 (\(store)): \(changes) events to 20 watchers (2 formats): \(encodes) encodings, \(Double(encodes) / Double(changes)) per event")
        }
    }

    /// 3. Bandwidth is infinite. The bytes a watch of N pod changes costs on the wire (through the
    /// proxy, TLS included) in protobuf and in JSON; and an informer that loses its connection
    /// resumes from its revision (a few bytes) instead of listing everything again.
    /// N is 2,000 here; `COX_FALLACY_EVENTS=10000` gives the figure in BENCHMARKS.md.
    @Test(arguments: ClusterStore.allCases) func bandwidthIsInfinite(_ store: ClusterStore) async throws {
        let changes = Int(ProcessInfo.processInfo.environment["COX_FALLACY_EVENTS"] ?? "") ?? 2_000
        try await AgentCluster.run(serverArguments: ["--no-scheduler", "--no-controllers"], firstAgent: false, etcdMembers: store.etcdMembers) { cluster in
            let start = try await cluster.client.list(Pod.self, namespace: "default").resourceVersion
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        for index in stride(from: worker, to: changes, by: 8) { _ = try await cluster.client.create(TestObjects.pod("b\(index)", labels: ["i": "\(index)"])) }
                    }
                }
                try await group.waitForAll()
            }
            var bytes: [WireFormat: Int] = [:]
            for format in [WireFormat.protobuf, .json] {
                let proxy = try await FaultProxy(port: cluster.port, seed: 3)
                let client = try APIClient(kubeconfig: try Self.throughProxy(cluster, proxy), format: format, timeout: .seconds(30))
                var request = WatchRequest(namespace: "default", resourceVersion: start)
                request.timeoutSeconds = 30
                var seen = 0
                for try await event in client.watch(Pod.self, request) {
                    if case .added = event { seen += 1 }
                    if seen == changes { break }
                }
                bytes[format] = proxy.counters.bytesToClient
                try? await client.shutdown()
                await proxy.close()
                #expect(seen == changes)
            }
            let protobuf = bytes[.protobuf] ?? 0, json = bytes[.json] ?? 0
            #expect(protobuf > 0 && protobuf < json, "protobuf \(protobuf) B, JSON \(json) B")
            print("fallacy 3 (\(store)): a watch of \(changes) pod creations: protobuf \(protobuf) B (\(protobuf / changes) B/event), JSON \(json) B (\(json / changes) B/event), JSON/protobuf \(String(format: "%.2f", Double(json) / Double(protobuf)))")

            // An informer cut off mid-stream resumes from its revision: the bytes after the cut
            // are a small fraction of the list it started with.
            let proxy = try await FaultProxy(port: cluster.port, seed: 4)
            defer { Task { await proxy.close() } }
            let client = try APIClient(kubeconfig: try Self.throughProxy(cluster, proxy), timeout: .seconds(30))
            defer { Task { try? await client.shutdown() } }
            let informer = Informer<Pod>(client: client)
            let following = Task { await informer.run() }
            defer { following.cancel() }
            await informer.waitForSync()
            let listed = proxy.counters.bytesToClient
            proxy.dropConnections()
            try await cluster.client.modify(Pod.self, namespace: "default", name: "b0", attempts: 3) { $0.metadata.labels["after"] = "cut" }
            try await eventually("the informer saw the change after the cut") { informer.get(namespace: "default", name: "b0")?.metadata.labels["after"] == "cut" }
            let resumed = proxy.counters.bytesToClient - listed
            #expect(proxy.counters.connections >= 2, "the informer reconnected")
            #expect(resumed * 20 < listed, "after the cut \(resumed) B; the first list was \(listed) B")
            print("fallacy 3 (\(store)): informer list \(listed) B; resuming after a cut \(resumed) B")
        }
    }

    /// 4. The network is secure. A man in the middle with a certificate for the right names from
    /// another CA (`openssl s_server`) is refused by every component: the CLI, an agent with a
    /// kubeconfig, a joining agent (its CA hash does not match), the scheduler and the
    /// controllers. (The RBAC/authentication matrix through a proxy is
    /// `SecurityMatrixTests.everyRowOfTheNegativeMatrixIsRefused(throughProxy: true)`.)
    @Test(arguments: ClusterStore.allCases) func theNetworkIsSecure(_ store: ClusterStore) async throws {
        let openssl = try #require(Tools.find("openssl"))
        try await AgentCluster.run(serverArguments: ["--no-scheduler", "--no-controllers"], firstAgent: false, etcdMembers: store.etcdMembers) { cluster in
            let other = TemporaryDirectory()
            _ = try ClusterPKI.bootstrap(dataDirectory: other.path)
            let mitmPort = try TestHost.freePort()
            let mitmLog = (cluster.dir.path as NSString).appendingPathComponent("mitm.log")
            // Standard input stays open (a pipe): s_server would stop at its end.
            let mitm = try Child(openssl, ["s_server", "-accept", "\(mitmPort)", "-cert", "\(other.path)/pki/apiserver.crt", "-key", "\(other.path)/pki/apiserver.key", "-www", "-quiet"],
                                 stdout: .file(mitmLog), stderr: .stdout, stdin: true)
            // (openssl s_server started this way does not stop on SIGTERM.)
            defer { kill(mitm.pid, SIGKILL) }
            try await eventually("the man in the middle listens") {
                (try? await Tools.runDetached("/usr/bin/curl", ["-sk", "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1:\(mitmPort)/"]))?.output == "200"
            }
            var admin = try Kubeconfig.load(path: cluster.kubeconfig)
            admin.server = "https://127.0.0.1:\(mitmPort)"
            let intercepted = try Self.writeKubeconfig(admin, cluster, "mitm.kubeconfig")

            let cli = try await Tools.runDetached(cluster.binary, ["get", "pods", "--kubeconfig", intercepted])
            #expect(cli.status != 0 && cli.output.contains("TLS handshake failed"), "cox get: \(cli.output)")

            let printed = try await cluster.cox("token", "create", "--print-join-command")
            let words = printed.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").map(String.init)
            let join = try await Tools.runDetached(cluster.binary, ["agent", "--server", admin.server, "--token", words[5], "--ca-cert-hash", words[7],
                                                                    "--node-name", "m2", "--data-dir", "\(cluster.dir.path)/m2", "--runtime", "fake"])
            #expect(join.status == 1 && join.output.contains("refusing to join"), "joining agent: \(join.output)")

            // Long-running components keep refusing (and retrying) without ever getting through.
            let components: [(String, [String])] = [
                ("agent-m1", ["agent", "--kubeconfig", intercepted, "--pki", "\(cluster.dir.path)/pki", "--node-name", "m1", "--data-dir", "\(cluster.dir.path)/m1",
                              "--runtime", "fake", "--port", "0", "--heartbeat-seconds", "1"]),
                ("scheduler", ["scheduler", "--kubeconfig", intercepted]),
                ("controllers", ["controllers", "--kubeconfig", intercepted]),
            ]
            for (name, arguments) in components {
                let process = try cluster.launch(arguments, log: "\(name).log")
                defer { kill(process.pid, SIGKILL) }
                try await eventually("\(name) reports the certificate problem", timeout: 30) {
                    let log = cluster.log(name)
                    return log.contains("TLS handshake failed") || log.contains("certificate")
                }
            }
            #expect(try await cluster.client.list(Node.self, namespace: nil).items.isEmpty, "nothing joined the real cluster")
            let seen = (try? String(contentsOfFile: mitmLog, encoding: .utf8)) ?? ""
            #expect(!seen.contains("GET /api") && !seen.contains("POST /api"), "the man in the middle read a request: \(seen.prefix(300))")
        }
    }

    /// 5. Topology doesn't change. Node n2's agent reaches the server through a proxy that then
    /// black-holes it (a partition: packets vanish, no connection is refused). n2 goes NotReady,
    /// its pod is evicted and replaced on n1; the stale copy keeps running on n2, which cannot
    /// hear. When the partition heals, n2's agent notices its dead connections (no bookmark for
    /// the watch's idle timeout), learns the pod was evicted, and stops it. An agent restarted
    /// with a new address re-registers it.
    @Test(arguments: ClusterStore.allCases) func topologyDoesNotChange(_ store: ClusterStore) async throws {
        try await AgentCluster.run(serverArguments: ["--node-monitor-grace-period", "3", "--pod-eviction-timeout", "1"], etcdMembers: store.etcdMembers) { cluster in
            let proxy = try await FaultProxy(port: cluster.port, seed: 6)
            defer { Task { await proxy.close() } }
            cluster.agents["n2"] = try cluster.launchAgent("n2", ["--server", "https://127.0.0.1:\(proxy.port)"])
            try await eventually("node n2 is Ready") { try await NodeJoinTests.ready(cluster, "n2") }

            var set = ReplicaSet()
            set.metadata.name = "spread"
            set.metadata.namespace = "default"
            set.spec.replicas = 2
            set.spec.selector.matchLabels = ["app": "spread"]
            set.spec.template.metadata.labels = ["app": "spread"]
            set.spec.template.spec = cluster.pod("x", "sleep 3600", grace: 2).spec
            set.spec.template.spec.nodeName = ""
            _ = try await cluster.client.create(set)
            func running() async throws -> [Pod] {
                try await cluster.client.list(Pod.self, namespace: "default").items
                    .filter { $0.status.phase == "Running" && !$0.metadata.hasDeletionTimestamp }
            }
            try await eventually("one pod runs on each node", timeout: 30) {
                Set(try await running().map(\.spec.nodeName)) == ["n1", "n2"]
            }
            let stale = try #require(try await running().first { $0.spec.nodeName == "n2" })
            let stalePID = try #require(cluster.pid(stale))

            // The partition: silent (open connections stay open; nothing gets through).
            proxy.set(.init(blackHole: true))
            try await eventually("n2 is NotReady", timeout: 30) { try await !NodeJoinTests.ready(cluster, "n2") }
            try await eventually("the evicted pod is replaced on n1", timeout: 30) {
                try await running().filter { $0.spec.nodeName == "n1" }.count == 2
            }
            #expect(kill(stalePID, 0) == 0, "the partitioned node cannot hear that its pod was evicted")

            // The partition heals.
            proxy.set(.init())
            let healed = Date()
            try await eventually("n2's agent stops the evicted pod", timeout: 60) { kill(stalePID, 0) != 0 }
            let stopped = Date().timeIntervalSince(healed)
            try await eventually("n2 is Ready again", timeout: 30) { try await NodeJoinTests.ready(cluster, "n2") }
            try await eventually("the evicted pod is gone", timeout: 30) {
                (try? await cluster.client.get(Pod.self, namespace: "default", name: stale.metadata.name)) == nil
            }
            #expect(try await running().count == 2)
            print("fallacy 5 (\(store)): the evicted pod stopped \(String(format: "%.1f", stopped)) s after the partition healed")

            // A new address: n1's agent restarts on 127.0.0.2 and the node says so.
            await cluster.killAgent()
            cluster.agent = try cluster.launchAgent("n1", ["--address", "127.0.0.2"])
            try await eventually("n1 re-registers its new address", timeout: 30) {
                let node = try await cluster.client.get(Node.self, namespace: "", name: "n1")
                return node.status.addresses.contains { $0.type == "InternalIP" && $0.address == "127.0.0.2" }
            }
            // The pods go with the cluster, not back to their ReplicaSet.
            _ = try await cluster.client.delete(ReplicaSet.self, namespace: "default", name: "spread", propagationPolicy: "Orphan")
        }
    }

    /// A watch whose connection goes silent (a partition that drops packets without a word) is
    /// abandoned after its idle timeout and resumed on a new connection from its revision.
    @Test(arguments: ClusterStore.allCases) func aSilentWatchConnectionIsReplaced(_ store: ClusterStore) async throws {
        try await AgentCluster.run(serverArguments: ["--no-scheduler", "--no-controllers"], firstAgent: false, etcdMembers: store.etcdMembers) { cluster in
            let proxy = try await FaultProxy(port: cluster.port, seed: 8)
            defer { Task { await proxy.close() } }
            let client = try APIClient(kubeconfig: try Self.throughProxy(cluster, proxy), timeout: .seconds(10), connectTimeout: .seconds(2))
            defer { Task { try? await client.shutdown() } }
            let start = try await cluster.client.list(Pod.self, namespace: "default").resourceVersion
            var request = WatchRequest(namespace: "default", resourceVersion: start)
            request.idleTimeout = .seconds(2)
            let names = MutexBox<[String]>([])
            let watching = Task {
                for try await event in client.watch(Pod.self, request) {
                    if case .added(let pod) = event { names.withLock { $0.append(pod.metadata.name) } }
                }
            }
            defer { watching.cancel() }
            _ = try await cluster.client.create(TestObjects.pod("before"))
            try await eventually("the watch sees the first pod") { names.withLock { $0 } == ["before"] }
            let connections = proxy.counters.connections
            proxy.set(.init(blackHole: true))
            try await eventually("the silent connection is given up for a new one", timeout: 15) { proxy.counters.connections > connections }
            _ = try await cluster.client.create(TestObjects.pod("during"))
            proxy.set(.init())
            _ = try await cluster.client.create(TestObjects.pod("after"))
            try await eventually("the watch resumes and misses nothing", timeout: 20) { names.withLock { $0 } == ["before", "during", "after"] }
        }
    }
}

extension APIClient {
    /// One watch request's events as `TYPE object-json` lines (no resuming, no bookmarks): for
    /// comparing what different encodings carry.
    func watchEvents<T: APIObject>(_ type: T.Type, _ request: WatchRequest, format: WireFormat) async throws -> [String] {
        let body = try await watchChunks(T.self, namespace: request.namespace, resourceVersion: request.resourceVersion, timeoutSeconds: request.timeoutSeconds)
        var splitter = WatchFrameSplitter(format: format)
        var events: [String] = []
        for try await chunk in body {
            splitter.append(chunk.readableBytesView)
            for frame in splitter.frames() {
                let (kind, object, _) = try splitter.decode(frame, as: T.self)
                if kind != "BOOKMARK", let object { events.append("\(kind) \(object.jsonString())") }
            }
        }
        return events
    }
}
