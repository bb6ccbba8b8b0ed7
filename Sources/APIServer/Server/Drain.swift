import Logging
import ServiceLifecycle
import Store
import Synchronization

/// Ends watches on graceful shutdown. Watches may run for half an hour, so the HTTP server's own
/// drain (wait for in-flight requests) would wait that long; this ends each stream cleanly first
/// (the client sees the body end and re-watches from its last revision elsewhere or later).
final class WatchDrain: Sendable {
    private struct State {
        var draining = false
        var next = 0
        var watches: [Int: StoreWatch] = [:]
    }
    private let state = Mutex(State())

    /// Registers a watch; nil when draining (the caller answers 503).
    func register(_ watch: StoreWatch) -> Int? {
        state.withLock { state in
            guard !state.draining else { return nil }
            state.next += 1
            state.watches[state.next] = watch
            return state.next
        }
    }

    func unregister(_ id: Int) {
        _ = state.withLock { $0.watches.removeValue(forKey: id) }
    }

    var isDraining: Bool { state.withLock { $0.draining } }
    /// Clients' watches being served (the server's own, such as RBAC's, are not registered).
    var count: Int { state.withLock { $0.watches.count } }

    @discardableResult
    func drain() -> Int {
        let watches = state.withLock { state in
            state.draining = true
            return Array(state.watches.values)
        }
        for watch in watches { watch.cancel() }
        return watches.count
    }
}

/// The service that, on SIGTERM/SIGINT, ends the watches before the HTTP server drains the rest.
struct WatchDrainService: Service {
    let drain: WatchDrain
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        let ended = drain.drain()
        logger.info("shutting down: watches ended, finishing requests in flight", metadata: ["watches": "\(ended)"])
    }
}

/// The bytes of request bodies the whole server holds at once (buffered on connections and in
/// requests being served). A body that would pass it is refused with 429, never half-read.
final class BodyBudget: Sendable {
    let limit: Int
    private let held = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Counts `bytes` as held, unless that would take the total past the limit: then nothing is
    /// counted and the answer is false (the total never reads above the limit, even for a moment:
    /// the gauge is what an operator and the flood test see). The caller gives back what it took
    /// (`give`) when it lets go of it.
    func take(_ bytes: Int) -> Bool {
        var current = held.load(ordering: .relaxed)
        while true {
            guard current + bytes <= limit else { return false }
            let (exchanged, original) = held.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    func give(_ bytes: Int) {
        held.subtract(bytes, ordering: .relaxed)
    }

    var current: Int { held.load(ordering: .relaxed) }
}
