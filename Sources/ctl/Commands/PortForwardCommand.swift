import API
import ArgumentParser
import Client
import Foundation
import NIOCore
import NIOPosix

/// `cox port-forward POD [LOCAL:]REMOTE…`: listens on local ports and forwards each connection
/// to the pod's port through the API server and the node's agent, as `kubectl port-forward`
/// does (one WebSocket per connection, `v4.channel.k8s.io`, which both runtimes serve). Runs
/// until Ctrl-C.
struct PortForwardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "port-forward", abstract: "Forward local ports to a pod.",
                                                    discussion: "cox port-forward web-0 8080:80 (local 8080 to the pod's 80); :80 picks a free local port")

    @Argument(help: "Pod name (or pod/NAME).") var pod: String
    @Argument(help: "[LOCAL:]REMOTE ports; LOCAL empty or 0 picks a free port.") var ports: [String] = []
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @Option(help: "Local address to listen on.") var address = "127.0.0.1"
    @OptionGroup var client: ClientOptions

    struct Mapping: Equatable {
        var local: Int
        var remote: Int
    }

    /// kubectl's forms: `8080` (the same port here), `8080:80`, `:80` (any free port here).
    static func mapping(_ text: String) throws -> Mapping {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2, let remote = Int(parts.last!), (1...65535).contains(remote) else {
            throw ValidationError("invalid port \(text): the remote port must be a number from 1 to 65535")
        }
        guard parts.count == 2 else { return Mapping(local: remote, remote: remote) }
        if parts[0].isEmpty { return Mapping(local: 0, remote: remote) }
        guard let local = Int(parts[0]), (0...65535).contains(local) else {
            throw ValidationError("invalid port \(text): the local port must be a number from 0 to 65535")
        }
        return Mapping(local: local, remote: remote)
    }

    var podName: String { pod.hasPrefix("pod/") ? String(pod.dropFirst(4)) : (pod.hasPrefix("pods/") ? String(pod.dropFirst(5)) : pod) }

    func validate() throws {
        if ports.isEmpty { throw ValidationError("at least 1 PORT is required for port-forward") }
        for port in ports { _ = try Self.mapping(port) }
        if pod.contains("/") && !(pod.hasPrefix("pod/") || pod.hasPrefix("pods/")) {
            throw ValidationError("cox port-forward forwards to pods only (POD or pod/NAME), not \(pod)")
        }
    }

    func run() async throws {
        let mappings = try ports.map(Self.mapping)
        try await withClient(client) { client in
            let found = try await client.get(Pod.self, namespace: namespace, name: podName)
            guard found.status.phase == "Running" else {
                throw ValidationError("unable to forward port because pod is not running. Current status=\(found.status.phase)")
            }
            var listeners: [any Channel] = []
            defer { for listener in listeners { listener.close(promise: nil) } }
            for mapping in mappings {
                let (namespace, pod) = (namespace, podName)
                let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(ChannelOptions.autoRead, value: false)
                    .childChannelInitializer { channel in
                        let port = channel.localAddress?.port ?? mapping.local
                        FileHandle.standardOutput.write(Data("Handling connection for \(port)\n".utf8))
                        Task {
                            do {
                                try await client.forward(channel, namespace: namespace, pod: pod, port: mapping.remote) { message in
                                    FileHandle.standardError.write(Data("E \(message)\n".utf8))
                                }
                            } catch {
                                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                                channel.close(promise: nil)
                            }
                        }
                        return channel.eventLoop.makeSucceededVoidFuture()
                    }
                    .bind(host: address, port: mapping.local).get()
                listeners.append(listener)
                let bound = listener.localAddress?.port ?? mapping.local
                let shown = address.contains(":") ? "[\(address)]" : address
                FileHandle.standardOutput.write(Data("Forwarding from \(shown):\(bound) -> \(mapping.remote)\n".utf8))
            }
            await SignalWaiter.runUntilSignalled {
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            }
        }
    }
}
