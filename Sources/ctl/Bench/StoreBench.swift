import API
import ArgumentParser
import Foundation
import Store

/// Durable creates per second with 1 and with N concurrent writers, group commit against one
/// transaction per write, each on a fresh store in a temporary directory.
struct StoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "store", abstract: "Durable creates/s: group commit vs one transaction per write.")

    @Option(help: "Concurrent writer counts to measure.") var writers: [Int] = [1, 64]
    @Option(help: "Creates per run with group commit.") var creates = 20_000
    @Option(help: "Creates per run with one transaction per write (slow: each is an fsync).") var baselineCreates = 2_000
    @Option(help: "Runs per configuration; the median is reported.") var runs = 3
    @Option(help: "Directory for the temporary stores (default: the system temp dir).") var dir: String?

    func run() async throws {
        print("machine: \(machineDescription())")
        let base = dir ?? NSTemporaryDirectory()
        print("stores under: \(base) (synchronous=FULL, WAL)")
        var rows: [(String, Double)] = []
        for writerCount in writers {
            for groupCommit in [false, true] {
                var rates: [Double] = []
                var batches: [Double] = []
                for run in 0..<runs {
                    let path = (base as NSString).appendingPathComponent("cox-bench-store-\(getpid())-\(run)")
                    defer { try? FileManager.default.removeItem(atPath: path) }
                    var options = SQLiteStore.Options()
                    options.groupCommit = groupCommit
                    let store = try SQLiteStore(directory: path, options: options)
                    let total = groupCommit ? creates : baselineCreates
                    let seconds = try await Self.createPods(store: store, total: total, writers: writerCount)
                    rates.append(Double(total) / seconds)
                    batches.append(Double(store.stats.writes.load(ordering: .relaxed)) / Double(max(1, store.stats.commits.load(ordering: .relaxed))))
                    store.close()
                }
                let label = "\(writerCount) writer(s), \(groupCommit ? "group commit" : "one txn per write")"
                rows.append((label, median(rates)))
                print("  \(label.padding(toLength: 40, withPad: " ", startingAt: 0)) \(fmt(median(rates), 0)) creates/s (runs: \(rates.map { fmt($0, 0) }.joined(separator: ", ")); mean batch \(fmt(median(batches), 1)))")
            }
            let perWrite = rows[rows.count - 2].1, grouped = rows[rows.count - 1].1
            print("  → \(writerCount) writer(s): group commit is \(fmt(grouped / perWrite, 1))× one-per-write")
        }
    }

    static func createPods(store: SQLiteStore, total: Int, writers: Int) async throws -> Double {
        let template = Samples.pod()
        let clock = Stopwatch()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var i = writer
                    while i < total {
                        var pod = template
                        pod.metadata = ObjectMeta()
                        pod.metadata.name = "pod-\(i)"
                        pod.metadata.namespace = "default"
                        _ = try await store.create(pod)
                        i += writers
                    }
                }
            }
            try await group.waitForAll()
        }
        return clock.seconds
    }
}
