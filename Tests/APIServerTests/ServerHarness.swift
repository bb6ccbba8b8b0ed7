import API
import APIServer
import Foundation
import Logging
import PKI
import Testing
import TestSupport

/// A real API server on a free loopback port with real TLS and a temporary data directory, and
/// curl as the client (an independent TLS and HTTP implementation).
final class ServerHarness: @unchecked Sendable {
    let dir: TemporaryDirectory
    let task: Task<Void, Error>
    let port: Int
    let curl: String

    var base: String { "https://127.0.0.1:\(port)" }
    /// The store revision of a fresh server once it serves: the built-in RBAC policy and the system namespaces are written first.
    /// Writes at the first start: the RBAC policy, the system namespaces and each one's default service account.
    static var bootRevision: Int { BootstrapPolicy.clusterRoles.count + BootstrapPolicy.clusterRoleBindings.count + 2 * Namespaces.system.count }
    var pki: String { (dir.path as NSString).appendingPathComponent("pki") }
    var kubeconfig: String { (dir.path as NSString).appendingPathComponent("admin.kubeconfig") }

    init(dir: TemporaryDirectory = TemporaryDirectory(), configure: (inout APIServer.Configuration) -> Void = { _ in }) async throws {
        self.dir = dir
        self.curl = try #require(Tools.find("curl"), "curl is needed as the independent HTTP client")
        var configuration = APIServer.Configuration(dataDirectory: dir.path)
        configuration.port = 0
        configure(&configuration)
        var logger = Logger(label: "cox.apiserver.test")
        logger.logLevel = .warning
        let server = APIServer(configuration: configuration, logger: logger)
        let (stream, continuation) = AsyncStream<Int>.makeStream()
        task = Task { try await server.run { port, _ in continuation.yield(port) } }
        var iterator = stream.makeAsyncIterator()
        port = await iterator.next() ?? 0
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }

    struct Reply {
        let code: Int
        let body: String
        var json: JSONValue? { try? JSONParser.parse(body) }
    }

    /// One request with curl as the admin (or, with `authenticated: false`, with no certificate).
    func request(_ path: String, accept: String? = nil, authenticated: Bool = true, extra: [String] = []) async throws -> Reply {
        try await request("GET", path, accept: accept, authenticated: authenticated, extra: extra)
    }

    func request(_ method: String, _ path: String, body: String? = nil, bodyFile: String? = nil,
                 contentType: String = "application/json", accept: String? = nil, authenticated: Bool = true,
                 extra: [String] = [], outputFile: String? = nil) async throws -> Reply {
        var args = ["-sS", "--cacert", "\(pki)/ca.crt", "-X", method, "-o", outputFile ?? "-", "-w", "\n%{http_code}"]
        if authenticated { args += ["--cert", "\(pki)/admin.crt", "--key", "\(pki)/admin.key"] }
        if let body { args += ["-H", "Content-Type: \(contentType)", "--data-binary", body] }
        if let bodyFile { args += ["-H", "Content-Type: \(contentType)", "--data-binary", "@\(bodyFile)"] }
        if let accept { args += ["-H", "Accept: \(accept)"] }
        args += extra + [base + path]
        let output = try await Tools.runDetached(curl, args).output
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        return Reply(code: Int(lines.last ?? "") ?? -1, body: lines.dropLast().joined(separator: "\n"))
    }
}

func podJSON(_ name: String, labels: [String: String] = [:], namespace: String = "default") -> String {
    TestObjects.pod(name, namespace: namespace, labels: labels).jsonString()
}
