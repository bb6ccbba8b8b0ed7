import API
import ArgumentParser
import Foundation
import Store

/// Updates a few objects many times over on a store with the server's compactor running, and
/// shows what the history costs: files against live data, log rows, and the time of a list before
/// the churn, right after it (history not yet compacted) and after compaction.
struct ChurnBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "churn", abstract: "Store growth under updates: file size against live data, rows, list latency before and after compaction.")

    @Option(help: "Objects (pods) updated in turn.") var objects = 1_000
    @Option(help: "Updates in all.") var updates = 1_000_000
    @Option(help: "Concurrent writers.") var writers = 64
    @Option(help: "Compaction window (the server's --compaction-interval; short here so the run is short).") var window = "10s"
    @Option(help: "Lists timed at each point; the median is reported.") var lists = 30
    @Option(help: "Directory for the temporary store (default: the system temp dir).") var dir: String?

    func run() async throws {
        print("machine: \(machineDescription())")
        let windowSeconds = try TokenTTL.seconds(window, flag: "--window")
        guard windowSeconds > 0 else { throw ValidationError("--window: must be more than 0") }
        let path = ((dir ?? NSTemporaryDirectory()) as NSString).appendingPathComponent("cox-bench-churn-\(getpid())")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try SQLiteStore(directory: path)
        defer { store.close() }
        // The baseline, measured in the same minutes: a store holding the same pods with no
        // history, listed in turn with the churned one (the machine's speed drifts within a run).
        let baselinePath = path + "-baseline"
        defer { try? FileManager.default.removeItem(atPath: baselinePath) }
        let baseline = try SQLiteStore(directory: baselinePath)
        defer { baseline.close() }
        let window = Duration.seconds(windowSeconds)
        let compactor = Task { await store.runCompactor(window: window, tick: window / 10) }
        defer { compactor.cancel() }
        print("store: \(path); \(objects) pods, \(updates) updates by \(writers) writers, compaction window \(self.window)")

        let template = Samples.pod()
        for i in 0..<objects {
            var pod = template
            pod.metadata = ObjectMeta()
            pod.metadata.name = "pod-\(i)"
            pod.metadata.namespace = "default"
            _ = try await store.create(pod)
            _ = try await baseline.create(pod)
        }
        let before = try await measure(store, against: baseline, "before the churn")

        let clock = Stopwatch()
        let total = updates, objects = self.objects, writers = self.writers
        let progressEvery = max(1, total / 10)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var i = writer
                    while i < total {
                        let value = String(i)
                        _ = try await store.update(Pod.self, namespace: "default", name: "pod-\(i % objects)") { pod in
                            pod.metadata.annotations["churn"] = value
                        }
                        if i % progressEvery == 0 && i > 0 {
                            print("  \(i / progressEvery * 10) % of the updates (\(fmt(Double(i) / clock.seconds, 0))/s)")
                            fflush(nil)
                        }
                        i += writers
                    }
                }
            }
            try await group.waitForAll()
        }
        let churnSeconds = clock.seconds
        print("churn: \(total) updates in \(fmt(churnSeconds)) s (\(fmt(Double(total) / churnSeconds, 0))/s)")
        let during = try await measure(store, against: baseline, "right after the churn (history within the window)")

        let last = store.currentRevision
        let waited = Stopwatch()
        while store.compactedRevision < last {
            try await Task.sleep(for: .milliseconds(200))
        }
        // The compactor reclaims the freed pages right after; waiting for it is waiting for this.
        try await store.reclaimSpace()
        print("compacted to \(last) \(fmt(waited.seconds)) s after the churn ended")
        let after = try await measure(store, against: baseline, "after compaction")

        let cap = Double(SQLiteStore.walSizeLimit)
        print("""
            result: files after compaction \(fmt(Double(after.footprint.fileBytes + after.footprint.walBytes) / 1_048_576)) MiB = \
            \(fmt(Double(after.footprint.fileBytes) / Double(after.footprint.liveBytes), 2))× the live data \
            + WAL \(fmt(Double(after.footprint.walBytes) / 1_048_576)) MiB (cap \(fmt(cap / 1_048_576, 0)) MiB); \
            target: database ≤ 2× live data, WAL ≤ cap
            result: list of \(objects) pods against the fresh store, interleaved: before the churn \(fmt(before.ratio, 2))×, \
            after compaction \(fmt(after.ratio, 2))× (with history, before compaction: \(fmt(during.ratio, 2))×); \
            after/before \(fmt(after.ratio / before.ratio, 2))×; target ≤ 1.2×
            """)
    }

    struct Point {
        var footprint: StorageFootprint
        var listSeconds: Double
        /// Median list time against the fresh store's, listed in turn.
        var ratio: Double
    }

    func measure(_ store: SQLiteStore, against baseline: SQLiteStore, _ label: String) async throws -> Point {
        var times: [Double] = []
        var ratios: [Double] = []
        for _ in 0..<lists {
            var pair: [Double] = []
            for subject in [store, baseline] {
                let clock = Stopwatch()
                let result = try await subject.list(Pod.self, options: ListOptions(namespace: "default"))
                pair.append(clock.seconds)
                guard result.items.count == objects else { throw ValidationError("listed \(result.items.count) pods, expected \(objects)") }
            }
            times.append(pair[0])
            ratios.append(pair[0] / pair[1])
        }
        let footprint = try store.footprint()
        let listSeconds = median(times)
        print("""
              \(label): \(footprint.logRows) log rows, \(footprint.liveObjects) live objects (\(fmt(Double(footprint.liveBytes) / 1_048_576, 2)) MiB), \
            database \(fmt(Double(footprint.fileBytes) / 1_048_576, 2)) MiB, WAL \(fmt(Double(footprint.walBytes) / 1_048_576, 2)) MiB; \
            list \(fmt(listSeconds * 1000, 2)) ms, \(fmt(median(ratios), 2))× the fresh store's (median of \(lists) pairs)
            """)
        fflush(nil)
        return Point(footprint: footprint, listSeconds: listSeconds, ratio: median(ratios))
    }
}
