import API
import Client
import Foundation
import PKI
import Synchronization
import Testing
import TestSupport

/// The control plane on more than one machine, as it fails: a three-member etcd cluster with
/// mutual TLS, two `cox server`s and a node agent on loopback. Under create load one etcd member
/// and then one API server are SIGKILLed: no acknowledged create is lost, and watches through our
/// client continue on the other server with nothing missed or duplicated; the agent keeps its
/// node and runs a pod scheduled after the loss. Two members down: fast 503/504; back: served.
@Suite("etcd backend: faults", .watchdog)
struct EtcdFaultTests {
    final class Seen: Sendable {
        let added = Mutex<[String: Int]>([:])
        let relists = Atomic<Int>(0)
        let lastRevision = Atomic<Int64>(0)
        let outOfOrder = Atomic<Int>(0)
    }

    final class Load: Sendable {
        let acknowledged = Mutex<[String]>([])
        let failed = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        var count: Int { acknowledged.withLock { $0.count } }
    }

    /// Follows ConfigMaps through `client` and counts each name's ADDED events.
    static func follow(_ client: APIClient, into seen: Seen) -> Task<Void, any Error> {
        Task {
            for try await event in client.watch(ConfigMap.self, WatchRequest(namespace: "default")) {
                switch event {
                case .relisted(let items, _):
                    seen.relists.add(1, ordering: .relaxed)
                    seen.added.withLock { added in for item in items { added[item.metadata.name, default: 0] += 1 } }
                case .added(let map):
                    let revision = Int64(map.metadata.resourceVersion) ?? 0
                    if revision <= seen.lastRevision.load(ordering: .relaxed) { seen.outOfOrder.add(1, ordering: .relaxed) }
                    seen.lastRevision.store(revision, ordering: .relaxed)
                    seen.added.withLock { $0[map.metadata.name, default: 0] += 1 }
                default: continue
                }
            }
        }
    }

    @Test func killingAnEtcdMemberThenAnAPIServerLosesNothing() async throws {
        guard Tools.peer("etcd") != nil else { return }
        let cluster = try EtcdCluster(size: 3)
        try await cluster.waitUntilServing()
        let (dirA, dirB) = (TemporaryDirectory(), TemporaryDirectory())
        let fast = ["--leader-lease-duration", "4"]
        let a = try await EtcdBackendTests.Server.start(dirA, on: cluster, extra: fast)
        defer { a.stop() }
        try FileManager.default.copyItem(atPath: dirA.path + "/pki", toPath: dirB.path + "/pki")
        try FileManager.default.copyItem(atPath: dirA.path + "/secrets.key", toPath: dirB.path + "/secrets.key")
        let b = try await EtcdBackendTests.Server.start(dirB, on: cluster, extra: fast)
        defer { b.stop() }

        // A simulated node whose agent knows both servers.
        let agent = try Child(try coxBinary(), ["agent", "--kubeconfig", a.kubeconfig, "--server", "\(a.url),\(b.url)", "--pki", dirA.path + "/pki",
                                                "--data-dir", dirA.path + "/agent", "--node-name", "n1", "--port", "0", "--heartbeat-seconds", "1",
                                                "--runtime", "fake"],
                              stdout: .file(dirA.path + "/agent.log"), stderr: .stdout)
        defer { if agent.isRunning { agent.signal(SIGKILL) } }

        var admin = try Kubeconfig.load(path: a.kubeconfig)
        admin.servers = [a.url, b.url]
        let client = try APIClient(kubeconfig: admin, timeout: .seconds(30))
        var reversed = admin
        reversed.servers = [b.url, a.url]
        let other = try APIClient(kubeconfig: reversed, timeout: .seconds(30))
        defer {
            Task { try? await client.shutdown(); try? await other.shutdown() }
        }
        try await waitUntil("node n1 is Ready") {
            let node = try? await client.get(Node.self, namespace: "", name: "n1")
            return node?.status.conditions.contains { $0.type == "Ready" && $0.status == "True" } == true
        }

        // Two watches, one through each server first.
        let (seenA, seenB) = (Seen(), Seen())
        let watchA = Self.follow(client, into: seenA)
        let watchB = Self.follow(other, into: seenB)
        defer { watchA.cancel(); watchB.cancel() }
        try await waitUntil("both watches have listed") { seenA.relists.load(ordering: .relaxed) == 1 && seenB.relists.load(ordering: .relaxed) == 1 }

        // Create load: four writers; what the server acknowledged is recorded.
        let load = Load()
        let writers = (0..<4).map { writer in
            Task {
                var i = 0
                while !load.stop.load(ordering: .relaxed) && i < 400 {
                    var map = ConfigMap()
                    map.metadata.name = "load-\(writer)-\(i)"
                    map.metadata.namespace = "default"
                    map.data = ["i": "\(i)"]
                    i += 1
                    do {
                        _ = try await client.create(map)
                        load.acknowledged.withLock { $0.append(map.metadata.name) }
                    } catch {
                        load.failed.add(1, ordering: .relaxed)
                    }
                }
            }
        }
        func acks() -> Int { load.count }
        try await waitUntil("150 creates acknowledged") { acks() >= 150 }
        await cluster.kill(0)
        print("etcd member 0 SIGKILLed after \(acks()) acknowledged creates")
        try await waitUntil("150 more creates acknowledged") { acks() >= 300 }
        a.child.signal(SIGKILL)
        await a.child.wait()
        print("API server A SIGKILLed after \(acks()) acknowledged creates")
        try await waitUntil("150 more creates acknowledged, through B") { acks() >= 450 }
        load.stop.store(true, ordering: .relaxed)
        for writer in writers { await writer.value }
        let names = load.acknowledged.withLock { $0 }
        print("\(names.count) creates acknowledged, \(load.failed.load(ordering: .relaxed)) failed (not acknowledged)")

        // Every acknowledged create is stored.
        let stored = Set(try await client.list(ConfigMap.self, namespace: "default").items.map(\.metadata.name))
        let lost = names.filter { !stored.contains($0) }
        #expect(lost.isEmpty, "acknowledged but lost: \(lost.prefix(10))")
        // Both watches saw each acknowledged create exactly once, in order, without a re-list.
        for (label, seen) in [("through A first", seenA), ("through B first", seenB)] {
            try await waitUntil("the watch \(label) has seen every acknowledged create") {
                seen.added.withLock { added in names.allSatisfy { added[$0] != nil } }
            }
            let duplicated = seen.added.withLock { $0.filter { $0.value > 1 }.map(\.key) }
            #expect(duplicated.isEmpty, "\(label): seen twice: \(duplicated.prefix(10))")
            #expect(seen.relists.load(ordering: .relaxed) == 1, "\(label): the watch re-listed (a 410) instead of resuming")
            #expect(seen.outOfOrder.load(ordering: .relaxed) == 0, "\(label): versions went backwards")
        }

        // The agent kept its node through A's loss, and runs a pod scheduled now (B's scheduler
        // and controllers took over the leases).
        var pod = TestObjects.pod("after-the-loss")
        pod.spec.nodeName = ""
        _ = try await client.create(pod)
        try await waitUntil("the pod created after A's loss runs on n1") {
            let read = try? await client.get(Pod.self, namespace: "default", name: "after-the-loss")
            return read?.spec.nodeName == "n1" && read?.status.phase == "Running"
        }

        // Two of three members down: no quorum, fast errors; back: served again.
        await cluster.kill(1)
        var map = ConfigMap()
        map.metadata.name = "without-quorum"
        map.metadata.namespace = "default"
        let started = ContinuousClock.now
        await #expect(throws: ClientError.self) { _ = try await other.create(map) }
        let took = ContinuousClock.now - started
        print("a create without quorum failed after \(took)")
        #expect(took < .seconds(30))
        try cluster.start(0)
        try cluster.start(1)
        try await cluster.waitUntilServing(timeout: .seconds(60))
        map.metadata.name = "with-quorum-again"
        try await waitUntil("creates succeed again once quorum is back") {
            (try? await other.create(map)) != nil
        }
    }
}
