import API
import Client
import ControllerRuntime
import Foundation
import PKI
import Testing
import TestSupport

/// The API server SIGKILLed and restarted 20 times while a load generator writes: every write
/// that was answered with success is there afterwards, and a watcher that followed it all (its
/// connection cut at every kill) saw exactly the server's history: nothing missed, nothing twice.
@Suite(.serialized, .watchdog) struct CrashSafetyTests {
    struct Acknowledged: Sendable {
        var created: [String: String] = [:]   // name → uid
        var generation: [String: Int] = [:]   // name → last acknowledged "n" label
    }

    static let definition = """
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: tallies.example.cox.io}
        spec:
          group: example.cox.io
          scope: Namespaced
          names: {plural: tallies, kind: Tally}
          versions:
          - name: v1
            served: true
            storage: true
            schema:
              openAPIV3Schema:
                type: object
                properties:
                  spec: {type: object, properties: {count: {type: integer}}}
        """

    @Test func everyAcknowledgedWriteSurvivesTwentyKills() async throws {
        try await AgentCluster.run(serverArguments: ["--no-scheduler", "--no-controllers"], firstAgent: false) { cluster in
            let start = try await cluster.client.list(Pod.self, namespace: "default").resourceVersion
            let kubeconfig = try Kubeconfig.load(path: cluster.kubeconfig)
            let writer = try APIClient(kubeconfig: kubeconfig, timeout: .seconds(5), maxAttempts: 3, connectTimeout: .seconds(1))
            let watcher = try APIClient(kubeconfig: kubeconfig, timeout: .seconds(5), connectTimeout: .seconds(1))
            defer { Task { try? await writer.shutdown(); try? await watcher.shutdown() } }

            let acknowledged = MutexBox(Acknowledged())
            let events = MutexBox<[String]>([])
            let watching = Task {
                for try await event in watcher.watch(Pod.self, WatchRequest(namespace: "default", resourceVersion: start)) {
                    switch event {
                    case .added(let pod): events.withLock { $0.append("ADDED \(pod.metadata.name) \(pod.metadata.resourceVersion)") }
                    case .modified(let pod): events.withLock { $0.append("MODIFIED \(pod.metadata.name) \(pod.metadata.resourceVersion)") }
                    case .deleted(let pod): events.withLock { $0.append("DELETED \(pod.metadata.name) \(pod.metadata.resourceVersion)") }
                    case .relisted: events.withLock { $0.append("RELISTED") }
                    case .bookmark: break
                    }
                }
            }
            defer { watching.cancel() }
            // Custom objects too: a definition, then creates of its objects by kubectl (acknowledged
            // when kubectl says so) alongside the pods.
            let kubectl = try #require(Tools.kubectlRange().last?.path)
            func kubectlRun(_ arguments: [String], input: String? = nil) async throws -> Tools.Output {
                try await Tools.runDetached(kubectl, ["--kubeconfig", cluster.kubeconfig, "--request-timeout=5s"] + arguments, input: input, timeout: 30)
            }
            let definition = try await kubectlRun(["apply", "-f", "-"], input: Self.definition)
            #expect(definition.status == 0, "\(definition.output)")
            let customAcknowledged = MutexBox<Set<String>>([])
            let stop = MutexBox(false)
            let customWriting = Task {
                var index = 0
                while !stop.withLock({ $0 }) {
                    let name = "c\(index)"
                    index += 1
                    let manifest = "apiVersion: example.cox.io/v1\nkind: Tally\nmetadata: {name: \(name)}\nspec: {count: \(index)}\n"
                    if let created = try? await kubectlRun(["create", "-f", "-"], input: manifest), created.status == 0 {
                        _ = customAcknowledged.withLock { $0.insert(name) }
                    }
                }
            }
            let writing = Task {
                var index = 0
                while !stop.withLock({ $0 }) {
                    // Creates, and updates of what was created: an update of a random earlier pod.
                    let name = "w\(index)"
                    index += 1
                    if let created = try? await writer.create(TestObjects.pod(name, labels: ["n": "0"])) {
                        acknowledged.withLock { $0.created[name] = created.metadata.uid; $0.generation[name] = 0 }
                    }
                    let known = acknowledged.withLock { Array($0.created.keys) }
                    guard let target = known.randomElement(), var pod = try? await writer.get(Pod.self, namespace: "default", name: target) else { continue }
                    let next = (Int(pod.metadata.labels["n"] ?? "0") ?? 0) + 1
                    pod.metadata.labels["n"] = "\(next)"
                    if (try? await writer.update(pod)) != nil {
                        acknowledged.withLock { $0.generation[target] = max($0.generation[target] ?? 0, next) }
                    }
                }
            }

            // Twenty kills, and on until twenty creates got through between them (a loaded machine
            // restarts the server more slowly, and fewer writes fit between twenty kills).
            var kills = 0
            while kills < 20 || (acknowledged.withLock({ $0.created.count }) < 20 && kills < 60) {
                kills += 1
                try await Task.sleep(for: .milliseconds(Int.random(in: 300...700)))
                guard let server = cluster.server else { break }
                kill(server.pid, SIGKILL)
                await server.wait()
                cluster.server = nil
                try await cluster.startServer()
            }
            try await Task.sleep(for: .milliseconds(500))
            stop.withLock { $0 = true }
            await writing.value
            await customWriting.value
            let customStored = Set(try await kubectlRun(["get", "tallies", "-o", "jsonpath={.items[*].metadata.name}"]).output.split(separator: " ").map(String.init))
            let customPromised = customAcknowledged.withLock { $0 }
            // (How many kubectl gets through between kills depends on the machine's load: at
            // least one must, and none acknowledged may be lost.)
            #expect(customPromised.count >= 1, "kubectl got custom objects through: \(customPromised.count)")
            #expect(customPromised.subtracting(customStored).isEmpty, "acknowledged custom objects lost: \(customPromised.subtracting(customStored).sorted())")

            // Every acknowledged write is there, as acknowledged or later.
            let stored = Dictionary(uniqueKeysWithValues: try await cluster.client.list(Pod.self, namespace: "default").items.map { ($0.metadata.name, $0) })
            let promised = acknowledged.withLock { $0 }
            #expect(promised.created.count >= 20, "the load generator got through: \(promised.created.count) creates acknowledged")
            for (name, uid) in promised.created {
                guard let pod = stored[name] else { Issue.record("acknowledged create of \(name) lost"); continue }
                #expect(pod.metadata.uid == uid, "\(name) is the pod that was created")
                let value = Int(pod.metadata.labels["n"] ?? "") ?? -1
                #expect(value >= promised.generation[name] ?? 0, "\(name): acknowledged update n=\(promised.generation[name] ?? 0) lost (stored \(value))")
            }

            // The watcher saw the server's history exactly: replay it in one go and compare.
            var replay = WatchRequest(namespace: "default", resourceVersion: start)
            replay.timeoutSeconds = 3
            let history = try await cluster.client.watchEvents(Pod.self, replay, format: .protobuf).map { line -> String in
                let (kind, json) = (line.prefix { $0 != " " }, line.drop { $0 != " " }.dropFirst())
                let pod = try? Pod(jsonBytes: Array(json.utf8))
                return "\(kind) \(pod?.metadata.name ?? "?") \(pod?.metadata.resourceVersion ?? "?")"
            }
            try await eventually("the watcher caught up with the last revision", timeout: 30) { events.withLock { $0.count } >= history.count }
            let seen = events.withLock { $0 }
            #expect(!seen.contains("RELISTED"), "the watcher never had to list again")
            #expect(seen == history, "watched \(seen.count) events, history has \(history.count); first difference at \(Array(zip(seen, history)).firstIndex { $0.0 != $0.1 } ?? min(seen.count, history.count))")
            print("crash safety: 20 SIGKILLs; \(promised.created.count) creates and \(promised.generation.values.reduce(0, +)) update steps acknowledged; \(history.count) events watched without loss or repeat; \(customPromised.count) custom objects acknowledged, none lost")
        }
    }
}
