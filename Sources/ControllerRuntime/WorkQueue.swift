import Foundation

/// The queue between informers and workers, as controllers need it:
/// - **stingy**: a key waiting twice is queued once; a key added while a worker holds it is queued
///   again only when that worker is done, so no key is ever processed by two workers at once;
/// - **fair**: keys come out in the order they first went in;
/// - **rate-limited**: `addRateLimited` waits the limiter's delay (per-key backoff and an overall
///   bucket) by the queue's `Clock`, and `forget` resets the key's backoff;
/// - **draining**: `shutDown` stops handing out keys; `shutDownAndDrain` also waits for the keys
///   being processed to be done.
public actor WorkQueue<Key: Hashable & Sendable> {
    let clock: any Clock
    var limiter: any RateLimiter<Key>
    var queue: [Key] = []
    var head = 0
    var dirty: Set<Key> = []
    var processing: Set<Key> = []
    var waiters: [CheckedContinuation<Key?, Never>] = []
    var drainWaiters: [CheckedContinuation<Void, Never>] = []
    var shuttingDown = false
    /// Keys waiting for their time (the earliest wins), and the timers that will add them.
    var waiting: [Key: Date] = [:]
    var timers: [Key: Task<Void, Never>] = [:]

    public init(clock: any Clock = SystemClock(), limiter: any RateLimiter<Key> = ControllerRateLimiter<Key>()) {
        self.clock = clock
        self.limiter = limiter
    }

    /// Keys queued and not being processed.
    public var count: Int { queue.count - head }
    public var isShuttingDown: Bool { shuttingDown }
    /// Workers waiting in `get` for a key.
    public var idleWorkers: Int { waiters.count }
    /// Keys waiting for a delay to pass.
    public var delayedCount: Int { waiting.count }

    public func add(_ key: Key) {
        guard !shuttingDown, !dirty.contains(key) else { return }
        dirty.insert(key)
        if processing.contains(key) { return }  // queued again by `done`
        enqueue(key)
    }

    /// Hands the key to a waiting worker, or queues it (a worker only waits when the queue is empty).
    func enqueue(_ key: Key) {
        if !waiters.isEmpty {
            dirty.remove(key)
            processing.insert(key)
            waiters.removeFirst().resume(returning: key)
        } else {
            queue.append(key)
        }
    }

    /// The next key, which the caller must hand back with `done`; nil once the queue shuts down.
    public func get() async -> Key? {
        if shuttingDown { return nil }
        if head < queue.count {
            let key = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            dirty.remove(key)
            processing.insert(key)
            return key
        }
        return await withCheckedContinuation { waiters.append($0) }
    }

    /// The worker is finished with the key; if it was added meanwhile, it is queued again.
    public func done(_ key: Key) {
        processing.remove(key)
        if dirty.contains(key) && !shuttingDown { enqueue(key) }
        if processing.isEmpty {
            let waiting = drainWaiters
            drainWaiters = []
            for waiter in waiting { waiter.resume() }
        }
    }

    /// Adds the key once `delay` has passed on the queue's clock (at once for a zero delay).
    public func addAfter(_ key: Key, _ delay: Duration) {
        guard !shuttingDown else { return }
        guard delay > .zero else { return add(key) }
        let deadline = clock.now.adding(delay)
        if let existing = waiting[key], existing <= deadline { return }
        waiting[key] = deadline
        timers[key]?.cancel()
        let clock = self.clock
        timers[key] = Task { [weak self] in
            guard (try? await clock.sleep(until: deadline)) != nil else { return }
            await self?.fire(key, deadline)
        }
    }

    func fire(_ key: Key, _ deadline: Date) {
        guard waiting[key] == deadline else { return }
        waiting[key] = nil
        timers[key] = nil
        add(key)
    }

    /// Adds the key after the limiter's delay for it (one more failure).
    public func addRateLimited(_ key: Key) {
        addAfter(key, limiter.when(key, now: clock.now))
    }

    /// The key succeeded: its backoff starts again from the base.
    public func forget(_ key: Key) { limiter.forget(key) }

    public func failures(_ key: Key) -> Int { limiter.failures(key) }

    /// Stops handing out keys and accepting new ones; workers waiting in `get` receive nil.
    public func shutDown() {
        guard !shuttingDown else { return }
        shuttingDown = true
        for waiter in waiters { waiter.resume(returning: nil) }
        waiters = []
        for timer in timers.values { timer.cancel() }
        timers = [:]
        waiting = [:]
    }

    /// Shuts down, then waits until every key being processed is done.
    public func shutDownAndDrain() async {
        shutDown()
        if processing.isEmpty { return }
        await withCheckedContinuation { drainWaiters.append($0) }
    }
}
