import API
import ArgumentParser
import Client
import Foundation

/// `cox logs POD`: a container's output, read from its node's agent through the API server.
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print a container's logs (-f follows them).")

    @Argument(help: "Pod name.") var pod: String
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @Option(name: .shortAndLong, help: "Container (needed when the pod has several).") var container: String?
    @Flag(name: .shortAndLong, help: "Keep printing new output until the container stops.") var follow = false
    @Option(help: "Only the last N lines.") var tail: Int?
    @Flag(name: .shortAndLong, help: "The previous run's output (after a restart).") var previous = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await withClient(client) { client in
            if follow {
                let body = try await client.followLogs(namespace: namespace, pod: pod, container: container, tailLines: tail)
                for try await chunk in body { FileHandle.standardOutput.write(Data(chunk.readableBytesView)) }
            } else {
                let bytes = try await client.logs(namespace: namespace, pod: pod, container: container, tailLines: tail, previous: previous)
                FileHandle.standardOutput.write(Data(bytes))
            }
        }
    }
}
