import APIServer
import ArgumentParser
import Logging
import Dispatch
import Foundation
import Store

/// Load generators and micro-benchmarks. Not tests: they print figures for BENCHMARKS.md.
/// Build with `-c release` before quoting numbers.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: codec, store, watch fan-out, API, pods, controllers, scheduler (use a release build).",
        subcommands: [CodecBench.self, StoreBench.self, ChurnBench.self, WatchBench.self, APIBench.self, PodsBench.self, ControllersBench.self, SchedBench.self])
}

/// An API server inside the bench process: its own temporary data directory, a loopback port, and
/// room for many requests in flight. `stop` ends it and removes the directory.
struct BenchServer {
    let dir: String
    let kubeconfigPath: String
    let task: Task<Void, any Error>

    /// A server in this process on a data directory of its own; with `etcd`, its state in etcd.
    static func start(_ name: String, etcd: EtcdStore.Options? = nil) async throws -> BenchServer {
        let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("cox-bench-\(name)-\(getpid())")
        var configuration = APIServer.Configuration(dataDirectory: dir)
        configuration.etcd = etcd
        configuration.port = 0
        configuration.limits.maxInflightRequests = 10_000
        // Every bench client comes from 127.0.0.1.
        configuration.limits.maxConnectionsPerAddress = 0
        var logger = Logger(label: "cox.bench")
        logger.logLevel = .error
        let server = APIServer(configuration: configuration, logger: logger)
        let (ready, readyContinuation) = AsyncStream<String>.makeStream()
        let task = Task { try await server.run { _, kubeconfig in readyContinuation.yield(kubeconfig) } }
        var iterator = ready.makeAsyncIterator()
        guard let kubeconfigPath = await iterator.next() else {
            task.cancel()
            throw ValidationError("the server did not start")
        }
        return BenchServer(dir: dir, kubeconfigPath: kubeconfigPath, task: task)
    }

    func stop() {
        task.cancel()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// Starts this `cox` binary with `arguments` as a child process (output discarded), so a
/// component's CPU can be measured apart from the bench's own.
func launchCoxChild(_ arguments: [String]) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
}

struct Stopwatch {
    let start = ContinuousClock.now
    var seconds: Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// Runs operations 0..<total on `clients` concurrent tasks (client c runs c, c + clients, …); each
/// returns when it started (uptime ns), and its latency (ms) runs from then to its return.
func timedOperations(clients: Int, total: Int,
                     _ operation: @escaping @Sendable (_ client: Int, _ index: Int) async throws -> UInt64) async throws -> [Double] {
    try await withThrowingTaskGroup(of: [Double].self) { group in
        for c in 0..<clients {
            group.addTask {
                var out: [Double] = []
                var i = c
                while i < total {
                    let t0 = try await operation(c, i)
                    out.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                    i += clients
                }
                return out
            }
        }
        var all: [Double] = []
        for try await part in group { all += part }
        return all
    }
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.down)))]
}

func fmt(_ value: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", value) }

func machineDescription() -> String {
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let memory = Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824
    var cpu = "unknown cpu"
    if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
       let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
       let name = line.split(separator: ":", maxSplits: 1).last {
        cpu = name.trimmingCharacters(in: .whitespaces)
    }
    #if DEBUG
    let build = "DEBUG build (figures are not representative)"
    #else
    let build = "release build"
    #endif
    return "\(cores) cores, \(fmt(memory, 0)) GiB, \(cpu); \(build)"
}
