import Foundation
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
    static func flood(_ server: ServerProcess, authenticated: Bool) async throws -> [RawHTTP2] {
        var clients: [RawHTTP2] = []
        for _ in 0..<8 {
            let client = try await RawHTTP2(port: server.port, pki: server.pki, authenticated: authenticated)
            for i in 0..<100 {
                client.unfinishedPost("/api/v1/namespaces/default/pods", stream: 1 + 2 * i, chunkBytes: 65_536, chunks: 16)
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
}
