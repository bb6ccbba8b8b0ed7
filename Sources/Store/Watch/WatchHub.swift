import API
import Dispatch
import Synchronization

/// The recent history of committed events, shared by every watcher.
///
/// Publishing appends each event once to a ring and wakes the watchers that wait; watchers keep only
/// a cursor (a revision) into the ring, so a write costs the same with 1 watcher or 10,000 and a
/// slow watcher never slows a writer. A watcher whose cursor the ring has overwritten has fallen
/// too far behind: it is ended with `watcherTooSlow` and resumes from its last revision.
///
/// The event with revision r sits in slot r % capacity; the ring spans the `capacity` revisions up
/// to the head:
///
///     capacity 4, head 9:   slot0=r8  slot1=r9  slot2=r6  slot3=r7     oldest = 6
///     read(after: 6) -> [r7, r8, r9];  read(after: 4) -> .behind (r5 is gone)
///
/// SQLite's revisions are gap-free. etcd's are not (its revision counts writes under every prefix,
/// and other clients may share the cluster): a slot whose revision had no event of ours is empty,
/// and a reader is behind only when an event it has not read was overwritten (`evictedThrough`),
/// not merely when the ring has moved past its cursor.
///
/// Pod events are also indexed by `spec.nodeName`, as Kubernetes' watch cache does: a watch of
/// one node's pods (every node agent keeps one) is woken only by that node's pods and reads only
/// them, instead of waking for, and filtering, every pod change in the cluster. Such a watch is
/// not cut off for falling behind other nodes' changes, only when one of its own was overwritten.
final class WatchHub: Sendable {
    enum ReadResult {
        /// Events after the cursor (for a node's watch, that node's pod events only), and the
        /// revision the reader has now seen everything up to.
        case events([StoreEvent], through: Int64)
        /// Nothing after this revision yet.
        case caughtUp
        /// The events right after this revision are no longer in the ring.
        case behind(oldest: Int64)
        case closed
    }

    typealias Waiter = CheckedContinuation<Void, Never>

    struct State {
        var ring: [StoreEvent?]
        /// Revision of the newest published event (0 before any).
        var head: Int64
        var count: Int
        /// The newest revision whose event is no longer in the ring (or, at the start, the head the
        /// hub began at: nothing before it was ever held). A reader after it misses nothing.
        var evictedThrough: Int64
        /// The newest revision of events never indexed by node (before the hub began, or
        /// discarded): a node's reader not past it may have missed its pods' events.
        var unindexedThrough: Int64
        /// Waiting watchers of everything, and of one node's pods.
        var waiters: [UInt64: Waiter] = [:]
        var nodeWaiters: [String: [UInt64: Waiter]] = [:]
        var waiterNode: [UInt64: String] = [:]
        /// Wakes asked for while the watcher was not waiting: its next wait returns at once (a
        /// bookmark tick or a cancel between its read and its wait is not lost).
        var pokes: Set<UInt64> = []
        /// Revisions of the pod events in the ring, by `spec.nodeName` (pruned as the ring turns).
        var byNode: [String: [Int64]] = [:]
        var indexed = 0
        /// The newest revision pruned from each node's list: a node watch behind it missed it.
        var prunedThrough: [String: Int64] = [:]
        var nextWaiterID: UInt64 = 0
        var closed = false
        var watchers = 0
        /// When waiting watchers were last woken (uptime ns), whether a deferred wake is due, and
        /// the nodes whose pods changed since the last wake.
        var lastWake: UInt64 = 0
        var wakePending = false
        var pendingNodes: Set<String> = []

        var oldest: Int64 { head - Int64(count) + 1 }
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
        self.state = Mutex(State(ring: Array(repeating: nil, count: capacity), head: head, count: 0, evictedThrough: head, unindexedThrough: head))
    }

    var head: Int64 { state.withLock { $0.head } }
    var activeWatchers: Int { state.withLock { $0.watchers } }

    func watcherStarted() { state.withLock { $0.watchers += 1 } }
    func watcherEnded() { state.withLock { $0.watchers -= 1 } }

    /// A watcher's identity for waiting and being woken.
    func newWaiterID() -> UInt64 {
        state.withLock { s in
            s.nextWaiterID += 1
            return s.nextWaiterID
        }
    }

    /// Appends events (consecutive revisions, in order) and wakes the watchers they concern (all
    /// but node watches of other nodes), at once or, within `minWakeInterval` of the last wake,
    /// when it has passed.
    func publish(_ events: [StoreEvent]) {
        guard !events.isEmpty else { return }
        let (waiters, deferBy) = state.withLock { s -> ([Waiter], UInt64?) in
            var touched: Set<String> = []
            for event in events {
                precondition(event.revision > s.head, "revisions must be published in increasing order")
                // The slots of the revisions skipped (none in SQLite) and of this one are reused.
                let skipped = min(event.revision - s.head, Int64(capacity))
                for revision in (event.revision - skipped + 1)...event.revision {
                    let slot = Int(revision % Int64(capacity))
                    if let old = s.ring[slot] { s.evictedThrough = max(s.evictedThrough, old.revision) }
                    s.ring[slot] = nil
                }
                s.ring[Int(event.revision % Int64(capacity))] = event
                s.count = Int(min(Int64(s.count) + (event.revision - s.head), Int64(capacity)))
                s.head = event.revision
                // Under its node and, when it moved (bound), its previous one: that node's
                // watches see it leave.
                func index(_ node: String) {
                    s.byNode[node, default: []].append(event.revision)
                    s.indexed += 1
                    touched.insert(node)
                }
                if let node = event.nodeName { index(node) }
                if let node = event.previousNodeName, node != event.nodeName { index(node) }
            }
            if s.indexed > 2 * capacity { Self.pruneAll(&s) }
            if s.wakePending {
                s.pendingNodes.formUnion(touched)
                return ([], nil)
            }
            let now = DispatchTime.now().uptimeNanoseconds
            let since = now &- s.lastWake
            if minWakeInterval > 0 && since < minWakeInterval {
                s.wakePending = true
                s.pendingNodes = touched
                return ([], minWakeInterval - since)
            }
            s.lastWake = now
            return (Self.takeWaiters(&s, nodes: touched), nil)
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
        let waiters = state.withLock { s -> [Waiter] in
            s.wakePending = false
            s.lastWake = DispatchTime.now().uptimeNanoseconds
            defer { s.pendingNodes.removeAll(keepingCapacity: true) }
            return Self.takeWaiters(&s, nodes: s.pendingNodes)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Every watcher of everything, and the node watchers of `nodes`.
    private static func takeWaiters(_ s: inout State, nodes: Set<String>) -> [Waiter] {
        var woken = Array(s.waiters.values)
        s.waiters.removeAll(keepingCapacity: true)
        for node in nodes {
            guard let waiting = s.nodeWaiters.removeValue(forKey: node) else { continue }
            for (id, waiter) in waiting {
                woken.append(waiter)
                s.waiterNode[id] = nil
            }
        }
        return woken
    }

    /// Drops from a node's list the revisions the ring no longer holds, remembering the newest.
    private static func prune(_ s: inout State, node: String) {
        guard let list = s.byNode[node], let first = list.first, first < s.oldest else { return }
        let keep = list.firstIndex { $0 >= s.oldest } ?? list.count
        s.prunedThrough[node] = list[keep - 1]
        s.indexed -= keep
        if keep == list.count { s.byNode[node] = nil } else { s.byNode[node] = Array(list[keep...]) }
    }

    private static func pruneAll(_ s: inout State) {
        for node in Array(s.byNode.keys) { prune(&s, node: node) }
    }

    /// Whether the ring still holds every event after `after`.
    func covers(after: Int64) -> Bool {
        state.withLock { s in after >= s.evictedThrough }
    }

    /// The newest revision whose event the ring no longer holds: a replay from the store's history
    /// need only reach it.
    var evictedThrough: Int64 { state.withLock { $0.evictedThrough } }

    /// Forgets every event held (the history behind them is gone, as when the source of events was
    /// compacted past them): readers not yet past `revision` are behind, and the head moves to it.
    func discard(through revision: Int64) {
        state.withLock { s in
            s.evictedThrough = max(s.evictedThrough, revision, s.head)
            for slot in s.ring.indices { s.ring[slot] = nil }
            s.head = max(s.head, revision)
            s.count = 0
            s.byNode.removeAll()
            s.indexed = 0
            s.prunedThrough.removeAll()
            s.unindexedThrough = s.evictedThrough
        }
    }

    /// Up to `max` events after revision `after`: every event, or with `node` that node's pod
    /// events only.
    func read(after: Int64, max: Int, node: String? = nil) -> ReadResult {
        state.withLock { s in
            if after >= s.head { return s.closed ? .closed : .caughtUp }
            guard let node else {
                if after < s.evictedThrough { return .behind(oldest: s.oldest) }
                // Revisions before the ring's span hold nothing of ours (else they were evicted).
                let from = Swift.max(after, s.oldest - 1)
                let end = Swift.min(s.head, from + Int64(max))
                var events: [StoreEvent] = []
                events.reserveCapacity(Int(end - from))
                var revision = from + 1
                while revision <= end {
                    if let event = s.ring[Int(revision % Int64(capacity))] { events.append(event) }
                    revision += 1
                }
                return .events(events, through: end)
            }
            Self.prune(&s, node: node)
            // Behind only if one of this node's events after the cursor is gone.
            if after + 1 < s.oldest, let pruned = s.prunedThrough[node], pruned > after { return .behind(oldest: s.oldest) }
            if after < s.unindexedThrough { return .behind(oldest: s.oldest) }
            let list = s.byNode[node] ?? []
            var low = 0, high = list.count  // first revision after `after`
            while low < high {
                let mid = (low + high) / 2
                if list[mid] <= after { low = mid + 1 } else { high = mid }
            }
            let end = Swift.min(list.count, low + max)
            let events = list[low..<end].map { s.ring[Int($0 % Int64(capacity))]! }
            return .events(events, through: end < list.count ? list[end - 1] : s.head)
        }
    }

    /// Returns once an event after `after` is published (of `node`'s pods, for a node watch), the
    /// hub closes, `wake(id)` is called, or the task is cancelled.
    func waitForEvents(after: Int64, node: String? = nil, id: UInt64) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: Waiter) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.closed || Task.isCancelled || s.pokes.remove(id) != nil { return true }
                    if let node {
                        if let last = s.byNode[node]?.last, last > after { return true }
                        if let pruned = s.prunedThrough[node], pruned > after { return true }
                        s.nodeWaiters[node, default: [:]][id] = continuation
                        s.waiterNode[id] = node
                    } else {
                        if s.head > after { return true }
                        s.waiters[id] = continuation
                    }
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            wake(id)
        }
    }

    /// Wakes one watcher without publishing (its bookmark is due, or it was cancelled); if it is
    /// not waiting, its next wait returns at once.
    func wake(_ id: UInt64) {
        let waiter = state.withLock { s -> Waiter? in
            let waiter: Waiter?
            if let node = s.waiterNode.removeValue(forKey: id) {
                waiter = s.nodeWaiters[node]?.removeValue(forKey: id)
                if s.nodeWaiters[node]?.isEmpty == true { s.nodeWaiters[node] = nil }
            } else {
                waiter = s.waiters.removeValue(forKey: id)
            }
            if waiter == nil { s.pokes.insert(id) }
            return waiter
        }
        waiter?.resume()
    }

    /// A watcher that has gone: drops what the hub kept for it.
    func forget(_ id: UInt64) {
        state.withLock { _ = $0.pokes.remove(id) }
    }

    /// Ends every watch: they finish once they have read what was published.
    func close() {
        let waiters = state.withLock { s -> [Waiter] in
            s.closed = true
            let woken = Array(s.waiters.values) + s.nodeWaiters.values.flatMap { $0.values }
            s.waiters.removeAll()
            s.nodeWaiters.removeAll()
            s.waiterNode.removeAll()
            return woken
        }
        for waiter in waiters { waiter.resume() }
    }
}
