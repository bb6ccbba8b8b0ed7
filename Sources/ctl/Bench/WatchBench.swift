import ArgumentParser
import Store

/// Watch fan-out: W watchers each receive every one of E events. The hub (one shared ring, a
/// cursor per watcher) against the baseline of one AsyncStream per watcher, in the same run.
struct WatchBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch", abstract: "Watch fan-out: deliveries/s and delivery lag.")

    @Option(help: "Watchers.") var watchers = 1_000
    @Option(help: "Events published.") var events = 100_000
    @Option(help: "Events per publish (one commit's worth).") var batch = 100
    @Option(help: "Runs; the median is reported.") var runs = 3
    @Flag(help: "Skip the per-watcher-stream baseline.") var noBaseline = false

    func run() async throws {
        print("machine: \(machineDescription())")
        print("\(watchers) watchers, \(events) events, published in batches of \(batch)")
        var medians: [String: Double] = [:]
        let designs: [(String, @Sendable (Int, Int, Int) async -> WatchFanoutBenchmark.Result)] =
            [("shared ring (cox)", WatchFanoutBenchmark.run)] + (noBaseline ? [] : [("stream per watcher (baseline)", WatchFanoutBenchmark.runPerWatcherStreams)])
        for (name, measure) in designs {
            var rates: [Double] = []
            var p50s: [Double] = []
            var p99s: [Double] = []
            for _ in 0..<runs {
                let result = await measure(watchers, events, batch)
                rates.append(Double(result.deliveries) / result.seconds)
                p50s.append(result.lagP50Milliseconds)
                p99s.append(result.lagP99Milliseconds)
            }
            medians[name] = median(rates)
            print("  \(name.padding(toLength: 30, withPad: " ", startingAt: 0)) \(fmt(median(rates) / 1e6, 2))M deliveries/s (runs: \(rates.map { fmt($0 / 1e6, 2) }.joined(separator: ", "))), lag p50 \(fmt(median(p50s), 2)) ms, p99 \(fmt(median(p99s), 2)) ms")
        }
        if let ring = medians["shared ring (cox)"], let base = medians["stream per watcher (baseline)"] {
            print("  → shared ring is \(fmt(ring / base, 1))× the per-watcher streams")
        }
    }
}
