import API
import Synchronization

/// A stream of committed changes after a revision, filtered by kind, namespace and selectors.
///
/// It first catches up from the store's revision log (if the history it needs is older than the
/// in-memory ring), then follows the ring. Each event is delivered once, in revision order.
/// `next()` returns batches; an empty batch means the store closed.
public final class StoreWatch: Sendable, AsyncSequence {
    public typealias Element = StoreEvent

    /// Events read from history per step while catching up.
    static let replayBatch = 1_000
    /// Events taken from the ring per step.
    static let ringBatch = 4_096

    struct State {
        /// Every event up to here has been delivered or filtered out.
        var cursor: Int64
        /// Whether the watch reads from the ring (after which falling behind is an error).
        var live = false
        var finished = false
        /// Set by `tick()`: the waiting `nextOrTick()` returns an empty batch once.
        var ticked = false
    }

    let hub: WatchHub
    let options: WatchOptions
    /// This watch's identity in the hub, for waiting and being woken alone.
    let waiterID: UInt64
    /// Events after a revision from the store's history (up to `limit`), and the revision they
    /// cover up to (at least the last event's; more when history holds nothing of ours past it).
    let replay: Replay
    public typealias Replay = @Sendable (_ after: Int64, _ limit: Int) async throws -> (events: [StoreEvent], through: Int64)
    private let state: Mutex<State>

    init(hub: WatchHub, from revision: Int64, options: WatchOptions,
         replay: @escaping Replay) {
        self.hub = hub
        self.options = options
        self.replay = replay
        self.state = Mutex(State(cursor: revision))
        self.waiterID = hub.newWaiterID()
        hub.watcherStarted()
    }

    deinit {
        if !state.withLock({ $0.finished }) { hub.watcherEnded() }
        hub.forget(waiterID)
    }

    /// The revision of the last event delivered or skipped: resume a new watch from here.
    public var revision: Int64 { state.withLock { $0.cursor } }

    /// Stops the watch and releases its slot; `next()` then returns an empty batch, also when it
    /// is already waiting (from another task: timeouts, disconnects).
    public func cancel() {
        let wasFinished = state.withLock { s -> Bool in
            defer { s.finished = true }
            return s.finished
        }
        if !wasFinished {
            hub.watcherEnded()
            hub.wake(waiterID)
        }
    }

    private func finish() {
        let wasFinished = state.withLock { s -> Bool in
            defer { s.finished = true }
            return s.finished
        }
        if !wasFinished { hub.watcherEnded() }
    }

    /// The next non-empty batch of matching events; empty when the watch or the store has ended.
    /// Throws `compacted`, `watcherTooSlow`, or CancellationError.
    public func next() async throws -> [StoreEvent] {
        while true {
            guard let batch = try await nextOrTick() else { return [] }
            if !batch.isEmpty { return batch }
        }
    }

    /// Makes a waiting `nextOrTick()` return an empty batch (for periodic bookmarks and liveness
    /// checks of the consumer's connection).
    public func tick() {
        state.withLock { $0.ticked = true }
        hub.wake(waiterID)
    }

    /// Like `next()`, but returns an empty batch after `tick()` and nil when the watch has ended.
    public func nextOrTick() async throws -> [StoreEvent]? {
        while true {
            let (cursor, live, finished, ticked) = state.withLock { s in
                defer { s.ticked = false }
                return (s.cursor, s.live, s.finished, s.ticked)
            }
            if finished { return nil }
            if ticked { return [] }
            try Task.checkCancellation()
            let events: [StoreEvent]
            let through: Int64
            switch hub.read(after: cursor, max: Self.ringBatch, node: options.nodeName) {
            case .events(let read, let seen):
                events = read
                through = seen
                state.withLock { $0.live = true }
            case .caughtUp:
                state.withLock { $0.live = true }
                await hub.waitForEvents(after: cursor, node: options.nodeName, id: waiterID)
                continue
            case .closed:
                finish()
                return nil
            case .behind:
                if live {
                    finish()
                    throw StoreError(.watcherTooSlow, "watch fell more than \(hub.capacity) events behind; resume from revision \(cursor)", revision: cursor)
                }
                let replayed: (events: [StoreEvent], through: Int64)
                do {
                    replayed = try await replay(cursor, Self.replayBatch)
                } catch {
                    finish()
                    throw error
                }
                if replayed.through <= cursor { continue }
                events = replayed.events
                through = replayed.through
            }
            state.withLock { $0.cursor = through }
            let matching = events.compactMap(options.view)
            if !matching.isEmpty { return matching }
        }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let watch: StoreWatch
        var buffer: [StoreEvent] = []
        var index = 0

        public mutating func next() async throws -> StoreEvent? {
            if index == buffer.count {
                buffer = try await watch.next()
                index = 0
                if buffer.isEmpty { return nil }
            }
            defer { index += 1 }
            return buffer[index]
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(watch: self) }
}
