import API
import Etcd
import Foundation
import GRPCCore
import Logging
import Synchronization

/// The store over an etcd v3 cluster, for more than one API server (kube-apiserver's layout).
///
/// Each object is one key, `<prefix>/<group-resource>/<namespace>/<name>` (cluster-scoped:
/// `<prefix>/<group-resource>/<name>`), whose value is the object's stored protobuf encoding
/// without its resourceVersion (Secrets encrypted, as in SQLite). etcd's revision is the store's:
/// an object's `resourceVersion` is its key's `mod_revision`, so a version read through one API
/// server is valid on every other.
///
///     create   Txn(create_revision(key) == 0) put
///     update   Range key, then Txn(mod_revision(key) == read) put   (retried on a lost race when
///     delete   … Txn(mod_revision(key) == read) delete               the caller gave no version)
///     list     Range [start, prefix end) at one revision, page by page; continue = (revision, key)
///     watch    one etcd Watch of the whole prefix with prev_kv feeds the WatchHub every client
///              watch reads; older history is replayed by a Watch from the asked revision
///
/// One watch of the prefix (not one per resource) keeps every kind's events in the store's one
/// order, which watches of every kind and the resume-anywhere promise need.
///
/// Calls go to one member at a time; a member that fails or does not answer in `callTimeout` is
/// set aside and the next one preferred. Reads are retried on the other members; a write that
/// may have reached a member is not (its outcome is unknown: the caller gets 504 Timeout, or 503
/// when the member refused it), as kube-apiserver does.
public final class EtcdStore: ObjectStore, Sendable {
    public struct Options: Sendable {
        /// Client URLs of the members (`https://host:2379`).
        public var endpoints: [String]
        public var tls: EtcdConnection.TLSFiles?
        /// Every key is under it (kube-apiserver's `--etcd-prefix`).
        public var prefix = "/registry"
        /// Longest one call to a member may take (a member without quorum does not answer).
        public var callTimeout: Duration = .seconds(5)
        /// Longest the store waits at its start for the cluster to answer.
        public var startTimeout: Duration = .seconds(60)
        public var watchRingCapacity = 16_384
        public var watchWakeInterval: Duration = .milliseconds(5)
        public var secretsKey: SecretsKey?
        /// etcd refuses requests over 1.5 MiB by default.
        public var maxObjectBytes = 1_536 * 1_024
        /// Keys read per Range while listing.
        public var listPageSize = 1_000

        public init(endpoints: [String], tls: EtcdConnection.TLSFiles? = nil) {
            self.endpoints = endpoints
            self.tls = tls
        }
    }

    let options: Options
    let logger: Logger
    /// One connection per member; a member that keeps failing gets a new one (a connection
    /// stuck in its TLS handshake behind a partition never finishes by itself).
    let connections: Mutex<[EtcdConnection]>
    /// Calls that failed in a row, per member.
    let failuresInARow: Mutex<[Int]>
    var members: [EtcdConnection] { connections.withLock { $0 } }
    func member(_ index: Int) -> EtcdConnection { connections.withLock { $0[index % $0.count] } }

    /// After this many failed calls in a row, a member's connection is replaced.
    static let reconnectAfter = 2

    /// Counts a failure (or, with `failed: false`, a success) of member `index`; replaces its
    /// connection when the failures pile up.
    func record(_ index: Int, failed: Bool) {
        let replace = failuresInARow.withLock { counts -> Bool in
            counts[index] = failed ? counts[index] + 1 : 0
            if counts[index] >= Self.reconnectAfter {
                counts[index] = 0
                return true
            }
            return false
        }
        guard replace, let fresh = try? EtcdConnection(endpoint: options.endpoints[index], tls: options.tls) else { return }
        let old = connections.withLock { list -> EtcdConnection in
            defer { list[index] = fresh }
            return list[index]
        }
        old.close()
        logger.info("replaced the connection to an etcd member after repeated failures", metadata: ["member": "\(options.endpoints[index])"])
    }
    /// The member calls go to first.
    let preferred = Atomic<Int>(0)
    let hub: WatchHub
    let revisions: RevisionState
    let values: ValueCodec
    let prefix: [UInt8]
    let feed: Mutex<Task<Void, Never>?> = Mutex(nil)
    /// The last failure to reach the cluster, cleared by the next success (for `/readyz`).
    let lastFailure: Mutex<String?> = Mutex(nil)
    let counters = EtcdCounters()

    /// Connects to the members and waits (up to `startTimeout`) until the cluster answers; then
    /// follows every change under the prefix.
    public init(options: Options, logger: Logger = Logger(label: "cox.store.etcd")) async throws {
        guard !options.endpoints.isEmpty else { throw StoreError(.invalid, "--etcd-servers: at least one URL is needed") }
        self.options = options
        self.logger = logger
        let members = try options.endpoints.map { try EtcdConnection(endpoint: $0, tls: options.tls) }
        self.connections = Mutex(members)
        self.failuresInARow = Mutex(Array(repeating: 0, count: members.count))
        self.values = ValueCodec(secrets: options.secretsKey)
        var prefix = options.prefix
        while prefix.hasSuffix("/") { prefix.removeLast() }
        self.prefix = Array((prefix + "/").utf8)
        // The revision the hub starts at: the cluster's now.
        let started = ContinuousClock.now
        var head: Int64?
        while head == nil {
            do {
                head = try await Self.readRevision(members, prefix: self.prefix, timeout: options.callTimeout)
            } catch {
                if ContinuousClock.now - started > options.startTimeout {
                    for member in members { member.close() }
                    throw StoreError(.unavailable, "etcd at \(options.endpoints.joined(separator: ",")) did not answer within \(options.startTimeout): \(Self.describe(error))")
                }
                logger.warning("waiting for etcd", metadata: ["endpoints": "\(options.endpoints.joined(separator: ","))", "error": "\(Self.describe(error))"])
                try await Task.sleep(for: .seconds(1))
            }
        }
        let start = head!
        self.revisions = RevisionState(current: start, compacted: 0)
        self.hub = WatchHub(capacity: options.watchRingCapacity, head: start, minWakeInterval: options.watchWakeInterval)
        let task = Task { [self] in await self.follow(from: start) }
        feed.withLock { $0 = task }
        logger.info("store opened on etcd", metadata: ["endpoints": "\(options.endpoints.joined(separator: ","))", "prefix": "\(prefix)", "revision": "\(start)"])
    }

    /// The cluster's revision, from whichever member answers a linearizable read first.
    static func readRevision(_ members: [EtcdConnection], prefix: [UInt8], timeout: Duration) async throws -> Int64 {
        var failure: (any Error)?
        for member in members {
            do {
                return try await member.kv.range(counting(prefix), options: EtcdConnection.options(timeout: timeout)).header.revision
            } catch {
                failure = error
            }
        }
        throw failure ?? StoreError(.unavailable, "no etcd member")
    }

    /// A linearizable count of the keys under `prefix` (its answer's header is the cluster's revision).
    static func counting(_ prefix: [UInt8]) -> Etcdserverpb_RangeRequest {
        var range = Etcdserverpb_RangeRequest()
        range.key = Data(prefix)
        range.rangeEnd = Data(Etcdserverpb_RangeRequest.prefixEnd(prefix))
        range.countOnly = true
        return range
    }

    /// Counts the keys under `prefix` through the store's members; notes the revision.
    func count(_ prefix: [UInt8], operation: String) async throws -> Etcdserverpb_RangeResponse {
        let response = try await call(operation, retry: true) { member, options in
            try await member.kv.range(Self.counting(prefix), options: options)
        }
        noteRevision(response.header.revision)
        return response
    }

    /// Stops following the cluster, ends every watch, and closes the connections.
    public func close() {
        feed.withLock { $0?.cancel() }
        hub.close()
        for member in members { member.close() }
    }

    deinit {
        feed.withLock { $0?.cancel() }
    }

    public var currentRevision: Int64 { revisions.value.withLock { $0.current } }
    public var compactedRevision: Int64 { revisions.value.withLock { $0.compacted } }
    public var activeWatchers: Int { hub.activeWatchers }

    func noteRevision(_ revision: Int64) {
        revisions.value.withLock { $0.current = max($0.current, revision) }
    }

    func noteCompacted(_ revision: Int64) {
        revisions.value.withLock { $0.compacted = max($0.compacted, revision) }
    }

    // MARK: - Keys

    func keyBytes(_ key: ObjectKey) -> [UInt8] {
        var bytes = prefix
        bytes += Array(key.resource.utf8)
        bytes.append(UInt8(ascii: "/"))
        if !key.namespace.isEmpty {
            bytes += Array(key.namespace.utf8)
            bytes.append(UInt8(ascii: "/"))
        }
        bytes += Array(key.name.utf8)
        return bytes
    }

    /// The prefix of one resource's keys (in one namespace, when given).
    func resourcePrefix(_ resource: String, namespace: String?) -> [UInt8] {
        var bytes = prefix + Array(resource.utf8) + [UInt8(ascii: "/")]
        if let namespace { bytes += Array(namespace.utf8) + [UInt8(ascii: "/")] }
        return bytes
    }

    /// The object key a stored key names, nil for keys not laid out by this store.
    func objectKey(_ bytes: Data) -> ObjectKey? {
        guard bytes.starts(with: prefix) else { return nil }
        let parts = bytes.dropFirst(prefix.count).split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        switch parts.count {
        case 2: return ObjectKey(resource: parts[0], namespace: "", name: parts[1])
        case 3: return ObjectKey(resource: parts[0], namespace: parts[1], name: parts[2])
        default: return nil
        }
    }

    static func kind(of resource: String) -> (any APIObject.Type)? {
        // What no built-in kind is stored under is a custom resource's (plural.group).
        Kinds.lookup(groupResource: resource) ?? (resource.contains(".") ? CustomObject.self : nil)
    }

    // MARK: - Calls

    /// Runs `body` against the preferred member; on a failure to reach it (or no answer in time)
    /// the next member becomes preferred and, when `retry` (reads), is tried too.
    func call<R: Sendable>(_ operation: String, retry: Bool,
                           _ body: (EtcdConnection, CallOptions) async throws -> R) async throws -> R {
        let first = preferred.load(ordering: .relaxed)
        var failure: (any Error)?
        let count = options.endpoints.count
        // One store call, tries on other members included, ends within half again the timeout
        // of one: an honest 504 soon beats every member's full timeout in a row.
        let deadline = ContinuousClock.now + options.callTimeout * 3 / 2
        for attempt in 0..<count {
            let remaining = deadline - ContinuousClock.now
            if attempt > 0 && remaining < .milliseconds(200) { break }
            // A write goes to another member only when no connection to the last could be made
            // (etcd's own client retries writes the same way): one that may have been applied
            // is not sent twice.
            if attempt > 0, !retry, let last = failure as? RPCError, !Self.neverSent(last) { break }
            let index = (first + attempt) % count
            let member = self.member(index)
            do {
                let result = try await body(member, EtcdConnection.options(timeout: min(options.callTimeout, remaining)))
                counters.requests.add(1, ordering: .relaxed)
                record(index, failed: false)
                if failure != nil || lastFailure.withLock({ $0 != nil }) {
                    lastFailure.withLock { $0 = nil }
                }
                return result
            } catch let error as RPCError where Self.isMemberFailure(error) {
                counters.failures.add(1, ordering: .relaxed)
                failure = error
                let message = "etcd member \(member.endpoint): \(Self.describe(error))"
                record(index, failed: true)
                lastFailure.withLock { $0 = message }
                // Prefer the next member from now on (unless another call moved on already).
                _ = preferred.compareExchange(expected: index, desired: (index + 1) % count, ordering: .relaxed)
                logger.warning("etcd call failed", metadata: ["operation": "\(operation)", "member": "\(member.endpoint)", "error": "\(Self.describe(error))"])
            } catch let error as RPCError {
                throw Self.storeError(error, operation: operation)
            }
        }
        throw Self.storeError(failure as! RPCError, operation: operation)
    }

    /// Whether the call failed before it could be sent: no connection to the member could be
    /// made (grpc's words for a channel that is not up and a call that does not wait for it).
    static func neverSent(_ error: RPCError) -> Bool {
        error.code == .unavailable && (error.message.contains("transient failure") || error.message.contains("Could not establish a connection"))
    }

    /// Whether the error says the member could not serve (another member may).
    static func isMemberFailure(_ error: RPCError) -> Bool {
        switch error.code {
        case .unavailable, .deadlineExceeded, .cancelled, .unknown, .internalError: return true
        default: return error.message.contains("no leader") || error.message.contains("leader changed")
                  || error.message.contains("timed out") || error.message.contains("not capable")
        }
    }

    static func storeError(_ error: RPCError, operation: String) -> StoreError {
        let text = describe(error)
        if error.message.contains("required revision has been compacted") {
            return StoreError(.compacted, "\(operation): the revision has been compacted; start again from a newer one")
        }
        if error.message.contains("future revision") {
            return StoreError(.invalid, "\(operation): the revision is newer than the store's")
        }
        if error.message.contains("request is too large") {
            return StoreError(.tooLarge, "\(operation): etcd refused the value as too large")
        }
        switch error.code {
        case .deadlineExceeded:
            return StoreError(.timeout, "\(operation): etcd did not answer in time (no quorum, or overloaded): \(text)")
        case .unavailable, .cancelled, .unknown, .internalError:
            return StoreError(.unavailable, "\(operation): etcd is unavailable: \(text)")
        default:
            if isMemberFailure(error) { return StoreError(.unavailable, "\(operation): etcd is unavailable: \(text)") }
            return StoreError(.storage, "\(operation): etcd: \(text)")
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? RPCError { return "\(error.code): \(error.message)" }
        return "\(error)"
    }

    func checkSize(_ key: ObjectKey, _ bytes: [UInt8]) throws {
        if bytes.count > options.maxObjectBytes {
            throw StoreError(.tooLarge, "\(key) is \(bytes.count) bytes encoded, more than the limit of \(options.maxObjectBytes)")
        }
    }

    // MARK: - Writes

    public func create<T: APIObject>(_ object: T) async throws -> T {
        try object.checkStoreKey()
        var stored = object.asCreated()
        let key = ObjectKey(of: stored)
        guard let revision = try await putIfAbsent(key, stored.protobufBytes(), operation: "create") else {
            throw StoreError(.alreadyExists, "\(key.resourceName) \"\(key.name)\" already exists")
        }
        stored.metadata.resourceVersion = String(revision)
        return stored
    }

    /// Writes `bytes` (encrypted as stored) at `key` only if no live object has it: the
    /// revision of the write, nil when the key was taken.
    func putIfAbsent(_ key: ObjectKey, _ bytes: [UInt8], operation: String) async throws -> Int64? {
        try await write(key, bytes, operation: operation, if: .create, is: 0)
    }

    /// One conditional write of `key`: `bytes` put (encrypted as stored), or with nil the key
    /// deleted, if the key's `target` revision (create: 0 for a free key; mod: the last write's)
    /// is `revision`. The revision of the write, nil when the condition did not hold.
    func write(_ key: ObjectKey, _ bytes: [UInt8]?, operation: String,
               if target: Etcdserverpb_Compare.CompareTarget, is revision: Int64) async throws -> Int64? {
        let keyData = Data(keyBytes(key))
        var condition = Etcdserverpb_Compare()
        condition.key = keyData
        condition.target = target
        condition.result = .equal
        if target == .create { condition.createRevision = revision } else { condition.modRevision = revision }
        var change = Etcdserverpb_RequestOp()
        if let bytes {
            try checkSize(key, bytes)
            var put = Etcdserverpb_PutRequest()
            put.key = keyData
            put.value = Data(try values.stored(key.resource, bytes))
            change.requestPut = put
        } else {
            var deletion = Etcdserverpb_DeleteRangeRequest()
            deletion.key = keyData
            change.requestDeleteRange = deletion
        }
        var txn = Etcdserverpb_TxnRequest()
        txn.compare = [condition]
        txn.success = [change]
        let response = try await call("\(operation) \(key)", retry: false) { member, options in
            try await member.kv.txn(txn, options: options)
        }
        noteRevision(response.header.revision)
        return response.succeeded ? response.header.revision : nil
    }

    /// The live object at `key` with its revision, nil when there is none.
    func current<T: APIObject>(_ key: ObjectKey, as type: T.Type) async throws -> (revision: Int64, object: T)? {
        var range = Etcdserverpb_RangeRequest()
        range.key = Data(keyBytes(key))
        let response = try await call("get \(key)", retry: true) { member, options in
            try await member.kv.range(range, options: options)
        }
        noteRevision(response.header.revision)
        guard let kv = response.kvs.first else { return nil }
        var object = try T(protobuf: try values.plain(key.resource, Array(kv.value)))
        object.metadata.resourceVersion = String(kv.modRevision)
        return (kv.modRevision, object)
    }

    public func get<T: APIObject>(_ type: T.Type, namespace: String, name: String) async throws -> T {
        let key = ObjectKey(type, namespace: namespace, name: name)
        guard let (_, object) = try await current(key, as: T.self) else {
            throw StoreError(.notFound, "\(T.kindInfo.resource) \"\(name)\" not found")
        }
        return object
    }

    /// The update loop: read, let `change` make the new object from the current one, write if
    /// nothing came between; when something did, `conflictIfRaced` fails with Conflict (the caller
    /// named a version) or the loop reads again.
    func guardedUpdate<T: APIObject>(_ key: ObjectKey, _ type: T.Type, conflictIfRaced: Bool,
                                     _ change: (_ current: T, _ revision: Int64) throws -> T) async throws -> T {
        while true {
            guard let (revision, existing) = try await current(key, as: T.self) else {
                throw StoreError(.notFound, "\(key.resourceName) \"\(key.name)\" not found")
            }
            var stored = try change(existing, revision).asUpdate(of: existing)
            if stored.isEqualTo(message: existing) { return existing }
            stored.metadata.resourceVersion = ""
            if let written = try await write(key, stored.protobufBytes(), operation: "update", if: .mod, is: revision) {
                stored.metadata.resourceVersion = String(written)
                return stored
            }
            if conflictIfRaced { throw StoreError.modified(groupResource: key.resource, key.name) }
        }
    }

    public func update<T: APIObject>(_ object: T) async throws -> T {
        try object.checkStoreKey()
        let expected = try object.expectedRevision()
        return try await guardedUpdate(ObjectKey(of: object), T.self, conflictIfRaced: expected != nil) { _, revision in
            if let expected, expected != revision {
                throw StoreError.modified(groupResource: T.kindInfo.groupResource, object.metadata.name, current: revision)
            }
            return object
        }
    }

    public func update<T: APIObject>(_ type: T.Type, namespace: String, name: String,
                                     _ change: @escaping @Sendable (inout T) throws -> Void) async throws -> T {
        let key = ObjectKey(type, namespace: namespace, name: name)
        return try await guardedUpdate(key, T.self, conflictIfRaced: false) { current, _ in
            var changed = current
            try change(&changed)
            // The object's identity is the key's, whatever the change did to its name.
            changed.metadata.namespace = key.namespace
            changed.metadata.name = key.name
            return changed
        }
    }

    public func delete<T: APIObject>(_ type: T.Type, namespace: String, name: String, resourceVersion: Int64?) async throws -> T {
        let key = ObjectKey(type, namespace: namespace, name: name)
        while true {
            guard let (revision, existing) = try await current(key, as: T.self) else {
                throw StoreError(.notFound, "\(key.resourceName) \"\(key.name)\" not found")
            }
            if let resourceVersion, resourceVersion != revision {
                throw StoreError.modified(groupResource: key.resource, key.name, current: revision)
            }
            if let deleted = try await write(key, nil, operation: "delete", if: .mod, is: revision) {
                var last = existing
                last.metadata.resourceVersion = String(deleted)
                return last
            }
            if resourceVersion != nil { throw StoreError.modified(groupResource: key.resource, key.name) }
        }
    }

    // MARK: - Reads

    public func list<T: APIObject>(_ type: T.Type, options listOptions: ListOptions) async throws -> ListResult<T> {
        let resource = T.kindInfo.groupResource
        let namespace = T.kindInfo.namespaced ? listOptions.namespace : nil
        let scope = resourcePrefix(resource, namespace: namespace)
        let end = Etcdserverpb_RangeRequest.prefixEnd(scope)
        var start = scope
        var revision: Int64 = 0
        if let token = listOptions.continueToken, !token.isEmpty {
            guard let parsed = ContinueToken(encoded: token) else { throw StoreError(.invalid, "invalid continue token") }
            revision = parsed.revision
            // The next key after the last one returned.
            start = keyBytes(ObjectKey(resource: resource, namespace: parsed.namespace, name: parsed.name)) + [0]
            if revision < compactedRevision {
                throw StoreError(.compacted, "the continue token is from revision \(revision), which has been compacted (compacted up to \(compactedRevision)); start the list again", revision: compactedRevision)
            }
        } else if let exact = listOptions.revision {
            revision = exact
        }
        let limit = listOptions.limit
        let pageSize = limit > 0 ? min(limit + 1, options.listPageSize) : options.listPageSize
        var items: [T] = []
        while true {
            var range = Etcdserverpb_RangeRequest()
            range.key = Data(start)
            range.rangeEnd = Data(end)
            range.revision = revision
            range.limit = Int64(pageSize)
            let atRevision = revision
            let response: Etcdserverpb_RangeResponse
            do {
                response = try await call("list \(resource)", retry: true) { member, options in
                    try await member.kv.range(range, options: options)
                }
            } catch let error as StoreError where error.code == .compacted {
                throw StoreError(.compacted, "revision \(atRevision) has been compacted", revision: compactedRevision)
            }
            noteRevision(response.header.revision)
            if revision == 0 { revision = response.header.revision }
            for (index, kv) in response.kvs.enumerated() {
                guard let key = objectKey(kv.key) else { continue }
                var object = try T(protobuf: try values.plain(resource, Array(kv.value)))
                object.metadata.resourceVersion = String(kv.modRevision)
                if !listOptions.labelSelector.isEverything && !listOptions.labelSelector.matches(object.metadata.labels) { continue }
                if let predicate = listOptions.predicate, !predicate(object) { continue }
                items.append(object)
                if limit > 0 && items.count == limit {
                    let more = index + 1 < response.kvs.count || response.more
                    let token = more ? ContinueToken(revision: revision, namespace: key.namespace, name: key.name).encoded : nil
                    return ListResult(items: items, revision: revision, continueToken: token)
                }
            }
            guard response.more, let last = response.kvs.last else { break }
            start = Array(last.key) + [0]
        }
        return ListResult(items: items, revision: revision, continueToken: nil)
    }

    // MARK: - Watch

    public func watch(from revision: Int64, options: WatchOptions) throws -> StoreWatch {
        let compacted = compactedRevision
        if revision < compacted && !hub.covers(after: revision) {
            throw StoreError(.compacted, "revision \(revision) has been compacted (compacted up to \(compacted))", revision: compacted)
        }
        return StoreWatch(hub: hub, from: revision, options: options) { [self] after, limit in
            try await self.history(after: after, limit: limit)
        }
    }

    /// The change an etcd event records, as the store's event (nil for keys this store did not lay out).
    func event(_ event: Mvccpb_Event) throws -> StoreEvent? {
        guard let key = objectKey(event.kv.key) else { return nil }
        guard let kind = Self.kind(of: key.resource) else {
            throw StoreError(.storage, "unknown resource \"\(key.resource)\" at etcd key \(String(decoding: event.kv.key, as: UTF8.self))")
        }
        let revision = event.kv.modRevision
        func decode(_ kv: Mvccpb_KeyValue, version: Int64) throws -> (object: any APIObject, bytes: [UInt8]) {
            let bytes = try values.plain(key.resource, Array(kv.value))
            var object = try kind.init(protobuf: bytes)
            object.metadata.resourceVersion = String(version)
            return (object, bytes)
        }
        switch event.type {
        case .delete:
            // The last state, its version the deletion's revision.
            guard event.hasPrevKv else { return nil }
            let last = try decode(event.prevKv, version: revision)
            return StoreEvent(revision: revision, type: .deleted, key: key, object: last.object, bytes: last.bytes)
        default:
            let now = try decode(event.kv, version: revision)
            if event.kv.createRevision == event.kv.modRevision || !event.hasPrevKv {
                return StoreEvent(revision: revision, type: .added, key: key, object: now.object, bytes: now.bytes)
            }
            let before = try decode(event.prevKv, version: event.prevKv.modRevision)
            return StoreEvent(revision: revision, type: .modified, key: key, object: now.object, bytes: now.bytes, previous: before)
        }
    }

    /// Metadata for streams that must end when their member loses its leader (etcd's `hasleader`).
    static let requireLeader: Metadata = ["hasleader": "true"]

    /// Events after `after` that the hub no longer (or never) held, from a Watch of the prefix
    /// that starts there: up to `limit`, and covering at most up to where the hub's ring begins.
    ///
    /// A watch does not say when it has sent all the history up to a revision (etcd 3.4's progress
    /// answer comes at once, before the history): the replay stops at the first event past it.
    /// The hub holds one when its head is past it; when not (it has just started, or was
    /// discarded), the replay first writes a marker key under the prefix, whose event comes after
    /// everything wanted. (The marker is not an object: the feed skips it; it takes a revision.)
    func history(after: Int64, limit: Int) async throws -> (events: [StoreEvent], through: Int64) {
        let target = hub.evictedThrough
        guard after < target else { return ([], after) }
        let (key, end) = (Data(prefix), Data(Etcdserverpb_RangeRequest.prefixEnd(prefix)))
        if hub.head <= target {
            var marker = Etcdserverpb_PutRequest()
            marker.key = Data(prefix + Array(Self.markerKey.utf8))
            let marked = try await call("mark the history to replay", retry: true) { member, options in
                try await member.kv.put(marker, options: options)
            }
            noteRevision(marked.header.revision)
        }
        let member = self.member(preferred.load(ordering: .relaxed))
        do {
            return try await member.watch.watch(metadata: Self.requireLeader, options: EtcdConnection.options(timeout: options.callTimeout * 6)) { writer in
                var create = Etcdserverpb_WatchCreateRequest()
                create.key = key
                create.rangeEnd = end
                create.startRevision = after + 1
                create.prevKv = true
                try await writer.write(.with { $0.createRequest = create })
                while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
            } onResponse: { [self] response in
                var events: [StoreEvent] = []
                var last = after
                for try await message in response.messages {
                    if message.compactRevision > 0 {
                        noteCompacted(message.compactRevision)
                        throw StoreError(.compacted, "revision \(after) has been compacted (compacted up to \(message.compactRevision))", revision: message.compactRevision)
                    }
                    if message.canceled { throw StoreError(.unavailable, "etcd ended the history watch: \(message.cancelReason)") }
                    for raw in message.events {
                        let revision = raw.kv.modRevision
                        if revision > target { return (events, target) }
                        if revision <= last { continue }
                        if let converted = try event(raw) { events.append(converted) }
                        last = revision
                        if events.count >= limit { return (events, last) }
                    }
                }
                throw StoreError(.unavailable, "etcd ended the history watch")
            }
        } catch let error as RPCError {
            throw Self.storeError(error, operation: "watch history from \(after)")
        }
    }

    /// The key (under the prefix) a history replay writes to mark where it may stop.
    static let markerKey = "cox-watch-marker"

    /// Feeds the hub from one watch of the whole prefix for as long as the store is open, moving
    /// to another member when the watch breaks, and resuming where it stopped.
    func follow(from start: Int64) async {
        // The next revision to read: kept outside the stream, which may end by throwing after
        // some events were published (they must not be published twice).
        let cursor = FeedCursor(start + 1)
        while !Task.isCancelled {
            let index = preferred.load(ordering: .relaxed) % options.endpoints.count
            let member = self.member(index)
            let resumeFrom = cursor.next.load(ordering: .relaxed)
            cursor.created.store(false, ordering: .relaxed)
            let callTimeout = options.callTimeout
            do {
                // The member must start the watch in time (one behind a partition never answers,
                // and its connection never fails before it is up); once started, keepalive pings
                // watch the connection.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        try await Task.sleep(for: callTimeout)
                        if !cursor.created.load(ordering: .relaxed) {
                            throw StoreError(.timeout, "the member did not start the watch within \(callTimeout)")
                        }
                    }
                    group.addTask { try await self.stream(from: member, resumeFrom: resumeFrom, cursor: cursor) }
                    for try await _ in group {}
                }
            } catch {
                if Task.isCancelled { return }
                let failures = cursor.failures.add(1, ordering: .relaxed).newValue
                let message = "watch on etcd member \(member.endpoint): \(Self.describe(error))"
                lastFailure.withLock { $0 = message }
                logger.warning("etcd watch broke; resuming on the next member", metadata: [
                    "member": "\(member.endpoint)", "from": "\(cursor.next.load(ordering: .relaxed))", "error": "\(Self.describe(error))"])
                record(index, failed: true)
                _ = preferred.compareExchange(expected: index, desired: (index + 1) % options.endpoints.count, ordering: .relaxed)
                try? await Task.sleep(for: .milliseconds(min(2_000, 100 * (1 << min(failures, 5)))))
            }
        }
    }

    /// One watch of the prefix on `member` from `resumeFrom`, publishing to the hub until it
    /// breaks (it throws then; `cursor` says where to resume).
    func stream(from member: EtcdConnection, resumeFrom: Int64, cursor: FeedCursor) async throws {
        let (key, end) = (Data(prefix), Data(Etcdserverpb_RangeRequest.prefixEnd(prefix)))
        try await member.watch.watch(metadata: Self.requireLeader, options: .defaults) { writer in
            var create = Etcdserverpb_WatchCreateRequest()
            create.key = key
            create.rangeEnd = end
            create.startRevision = resumeFrom
            create.prevKv = true
            create.progressNotify = true
            try await writer.write(.with { $0.createRequest = create })
            // The request side stays open as long as the watch.
            while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
        } onResponse: { [self] response in
            for try await message in response.messages {
                let next = cursor.next.load(ordering: .relaxed)
                if message.compactRevision > 0 {
                    // What came between was compacted before this store read it: watches
                    // behind it must start again from a list (410 to their clients).
                    noteCompacted(message.compactRevision)
                    logger.warning("etcd history was compacted past this server's watch; watches behind it end with 410",
                                   metadata: ["from": "\(next)", "compacted": "\(message.compactRevision)"])
                    hub.discard(through: message.compactRevision)
                    cursor.next.store(message.compactRevision + 1, ordering: .relaxed)
                    return
                }
                if message.canceled {
                    throw StoreError(.unavailable, "etcd cancelled the watch: \(message.cancelReason)")
                }
                if message.created { cursor.created.store(true, ordering: .relaxed) }
                noteRevision(message.header.revision)
                var batch: [StoreEvent] = []
                var head = next - 1
                for raw in message.events {
                    let revision = raw.kv.modRevision
                    guard revision > head else {
                        // A transaction of several keys (not one of ours) under the prefix.
                        logger.warning("skipping a second change at one revision under the prefix", metadata: [
                            "key": "\(String(decoding: raw.kv.key, as: UTF8.self))", "revision": "\(revision)"])
                        continue
                    }
                    do {
                        if let converted = try event(raw) {
                            batch.append(converted)
                            head = revision
                        }
                    } catch {
                        logger.error("cannot decode a change from etcd; skipped", metadata: [
                            "key": "\(String(decoding: raw.kv.key, as: UTF8.self))", "revision": "\(revision)", "error": "\(error)"])
                    }
                }
                if let last = message.events.last { cursor.next.store(max(next, last.kv.modRevision + 1), ordering: .relaxed) }
                hub.publish(batch)
                if cursor.failures.exchange(0, ordering: .relaxed) > 0 {
                    lastFailure.withLock { $0 = nil }
                    logger.info("following etcd again", metadata: ["member": "\(member.endpoint)", "revision": "\(cursor.next.load(ordering: .relaxed) - 1)"])
                }
            }
            throw StoreError(.unavailable, "etcd ended the watch")
        }
    }

    // MARK: - Health, compaction, metrics

    /// nil when a linearizable read succeeds (within one store call's bounds); otherwise why not.
    public func unreadyReason() async -> String? {
        do {
            _ = try await latestRevision()
            return nil
        } catch {
            return "\(error)"
        }
    }

    public func latestRevision() async throws -> Int64 {
        try await count(prefix, operation: "read the revision").header.revision
    }

    /// Compacts etcd's history up to `revision` (kept: each key's value at it). Several servers may
    /// compact the same cluster: a revision compacted already is not an error.
    public func compact(to revision: Int64) async throws {
        guard revision > compactedRevision else { return }
        do {
            _ = try await call("compact to \(revision)", retry: true) { member, options in
                try await member.kv.compact(.with { $0.revision = revision }, options: options)
            }
        } catch let error as StoreError where error.code == .compacted {
            // Another server compacted further.
        }
        noteCompacted(revision)
    }

    /// Compacts history older than `window` for as long as the task runs (as the SQLite store does).
    public func runCompactor(window: Duration, tick: Duration, clock: some Clock<Duration> = ContinuousClock()) async {
        await CompactionSchedule.run(window: window, tick: tick, clock: clock, current: { self.currentRevision },
                                     compacted: { self.compactedRevision }, logger: logger) { target in
            try await self.compact(to: target)
            self.logger.info("compacted etcd", metadata: ["revision": "\(target)"])
        }
    }

    public func renderMetrics(into lines: inout [String]) {
        lines += StoreStats.revisionLines(current: currentRevision, compacted: compactedRevision) + [
            "# HELP cox_etcd_requests_total Calls to etcd that were answered.",
            "# TYPE cox_etcd_requests_total counter",
            "cox_etcd_requests_total \(counters.requests.load(ordering: .relaxed))",
            "# HELP cox_etcd_member_failures_total Calls that found their etcd member unreachable, without quorum or slow.",
            "# TYPE cox_etcd_member_failures_total counter",
            "cox_etcd_member_failures_total \(counters.failures.load(ordering: .relaxed))",
        ]
    }
}

final class FeedCursor: Sendable {
    let next: Atomic<Int64>
    /// Breaks of the watch since it last delivered.
    let failures = Atomic<Int>(0)
    /// Whether the member has answered the current watch's create.
    let created = Atomic<Bool>(false)
    init(_ next: Int64) { self.next = Atomic(next) }
}

final class EtcdCounters: Sendable {
    let requests = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
}

extension EtcdStore {
    /// How many keys the prefix holds (a migration goes only into an empty one).
    public func keyCount() async throws -> Int64 {
        try await count(prefix, operation: "count the keys").count
    }

    /// How many objects of `resource` the store holds.
    public func objectCount(of resource: String) async throws -> Int64 {
        try await count(resourcePrefix(resource, namespace: nil), operation: "count \(resource)").count
    }

    /// Writes an object's stored encoding (as another store kept it: uid, creation time and all)
    /// at its key, only if the key is free; false when it was not. The value is encrypted as
    /// this store encrypts it.
    public func importObject(_ key: ObjectKey, bytes: [UInt8]) async throws -> Bool {
        try await putIfAbsent(key, bytes, operation: "import") != nil
    }
}
