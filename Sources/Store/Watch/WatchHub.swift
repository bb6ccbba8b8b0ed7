import Dispatch
import Synchronization

/// The recent history of committed events, shared by every watcher.
///
/// Publishing appends each event once to a ring and wakes the watchers that wait; watchers keep only
/// a cursor (a revision) into the ring, so a write costs the same with 1 watcher or 10,000 and a
/// slow watcher never slows a writer. A watcher whose cursor the ring has overwritten has fallen
/// too far behind: it is ended with `watcherTooSlow` and resumes from its last revision.
///
/// Revisions are gap-free, so the event with revision r sits in slot r % capacity:
///
///     capacity 4, head 9:   slot0=r8  slot1=r9  slot2=r6  slot3=r7     oldest = 6
///     read(after: 6) -> [r7, r8, r9];  read(after: 4) -> .behind (r5 is gone)
final class WatchHub: Sendable {
    enum ReadResult {
        case events([StoreEvent])
        /// Nothing after this revision yet.
        case caughtUp
        /// The events right after this revision are no longer in the ring.
        case behind(oldest: Int64)
        case closed
    }

    struct State {
        var ring: [StoreEvent?]
        /// Revision of the newest published event (0 before any).
        var head: Int64
        var count: Int
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiterID: UInt64 = 0
        var closed = false
        var watchers = 0
        /// When waiting watchers were last woken (uptime ns), and whether a deferred wake is due.
        var lastWake: UInt64 = 0
        var wakePending = false
    }

    let capacity: Int
    /// Waiting watchers are woken at most this often (ns): a commit that follows the last wake
    /// closer than this wakes them when the interval has passed, with everything published
    /// meanwhile. Under a stream of small commits each watcher then writes (and its client reads)
    /// one batch per interval instead of one per commit; when commits are further apart than this
    /// they wake at once, adding nothing.
    let minWakeInterval: UInt64
    private let state: Mutex<State>

    init(capacity: Int, head: Int64, minWakeInterval: Duration = .zero) {
        precondition(capacity > 0)
        self.capacity = capacity
        let (seconds, attoseconds) = minWakeInterval.components
        self.minWakeInterval = UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
        self.state = Mutex(State(ring: Array(repeating: nil, count: capacity), head: head, count: 0))
    }

    var head: Int64 { state.withLock { $0.head } }
    var activeWatchers: Int { state.withLock { $0.watchers } }

    func watcherStarted() { state.withLock { $0.watchers += 1 } }
    func watcherEnded() { state.withLock { $0.watchers -= 1 } }

    /// Appends events (consecutive revisions, in order) and wakes every waiting watcher, at once
    /// or, within `minWakeInterval` of the last wake, when it has passed.
    func publish(_ events: [StoreEvent]) {
        guard !events.isEmpty else { return }
        let (waiters, deferBy) = state.withLock { s -> ([CheckedContinuation<Void, Never>], UInt64?) in
            for event in events {
                precondition(event.revision == s.head + 1, "revisions must be published in order without gaps")
                s.ring[Int(event.revision % Int64(capacity))] = event
                s.head = event.revision
                s.count = min(s.count + 1, capacity)
            }
            if s.wakePending { return ([], nil) }
            let now = DispatchTime.now().uptimeNanoseconds
            let since = now &- s.lastWake
            if minWakeInterval > 0 && since < minWakeInterval {
                s.wakePending = true
                return ([], minWakeInterval - since)
            }
            s.lastWake = now
            return (Self.takeWaiters(&s), nil)
        }
        for waiter in waiters { waiter.resume() }
        if let deferBy {
            Task {
                try? await Task.sleep(nanoseconds: deferBy)
                self.deferredWake()
            }
        }
    }

    private func deferredWake() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.wakePending = false
            s.lastWake = DispatchTime.now().uptimeNanoseconds
            return Self.takeWaiters(&s)
        }
        for waiter in waiters { waiter.resume() }
    }

    private static func takeWaiters(_ s: inout State) -> [CheckedContinuation<Void, Never>] {
        let woken = Array(s.waiters.values)
        s.waiters.removeAll(keepingCapacity: true)
        return woken
    }

    /// Whether the ring still holds every event after `after`.
    func covers(after: Int64) -> Bool {
        state.withLock { s in after >= s.head - Int64(s.count) }
    }

    /// Up to `max` events after revision `after`.
    func read(after: Int64, max: Int) -> ReadResult {
        state.withLock { s in
            if after >= s.head { return s.closed ? .closed : .caughtUp }
            let oldest = s.head - Int64(s.count) + 1
            if after + 1 < oldest { return .behind(oldest: oldest) }
            let end = Swift.min(s.head, after + Int64(max))
            var events: [StoreEvent] = []
            events.reserveCapacity(Int(end - after))
            var revision = after + 1
            while revision <= end {
                events.append(s.ring[Int(revision % Int64(capacity))]!)
                revision += 1
            }
            return .events(events)
        }
    }

    /// Returns once an event after `after` is published, the hub closes, or the task is cancelled.
    func waitForEvents(after: Int64) async {
        let id = state.withLock { s -> UInt64 in
            s.nextWaiterID += 1
            return s.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.head > after || s.closed || Task.isCancelled { return true }
                    s.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }

    /// Wakes every waiting watcher without publishing (a watch that was cancelled from outside
    /// notices at once; the others check and wait again).
    func wakeAll() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            let woken = Array(s.waiters.values)
            s.waiters.removeAll(keepingCapacity: true)
            return woken
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Ends every watch: they finish once they have read what was published.
    func close() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.closed = true
            let woken = Array(s.waiters.values)
            s.waiters.removeAll()
            return woken
        }
        for waiter in waiters { waiter.resume() }
    }
}
