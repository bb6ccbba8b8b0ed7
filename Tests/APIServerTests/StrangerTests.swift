import Foundation
import Synchronization
import NIOCore
import NIOPosix
import NIOSSL
import Testing
import TestSupport

/// What strangers and greedy clients can make the server hold: a separate `cox server` process
/// (its memory apart from the test's), flooded over HTTP/2 with streams whose bodies never end.
@Suite("Bounded for strangers", .watchdog, .serialized)
struct StrangerTests {
    /// A `cox server` in its own process; its port from the line it prints.
    final class ServerProcess: @unchecked Sendable {
        let dir = TemporaryDirectory()
        let child: Child
        let port: Int
        var pki: String { dir.path + "/pki" }

        init(_ extra: [String] = []) async throws {
            child = try Child(try coxBinary(), ["server", "--port", "0", "--data-dir", dir.path, "--no-controllers", "--no-scheduler"] + extra,
                              stdout: .pipe)
            let banner = try await Tools.read(child.output!, timeout: 60) { $0.contains("listening on https://127.0.0.1:") && $0.hasSuffix("\n") }
            guard let range = banner.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression),
                  let port = Int(banner[range].split(separator: ":").last ?? "") else {
                Issue.record("cox server did not start: \(banner)")
                throw CancellationError()
            }
            self.port = port
        }

        /// Resident memory (VmRSS) in bytes.
        func rss() throws -> Int {
            let status = try String(contentsOfFile: "/proc/\(child.pid)/status", encoding: .utf8)
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }

        func curl(_ path: String, authenticated: Bool = true) async throws -> String {
            var args = ["-sS", "--max-time", "20", "--cacert", "\(pki)/ca.crt", "-o", "/dev/null", "-w", "%{http_code}"]
            if authenticated { args += ["--cert", "\(pki)/admin.crt", "--key", "\(pki)/admin.key"] }
            return try await Tools.runDetached(try #require(Tools.find("curl")), args + ["https://127.0.0.1:\(port)\(path)"]).output
        }

        func metric(_ name: String) async throws -> Int? {
            let args = ["-sS", "--cacert", "\(pki)/ca.crt", "--cert", "\(pki)/admin.crt", "--key", "\(pki)/admin.key", "https://127.0.0.1:\(port)/metrics"]
            let text = try await Tools.runDetached(try #require(Tools.find("curl")), args).output
            return text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Int($0.split(separator: " ").last ?? "") }
        }

        func stop() async {
            child.signal(SIGTERM)
            await child.wait(killAfter: 10)
        }
    }

    /// 8 connections × 100 streams, each sending 64 KiB frames of a body it never finishes.
    static func flood(_ server: ServerProcess, authenticated: Bool, bearer: String? = nil) async throws -> [RawHTTP2] {
        var clients: [RawHTTP2] = []
        for _ in 0..<8 {
            let client = try await RawHTTP2(port: server.port, pki: server.pki, authenticated: authenticated)
            for i in 0..<100 {
                client.unfinishedPost("/api/v1/namespaces/default/pods", stream: 1 + 2 * i, chunkBytes: 65_536, chunks: 16, bearer: bearer)
            }
            clients.append(client)
        }
        return clients
    }

    /// A stranger gets 401 at once and no memory: bodies are not read before the caller is known.
    @Test func unauthenticatedStreamsAreAnsweredWithoutReadingTheirBodies() async throws {
        let server = try await ServerProcess()
        defer { Task { await server.stop() } }
        #expect(try await server.curl("/api/v1/namespaces/default/pods") == "200")
        let before = try server.rss()
        let clients = try await Self.flood(server, authenticated: false)
        try await waitUntil("every stream of the flood is answered", timeout: 60) {
            clients.allSatisfy { $0.statuses().count == 100 }
        }
        #expect(clients.allSatisfy { $0.statuses().values.allSatisfy { $0 == "401" } }, "\(clients.map { Set($0.statuses().values) })")
        // Authenticated requests are answered meanwhile.
        #expect(try await server.curl("/api/v1/namespaces/default/pods") == "200")
        let grown = try server.rss() - before
        #expect(grown < 64 * 1024 * 1024, "the server grew by \(grown / 1_048_576) MiB")
        #expect(try await server.metric("cox_apiserver_request_body_bytes") == 0)
        for client in clients { await client.close() }
        await server.stop()
    }

    /// A stranger with a made-up bearer token (well formed, so it is looked up) is no better off:
    /// the token is checked while the body comes, and the 401 lets go of what was sent — the
    /// server-wide body budget is not spent on strangers, whatever they put in a header.
    @Test func aMadeUpBearerTokenIsAnsweredBeforeItsBodyEnds() async throws {
        let server = try await ServerProcess()
        defer { Task { await server.stop() } }
        let before = try server.rss()
        let clients = try await Self.flood(server, authenticated: false, bearer: "abcdef.0123456789abcdef")
        try await waitUntil("every stream of the flood is answered", timeout: 60) {
            clients.allSatisfy { $0.statuses().count == 100 }
        }
        #expect(clients.allSatisfy { $0.statuses().values.allSatisfy { $0 == "401" } }, "\(clients.map { Set($0.statuses().values) })")
        #expect(try await server.metric("cox_apiserver_request_body_bytes") == 0)
        #expect(try await server.curl("/api/v1/namespaces/default/pods") == "200")
        let grown = try server.rss() - before
        #expect(grown < 64 * 1024 * 1024, "the server grew by \(grown / 1_048_576) MiB")
        for client in clients { await client.close() }
        await server.stop()
    }

    /// A known client that does the same is held to the caps: its streams past them get 429
    /// (nothing half-done) and the server holds no more than its cap.
    @Test func anAuthenticatedFloodHitsTheCapsAndGets429() async throws {
        let cap = 8 * 1024 * 1024
        let server = try await ServerProcess(["--max-buffered-request-bytes", String(cap)])
        defer { Task { await server.stop() } }
        let before = try server.rss()
        let clients = try await Self.flood(server, authenticated: true)
        try await waitUntil("some streams are refused with 429", timeout: 60) {
            clients.contains { $0.statuses().values.contains("429") }
        }
        let held = try #require(try await server.metric("cox_apiserver_request_body_bytes"))
        #expect(held <= cap, "the server holds \(held) bytes of bodies, over its cap of \(cap)")
        #expect(try await server.curl("/api/v1/namespaces/default/pods") == "200")
        let grown = try server.rss() - before
        #expect(grown < 64 * 1024 * 1024, "the server grew by \(grown / 1_048_576) MiB")
        for client in clients { await client.close() }
        try await waitUntil("the server lets go of the bodies once their connections close") {
            try await server.metric("cox_apiserver_request_body_bytes") == 0
        }
        #expect(try await server.curl("/api/v1/namespaces/default/pods") == "200")
        await server.stop()
    }

    /// `/metrics` labels come from closed sets: requests for made-up resources and methods, from
    /// a stranger or not, add no series.
    @Test func madeUpPathsAddNoSeries() async throws {
        let server = try await ServerHarness()
        defer { Task { await server.stop() } }
        func series() async throws -> [String] {
            try await server.request("/metrics").body.split(separator: "\n").filter { $0.hasPrefix("cox_apiserver_requests_total{") }.map(String.init)
        }
        _ = try await server.request("/api/v1/namespaces/default/pods")
        let stranger = try await RawHTTP2(port: server.port, pki: server.pki, authenticated: false)
        let known = try await RawHTTP2(port: server.port, pki: server.pki)
        for i in 0..<100 {
            try await stranger.get("/api/v1/made-up-\(i)", stream: 1 + 2 * i)
            try await known.get("/apis/g\(i).example.com/v1/namespaces/default/widgets\(i)/x/\"sub\(i)", stream: 1 + 2 * i)
        }
        try await waitUntil("every request is answered") { stranger.statuses().count == 100 && known.statuses().count == 100 }
        let after = try await series()
        #expect(after.count <= 12, "\(after.joined(separator: "\n"))")
        #expect(!after.contains { $0.contains("made-up") || $0.contains("widgets") || $0.contains("sub") })
        #expect(after.contains { $0.contains(#"resource="other",code="401""#) } && after.contains { $0.contains(#"resource="other",code="404""#) }, "\(after)")
        await stranger.close()
        await known.close()
        await server.stop()
    }

    /// Slow clients are let go: a connection that never finishes its TLS handshake, an HTTP/1.1
    /// request head that never ends, an HTTP/2 connection with nothing to ask, and an HTTP/2 body
    /// that never ends (408); and one address may hold only so many connections.
    @Test func slowClientsAreDroppedAndConnectionsPerAddressAreCapped() async throws {
        let server = try await ServerHarness { configuration in
            configuration.limits.handshakeTimeout = .seconds(1)
            configuration.limits.idleTimeout = .seconds(2)
            configuration.limits.requestTimeout = .seconds(2)
            configuration.limits.maxConnectionsPerAddress = 20
        }
        defer { Task { await server.stop() } }
        /// Whether the server closes `channel` within `seconds` (a bound, not a timing check).
        func closed(_ channel: any Channel, within seconds: Int64) async -> Bool {
            await withTaskGroup(of: Bool.self) { group in
                group.addTask { (try? await channel.closeFuture.get()) != nil }
                group.addTask {
                    try? await Task.sleep(for: .seconds(seconds))
                    return false
                }
                let first = await group.next() ?? false
                group.cancelAll()
                if !first { channel.close(promise: nil) }
                return first
            }
        }
        // 1. TCP, and then nothing: no TLS handshake.
        let silent = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: server.port).get()
        #expect(await closed(silent, within: 15), "a connection without a handshake was kept")

        // 2. HTTP/1.1: a request head that never ends.
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file("\(server.pki)/ca.crt")
        tls.certificateChain = try NIOSSLCertificate.fromPEMFile("\(server.pki)/admin.crt").map { .certificate($0) }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: "\(server.pki)/admin.key", format: .pem))
        tls.applicationProtocols = ["http/1.1"]
        let context = try NIOSSLContext(configuration: tls)
        let loris = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                }
            }
            .connect(host: "127.0.0.1", port: server.port).get()
        try await loris.writeAndFlush(ByteBuffer(string: "GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")).get()
        #expect(await closed(loris, within: 15), "a request head that never ended kept its connection")

        // 3. HTTP/2 with nothing to ask, and 4. a body that never ends.
        let idle = try await RawHTTP2(port: server.port, pki: server.pki)
        #expect(await closed(idle.channel, within: 15), "an idle HTTP/2 connection was kept")
        let trickle = try await RawHTTP2(port: server.port, pki: server.pki)
        trickle.unfinishedPost("/api/v1/namespaces/default/pods", stream: 1, chunkBytes: 10, chunks: 1)
        try await waitUntil("the unfinished body is answered") { trickle.status(of: 1) != nil }
        #expect(trickle.status(of: 1) == "408")

        // 5. Twenty connections from one address are kept; the twenty-first is closed at once.
        var held: [RawHTTP2] = []
        for _ in 0..<20 { held.append(try await RawHTTP2(port: server.port, pki: server.pki)) }
        let extra = try? await RawHTTP2(port: server.port, pki: server.pki)
        if let extra { #expect(await closed(extra.channel, within: 5), "a connection past the per-address limit was kept") }
        for connection in held { await connection.close() }
        // Once they are gone, the address may connect again.
        try await waitUntil("a new connection is served") {
            (try? await server.request("/livez").code) == 200
        }
        await server.stop()
    }

    /// Over HTTP/1.1 a stranger's endless body is not read either: the 401 goes out and the
    /// connection closes, while the stranger is still sending.
    @Test func anHTTP1StrangersEndlessBodyEndsItsConnection() async throws {
        let server = try await ServerHarness()
        defer { Task { await server.stop() } }
        final class Received: ChannelInboundHandler, Sendable {
            typealias InboundIn = ByteBuffer
            let text = Mutex("")
            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                let buffer = unwrapInboundIn(data)
                text.withLock { $0 += String(buffer: buffer) }
            }
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file("\(server.pki)/ca.crt")
        tls.applicationProtocols = ["http/1.1"]
        let context = try NIOSSLContext(configuration: tls)
        let received = Received()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    try channel.pipeline.syncOperations.addHandler(received)
                }
            }
            .connect(host: "127.0.0.1", port: server.port).get()
        try await channel.writeAndFlush(ByteBuffer(string: "POST /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: localhost\r\n"
                                                   + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")).get()
        let chunk = ByteBuffer(string: "10000\r\n" + String(repeating: " ", count: 65_536) + "\r\n")
        var sent = 0
        // Bounded: at most 200 chunks (12.5 MiB) over at most 20 s.
        while channel.isActive && sent < 200 {
            try? await channel.writeAndFlush(chunk).get()
            sent += 1
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(!channel.isActive, "the connection was still open after \(sent) chunks of a body nobody reads")
        let answer = received.text.withLock { $0 }
        #expect(answer.hasPrefix("HTTP/1.1 401") && answer.contains(#""reason":"Unauthorized""#), "the whole answer arrives first: \(answer)")
        channel.close(promise: nil)
        await server.stop()
    }
}
