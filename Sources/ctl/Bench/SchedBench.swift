import API
import ArgumentParser
import Client
import Foundation
import PKI
import Synchronization

/// `cox bench sched`: N simulated nodes, P pods, one scheduler. The API server runs in this
/// process; `cox scheduler` runs as a child process (its CPU is measured alone). Nodes are Node
/// objects with capacity and a Ready condition (no agents: nothing else competes for the CPU).
/// A watch in this process records when each pod is seen bound (bound and persisted).
///
/// Two ways to feed it: `concurrent` creates the pods while the scheduler runs (create-to-bound
/// latency is meaningful); `precreated` creates them all first and then starts the scheduler (the
/// rate is the scheduler's alone). Baseline in the same run, on a fresh server: the same pods bound
/// by a round-robin binder with no decision logic — the API's own binding ceiling.
struct SchedBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sched", abstract: "Scheduler throughput and create-to-bound latency on simulated nodes.")

    @Option(help: "Simulated nodes.") var nodes = 5_000
    @Option(help: "Pods.") var pods = 50_000
    @Option(help: "concurrent (create while scheduling) or precreated (create first, then start the scheduler).") var mode = "concurrent"
    @Option(help: "Concurrent creating requests.") var clients = 64
    @Flag(help: "Skip the round-robin binder baseline.") var noBaseline = false

    func validate() throws {
        guard ["concurrent", "precreated"].contains(mode) else { throw ValidationError("--mode must be concurrent or precreated, not \"\(mode)\"") }
        guard nodes > 0, pods > 0, clients > 0 else { throw ValidationError("--nodes, --pods and --clients must be positive") }
    }

    struct Result {
        var seconds: Double
        var rate: Double
        /// From the first pod seen bound to the last: the rate once binding runs.
        var window: Double
        var windowRate: Double
        var p50: Double
        var p99: Double
        var createSeconds: Double
        var schedulerCPU: Double?
        /// This process (the API server, with the bench's watch and, for the baseline, the binder)
        /// while pods were being bound.
        var serverCPU: Double
    }

    func run() async throws {
        print("machine: \(machineDescription())")
        print("\(pods) pods on \(nodes) simulated nodes, mode \(mode)")
        fflush(nil)
        let baseline = noBaseline ? nil : try await measure(scheduler: false)
        if let baseline { report("round-robin binder (baseline)", baseline) }
        let result = try await measure(scheduler: true)
        report("cox scheduler", result)
        if let baseline { print("  → the scheduler binds at \(fmt(result.windowRate / baseline.windowRate, 2))× the round-robin binder's rate (first→last bound)") }
    }

    func report(_ name: String, _ r: Result) {
        var line = "  \(name.padding(toLength: 30, withPad: " ", startingAt: 0)) \(fmt(r.windowRate, 0)) pods bound/s first→last bound (\(fmt(r.window, 1)) s), "
            + "\(fmt(r.rate, 0))/s counting start-up (\(fmt(r.seconds, 1)) s); "
            + "create→bound p50 \(fmt(r.p50 * 1000, 1)) ms, p99 \(fmt(r.p99 * 1000, 1)) ms; creates took \(fmt(r.createSeconds, 1)) s"
        if let cpu = r.schedulerCPU { line += "; scheduler \(fmt(cpu, 1)) CPU-s (\(fmt(cpu / Double(pods) * 1e6, 0)) µs/pod)" }
        line += "; this process (server\(r.schedulerCPU == nil ? " and binder" : "")) \(fmt(r.serverCPU / Double(pods) * 1e6, 0)) µs/pod"
        print(line)
        fflush(nil)
    }

    func measure(scheduler useScheduler: Bool) async throws -> Result {
        let server = try await BenchServer.start(useScheduler ? "sched" : "binder")
        defer { server.stop() }
        let client = try APIClient(kubeconfig: try Kubeconfig.load(path: server.kubeconfigPath), timeout: .seconds(120), maxConnections: 64)
        defer { Task { try? await client.shutdown() } }
        try await ControllersBench.createNamespace("bench", client: client)
        let names = (0..<nodes).map { String(format: "sim-%05d", $0) }
        try await ControllersBench.inParallel(names.count, 16) { i in
            var node = Node()
            node.metadata.name = names[i]
            node.metadata.labels = ["kubernetes.io/hostname": names[i]]
            let created = try await client.create(node)
            var withStatus = created
            withStatus.status.capacity = ["cpu": "32", "memory": "128Gi", "pods": "110"]
            withStatus.status.allocatable = withStatus.status.capacity
            var ready = NodeCondition()
            ready.type = "Ready"
            ready.status = "True"
            withStatus.status.conditions = [ready]
            _ = try await client.updateStatus(withStatus)
        }

        let start = ContinuousClock.now
        @Sendable func now() -> Double { let d = ContinuousClock.now - start; return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        let times = Times(pods)
        let (allBound, allBoundContinuation) = AsyncStream<Void>.makeStream()
        let pods = self.pods
        // The observer: when each pod is seen bound.
        let observer = Task {
            do {
                for try await event in client.watch(Pod.self, WatchRequest(namespace: "bench")) {
                    var seen: [Pod] = []
                    switch event {
                    case .added(let pod), .modified(let pod): seen = [pod]
                    case .relisted(let all, _): seen = all; times.listed.store(true, ordering: .relaxed)
                    default: continue
                    }
                    for pod in seen where !pod.spec.nodeName.isEmpty {
                        guard let i = Int(pod.metadata.name.dropFirst(2)), i < pods else { continue }
                        let first = times.bound.withLock { times -> Bool in
                            guard times[i].isNaN else { return false }
                            times[i] = now()
                            return true
                        }
                        if first && times.boundCount.add(1, ordering: .relaxed).newValue == pods { allBoundContinuation.yield() }
                    }
                }
            } catch {}
        }
        defer { observer.cancel() }
        while !times.listed.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(10)) }

        var child: Process?
        var binder: Task<Void, Never>?
        func startBinding() async throws {
            if useScheduler {
                child = try launchCoxChild(["scheduler", "--kubeconfig", server.kubeconfigPath])
                try await ControllersBench.waitUntil {
                    let lease = try? await client.get(Lease.self, namespace: "kube-system", name: "cox-scheduler")
                    return lease?.spec.holderIdentity.isEmpty == false
                }
            } else {
                // The same transport as `cox scheduler`: one HTTP/2 connection.
                let binderClient = try APIClient(kubeconfig: try Kubeconfig.load(path: server.kubeconfigPath), timeout: .seconds(120))
                binder = Task {
                    await Self.roundRobinBinder(names, client: binderClient)
                    try? await binderClient.shutdown()
                }
            }
        }
        defer {
            if let child, child.isRunning { kill(child.processIdentifier, SIGKILL) }
            binder?.cancel()
        }
        if mode == "concurrent" { try await startBinding() }
        let cpuBefore = child.map { ControllersBench.cpuSeconds($0.processIdentifier) }
        let createStart = now()
        try await ControllersBench.inParallel(pods, clients) { i in
            var pod = Pod()
            pod.metadata.name = "p-\(i)"
            pod.metadata.namespace = "bench"
            var container = Container()
            container.name = "main"
            container.command = ["sleep", "3600"]
            container.resources.requests = ["cpu": "100m", "memory": "128Mi"]
            pod.spec.containers = [container]
            times.created.withLock { $0[i] = now() }
            _ = try await client.create(pod)
        }
        let createSeconds = now() - createStart
        var firstAttempt = createStart
        if mode == "precreated" {
            firstAttempt = now()
            try await startBinding()
        }
        let cpuStart = cpuBefore ?? child.map { ControllersBench.cpuSeconds($0.processIdentifier) }
        let serverCPUStart = ControllersBench.cpuSeconds(getpid())
        var iterator = allBound.makeAsyncIterator()
        let progress = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                print("    \(fmt(now(), 0)) s: \(times.boundCount.load(ordering: .relaxed))/\(pods) bound"); fflush(nil)
            }
        }
        defer { progress.cancel() }
        if times.boundCount.load(ordering: .relaxed) < pods { _ = await iterator.next() }
        let end = now()
        let cpu = child.flatMap { process in cpuStart.map { ControllersBench.cpuSeconds(process.processIdentifier) - $0 } }
        let serverCPU = ControllersBench.cpuSeconds(getpid()) - serverCPUStart
        let boundTimes = times.bound.withLock { $0 }
        let latencies = zip(times.created.withLock { $0 }, boundTimes).map { $1 - $0 }.sorted()
        let seconds = end - firstAttempt
        let window = (boundTimes.max() ?? end) - (boundTimes.min() ?? firstAttempt)
        return Result(seconds: seconds, rate: Double(pods) / seconds, window: window, windowRate: Double(pods) / max(window, 1e-9), p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99),
                      createSeconds: createSeconds, schedulerCPU: cpu, serverCPU: serverCPU)
    }

    /// Binds unbound pods to the nodes in turn, 64 at a time, as the watch shows them: no filters,
    /// no scores, no cache — what binding costs by itself.
    static func roundRobinBinder(_ names: [String], client: APIClient) async {
        let (work, queue) = AsyncStream<Pod>.makeStream()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await event in client.watch(Pod.self, WatchRequest(namespace: "bench", fieldSelector: "spec.nodeName=")) {
                        switch event {
                        case .added(let pod): queue.yield(pod)
                        case .relisted(let pods, _): for pod in pods { queue.yield(pod) }
                        default: continue
                        }
                    }
                } catch {}
                queue.finish()
            }
            group.addTask {
                let turn = Turn()
                await withTaskGroup(of: Void.self) { workers in
                    var inFlight = 0
                    for await pod in work {
                        if inFlight >= 64 { await workers.next(); inFlight -= 1 }
                        inFlight += 1
                        workers.addTask {
                            try? await client.bind(namespace: pod.metadata.namespace, pod: pod.metadata.name, node: names[turn.next() % names.count])
                        }
                    }
                }
            }
            await group.waitForAll()
        }
    }
}

/// What the bench records per pod: when its create was sent and when it was seen bound.
final class Times: Sendable {
    let created: Mutex<[Double]>
    let bound: Mutex<[Double]>
    let boundCount = Atomic<Int>(0)
    let listed = Atomic<Bool>(false)
    init(_ count: Int) {
        created = Mutex([Double](repeating: .nan, count: count))
        bound = Mutex([Double](repeating: .nan, count: count))
    }
}
