import API
import ArgumentParser
import Foundation
import Store

struct DebugCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug", abstract: "Tools for testing Coxswain itself.",
        shouldDisplay: false, subcommands: [StoreWriter.self])
}

/// Writes pods to a store as fast as it can and prints `REVISION NAME` for each acknowledged write.
/// The crash test kills it with SIGKILL and checks that every printed write survived.
struct StoreWriter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "store-writer", abstract: "Write to a store until killed, printing acknowledged revisions.")

    @Option(help: "Data directory of the store.") var dir: String
    @Option(help: "Concurrent writers.") var writers = 8
    @Option(help: "Stop after this many writes (0: until killed).") var count = 0

    func run() async throws {
        let store = try SQLiteStore(directory: dir)
        let template = Samples.pod()
        let out = AckPrinter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var i = 0
                    while count == 0 || i * writers + writer < count {
                        var pod = template
                        pod.metadata = ObjectMeta()
                        pod.metadata.name = "w\(writer)-\(i)"
                        pod.metadata.namespace = "default"
                        let created = try await store.create(pod)
                        out.ack("\(created.metadata.resourceVersion) \(created.metadata.name)\n")
                        i += 1
                    }
                }
            }
            try await group.waitForAll()
        }
        store.close()
    }
}

/// Writes each acknowledgement with one write(2), so a line is either whole or absent.
final class AckPrinter: Sendable {
    func ack(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(1, buffer.baseAddress! + offset, buffer.count - offset)
                if n <= 0 { return }
                offset += n
            }
        }
    }
}
