import API
import ArgumentParser
import Client
import Foundation

/// `cox get KIND [NAME]`: kubectl-like tables, or the objects as YAML, JSON or names; `-w` keeps
/// printing changes.
struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "List or show objects; -w watches for changes.")

    enum Output: String, ExpressibleByArgument, CaseIterable { case table, wide, yaml, json, name }

    @Argument(help: "Kind (pods, po, deployments, deploy, nodes, no, …).") var kindName: String
    @Argument(help: "Names (all when none).") var names: [String] = []
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @Flag(name: [.customShort("A"), .long], help: "All namespaces.") var allNamespaces = false
    @Option(name: [.customShort("l"), .long], help: "Label selector, e.g. app=web,tier in (a,b).") var selector: String?
    @Option(name: .shortAndLong, help: "table, wide, yaml, json or name.") var output: Output = .table
    @Flag(name: [.customShort("w"), .long], help: "After listing, print each change as it happens (Ctrl-C stops).") var watch = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let type = try kind(named: kindName)
        if let selector { _ = try Selector(parsing: selector) }  // say what is wrong before asking the server
        try await withClient(client) { client in try await fetch(type, client: client) }
    }

    func fetch<T: APIObject>(_ type: T.Type, client: APIClient) async throws {
        let namespace = T.kindInfo.namespaced ? (allNamespaces ? nil : self.namespace) : nil
        var objects: [T]
        var revision = ""
        if names.isEmpty {
            (objects, revision) = try await client.list(T.self, namespace: namespace, labelSelector: selector)
        } else {
            objects = []
            for name in names { objects.append(try await client.get(T.self, namespace: self.namespace, name: name)) }
        }
        let showNamespace = allNamespaces && T.kindInfo.namespaced
        let single = objects.count == 1 && !names.isEmpty && !watch
        switch output {
        case .json:
            print(single ? objects[0].jsonString() : "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[" + objects.map { $0.jsonString() }.joined(separator: ",") + "]}")
        case .yaml:
            if single {
                print(YAMLWriter.render(objects[0].jsonValue()), terminator: "")
            } else {
                let list = JSONValue.object([JSONMember("apiVersion", .string("v1")), JSONMember("kind", .string("List")),
                                             JSONMember("items", .array(objects.map { $0.jsonValue() }))])
                print(YAMLWriter.render(list), terminator: "")
            }
        case .name:
            print(objects.map { "\(T.kindInfo.singular)/\($0.metadata.name)\n" }.joined(), terminator: "")
        case .table, .wide:
            if objects.isEmpty && !watch {
                print(namespace.map { "No resources found in \($0) namespace." } ?? "No resources found.")
            } else if !objects.isEmpty {
                print(Table.render(objects, allNamespaces: showNamespace, wide: output == .wide), terminator: "")
            }
        }
        guard watch else { return }
        fflushStandardOutput()
        try await follow(T.self, client: client, namespace: namespace, from: revision, objects: objects, printedHeader: !objects.isEmpty, showNamespace: showNamespace)
    }

    /// Prints each change after `revision` (rows without a header once one was printed, like kubectl).
    func follow<T: APIObject>(_ type: T.Type, client: APIClient, namespace: String?, from revision: String, objects: [T], printedHeader: Bool, showNamespace: Bool) async throws {
        var request = WatchRequest(namespace: namespace, labelSelector: selector, resourceVersion: revision)
        if !names.isEmpty { request.fieldSelector = "metadata.name=\(names[0])" }
        if revision.isEmpty {
            // Named objects were fetched one by one: watch from the newest of their revisions.
            request.resourceVersion = String(objects.compactMap { Int64($0.metadata.resourceVersion) }.max() ?? 0)
        }
        var headerDone = printedHeader
        for try await event in client.watch(T.self, request) {
            var changed: [T] = []
            switch event {
            case .added(let object), .modified(let object): changed = [object]
            case .deleted(var object):
                // Show the object as gone (kubectl prints its last state; a deletion timestamp says why).
                if !object.metadata.hasDeletionTimestamp { object.metadata.deletionTimestamp = Timestamp.nowSeconds() }
                changed = [object]
            case .relisted(let objects, _): changed = objects
            case .bookmark: continue
            }
            if !names.isEmpty { changed = changed.filter { names.contains($0.metadata.name) } }
            guard !changed.isEmpty else { continue }
            var text = ""
            switch output {
            case .json: for object in changed { text += object.jsonString() + "\n" }
            case .yaml: for object in changed { text += "---\n" + YAMLWriter.render(object.jsonValue()) }
            case .name: for object in changed { text += "\(T.kindInfo.singular)/\(object.metadata.name)\n" }
            case .table, .wide:
                text = Table.render(changed, allNamespaces: showNamespace, wide: output == .wide)
                if headerDone, let newline = text.firstIndex(of: "\n") { text = String(text[text.index(after: newline)...]) }
                headerDone = true
            }
            // Unbuffered: each change shows at once, also through a pipe.
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }
}
