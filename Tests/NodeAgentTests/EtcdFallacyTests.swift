import API
import Client
import ControllerRuntime
import Foundation
import PKI
import Testing
import TestSupport

/// The fallacies again, between the API server and its etcd cluster (`cox server --etcd-servers`
/// through a `FaultProxy` in front of each member): resets, latency and partitions there are the
/// server's to absorb or to report honestly, never to hide as lost or duplicated writes.
@Suite(.serialized, .watchdog) struct EtcdFallacyTests {
    static func readyz(_ cluster: AgentCluster) async -> String {
        let curl = ["-sS", "--max-time", "20", "-w", "\n%{http_code}", "--cacert", "\(cluster.dir.path)/pki/ca.crt",
                    "--cert", "\(cluster.dir.path)/pki/admin.crt", "--key", "\(cluster.dir.path)/pki/admin.key",
                    "https://127.0.0.1:\(cluster.port)/readyz"]
        return (try? await Tools.runDetached("/usr/bin/curl", curl))?.output ?? ""
    }

    /// `cox apply -f -` of one ConfigMap, as a user runs it.
    static func coxApply(_ cluster: AgentCluster, _ name: String) async throws -> Tools.Output {
        let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \(name)\ndata:\n  a: b\n"
        return try await Tools.runDetached(cluster.binary, ["apply", "-f", "-", "--kubeconfig", cluster.kubeconfig], input: manifest)
    }

    /// Applies `count` ConfigMaps labelled `round`, each tried until it is acknowledged, as a
    /// person or script would; returns how many attempts reported failure.
    static func applyAll(_ client: APIClient, count: Int, round: Int) async throws -> Int {
        var failures = 0
        for index in 0..<count {
            var map = ConfigMap()
            map.metadata.name = "m\(index)"
            map.metadata.namespace = "default"
            map.metadata.labels["round"] = "\(round)"
            map.data = ["round": "\(round)"]
            var done = false
            for _ in 0..<20 where !done {
                do {
                    try await client.apply(map)
                    done = true
                } catch {
                    failures += 1
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            #expect(done, "m\(index) was never applied")
        }
        return failures
    }

    /// 1. The network is reliable: every third connection to a member is reset and every open
    /// one is cut every two seconds while 200 ConfigMaps are applied and re-applied: each apply
    /// takes effect exactly once (one object per name, its uid kept, the change present), and an
    /// informer that followed it (fed by the server's own etcd watch, cut too) equals the list.
    @Test func theNetworkToEtcdIsReliable() async throws {
        guard Tools.peer("etcd") != nil else { return }
        try await AgentCluster.run(serverArguments: ["--no-scheduler", "--no-controllers"], firstAgent: false, etcdMembers: 3) { cluster in
            let informer = Informer<ConfigMap>(client: cluster.client)
            let following = Task { await informer.run() }
            defer { following.cancel() }
            for proxy in cluster.etcdProxies { proxy.set(.init(resetEveryNthConnection: 3)) }
            let cutting = Task {
                while !Task.isCancelled {
                    try await Task.sleep(for: .seconds(2))
                    for proxy in cluster.etcdProxies { proxy.dropConnections() }
                }
            }
            defer { cutting.cancel() }
            let count = 200
            var failures = try await Self.applyAll(cluster.client, count: count, round: 1)
            let first = Dictionary(uniqueKeysWithValues: try await cluster.client.list(ConfigMap.self, namespace: "default").items.map { ($0.metadata.name, $0.metadata.uid) })
            failures += try await Self.applyAll(cluster.client, count: count, round: 2)
            cutting.cancel()
            for proxy in cluster.etcdProxies { proxy.set(.init()) }
            let stored = try await cluster.client.list(ConfigMap.self, namespace: "default").items.filter { $0.metadata.name.hasPrefix("m") }
            #expect(stored.count == count, "one object per name")
            #expect(stored.allSatisfy { $0.metadata.labels["round"] == "2" }, "no update lost")
            #expect(stored.allSatisfy { first[$0.metadata.name] == $0.metadata.uid }, "no object replaced by a second create")
            let resets = cluster.etcdProxies.map(\.counters.resets).reduce(0, +)
            let drops = cluster.etcdProxies.map(\.counters.drops).reduce(0, +)
            #expect(resets > 0 && drops > 0, "the faults happened")
            try await eventually("the informer's cache equals the server's list", timeout: 60) {
                let server = try await cluster.client.list(ConfigMap.self, namespace: "default").items
                let cached = informer.list(namespace: "default")
                return Dictionary(uniqueKeysWithValues: server.map { ($0.metadata.name, $0.metadata.resourceVersion) })
                    == Dictionary(uniqueKeysWithValues: cached.map { ($0.metadata.name, $0.metadata.resourceVersion) })
            }
            print("etcd fallacy 1: \(resets) connections to etcd reset, \(drops) cut; \(failures) applies reported failure and were repeated")
        }
    }

    /// 2. Latency is zero: with 150 ms added each way to etcd, calls still succeed within their
    /// deadlines; with more latency than the server's etcd call timeout, a write fails with 504
    /// naming etcd (not a hang) and `/readyz` says why; without it, all is well again.
    @Test func latencyToEtcdIsNotZero() async throws {
        guard Tools.peer("etcd") != nil else { return }
        try await AgentCluster.run(serverArguments: ["--no-scheduler", "--no-controllers"], firstAgent: false, etcdMembers: 1) { cluster in
            let proxy = cluster.etcdProxies[0]
            proxy.set(.init(latency: .milliseconds(150)))
            let slow = try await Self.coxApply(cluster, "slow")
            #expect(slow.status == 0, "\(slow.output)")
            #expect(try await cluster.cox("get", "configmap", "slow").status == 0)

            proxy.set(.init(latency: .seconds(4)))
            let started = ContinuousClock.now
            let refused = try await Self.coxApply(cluster, "too-slow")
            let took = ContinuousClock.now - started
            #expect(refused.status != 0 && refused.output.contains("etcd"), "\(refused.output)")
            #expect(took < .seconds(40), "the error came within the deadline: \(took)")
            let ready = await Self.readyz(cluster)
            #expect(ready.contains("[-]etcd failed") && ready.hasSuffix("500"), "\(ready)")
            print("etcd fallacy 2: a create with 8 s round trips to etcd failed after \(took): \(refused.output)")

            proxy.set(.init())
            try await eventually("the server is ready again", timeout: 60) { await Self.readyz(cluster).hasSuffix("ok\n200") }
            let healed = try await Self.coxApply(cluster, "healed")
            #expect(healed.status == 0, "\(healed.output)")
        }
    }

    /// 3. Topology changes: the member the server talks to is cut off (a partition: nothing
    /// answers, nothing closes). Writes move to the other members, the server's watch of etcd
    /// moves too (keepalive pings find the dead connection), and a client's watch misses nothing.
    /// All members cut off: fast errors and `/readyz` 500; healed: served again.
    @Test func partitionsBetweenTheServerAndEtcd() async throws {
        guard Tools.peer("etcd") != nil else { return }
        try await AgentCluster.run(serverArguments: ["--no-scheduler", "--no-controllers"], firstAgent: false, etcdMembers: 3) { cluster in
            let informer = Informer<ConfigMap>(client: cluster.client)
            let following = Task { await informer.run() }
            defer { following.cancel() }
            _ = try await Self.applyAll(cluster.client, count: 5, round: 1)
            cluster.etcdProxies[0].set(.init(blackHole: true))
            let started = ContinuousClock.now
            let failures = try await Self.applyAll(cluster.client, count: 50, round: 2)
            print("etcd fallacy 3: 50 applies with member 0 partitioned took \(ContinuousClock.now - started), \(failures) reported failure and were repeated")
            try await eventually("the informer sees every change made during the partition", timeout: 90) {
                let cached = informer.list(namespace: "default").filter { $0.metadata.name.hasPrefix("m") }
                return cached.count == 50 && cached.allSatisfy { $0.metadata.labels["round"] == "2" }
            }

            for proxy in cluster.etcdProxies { proxy.set(.init(blackHole: true)) }
            let cutOff = ContinuousClock.now
            let refused = try await Self.coxApply(cluster, "unreachable")
            #expect(refused.status != 0 && refused.output.contains("etcd"), "\(refused.output)")
            #expect(ContinuousClock.now - cutOff < .seconds(40))
            #expect(await Self.readyz(cluster).contains("[-]etcd failed"))

            for proxy in cluster.etcdProxies { proxy.set(.init()) }
            try await eventually("the server is ready again", timeout: 90) { await Self.readyz(cluster).hasSuffix("ok\n200") }
            #expect(try await Self.coxApply(cluster, "after-the-partition").status == 0)
            try await eventually("the informer's cache equals the server's list", timeout: 60) {
                let server = try await cluster.client.list(ConfigMap.self, namespace: "default").items
                let cached = informer.list(namespace: "default")
                return Dictionary(uniqueKeysWithValues: server.map { ($0.metadata.name, $0.metadata.resourceVersion) })
                    == Dictionary(uniqueKeysWithValues: cached.map { ($0.metadata.name, $0.metadata.resourceVersion) })
            }
        }
    }
}
