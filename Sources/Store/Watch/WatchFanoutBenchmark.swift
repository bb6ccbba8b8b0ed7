import API
import Dispatch
import Synchronization

/// Measures the watch hub alone: one publisher, many watchers, every watcher receives every event.
/// Lives here because the hub is internal; `cox bench watch` prints its figures.
public enum WatchFanoutBenchmark {
    public struct Result: Sendable {
        public let deliveries: Int
        public let seconds: Double
        public let lagP50Milliseconds: Double
        public let lagP99Milliseconds: Double
    }

    /// Sample the lag of every Nth event per watcher (keeps memory bounded with many watchers).
    static let lagSampleEvery = 64

    /// Publish times by revision, written before an event is published and read after (the hub's
    /// lock orders the two).
    final class PublishTimes: @unchecked Sendable {
        let nanos: UnsafeMutableBufferPointer<UInt64>
        init(count: Int) { nanos = .allocate(capacity: count + 1) }
        deinit { nanos.deallocate() }
    }

    /// `count` events with revisions 1...count, all carrying the sample pod.
    static func preparedEvents(_ count: Int) -> [StoreEvent] {
        var pod = Samples.pod()
        pod.metadata.resourceVersion = "1"
        let bytes = pod.protobufBytes()
        let key = ObjectKey(of: pod)
        return (1...count).map { StoreEvent(revision: Int64($0), type: .modified, key: key, object: pod, bytes: bytes) }
    }

    /// Publishes `prepared` in batches, stamping each event's publish time, yielding between batches.
    static func publish(_ prepared: [StoreEvent], batch: Int, times: PublishTimes, deliver: ([StoreEvent]) -> Void) async {
        var next = 0
        while next < prepared.count {
            let end = min(prepared.count, next + batch)
            let now = DispatchTime.now().uptimeNanoseconds
            for i in next..<end { times.nanos[i + 1] = now }
            deliver(Array(prepared[next..<end]))
            next = end
            await Task.yield()
        }
    }

    static func summarize(lags: [UInt64], deliveries: Int, since start: UInt64) -> Result {
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let sorted = lags.sorted()
        func pct(_ p: Double) -> Double {
            sorted.isEmpty ? 0 : Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e6
        }
        return Result(deliveries: deliveries, seconds: seconds, lagP50Milliseconds: pct(0.5), lagP99Milliseconds: pct(0.99))
    }

    public static func run(watchers: Int, events: Int, batch: Int) async -> Result {
        // The ring holds every event so that the figure is fan-out cost, not cut-offs.
        let hub = WatchHub(capacity: events, head: 0)
        let prepared = preparedEvents(events)
        let times = PublishTimes(count: events)
        let start = DispatchTime.now().uptimeNanoseconds
        let lags = await withTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<watchers {
                let watch = StoreWatch(hub: hub, from: 0, options: WatchOptions()) { _, _ in ([], 0) }
                group.addTask {
                    var samples: [UInt64] = []
                    samples.reserveCapacity(events / lagSampleEvery + 1)
                    var received = 0
                    while received < events {
                        guard let batch = try? await watch.next(), !batch.isEmpty else { break }
                        let now = DispatchTime.now().uptimeNanoseconds
                        for event in batch where event.revision % Int64(lagSampleEvery) == 0 {
                            samples.append(now - times.nanos[Int(event.revision)])
                        }
                        received += batch.count
                    }
                    watch.cancel()
                    return samples
                }
            }
            group.addTask {
                await publish(prepared, batch: batch, times: times) { hub.publish($0) }
                return []
            }
            var all: [UInt64] = []
            for await samples in group { all.append(contentsOf: samples) }
            return all
        }
        return summarize(lags: lags, deliveries: watchers * events, since: start)
    }
}

extension WatchFanoutBenchmark {
    /// The baseline: the obvious design, one AsyncStream per watcher and a yield per event per
    /// watcher, measured the same way.
    public static func runPerWatcherStreams(watchers: Int, events: Int, batch: Int) async -> Result {
        let prepared = preparedEvents(events)
        let times = PublishTimes(count: events)
        let streams = (0..<watchers).map { _ in AsyncStream<StoreEvent>.makeStream(bufferingPolicy: .unbounded) }
        let start = DispatchTime.now().uptimeNanoseconds
        let lags = await withTaskGroup(of: [UInt64].self) { group in
            for (stream, _) in streams {
                group.addTask {
                    var samples: [UInt64] = []
                    var received = 0
                    for await event in stream {
                        if event.revision % Int64(lagSampleEvery) == 0 {
                            samples.append(DispatchTime.now().uptimeNanoseconds - times.nanos[Int(event.revision)])
                        }
                        received += 1
                        if received == events { break }
                    }
                    return samples
                }
            }
            group.addTask {
                await publish(prepared, batch: batch, times: times) { events in
                    for (_, continuation) in streams {
                        for event in events { continuation.yield(event) }
                    }
                }
                for (_, continuation) in streams { continuation.finish() }
                return []
            }
            var all: [UInt64] = []
            for await samples in group { all.append(contentsOf: samples) }
            return all
        }
        return summarize(lags: lags, deliveries: watchers * events, since: start)
    }
}
