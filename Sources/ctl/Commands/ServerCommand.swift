import API
import APIServer
import ArgumentParser
import Client
import PKI
import Foundation
import Logging

/// `cox server`: the API server alone (the scheduler and controllers join it in later issues).
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server", abstract: "Run the API server (TLS; data, PKI and admin kubeconfig in --data-dir).", aliases: ["apiserver"])

    @Option(help: "Data directory: the store, the cluster PKI and admin.kubeconfig.") var dataDir = ".cox"
    @Option(help: "Address to listen on.") var listen = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one).") var port = 6443
    @Option(help: "Extra name or address for the serving certificate (repeatable).") var advertiseAddress: [String] = []

    func run() async throws {
        var configuration = APIServer.Configuration(dataDirectory: dataDir)
        configuration.host = listen
        configuration.port = port
        configuration.extraNames = advertiseAddress
        try await APIServer(configuration: configuration).run { port, kubeconfig in
            print("cox API server listening on https://\(listen):\(port)")
            print("admin kubeconfig: \(kubeconfig)")
            fflush(nil)
        }
    }
}

/// `cox up`: a local cluster with its data in ./.cox. For now the API server only; the node agent
/// joins in issue #4.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "Start a local cluster with data in ./.cox (Ctrl-C stops it; a second `cox up` keeps every object).")

    @Option(help: "Data directory.") var dataDir = ".cox"
    @Option(help: "Port to listen on.") var port = 6443
    @Option(name: .shortAndLong, help: "Manifests to apply once the cluster is up (a file or directory; repeatable).") var filename: [String] = []

    func run() async throws {
        // Read the manifests first: a typo should stop `cox up` before anything starts.
        let manifests = try filename.flatMap { try Manifests.load(path: $0) }
        var configuration = APIServer.Configuration(dataDirectory: dataDir)
        configuration.port = port
        try await APIServer(configuration: configuration).run { port, kubeconfig in
            print("""
                Coxswain is up: API server on https://127.0.0.1:\(port), data in \(dataDir)/
                  kubeconfig:  \(kubeconfig)
                  try:         curl --cacert \(dataDir)/pki/ca.crt --cert \(dataDir)/pki/admin.crt --key \(dataDir)/pki/admin.key https://127.0.0.1:\(port)/api/v1/namespaces/default/pods
                               kubectl --kubeconfig \(kubeconfig) get --raw /api/v1/namespaces/default/pods
                Ctrl-C stops it.
                """)
            fflush(nil)
            guard !manifests.isEmpty else { return }
            // Applied through the public API, as any other client would.
            do {
                let client = try APIClient(kubeconfig: try Kubeconfig.load(path: kubeconfig))
                if await ApplyCommand.apply(manifests.map(\.object), with: client) { printError("some manifests were not applied (see above)") }
                try? await client.shutdown()
            } catch {
                printError("error: cannot apply the manifests: \(error)")
            }
            fflush(nil)
        }
    }
}
