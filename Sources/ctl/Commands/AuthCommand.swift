import API
import ArgumentParser
import Client
import Foundation

/// `cox auth can-i VERB RESOURCE[/NAME]`: asks the server whether you (or whom `--as` names) may.
struct AuthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "auth", abstract: "Inspect authorization.", subcommands: [CanI.self, WhoAmI.self])

    struct CanI: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "can-i", abstract: "Check whether an action is allowed: prints yes (exit 0) or no (exit 1).")

        @Argument(help: "The verb: get, list, watch, create, update, patch, delete, deletecollection, impersonate, or *.") var verb: String
        @Argument(help: "The resource: pods, deployments, pods/log, pod/web, nodes …") var resource: String
        @Argument(help: "The object's name (or give it as RESOURCE/NAME).") var name: String?
        @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
        @Flag(name: [.customShort("A"), .customLong("all-namespaces")], help: "In every namespace.") var allNamespaces = false
        @OptionGroup var client: ClientOptions

        func run() async throws {
            var attributes = ResourceAttributes()
            attributes.verb = verb
            var parts = resource.split(separator: "/", maxSplits: 1).map(String.init)
            guard let kindName = parts.first, !kindName.isEmpty else { throw ValidationError("name a resource, e.g. `pods`") }
            if let type = Kinds.lookup(kindName) {
                attributes.group = type.kindInfo.group
                attributes.resource = type.kindInfo.resource
                attributes.namespace = type.kindInfo.namespaced && !allNamespaces ? namespace : ""
                // `pods/log` is a subresource; `pod/web` names an object.
                if parts.count == 2 {
                    if ["log", "status", "binding"].contains(parts[1]) { attributes.subresource = parts[1] } else { attributes.name = parts[1] }
                }
            } else {
                printError("Warning: the server doesn't have a resource type '\(kindName)'")
                attributes.resource = kindName
                attributes.namespace = allNamespaces ? "" : namespace
                if parts.count == 2 { attributes.subresource = parts.removeLast() }
            }
            if let name { attributes.name = name }
            let status = try await withClient(client) { try await $0.accessReview(attributes) }
            print(status.allowed ? "yes" : "no")
            if !status.allowed { throw ExitCode(1) }
        }
    }

    struct WhoAmI: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "whoami", abstract: "Print who the server takes you for: user and groups.")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let me = try await withClient(client) { try await $0.whoAmI() }
            print("Username: \(me.user)")
            print("Groups:   [\(me.groups.joined(separator: " "))]")
        }
    }
}
