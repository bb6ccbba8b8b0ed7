import API
import ArgumentParser
import Client
import Foundation
import PKI
import Synchronization

/// `cox bench pods`: a real `cox server` and `cox agent` (child processes of this one, a temporary
/// data directory, loopback). Measures pod startup latency — from the create call to Running seen
/// by a watch — and the agent's CPU while idle pods run. Baselines from the same run: a bare
/// posix_spawn of the same command (startup), the API server's own CPU (idle).
struct PodsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pods", abstract: "Pod startup latency (create → Running) and agent CPU with idle pods.")

    @Option(help: "Pods whose startup is timed.") var pods = 100
    @Option(help: "Pods created at once.") var concurrency = 10
    @Option(help: "Idle pods running while the agent's CPU is sampled.") var idle = 200
    @Option(help: "Seconds the idle CPU is sampled.") var sampleSeconds = 30
    @Option(help: "A CRI runtime for the agent (unix://…; default: the process runtime). With containerd the pods run --image, and `ctr run` of it is the floor.")
    var runtimeEndpoint: String?
    @Option(help: "The pods' image on a CRI runtime with images (pulled IfNotPresent: import it first).") var image = "docker.io/library/busybox:latest"

    func run() async throws {
        print("machine: \(machineDescription())")
        let dir = NSTemporaryDirectory() + "cox-bench-pods-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let port = 20000 + Int(getpid() % 20000)
        let server = try spawn(binary, ["server", "--data-dir", dir, "--port", "\(port)"], log: dir + "/server.log")
        defer { kill(server.processIdentifier, SIGKILL) }
        let kubeconfigPath = dir + "/admin.kubeconfig"
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: kubeconfigPath) { try await Task.sleep(for: .milliseconds(100)) }
        try await Task.sleep(for: .milliseconds(300))
        let client = try APIClient(kubeconfig: try Kubeconfig.load(path: kubeconfigPath))
        let agent = try spawn(binary, ["agent", "--kubeconfig", kubeconfigPath, "--pki", dir + "/pki", "--data-dir", dir + "/agent",
                                       "--node-name", "bench", "--port", "0"] + (runtimeEndpoint.map { ["--container-runtime-endpoint", $0] } ?? []),
                              log: dir + "/agent.log")
        defer { kill(agent.processIdentifier, SIGKILL) }
        for _ in 0..<100 {
            if let node = try? await client.get(Node.self, namespace: "", name: "bench"), node.status.conditions.contains(where: { $0.type == "Ready" && $0.status == "True" }) { break }
            try await Task.sleep(for: .milliseconds(100))
        }

        // Running as observed by a watch, by pod name.
        let times = Times()
        let watcher = Task {
            var request = WatchRequest(namespace: "default")
            request.timeoutSeconds = 600
            for try await event in client.watch(Pod.self, request) {
                if case .modified(let pod) = event, pod.status.phase == "Running" {
                    let now = DispatchTime.now().uptimeNanoseconds
                    times.seen.withLock { if $0[pod.metadata.name] == nil { $0[pod.metadata.name] = now } }
                }
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        func create(_ names: [String]) async throws {
            for batch in stride(from: 0, to: names.count, by: concurrency).map({ Array(names[$0..<min($0 + concurrency, names.count)]) }) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for name in batch {
                        group.addTask {
                            var pod = Pod()
                            pod.metadata.name = name
                            pod.metadata.namespace = "default"
                            pod.spec.nodeName = "bench"
                            var container = Container()
                            container.name = "idle"
                            container.command = ["sleep", "3600"]
                            if runtimeEndpoint != nil {
                                container.image = image
                                container.imagePullPolicy = "IfNotPresent"
                            }
                            pod.spec.containers = [container]
                            // `sleep` as a container's first process ignores SIGTERM: no 30 s wait at the end.
                            pod.spec.terminationGracePeriodSeconds = 1
                            let start = DispatchTime.now().uptimeNanoseconds
                            _ = try await client.create(pod)
                            times.created.withLock { $0[name] = start }
                        }
                    }
                    try await group.waitForAll()
                }
            }
        }
        let timed = (0..<pods).map { "start-\($0)" }
        try await create(timed)
        for _ in 0..<300 where times.seen.withLock({ $0.count }) < pods { try await Task.sleep(for: .milliseconds(100)) }
        let latencies = times.seen.withLock { seen in times.created.withLock { created in timed.compactMap { name in seen[name].flatMap { s in created[name].map { Double(s &- $0) / 1e6 } } } } }.sorted()
        let runtimeName = runtimeEndpoint == nil ? "the process runtime (CRI plugin in the agent)" : "\(runtimeEndpoint!) (image \(image))"
        print("startup of \(pods) pods on \(runtimeName) (\(concurrency) created at once), create → Running seen by a watch:")
        print("  p50 \(fmt(percentile(latencies, 0.5), 1)) ms, p99 \(fmt(percentile(latencies, 0.99), 1)) ms (\(latencies.count) of \(pods) Running)")
        if let runtimeEndpoint {
            let floor = try Self.ctrRunBaseline(endpoint: runtimeEndpoint, image: image, count: min(pods, 20))
            print("  floor: `ctr run -d` of the same image, one at a time (no sandbox, no network): p50 \(fmt(percentile(floor, 0.5), 1)) ms, p99 \(fmt(percentile(floor, 0.99), 1)) ms (\(floor.count) runs)")
            print("  → p50 ratio to ctr run: \(fmt(percentile(latencies, 0.5) / max(percentile(floor, 0.5), 0.001), 2))×")
        } else {
            let baseline = Self.spawnBaseline(count: pods)
            print("  baseline: posix_spawn + exec of `sleep` in this process: p50 \(fmt(percentile(baseline, 0.5), 2)) ms, p99 \(fmt(percentile(baseline, 0.99), 2)) ms")
            print("  → p50 ratio to bare spawn: \(fmt(percentile(latencies, 0.5) / max(percentile(baseline, 0.5), 0.001), 0))×")
        }

        // Idle: bring the count up to `idle`, let things settle, sample CPU time of both processes.
        if idle > pods {
            try await create((pods..<idle).map { "idle-\($0)" })
            for _ in 0..<600 where times.seen.withLock({ $0.count }) < idle { try await Task.sleep(for: .milliseconds(100)) }
        }
        try await Task.sleep(for: .seconds(5))
        let agentBefore = ControllersBench.cpuSeconds(agent.processIdentifier), serverBefore = ControllersBench.cpuSeconds(server.processIdentifier)
        try await Task.sleep(for: .seconds(sampleSeconds))
        let agentCPU = (ControllersBench.cpuSeconds(agent.processIdentifier) - agentBefore) / Double(sampleSeconds) * 100
        let serverCPU = (ControllersBench.cpuSeconds(server.processIdentifier) - serverBefore) / Double(sampleSeconds) * 100
        print("idle: \(times.seen.withLock { $0.count }) pods running; over \(sampleSeconds) s the agent used \(fmt(agentCPU, 2)) % of one core (API server: \(fmt(serverCPU, 2)) %)")
        watcher.cancel()

        // Leave nothing behind: the agent stops every pod's process before it goes.
        let all = try await client.list(Pod.self, namespace: "default").items
        for pod in all { _ = try? await client.delete(Pod.self, namespace: "default", name: pod.metadata.name) }
        for _ in 0..<1200 {
            if (try? await client.list(Pod.self, namespace: "default").items.isEmpty) == true { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        if let left = try? await client.list(Pod.self, namespace: "default").items, !left.isEmpty {
            print("warning: \(left.count) pods were not gone after 2 minutes; their containers may be left in the runtime")
        }
        try? await client.shutdown()
    }

    final class Times: Sendable {
        let seen = Mutex<[String: UInt64]>([:])
        let created = Mutex<[String: UInt64]>([:])
    }

    func spawn(_ binary: String, _ arguments: [String], log: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Time for `ctr run -d` (containerd's own client, no CRI: no sandbox, no network) to start a
    /// container of `image` running `sleep 3600`, one at a time; each is removed after.
    static func ctrRunBaseline(endpoint: String, image: String, count: Int) throws -> [Double] {
        guard let ctr = ["/usr/bin/ctr", "/usr/local/bin/ctr"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ValidationError("ctr (containerd's client) is needed for the floor: apt-get install containerd")
        }
        let socket = endpoint.hasPrefix("unix://") ? String(endpoint.dropFirst("unix://".count)) : endpoint
        func run(_ arguments: [String]) -> Int32 {
            var pid: pid_t = 0
            let argv = ([ctr, "--address", socket, "-n", "k8s.io"] + arguments).map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
            guard posix_spawn(&pid, ctr, &actions, nil, argv, environ) == 0 else { return -1 }
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            return status
        }
        var samples: [Double] = []
        for index in 0..<count {
            let id = "cox-bench-floor-\(getpid())-\(index)"
            let start = DispatchTime.now().uptimeNanoseconds
            let status = run(["run", "-d", "--null-io", image, id, "sleep", "3600"])
            if status == 0 { samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6) }
            _ = run(["tasks", "kill", "-s", "KILL", id])
            for _ in 0..<50 where run(["tasks", "delete", id]) != 0 { usleep(20000) }
            _ = run(["containers", "delete", id])
        }
        return samples.sorted()
    }

    /// Time to posix_spawn `sleep` and see it running (its /proc entry shows the exec'd command).
    static func spawnBaseline(count: Int) -> [Double] {
        var samples: [Double] = []
        for _ in 0..<count {
            let start = DispatchTime.now().uptimeNanoseconds
            var pid: pid_t = 0
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup("sleep"), strdup("3600"), nil]
            defer { argv.forEach { free($0) } }
            guard posix_spawnp(&pid, "sleep", nil, nil, argv, environ) == 0 else { continue }
            while (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) != "sleep\n" { usleep(50) }
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        return samples.sorted()
    }
}
