import API
import ArgumentParser
import Client
import Foundation
import PKI

/// Where a command finds its cluster: --kubeconfig, then $COX_CONFIG, then .cox/admin.kubeconfig,
/// then ~/.cox/config.
struct ClientOptions: ParsableArguments {
    @Option(help: "Path to a kubeconfig file.") var kubeconfig: String?
    @Option(help: "API server URL(s) instead of the kubeconfig's: https://a:6443,https://b:6443 (calls fail over to the next on connection errors and 503/504).")
    var server: String?
    @Flag(help: "Talk JSON to the server instead of protobuf.") var json = false
    @Option(name: .customLong("as"), help: "Act as this user (the server must allow you to impersonate it).") var asUser: String?
    @Option(name: .customLong("as-group"), help: "Act with this group too (repeatable; needs --as).") var asGroup: [String] = []
    @Option(help: "Longest a call may take, retries included, e.g. 10s or 2m (kubectl's flag).") var requestTimeout = "30s"

    func resolveKubeconfig() throws -> String {
        var tried: [String] = []
        if let kubeconfig { return kubeconfig }
        if let env = ProcessInfo.processInfo.environment["COX_CONFIG"], !env.isEmpty { return env }
        for candidate in [".cox/admin.kubeconfig", (NSHomeDirectory() as NSString).appendingPathComponent(".cox/config")] {
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            tried.append(candidate)
        }
        throw ValidationError("no kubeconfig found (tried --kubeconfig, $COX_CONFIG, \(tried.joined(separator: ", "))); start a cluster with `cox up` or pass --kubeconfig")
    }

    func makeClient() throws -> APIClient {
        // A server that is down refuses the connection at once, and that is reported within
        // a second (a failed connection is not retried by the pool, only by our three attempts);
        // the connect timeout only bounds a silent network, and must leave room for a TLS
        // handshake over a slow link (two round trips: 300 ms each way already needs 1.2 s).
        if asUser == nil && !asGroup.isEmpty { throw ValidationError("--as-group needs --as (a user to act as)") }
        let timeout = try TokenTTL.seconds(requestTimeout, flag: "--request-timeout")
        guard timeout > 0 else { throw ValidationError("--request-timeout must be more than 0") }
        var config = try Kubeconfig.load(path: try resolveKubeconfig())
        if let server {
            config.server = server
            if let bad = config.servers.first(where: { !$0.hasPrefix("https://") }) { throw ValidationError("--server: \(bad) is not an https:// URL") }
        }
        return try APIClient(kubeconfig: config, format: json ? .json : .protobuf,
                             timeout: .seconds(timeout), maxAttempts: 3, connectTimeout: .seconds(min(10, timeout)),
                             impersonate: asUser.map { ($0, asGroup) }, retryConnecting: false)
    }
}

/// Runs `body` with a client and shuts the client down afterwards, whatever happens.
func withClient<R>(_ options: ClientOptions, _ body: (APIClient) async throws -> R) async throws -> R {
    let client = try options.makeClient()
    do {
        let result = try await body(client)
        try? await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}

/// The kind a user typed (`po`, `pods`, `deployment`…), or an error listing the known ones.
func kind(named name: String) throws -> any APIObject.Type {
    guard let kind = Kinds.lookup(name) else {
        let known = Kinds.all.map { $0.kindInfo.resource }.joined(separator: ", ")
        throw ValidationError("the server doesn't have a resource type \"\(name)\" (known: \(known))")
    }
    return kind
}
