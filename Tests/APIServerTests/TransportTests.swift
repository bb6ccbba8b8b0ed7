import API
@testable import APIServer
@testable import Client
import Foundation
import Logging
import PKI
import NIOCore
import NIOHTTP1
import NIOSSL
import Store
import Synchronization
import Testing
import TestSupport

/// Nested in the serialized server suite: these tests block on curl against an in-process server,
/// and two such tests at once could occupy every cooperative thread the servers need.
extension APIServerTests {
    @Suite("Transport: HTTP/2, metrics, client retries and resuming watches", .watchdog, .serialized)
    struct TransportTests {
        func client(_ server: ServerHarness, format: WireFormat = .protobuf, timeout: Int64 = 10) throws -> APIClient {
            try APIClient(kubeconfig: try Kubeconfig.load(path: server.kubeconfig), format: format, timeout: .seconds(timeout))
        }

        /// Stopping the server (cancelling its task, as tests and benchmarks do) while clients keep
        /// opening HTTP/2 streams: it shuts down gracefully and in bounded time. (A hard stop left
        /// streams opened meanwhile unhandled, and NIO ended the whole process over it.)
        @Test func stoppingTheServerUnderClientsOpeningStreamsIsGracefulAndBounded() async throws {
            let api = try await InProcessAPI.start()
            let client = try api.newClient()
            final class Counter: Sendable { let value = Atomic<Int>(0) }
            let requests = Counter()
            let hammers = (0..<16).map { _ in
                Task {
                    while !Task.isCancelled {
                        if (try? await client.list(Pod.self, namespace: "default")) != nil { requests.value.add(1, ordering: .relaxed) }
                    }
                }
            }
            while requests.value.load(ordering: .relaxed) < 200 { try await Task.sleep(for: .milliseconds(20)) }
            let started = Date()
            await api.stop()
            let took = Date().timeIntervalSince(started)
            #expect(took < 20, "the server took \(took) s to stop")
            for hammer in hammers { hammer.cancel() }
            for hammer in hammers { await hammer.value }
            try? await client.shutdown()
        }

        /// HTTP/2 stream IDs never repeat on a connection and end at 2³¹ − 1: a connection that
        /// has used them up is retired (its calls go to a new one) instead of trapping. Here with
        /// the limit lowered to 7: four calls (streams 1, 3, 5, 7) per connection.
        @Test func aConnectionIsRetiredBeforeItsStreamIDsRunOut() async throws {
            try await InProcessAPI.with { api in
                let kubeconfig = try Kubeconfig.load(path: api.kubeconfigPath)
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(kubeconfig.caPEM.utf8)))
                tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(kubeconfig.clientCertificatePEM!.utf8)).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(kubeconfig.clientKeyPEM!.utf8), format: .pem))
                let pool = try KeepAlive(.http2, host: "127.0.0.1", port: api.port, tls: tls, connections: 1, connectTimeout: .seconds(5), lastStreamID: 7)
                defer { Task { await pool.shutdown() } }
                var retired = 0
                for _ in 0..<12 {
                    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/livez")
                    do {
                        let response = try await pool.execute(head, body: nil, deadline: .now() + .seconds(10))
                        #expect(response.status == 200)
                    } catch KeepAlive.Failure.notSent(let error) where error is HTTP2ExchangeHandler.StreamIDsUsedUp {
                        // Nothing was sent: the call goes again, on the connection that takes over.
                        retired += 1
                        let response = try await pool.execute(head, body: nil, deadline: .now() + .seconds(10))
                        #expect(response.status == 200)
                    }
                }
                #expect(retired == 2, "12 calls, 4 per connection: two connections retired")
                await pool.shutdown()
            }
        }

        @Test func http2ByALPNAndRequestMetrics() async throws {
            let server = try await ServerHarness()
            let version = try await server.request("/api/v1/namespaces/default/pods", extra: ["--http2", "-o", "/dev/null", "-w", "%{http_version}\n"])
            #expect(version.body.hasSuffix("2"), "curl negotiated HTTP/\(version.body) instead of HTTP/2")
            let old = try await server.request("/api/v1/namespaces/default/pods", extra: ["--http1.1", "-o", "/dev/null", "-w", "%{http_version}\n"])
            #expect(old.body.hasSuffix("1.1"), "HTTP/1.1 clients are still served")

            // The typed client (HTTP/2 by default) authenticates by its certificate over a stream channel.
            let api = try client(server)
            for i in 0..<3 { _ = try await api.create(TestObjects.pod("m\(i)")) }
            _ = try? await api.get(Pod.self, namespace: "default", name: "absent")
            let metrics = try await server.request("/metrics").body
            #expect(metrics.contains(#"cox_apiserver_requests_total{verb="create",resource="pods",code="201"} 3"#), "\(metrics)")
            #expect(metrics.contains(#"cox_apiserver_requests_total{verb="get",resource="pods",code="404"} 1"#))
            #expect(metrics.contains(#"cox_apiserver_requests_total{verb="list",resource="pods",code="200"} 2"#))
            #expect(metrics.contains(#"cox_apiserver_request_duration_seconds_count{verb="create",resource="pods"} 3"#))
            #expect(metrics.contains(#"cox_apiserver_request_duration_seconds_bucket{verb="create",resource="pods",le="+Inf"} 3"#))
            #expect(metrics.contains("cox_store_commit_batch_size_count \(ServerHarness.bootRevision + 3)"),
                    "three creates, three commits (after the built-in RBAC policy's, one each)")
            try await api.shutdown()
            await server.stop()
        }

        /// Both transports: HTTP/2 through AsyncHTTPClient, and HTTP/1.1 over the client's own
        /// keep-alive connections (`http2: false`, the scheduler's).
        @Test(arguments: [true, false]) func clientRetriesARefusedConnectionUntilTheServerStarts(http2: Bool) async throws {
            let dir = TemporaryDirectory()
            let pki = try ClusterPKI.bootstrap(dataDirectory: dir.path)
            let port = try freePort()
            let kubeconfigPath = (dir.path as NSString).appendingPathComponent("early.kubeconfig")
            _ = try pki.writeAdminKubeconfig(to: kubeconfigPath, serverURL: "https://127.0.0.1:\(port)")
            let api = try APIClient(kubeconfig: try Kubeconfig.load(path: kubeconfigPath), timeout: .seconds(20), maxAttempts: 40, http2: http2)
            // The call starts while nothing listens; the server comes up a moment later.
            let call = Task { try await api.create(TestObjects.pod("early")) }
            try await waitUntil("the call has been refused at least once") { api.transientFailures >= 1 }
            let server = try await ServerHarness(dir: dir) { $0.port = port }
            let created = try await call.value
            #expect(created.metadata.name == "early" && created.metadata.resourceVersion == "\(ServerHarness.bootRevision + 1)")
            try await api.shutdown()
            await server.stop()
        }

        @Test(arguments: [true, false]) func clientHonours429AndGivesUpWithinItsDeadline(http2: Bool) async throws {
            let server = try await ServerHarness { $0.limits.maxInflightRequests = 0 }
            let api = try APIClient(kubeconfig: try Kubeconfig.load(path: server.kubeconfig), timeout: .seconds(4), maxAttempts: 3, http2: http2)
            let started = ContinuousClock.now
            await #expect {
                _ = try await api.list(Pod.self, namespace: "default")
            } throws: { error in
                let error = error as? ClientError
                return error?.code == 429 && error?.message.contains("gave up after 3 attempts") == true
            }
            // Retry-After is 1 s: three attempts means two waits of a second each.
            #expect(ContinuousClock.now - started >= .seconds(2))
            // A create is not idempotent: one attempt only.
            await #expect(throws: ClientError.self) { _ = try await api.create(TestObjects.pod("once")) }
            try await api.shutdown()
            await server.stop()
        }

        /// The client's own connections (HTTP/2 streams as frames, or HTTP/1.1 keep-alive): calls
        /// of every verb, concurrent, a server restart costs no call (closed connections are
        /// replaced; a create is resent only when it cannot have been sent), server errors arrive
        /// as the server's Status, and a peer that accepts the connection but never answers fails
        /// the call at its deadline.
        @Test(.timeLimit(.minutes(2)), arguments: [true, false]) func keepAliveConnectionsOutliveARestartAndEndAtTheDeadline(http2: Bool) async throws {
            let dir = TemporaryDirectory()
            let port = try freePort()
            var server = try await ServerHarness(dir: dir) { $0.port = port }
            let api = try APIClient(kubeconfig: try Kubeconfig.load(path: server.kubeconfig), timeout: .seconds(10), maxConnections: 4, http2: http2)
            try await withThrowingTaskGroup(of: Void.self) { group in
                // More at once than the server's 100 streams per connection: the rest wait their turn.
                for i in 0..<150 { group.addTask { _ = try await api.create(TestObjects.pod("p\(i)")) } }
                try await group.waitForAll()
            }
            #expect(try await api.list(Pod.self, namespace: "default").items.count == 150)
            var pod = try await api.get(Pod.self, namespace: "default", name: "p0")
            pod.metadata.labels["v"] = "2"
            #expect(try await api.update(pod).metadata.labels["v"] == "2")
            await #expect {
                _ = try await api.create(TestObjects.pod("p1"))
            } throws: { ($0 as? ClientError)?.code == 409 && ($0 as? ClientError)?.reason == "AlreadyExists" }
            await #expect { _ = try await api.get(Pod.self, namespace: "default", name: "ghost") } throws: { ($0 as? ClientError)?.code == 404 }

            await server.stop()
            server = try await ServerHarness(dir: dir) { $0.port = port }
            #expect(try await api.get(Pod.self, namespace: "default", name: "p0").metadata.labels["v"] == "2")
            _ = try await api.create(TestObjects.pod("after-restart"))
            _ = try await api.delete(Pod.self, namespace: "default", name: "after-restart", gracePeriodSeconds: 0)
            try await api.shutdown()
            await server.stop()

            // A listener that never accepts: TCP connects (the kernel's backlog), TLS never answers.
            let (fd, silentPort) = try TestHost.silentListener()
            defer { close(fd) }
            let silentPath = (dir.path as NSString).appendingPathComponent("silent.kubeconfig")
            _ = try ClusterPKI.bootstrap(dataDirectory: dir.path).writeAdminKubeconfig(to: silentPath, serverURL: "https://127.0.0.1:\(silentPort)")
            let silent = try APIClient(kubeconfig: try Kubeconfig.load(path: silentPath), timeout: .seconds(1), http2: http2)
            await #expect {
                _ = try await silent.get(Pod.self, namespace: "default", name: "p0")
            } throws: { ($0 as? ClientError)?.reason == "Timeout" }
            try await silent.shutdown()
        }

        @Test func watchResumesAcrossAServerRestartAndRelistsAfterCompaction() async throws {
            let dir = TemporaryDirectory()
            let port = try freePort()
            var server = try await ServerHarness(dir: dir) { $0.port = port }
            let api = try client(server)
            _ = try await api.create(TestObjects.pod("before"))
            var request = WatchRequest(namespace: "default")
            request.timeoutSeconds = 30
            var events = api.watch(Pod.self, request).makeAsyncIterator()
            guard case .relisted(let initial, _)? = try await events.next() else { Issue.record("a watch without a revision lists first"); return }
            #expect(initial.map(\.metadata.name) == ["before"])

            _ = try await api.create(TestObjects.pod("a"))
            #expect(try await nextChange(&events) == "ADDED a")
            await server.stop()
            // While the server is down, a write lands directly in its store: the watch must see it after.
            let store = try SQLiteStore(directory: dir.path, logger: Logger(label: "test"))
            _ = try await store.create(TestObjects.pod("while-down"))
            store.close()
            server = try await ServerHarness(dir: dir) { $0.port = port }
            _ = try await api.create(TestObjects.pod("after"))
            #expect(try await nextChange(&events) == "ADDED while-down")
            #expect(try await nextChange(&events) == "ADDED after", "no event lost, none repeated")
            await server.stop()

            // History compacted past a watcher's revision: 410, so the watch lists again.
            let compacting = try SQLiteStore(directory: dir.path, logger: Logger(label: "test"))
            for i in 0..<3 { _ = try await compacting.create(TestObjects.pod("c\(i)")) }
            try await compacting.compact(to: compacting.currentRevision)
            compacting.close()
            var old = WatchRequest(namespace: "default", resourceVersion: "2")
            old.timeoutSeconds = 30
            server = try await ServerHarness(dir: dir) { $0.port = port }
            var resumed = api.watch(Pod.self, old).makeAsyncIterator()
            guard case .relisted(let items, let revision)? = try await resumed.next() else { Issue.record("a compacted revision re-lists"); return }
            #expect(items.count == 7 && revision == "\(ServerHarness.bootRevision + 7)", "\(items.map(\.metadata.name)) at \(revision)")
            try await api.shutdown()
            await server.stop()
        }

        /// A consumer that stops reading holds its watch up instead of growing its memory: at most
        /// `maxBuffered` events wait decoded, the rest wait on the server (HTTP/2 flow control).
        /// A pause longer than the idle timeout is not taken for a dead connection, and when the
        /// consumer reads again nothing is lost or repeated.
        @Test func aWatchConsumerThatStopsReadingHoldsTheWatchUp() async throws {
            let server = try await ServerHarness()
            let api = try client(server)
            var request = WatchRequest(namespace: "default", resourceVersion: "0")
            request.timeoutSeconds = 60
            request.maxBuffered = 5
            request.idleTimeout = .seconds(1)
            let events = api.watch(Pod.self, request)
            var iterator = events.makeAsyncIterator()
            for i in 0..<40 { _ = try await api.create(TestObjects.pod("p\(i)")) }
            try await waitUntil("five events wait for the consumer") { events.window.waiting == 5 }
            try await Task.sleep(for: .seconds(2))
            #expect(events.window.waiting == 5, "no more than maxBuffered decoded ahead")
            var names: [String] = []
            while names.count < 40, let event = try await iterator.next() {
                if case .added(let pod) = event { names.append(pod.metadata.name) }
            }
            #expect(names == (0..<40).map { "p\($0)" })
            let watches = try await server.request("/metrics").body.split(separator: "\n").filter { $0.hasPrefix(#"cox_apiserver_requests_total{verb="watch""#) }
            #expect(watches == [#"cox_apiserver_requests_total{verb="watch",resource="pods",code="200"} 1"#], "one watch request: the pause was not a stall")
            try await api.shutdown()
            await server.stop()
        }

        /// Watches must not take the HTTP/2 connection's streams (100) from ordinary calls.
        @Test func manyOpenWatchesDoNotBlockOtherCalls() async throws {
            let server = try await ServerHarness()
            let api = try client(server)
            var request = WatchRequest(namespace: "default", resourceVersion: "0")
            request.timeoutSeconds = 60
            var iterators: [WatchEvents<Pod>.AsyncIterator] = []
            for _ in 0..<120 { iterators.append(api.watch(Pod.self, request).makeAsyncIterator()) }
            // Start them all: the first event of each is the ADDED of this pod.
            _ = try await api.create(TestObjects.pod("seen-by-all"))
            for index in iterators.indices {
                #expect(try await nextChange(&iterators[index]) == "ADDED seen-by-all")
            }
            let fetched = try await api.get(Pod.self, namespace: "default", name: "seen-by-all")
            #expect(fetched.metadata.name == "seen-by-all")
            let watchers = try await server.request("/metrics").body.split(separator: "\n").first { $0.hasPrefix("cox_apiserver_watchers ") }
            #expect(watchers == "cox_apiserver_watchers 120")
            iterators.removeAll()
            try await api.shutdown()
            await server.stop()
        }

        /// A watch nobody reads holds the server back through its HTTP/2 window instead of piling
        /// up in the client: what waits unread stays under the stream's window plus its high-water
        /// mark while 2.4 MB of events are written, unary calls on the same client go on, and once
        /// read, every event is there, in order.
        @Test func anUnreadWatchIsPacedByItsWindowAndLosesNothing() async throws {
            let server = try await ServerHarness()
            let api = try client(server)
            let start = try await api.list(Pod.self, namespace: "default").resourceVersion
            let body = try await api.watchChunks(Pod.self, namespace: "default", resourceVersion: start, timeoutSeconds: 120)
            let stream = try #require(body.http2, "the client watches over HTTP/2")
            let count = 600
            let filler = String(repeating: "x", count: 4096)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        for index in stride(from: worker, to: count, by: 8) {
                            var pod = TestObjects.pod("paced-\(index)")
                            pod.metadata.annotations["filler"] = filler
                            _ = try await api.create(pod)
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await waitUntil("the client holds the server back") { stream.heldBack }
            let bound = ResponseStream.highWater + APIClient.streamWindow
            #expect(stream.unread <= bound, "\(stream.unread) bytes unread; the window allows \(bound)")
            #expect(try await api.get(Pod.self, namespace: "default", name: "paced-0").metadata.name == "paced-0")

            var splitter = WatchFrameSplitter(format: .protobuf)
            var seen: [String] = []
            for try await chunk in body {
                splitter.append(chunk.readableBytesView)
                for frame in splitter.frames() {
                    let (kind, pod, _) = try splitter.decode(frame, as: Pod.self)
                    if kind == "ADDED", let pod { seen.append(pod.metadata.name) }
                }
                if seen.count == count { break }
            }
            #expect(seen.count == count && Set(seen).count == count, "\(seen.count) events, \(Set(seen).count) distinct")
            let revisions = try await api.list(Pod.self, namespace: "default").items.sorted { Int($0.metadata.resourceVersion)! < Int($1.metadata.resourceVersion)! }
            #expect(seen == revisions.map(\.metadata.name), "in the order they were written")
            try await api.shutdown()
            await server.stop()
        }

        @Test func requestDeadlineAnswersWhenTheWorkDoesNot() async throws {
            await #expect(throws: Deadline.Exceeded.self) {
                _ = try await Deadline.run(within: .milliseconds(20)) { () async throws -> Int in
                    try await Task.sleep(for: .seconds(60))
                    return 1
                }
            }
            #expect(try await Deadline.run(within: .seconds(60)) { 7 } == 7)
            await #expect(throws: CancellationError.self) {
                _ = try await Deadline.run(within: .seconds(60)) { () async throws -> Int in throw CancellationError() }
            }
        }

        /// The next ADDED/MODIFIED/DELETED as "TYPE name", skipping bookmarks.
        func nextChange(_ events: inout WatchEvents<Pod>.AsyncIterator) async throws -> String? {
            while let event = try await events.next() {
                switch event {
                case .added(let pod): return "ADDED \(pod.metadata.name)"
                case .modified(let pod): return "MODIFIED \(pod.metadata.name)"
                case .deleted(let pod): return "DELETED \(pod.metadata.name)"
                case .relisted(let pods, _): return "RELISTED \(pods.count)"
                case .bookmark: continue
                }
            }
            return nil
        }
    }
}

func freePort() throws -> Int { try TestHost.freePort() }
