import API
import APIServer
import ArgumentParser
import Client
import Foundation
import Logging
import PKI
import Synchronization

/// `cox bench controllers`: D Deployments × R replicas on N simulated nodes. The API server runs
/// in this process without controllers; `cox controllers` runs as a child process (so its CPU can
/// be measured alone); this process also plays the N nodes (Node objects, leases renewed every
/// 10 s, pods marked Running and Ready once bound) and, until the scheduler exists, binds pods to
/// them in turn. Reports the time from the first create until every Deployment is available, and
/// the controller process's CPU once steady. Baseline in the same run: the same number of bare
/// pods created by this process, bound and made ready by the same simulated nodes.
struct ControllersBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "controllers", abstract: "Deployments × replicas on simulated nodes: time to available, controller CPU.")

    @Option(help: "Deployments.") var deployments = 1_000
    @Option(help: "Replicas per Deployment.") var replicas = 10
    @Option(help: "Simulated nodes.") var nodes = 500
    @Option(help: "Seconds of steady state over which the controllers' CPU is measured.") var steadySeconds = 30
    @Option(help: "Concurrent creating clients.") var clients = 16

    func run() async throws {
        print("machine: \(machineDescription())")
        print("\(deployments) deployments × \(replicas) replicas on \(nodes) simulated nodes")
        let server = try await BenchServer.start("controllers")
        defer { server.stop() }
        let kubeconfigPath = server.kubeconfigPath
        let client = try APIClient(kubeconfig: try Kubeconfig.load(path: kubeconfigPath), timeout: .seconds(60), maxConnections: 64)

        let names = (0..<nodes).map { String(format: "sim-%04d", $0) }
        try await Self.registerNodes(names, client: client)
        let simulation = Task { await Self.simulateNodes(names, client: client) }
        defer { simulation.cancel() }

        // Baseline: bare pods, created by this process (in a namespace of their own, which must
        // exist first, as in Kubernetes).
        try await Self.createNamespace("baseline", client: client)
        let total = deployments * replicas
        var watch = Stopwatch()
        try await Self.inParallel(total, clients) { i in
            var pod = Pod()
            pod.metadata.name = "bare-\(i)"
            pod.metadata.namespace = "baseline"
            var container = Container()
            container.name = "main"
            container.command = ["sleep", "3600"]
            pod.spec.containers = [container]
            _ = try await client.create(pod)
        }
        try await Self.waitUntil { try await client.list(Pod.self, namespace: "baseline").items.filter(\.isReady).count == total }
        let baseline = watch.seconds
        print("  baseline: \(total) bare pods created, bound and ready in \(fmt(baseline, 1)) s (\(fmt(Double(total) / baseline, 0)) pods/s)")
        let cleanup = Stopwatch()
        try await Self.inParallel(total, clients) { i in
            _ = try? await client.delete(Pod.self, namespace: "baseline", name: "bare-\(i)", gracePeriodSeconds: 0)
        }
        print("  (baseline pods deleted in \(fmt(cleanup.seconds, 1)) s)")

        // The controllers, in their own process.
        let controllers = try launchCoxChild(["controllers", "--kubeconfig", kubeconfigPath])
        defer { if controllers.isRunning { kill(controllers.processIdentifier, SIGKILL) } }
        try await Self.waitUntil {
            let lease = try? await client.get(Lease.self, namespace: "kube-system", name: "cox-controller-manager")
            return lease?.spec.holderIdentity.isEmpty == false
        }
        let cpuBefore = Self.cpuSeconds(controllers.processIdentifier)

        watch = Stopwatch()
        try await Self.inParallel(deployments, clients) { i in
            _ = try await client.create(Self.deployment("app-\(i)", replicas: Int32(replicas)))
        }
        let created = watch.seconds
        var lastReport = 0
        try await Self.waitUntil {
            let available = try await client.list(Deployment.self, namespace: "default").items.filter { $0.status.availableReplicas == Int32(replicas) }.count
            if available / 100 > lastReport / 100 || available == deployments {
                print("    \(fmt(watch.seconds, 0)) s: \(available)/\(deployments) deployments available"); fflush(nil)
                lastReport = available
            }
            return available == deployments
        }
        let rollout = watch.seconds
        let cpuRollout = Self.cpuSeconds(controllers.processIdentifier) - cpuBefore
        print("  deployments: \(deployments) created in \(fmt(created, 1)) s; all \(total) pods available after \(fmt(rollout, 1)) s (\(fmt(Double(total) / rollout, 0)) pods/s); controllers used \(fmt(cpuRollout, 1)) CPU-s meanwhile")
        print("  → time to available is \(fmt(rollout / baseline, 2))× the bare-pod baseline")

        // Two windows after everything is available: the first still drains the rollout's tail.
        for window in 1...2 {
            let steadyStart = Self.cpuSeconds(controllers.processIdentifier)
            let revisionBefore = Int(try await client.list(Namespace.self, namespace: nil).resourceVersion) ?? 0
            try await Task.sleep(for: .seconds(steadySeconds))
            let steady = (Self.cpuSeconds(controllers.processIdentifier) - steadyStart) / Double(steadySeconds)
            let writes = (Int(try await client.list(Namespace.self, namespace: nil).resourceVersion) ?? 0) - revisionBefore
            print("  steady window \(window) (\(steadySeconds) s): controllers use \(fmt(steady * 100, 2)) % of one core; RSS \(Self.rssMiB(controllers.processIdentifier)) MiB; "
                  + "\(fmt(Double(writes) / Double(steadySeconds), 1)) writes/s in the store (the simulated nodes' lease renewals alone: \(fmt(Double(nodes) / 10, 1))/s)")
            fflush(nil)
        }
        kill(controllers.processIdentifier, SIGTERM)
        controllers.waitUntilExit()
        simulation.cancel()
        try? await client.shutdown()
    }

    static func deployment(_ name: String, replicas: Int32) -> Deployment {
        var d = Deployment()
        d.metadata.name = name
        d.metadata.namespace = "default"
        d.spec.replicas = replicas
        d.spec.selector.matchLabels = ["app": name]
        d.spec.template.metadata.labels = ["app": name]
        var container = Container()
        container.name = "main"
        container.command = ["sleep", "3600"]
        d.spec.template.spec.containers = [container]
        d.applyDefaults()
        return d
    }

    /// Runs `body(0..<count)` with `width` at a time.
    static func inParallel(_ count: Int, _ width: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<width {
                group.addTask { var i = lane; while i < count { try await body(i); i += width } }
            }
            try await group.waitForAll()
        }
    }

    static func waitUntil(_ condition: () async throws -> Bool) async throws {
        while try await !condition() { try await Task.sleep(for: .milliseconds(500)) }
    }

    /// Creates a namespace (a create into a missing one is refused, as in Kubernetes).
    static func createNamespace(_ name: String, client: APIClient) async throws {
        var namespace = Namespace()
        namespace.metadata.name = name
        _ = try await client.create(namespace)
    }

    static func registerNodes(_ names: [String], client: APIClient) async throws {
        try await inParallel(names.count, 16) { i in
            var node = Node()
            node.metadata.name = names[i]
            node.status.capacity = ["cpu": "32", "memory": "128Gi", "pods": "110"]
            node.status.allocatable = node.status.capacity
            var condition = NodeCondition()
            condition.type = "Ready"
            condition.status = "True"
            node.status.conditions = [condition]
            let created = try await client.create(node)
            var withStatus = created
            withStatus.status = node.status
            _ = try await client.updateStatus(withStatus)
            var lease = Lease()
            lease.metadata.namespace = "kube-node-lease"
            lease.metadata.name = names[i]
            lease.spec.holderIdentity = names[i]
            lease.spec.leaseDurationSeconds = 40
            lease.spec.renewTime = .init(date: Date())
            _ = try await client.create(lease)
        }
    }

    /// The simulated nodes: renew leases every 10 s, bind unbound pods in turn, and make bound pods
    /// Running and Ready — without starting anything.
    static func simulateNodes(_ names: [String], client: APIClient) async {
        let (work, queue) = AsyncStream<Pod>.makeStream()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(10))
                    try? await inParallel(names.count, 8) { i in
                        guard var lease = try? await client.get(Lease.self, namespace: "kube-node-lease", name: names[i]) else { return }
                        lease.spec.renewTime = .init(date: Date())
                        _ = try? await client.update(lease)
                    }
                }
            }
            group.addTask {
                do {
                    for try await event in client.watch(Pod.self, WatchRequest()) {
                        switch event {
                        case .added(let pod), .modified(let pod): queue.yield(pod)
                        case .relisted(let pods, _): for pod in pods { queue.yield(pod) }
                        default: continue
                        }
                    }
                } catch {}
            }
            let turn = Turn()
            // One consumer loop fans the work out to a bounded set of workers.
            group.addTask {
                await withTaskGroup(of: Void.self) { workers in
                    var inFlight = 0
                    for await pod in work {
                        if inFlight >= 32 { await workers.next(); inFlight -= 1 }
                        inFlight += 1
                        workers.addTask {
                            if pod.metadata.hasDeletionTimestamp { return }
                            if pod.spec.nodeName.isEmpty {
                                let n = turn.next()
                                try? await client.bind(namespace: pod.metadata.namespace, pod: pod.metadata.name, node: names[n % names.count])
                            } else if !pod.isReady {
                                var ready = pod
                                ready.status.phase = "Running"
                                ready.status.hostIp = "10.0.0.1"
                                var condition = PodCondition()
                                condition.type = "Ready"
                                condition.status = "True"
                                condition.lastTransitionTime = .init(date: Date())
                                ready.status.conditions = [condition]
                                _ = try? await client.updateStatus(ready)
                            }
                        }
                    }
                }
            }
            await group.waitForAll()
        }
    }

    static func cpuSeconds(_ pid: pid_t) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3; utime and stime are fields 14 and 15.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func rssMiB(_ pid: pid_t) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
    }
}

/// Round-robin position shared by the binding workers.
final class Turn: Sendable {
    let value = Atomic<Int>(0)
    func next() -> Int { value.add(1, ordering: .relaxed).newValue }
}
