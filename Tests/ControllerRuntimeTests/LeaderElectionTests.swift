import API
import Client
import ControllerRuntime
import Foundation
import Logging
import Testing
import TestSupport

@Suite(.watchdog) struct LeaderElectionTests {
    static func elector(_ identity: String, _ client: APIClient, _ clock: FakeClock) -> LeaderElector {
        var configuration = LeaderElector.Configuration(name: "test-lease", identity: identity)
        configuration.leaseDuration = .seconds(15)
        configuration.renewDeadline = .seconds(10)
        configuration.retryPeriod = .seconds(2)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return LeaderElector(configuration: configuration, client: client, clock: clock, logger: logger)
    }

    /// Runs the elector with work that says whether it is running (until cancelled).
    static func lead(_ elector: LeaderElector, _ clock: FakeClock) -> (Task<Void, Never>, MutexBox<Bool>) {
        let working = MutexBox(false)
        let run = Task {
            await elector.run {
                working.withLock { $0 = true }
                while !Task.isCancelled { try? await clock.sleep(for: .seconds(3600)) }
                working.withLock { $0 = false }
            }
        }
        return (run, working)
    }

    @Test func aCandidateTakesOverOnlyAfterTheLeaseWentUnrenewedForItsDuration() async throws {
        try await InProcessAPI.with { api in
            let clock = FakeClock()
            let a = Self.elector("a", api.client, clock)
            let b = Self.elector("b", api.client, clock)
            #expect(await a.tryAcquireOrRenew())
            #expect(await !b.tryAcquireOrRenew())          // b sees a's lease now
            clock.advance(by: .seconds(10))
            #expect(await a.tryAcquireOrRenew())           // a renews: the record changes
            #expect(await !b.tryAcquireOrRenew())          // b starts counting again
            clock.advance(by: .seconds(14))
            #expect(await !b.tryAcquireOrRenew())          // 14 s since b saw the renewal
            clock.advance(by: .seconds(2))
            #expect(await b.tryAcquireOrRenew())           // 16 s: expired, b takes over
            #expect(await !a.tryAcquireOrRenew())          // and a is now the follower
            let lease = try await api.client.get(Lease.self, namespace: "kube-system", name: "test-lease")
            #expect(lease.spec.holderIdentity == "b")
            #expect(lease.spec.leaseTransitions == 1)
        }
    }

    @Test func aLeaderStopsItsWorkAndReleasesTheLeaseOnShutdown() async throws {
        try await InProcessAPI.with { api in
            let clock = FakeClock()
            let a = Self.elector("a", api.client, clock)
            let b = Self.elector("b", api.client, clock)
            let (run, working) = Self.lead(a, clock)
            try await waitUntil("a leads and works") { working.withLock { $0 } }
            #expect(await !b.tryAcquireOrRenew())
            run.cancel()
            await run.value
            #expect(!working.withLock { $0 }, "the work ended before the lease was released")
            // Released: b takes it at once, without waiting for the lease to expire.
            #expect(await b.tryAcquireOrRenew())
        }
    }

    /// A leader that cannot reach the API server stops its work once the renew deadline (10 s)
    /// has passed — before its 15 s lease could be taken over by anyone else.
    @Test func aLeaderThatCannotRenewStopsWorkingBeforeTheLeaseExpires() async throws {
        try await InProcessAPI.with { api in
            let client = try api.newClient()
            do {
                try await Self.cannotRenew(client)
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
    }

    static func cannotRenew(_ client: APIClient) async throws {
        let clock = FakeClock()
        let a = Self.elector("a", client, clock)
        let (run, working) = Self.lead(a, clock)
        defer { run.cancel() }
        try await waitUntil("a leads and works") { working.withLock { $0 } }
        // The leader loses the API server: its client is shut down, so every renewal fails from
        // now on. (Stopping the server under a client that keeps opening HTTP/2 streams can crash
        // the server's stream multiplexer — a separate bug, noted for the fault-injection work.)
        try await client.shutdown()
        for _ in 0..<5 {   // 2 s retry periods, each renewal failing
            try await clock.waitForSleepers(2)
            clock.advance(by: .seconds(2))
        }
        try await clock.waitForSleepers(1)
        clock.advance(by: .seconds(1))   // 11 s since the last renewal
        try await waitUntil("the work is stopped", timeout: 30) { !working.withLock { $0 } }
        run.cancel()
        await run.value
    }

    @Test func twoCandidatesRacingForAFreeLeaseGetExactlyOneLeader() async throws {
        try await InProcessAPI.with { api in
            let clock = FakeClock()
            let candidates = (0..<4).map { Self.elector("c\($0)", api.client, clock) }
            let results = await withTaskGroup(of: Bool.self) { group in
                for candidate in candidates { group.addTask { await candidate.tryAcquireOrRenew() } }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(results.filter { $0 }.count == 1)
        }
    }
}

@Suite(.watchdog) struct EventRecorderTests {
    @Test func theSameEventAgainBumpsTheCountOfOneEvent() async throws {
        try await InProcessAPI.with { api in
            let clock = FakeClock()
            var logger = Logger(label: "test")
            logger.logLevel = .warning
            let recorder = EventRecorder(client: api.client, component: "test", clock: clock, logger: logger)
            let pod = try await api.client.create(TestObjects.pod("p"))
            recorder.record(pod, .warning, reason: "BackOff", message: "Back-off restarting failed container")
            clock.advance(by: .seconds(5))
            recorder.record(pod, .warning, reason: "BackOff", message: "Back-off restarting failed container")
            recorder.record(pod, .normal, reason: "Started", message: "Started container main")
            await recorder.flush()
            let events = try await api.client.list(Event.self, namespace: "default").items.sorted { $0.reason < $1.reason }
            #expect(events.map(\.reason) == ["BackOff", "Started"])
            #expect(events[0].count == 2)
            #expect(events[0].lastTimestamp.seconds - events[0].firstTimestamp.seconds == 5)
            #expect(events[0].involvedObject.uid == pod.metadata.uid)
            #expect(events[0].type == "Warning")
        }
    }

    @Test func aBurstBeyondTheQueueIsDroppedAndCountedWithoutWaiting() async throws {
        try await InProcessAPI.with { api in
            var logger = Logger(label: "test")
            logger.logLevel = .error
            var options = EventRecorder.Options()
            options.queueCapacity = 10
            options.qps = 1
            options.burst = 1
            let recorder = EventRecorder(client: api.client, component: "test", logger: logger, options: options)
            let pod = try await api.client.create(TestObjects.pod("p"))
            // 100 distinct events, recorded at once: the caller never waits for the writer (one
            // write a second), the queue keeps what fits, the rest is dropped and counted (a
            // caller that waited would have had every event written, none dropped).
            for i in 0..<100 { recorder.record(pod, .normal, reason: "Burst", message: "event \(i)") }
            #expect(recorder.droppedCount >= 89 && recorder.droppedCount <= 90, "\(recorder.droppedCount) dropped")
            let written = try await api.client.list(Event.self, namespace: "default").items.count
            #expect(written <= 2, "the writer is held to its rate: \(written) written so far")
        }
    }
}
