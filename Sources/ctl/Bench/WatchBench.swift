import ArgumentParser
import Store

/// Watch fan-out: W watchers each receive every one of E events from the watch hub.
struct WatchBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch", abstract: "Watch fan-out: deliveries/s and delivery lag.")

    @Option(help: "Watchers.") var watchers = 1_000
    @Option(help: "Events published.") var events = 100_000
    @Option(help: "Events per publish (one commit's worth).") var batch = 100
    @Option(help: "Runs; the median is reported.") var runs = 3

    func run() async throws {
        print("machine: \(machineDescription())")
        var rates: [Double] = []
        var p50s: [Double] = []
        var p99s: [Double] = []
        for _ in 0..<runs {
            let result = await WatchFanoutBenchmark.run(watchers: watchers, events: events, batch: batch)
            rates.append(Double(result.deliveries) / result.seconds)
            p50s.append(result.lagP50Milliseconds)
            p99s.append(result.lagP99Milliseconds)
            print("  run: \(result.deliveries) deliveries in \(fmt(result.seconds, 2)) s = \(fmt(Double(result.deliveries) / result.seconds / 1e6, 2))M/s; lag p50 \(fmt(result.lagP50Milliseconds, 2)) ms, p99 \(fmt(result.lagP99Milliseconds, 2)) ms")
        }
        print("median: \(fmt(median(rates) / 1e6, 2))M deliveries/s, lag p50 \(fmt(median(p50s), 2)) ms, p99 \(fmt(median(p99s), 2)) ms (\(watchers) watchers, \(events) events, batches of \(batch))")
    }
}
