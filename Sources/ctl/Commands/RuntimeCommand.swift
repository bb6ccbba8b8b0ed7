import ArgumentParser
import CRI
import Foundation
import Logging
import NodeAgent

/// `cox runtime process --listen unix:///…`: Coxswain's process runtime as a CRI plugin, on its
/// own. Agents reach it with `--container-runtime-endpoint`; it outlives them (their pods' processes
/// keep running, and the next agent finds them through ListPodSandbox and ListContainers).
struct RuntimeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runtime", abstract: "Serve a container runtime over CRI.",
        subcommands: [ProcessRuntimeCommand.self])
}

struct ProcessRuntimeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "process",
        abstract: "Serve the process runtime (pods' commands as host processes, each in its own session and cgroup) over CRI on a unix socket.")

    @Option(help: "Where to serve CRI: unix:///path/to.sock.") var listen = "unix:///run/cox/process-runtime.sock"
    @Option(help: "State directory: records of sandboxes and containers, and their output.") var stateDir = ".cox/runtime"

    func validate() throws {
        do { _ = try CRIConnection.socketPath(listen) } catch { throw ValidationError("--listen: \(error)") }
    }

    func run() async throws {
        let logger = Logger(label: "cox.runtime")
        let socket = try CRIConnection.socketPath(listen)
        guard socket.utf8.count <= 107 else { throw ValidationError("--listen: the socket path is longer than a unix socket allows (107 bytes)") }
        let state = try ProcessCRIState(root: stateDir, logger: logger)
        await SignalWaiter.runUntilSignalled {
            do {
                try await ProcessCRIServer.serve(state: state, socketPath: socket, logger: logger)
            } catch {
                logger.error("stopped serving", metadata: ["error": "\(error)"])
            }
        }
        // Containers keep running: the next start of the plugin knows them again.
        state.shutdown()
        _ = unlink(socket)
    }
}
