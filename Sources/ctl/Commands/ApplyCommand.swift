import Foundation
import API
import ArgumentParser
import Client

/// `cox apply -f`: creates what is missing, updates what differs, leaves the rest alone.
struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Create or update objects from YAML or JSON manifests.")

    @Option(name: .shortAndLong, help: "A file, a directory, or - for standard input (repeatable).") var filename: [String]
    @Flag(help: "Let the server merge the manifest (server-side apply): it records which fields each manager owns and refuses to take another's without --force-conflicts.")
    var serverSide = false
    @Option(help: "The manager name server-side apply records for these fields.") var fieldManager = "cox"
    @Flag(help: "With --server-side: take fields another manager owns instead of failing with a conflict.") var forceConflicts = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        if forceConflicts && !serverSide { throw ValidationError("--force-conflicts only applies with --server-side") }
        let objects = try filename.flatMap { try Manifests.load(path: $0) }
        let failed = try await withClient(client) { client in
            serverSide ? await serverSideApply(objects, with: client) : await Self.apply(objects.map(\.object), with: client)
        }
        if failed { throw ExitCode.failure }
    }

    /// Each manifest document as written, sent as an apply patch; a conflict names the other
    /// manager and the fields (the server's message). True if any failed.
    func serverSideApply(_ objects: [ManifestObject], with client: APIClient) async -> Bool {
        var failed = false
        var query = "fieldManager=\(fieldManager.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? fieldManager)"
        if forceConflicts { query += "&force=true" }
        for item in objects {
            do {
                print(try await Self.serverSideApplyOne(item.object, document: item.document, query: query, with: client))
            } catch {
                printError("error: \(type(of: item.object).kindInfo.singular)/\(item.object.metadata.name): \(error)")
                failed = true
            }
        }
        return failed
    }

    static func serverSideApplyOne<T: APIObject>(_ object: T, document: JSONValue, query: String, with client: APIClient) async throws -> String {
        _ = try await client.patch(T.self, namespace: object.metadata.namespace, name: object.metadata.name, body: JSONWriter.bytes(document),
                                   contentType: "application/apply-patch+yaml", query: query)
        return "\(T.kindInfo.singular)/\(object.metadata.name) serverside-applied"
    }

    /// Applies each object, printing `kind/name created|configured|unchanged`; true if any failed.
    static func apply(_ objects: [any APIObject], with client: APIClient) async -> Bool {
        var failed = false
        for object in objects {
            do {
                print(try await applyOne(object, with: client))
            } catch {
                printError("error: \(type(of: object).kindInfo.singular)/\(object.metadata.name): \(error)")
                failed = true
            }
        }
        return failed
    }

    static func applyOne<T: APIObject>(_ desired: T, with client: APIClient) async throws -> String {
        "\(T.kindInfo.singular)/\(desired.metadata.name) \(try await client.apply(desired).rawValue)"
    }
}

/// `cox delete KIND NAME` or `cox delete -f FILE`.
struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete objects by kind and name, or those in manifests.")

    @Argument(help: "Kind and names, e.g. `pod web`.") var arguments: [String] = []
    @Option(name: .shortAndLong, help: "Delete the objects in these manifests.") var filename: [String] = []
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @Option(help: "Seconds a pod gets to stop (default: its terminationGracePeriodSeconds).") var gracePeriod: Int64?
    @Flag(help: "Delete at once (grace period 0), without waiting for the node to stop the pod.") var force = false
    @Option(help: "Wait until the object is gone (true, like kubectl) or return at once (false).") var wait = true
    @Option(help: "What happens to what the object owns: background (deleted after it), foreground (deleted before it) or orphan (kept).")
    var cascade = "background"
    @OptionGroup var client: ClientOptions

    static let policies = ["background": "Background", "foreground": "Foreground", "orphan": "Orphan"]

    func run() async throws {
        guard Self.policies[cascade.lowercased()] != nil else { throw ValidationError("--cascade must be background, foreground or orphan, not \"\(cascade)\"") }
        var targets: [(any APIObject.Type, String, String)] = []
        for path in filename {
            for item in try Manifests.load(path: path) {
                targets.append((type(of: item.object), item.object.metadata.namespace, item.object.metadata.name))
            }
        }
        if let first = arguments.first {
            let type = try kind(named: first)
            guard arguments.count > 1 else { throw ValidationError("name the \(type.kindInfo.resource) to delete, e.g. `cox delete \(first) NAME`") }
            for name in arguments.dropFirst() { targets.append((type, namespace, name)) }
        }
        guard !targets.isEmpty else { throw ValidationError("nothing to delete: give KIND NAME or -f FILE") }
        let failed = try await withClient(client) { client in
            var failed = false
            for (type, namespace, name) in targets {
                do {
                    try await delete(type, namespace: namespace, name: name, client: client)
                    print("\(type.kindInfo.singular) \"\(name)\" deleted")
                } catch {
                    printError("error: \(error)")
                    failed = true
                }
            }
            return failed
        }
        if failed { throw ExitCode.failure }
    }

    /// Deletes, then (with --wait) waits while the object is still there: a pod on a node stays,
    /// Terminating, until its agent has stopped its processes.
    func delete<T: APIObject>(_ type: T.Type, namespace: String, name: String, client: APIClient) async throws {
        let grace = force ? 0 : gracePeriod
        let policy = Self.policies[cascade.lowercased()]
        let left = try await client.delete(T.self, namespace: namespace, name: name, gracePeriodSeconds: grace,
                                           propagationPolicy: policy == "Background" ? nil : policy)
        guard wait, left.metadata.hasDeletionTimestamp else { return }
        // Foreground and namespaces wait for what they own: give them longer.
        let limit = Date().addingTimeInterval(Double(left.metadata.deletionGracePeriodSeconds) + (left.metadata.finalizers.isEmpty && !(left is Namespace) ? 60 : 300))
        while Date() < limit {
            do {
                let current = try await client.get(T.self, namespace: namespace, name: name)
                if current.metadata.uid != left.metadata.uid { return }
            } catch let error as ClientError where error.code == 404 {
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw ValidationError("\(T.kindInfo.singular) \"\(name)\" is still terminating after its grace period and a minute more; is the agent of its node running? (`cox delete --force` removes it without waiting)")
    }
}
