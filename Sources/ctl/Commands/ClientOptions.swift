import API
import ArgumentParser
import Client
import Foundation
import PKI

/// Where a command finds its cluster: --kubeconfig, then $COX_CONFIG, then .cox/admin.kubeconfig,
/// then ~/.cox/config.
struct ClientOptions: ParsableArguments {
    @Option(help: "Path to a kubeconfig file.") var kubeconfig: String?
    @Flag(help: "Talk JSON to the server instead of protobuf.") var json = false
    @Option(name: .customLong("as"), help: "Act as this user (the server must allow you to impersonate it).") var asUser: String?
    @Option(name: .customLong("as-group"), help: "Act with this group too (repeatable; needs --as).") var asGroup: [String] = []

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
        // A person is waiting: a server that is down is reported within seconds, not after the deadline.
        if asUser == nil && !asGroup.isEmpty { throw ValidationError("--as-group needs --as (a user to act as)") }
        return try APIClient(kubeconfig: try Kubeconfig.load(path: try resolveKubeconfig()), format: json ? .json : .protobuf,
                             maxAttempts: 3, connectTimeout: .seconds(1), impersonate: asUser.map { ($0, asGroup) })
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
