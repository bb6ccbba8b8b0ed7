import API
import ArgumentParser
import Client
import Foundation

/// `cox get KIND [NAME]`: kubectl-like tables, or the objects as JSON.
struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "List or show objects.")

    enum Output: String, ExpressibleByArgument { case table, wide, json, name }

    @Argument(help: "Kind (pods, po, deployments, deploy, nodes, no, …).") var kindName: String
    @Argument(help: "Names (all when none).") var names: [String] = []
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @Flag(name: [.customShort("A"), .long], help: "All namespaces.") var allNamespaces = false
    @Option(name: [.customShort("l"), .long], help: "Label selector, e.g. app=web,tier in (a,b).") var selector: String?
    @Option(name: .shortAndLong, help: "table, wide, json or name.") var output: Output = .table
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let type = try kind(named: kindName)
        if let selector { _ = try Selector(parsing: selector) }  // say what is wrong before asking the server
        let text = try await withClient(client) { client in try await fetch(type, client: client) }
        print(text, terminator: "")
    }

    func fetch<T: APIObject>(_ type: T.Type, client: APIClient) async throws -> String {
        let namespace = T.kindInfo.namespaced ? (allNamespaces ? nil : self.namespace) : nil
        var objects: [T]
        if names.isEmpty {
            objects = try await client.list(T.self, namespace: namespace, labelSelector: selector).items
        } else {
            objects = []
            for name in names { objects.append(try await client.get(T.self, namespace: self.namespace, name: name)) }
        }
        switch output {
        case .json:
            if objects.count == 1 && !names.isEmpty { return objects[0].jsonString() + "\n" }
            return "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[" + objects.map { $0.jsonString() }.joined(separator: ",") + "]}\n"
        case .name:
            return objects.map { "\(T.kindInfo.singular)/\($0.metadata.name)\n" }.joined()
        case .table, .wide:
            if objects.isEmpty {
                return namespace.map { "No resources found in \($0) namespace.\n" } ?? "No resources found.\n"
            }
            return Table.render(objects, allNamespaces: allNamespaces && T.kindInfo.namespaced, wide: output == .wide)
        }
    }
}
