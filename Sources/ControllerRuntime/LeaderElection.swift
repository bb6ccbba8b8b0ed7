import Synchronization
import API
import Client
import Foundation
import Logging
import SwiftProtobuf

/// Leader election on a Lease (coordination.k8s.io/v1), as Kubernetes' components do it.
///
/// A candidate takes the lease when it is free or when the holder has not renewed it for
/// `leaseDuration` — measured on the candidate's own clock from when it last saw the lease
/// change, so clock skew between hosts does not matter. The leader renews every `retryPeriod`;
/// when it cannot renew for `renewDeadline` (shorter than `leaseDuration`) it stops its work
/// before anyone else may take over. On graceful shutdown it stops its work first and then
/// releases the lease, so a successor starts at once and never overlaps it.
public final class LeaderElector: Sendable {
    public struct Configuration: Sendable {
        public var namespace = "kube-system"
        public var name: String
        public var identity: String
        public var leaseDuration: Duration = .seconds(15)
        public var renewDeadline: Duration = .seconds(10)
        public var retryPeriod: Duration = .seconds(2)

        public init(name: String, identity: String) {
            self.name = name
            self.identity = identity
        }

        /// A configuration with the given timing (a component's lease options).
        public init(name: String, identity: String, leaseDuration: Duration, renewDeadline: Duration, retryPeriod: Duration) {
            self.init(name: name, identity: identity)
            self.leaseDuration = leaseDuration
            self.renewDeadline = renewDeadline
            self.retryPeriod = retryPeriod
        }
    }

    public let configuration: Configuration
    let client: APIClient
    let clock: any Clock
    let logger: Logger
    let observed = ObservedLease()
    /// The last lease failure reported, and when: the same failure is repeated in the log at most
    /// every 30 s, a new one at once (an unreachable or impostor server must not be silent).
    let lastFailure = Mutex<(message: String, at: Date)?>(nil)

    public init(configuration: Configuration, client: APIClient, clock: any Clock = SystemClock(), logger: Logger) {
        self.configuration = configuration
        self.client = client
        self.clock = clock
        var logger = logger
        logger[metadataKey: "lease"] = .string("\(configuration.namespace)/\(configuration.name)")
        logger[metadataKey: "identity"] = .string(configuration.identity)
        self.logger = logger
    }

    struct LostLeadership: Error {}

    /// Campaigns until elected, runs `work` while leading, and campaigns again if leadership is
    /// lost (work is cancelled first). Returns when the task is cancelled, after releasing the lease.
    public func run(_ work: @escaping @Sendable () async -> Void) async {
        while !Task.isCancelled {
            guard await acquire() else { break }
            logger.info("became leader")
            let stillLeading = await lead(work)
            if !stillLeading {
                logger.warning("lost leadership (could not renew the lease within the renew deadline); work stopped")
                continue
            }
            // Cancelled: the work has ended; let a successor in at once (from a task that is not
            // cancelled, or the release request would be cancelled too).
            if await Task(operation: { await self.releaseWithin(.seconds(2)) }).value {
                logger.info("stopped leading; lease released")
            } else {
                logger.info("stopped leading; the lease will expire by itself")
            }
            return
        }
    }

    /// Tries every `retryPeriod` until the lease is ours; false when cancelled first.
    func acquire() async -> Bool {
        while !Task.isCancelled {
            if await tryAcquireOrRenew() { return true }
            guard (try? await clock.sleep(for: configuration.retryPeriod)) != nil else { return false }
        }
        return false
    }

    /// Runs the work next to the renew loop. True when it ended by cancellation (still leader),
    /// false when the lease could not be renewed in time.
    func lead(_ work: @escaping @Sendable () async -> Void) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { await work(); return true }
            group.addTask { await self.renewLoop() }
            let first = await group.next() ?? true
            group.cancelAll()
            await group.waitForAll()
            return first
        }
    }

    /// Renews every `retryPeriod`; returns false once `renewDeadline` passed without a renewal,
    /// true when cancelled.
    func renewLoop() async -> Bool {
        var lastRenewal = clock.now
        while true {
            guard (try? await clock.sleep(for: configuration.retryPeriod)) != nil else { return true }
            if await attempt(until: lastRenewal.adding(configuration.renewDeadline)) {
                lastRenewal = clock.now
            } else if clock.now >= lastRenewal.adding(configuration.renewDeadline) {
                return false
            }
        }
    }

    /// One renewal that gives up at `deadline` (a hung connection must not outlast the lease).
    func attempt(until deadline: Date) async -> Bool {
        await withTaskGroup(of: Bool?.self) { group in
            group.addTask { await self.tryAcquireOrRenew() }
            group.addTask { try? await self.clock.sleep(until: deadline); return nil }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? false
        }
    }

    /// One attempt to take or keep the lease, with optimistic concurrency on its resourceVersion.
    public func tryAcquireOrRenew() async -> Bool {
        let now = clock.now
        let stamp = Google_Protobuf_Timestamp(date: now)
        do {
            var lease: Lease
            do {
                lease = try await client.get(Lease.self, namespace: configuration.namespace, name: configuration.name)
            } catch let error as ClientError where error.code == 404 {
                var fresh = Lease()
                fresh.setTypeMeta()
                fresh.metadata.namespace = configuration.namespace
                fresh.metadata.name = configuration.name
                fresh.spec = spec(holdingSince: stamp, renewed: stamp, transitions: 0)
                let created = try await client.create(fresh)
                observed.set(created, at: now)
                return true
            }
            let seenAt = observed.update(lease, at: now)
            let holder = lease.spec.holderIdentity
            let mine = holder == configuration.identity
            if !holder.isEmpty && !mine {
                let duration = lease.spec.hasLeaseDurationSeconds ? Duration.seconds(Int(lease.spec.leaseDurationSeconds)) : configuration.leaseDuration
                if now < seenAt.adding(duration) { return false }
                logger.info("the lease of \(holder) expired; taking over")
            }
            let transitions = lease.spec.leaseTransitions + (mine ? 0 : 1)
            lease.spec = spec(holdingSince: mine && lease.spec.hasAcquireTime ? lease.spec.acquireTime : stamp, renewed: stamp, transitions: transitions)
            let updated = try await client.update(lease)
            observed.set(updated, at: now)
            return true
        } catch {
            let message = "\(error)"
            let report = lastFailure.withLock { last -> Bool in
                guard last?.message != message || now.timeIntervalSince(last?.at ?? .distantPast) >= 30 else { return false }
                last = (message, now)
                return true
            }
            if report && !Task.isCancelled {
                logger.warning("cannot take or renew the leader lease; retrying", metadata: ["lease": "\(configuration.namespace)/\(configuration.name)", "error": "\(message)"])
            }
            return false
        }
    }

    func spec(holdingSince acquired: Google_Protobuf_Timestamp, renewed: Google_Protobuf_Timestamp, transitions: Int32) -> LeaseSpec {
        var spec = LeaseSpec()
        spec.holderIdentity = configuration.identity
        spec.leaseDurationSeconds = Int32(configuration.leaseDuration.components.seconds)
        spec.acquireTime = acquired
        spec.renewTime = renewed
        spec.leaseTransitions = transitions
        return spec
    }

    /// Gives the lease up (empty holder) if it is still ours; false when that could not be done.
    /// Releases, giving up after `limit`: shutting down (Ctrl-C) must not wait on a server that is
    /// itself going away; the lease then simply expires.
    func releaseWithin(_ limit: Duration) async -> Bool {
        await withTaskGroup(of: Bool?.self) { group in
            group.addTask { await self.release() }
            group.addTask { try? await Task.sleep(for: limit); return nil }
            let first = await group.next() ?? nil
            group.cancelAll()
            if first == nil { logger.info("gave up releasing the lease (the API server did not answer in time); it will expire by itself") }
            return first ?? false
        }
    }

    func release() async -> Bool {
        do {
            var lease = try await client.get(Lease.self, namespace: configuration.namespace, name: configuration.name)
            guard lease.spec.holderIdentity == configuration.identity else { return false }
            lease.spec.holderIdentity = ""
            lease.spec.leaseDurationSeconds = 1
            lease.spec.renewTime = Google_Protobuf_Timestamp(date: clock.now)
            _ = try await client.update(lease)
            return true
        } catch {
            logger.warning("could not release the lease; a successor waits for it to expire", metadata: ["error": "\(error)"])
            return false
        }
    }
}

/// The last lease record seen and when (on the local clock) it last changed.
final class ObservedLease: Sendable {
    struct Record { var resourceVersion = ""; var at = Date.distantPast }
    let record = MutexBox(Record())

    /// Notes the lease and returns when this record was first seen.
    func update(_ lease: Lease, at now: Date) -> Date {
        record.withLock { record in
            if record.resourceVersion != lease.metadata.resourceVersion {
                record = Record(resourceVersion: lease.metadata.resourceVersion, at: now)
            }
            return record.at
        }
    }

    func set(_ lease: Lease, at now: Date) {
        record.withLock { $0 = Record(resourceVersion: lease.metadata.resourceVersion, at: now) }
    }
}
