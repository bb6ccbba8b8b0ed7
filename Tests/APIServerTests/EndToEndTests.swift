import API
import Foundation
import Testing
import TestSupport

/// The `cox` binary as a user runs it: `cox up -f manifests/`, then `cox get` and `cox apply`,
/// Ctrl-C, and a second `cox up` that keeps everything.
@Suite("End to end: cox up", .serialized)
struct EndToEndTests {
    final class Up: @unchecked Sendable {
        let process = Process()
        let output = Pipe()
        var port = 0

        init(cox: String, dir: String, manifests: String?) throws {
            process.executableURL = URL(fileURLWithPath: cox)
            process.arguments = ["up", "--port", "0"] + (manifests.map { ["-f", $0] } ?? [])
            process.currentDirectoryURL = URL(fileURLWithPath: dir)
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
        }

        /// Reads the banner (and, with manifests, the apply lines) until `marker` appears.
        func read(until marker: String) throws -> String {
            var text = ""
            let deadline = Date().addingTimeInterval(60)
            while !text.contains(marker) && Date() < deadline {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            if let range = text.range(of: #"https://127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                port = Int(text[range].split(separator: ":").last!) ?? 0
            }
            return text
        }

        func interrupt() -> Int32 {
            kill(process.processIdentifier, SIGINT)
            process.waitUntilExit()
            return process.terminationStatus
        }
    }

    @Test func upApplyGetAndRestart() async throws {
        let binary = try coxBinary()
        let dir = TemporaryDirectory()
        let manifests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../manifests").standardized.path
        let first = try Up(cox: binary, dir: dir.path, manifests: manifests)
        let watchdog = DispatchWorkItem { [first] in kill(first.process.processIdentifier, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
        defer { watchdog.cancel() }
        let banner = try first.read(until: "deployment/web created")
        #expect(banner.contains("Coxswain is up") && banner.contains("pod/hello created"), "\(banner)")
        #expect(first.port > 0)
        let kubeconfig = (dir.path as NSString).appendingPathComponent(".cox/admin.kubeconfig")

        func cox(_ args: String...) throws -> Tools.Output {
            try Tools.run(binary, args + ["--kubeconfig", kubeconfig])
        }
        let pods = try cox("get", "pods")
        #expect(pods.status == 0 && pods.output.hasPrefix("NAME") && pods.output.contains("hello   0/2     Pending"), "\(pods.output)")
        let again = try cox("apply", "-f", manifests)
        #expect(again.output.contains("pod/hello unchanged") && again.output.contains("deployment/web unchanged"), "\(again.output)")
        let unknown = try cox("get", "widgets")
        #expect(unknown.status != 0 && unknown.output.contains("known: namespaces, pods"), "\(unknown.output)")
        #expect(first.interrupt() == 0, "Ctrl-C is a clean shutdown")

        let second = try Up(cox: binary, dir: dir.path, manifests: nil)
        _ = try second.read(until: "Ctrl-C stops it.")
        let kept = try cox("get", "deploy", "-o", "name")
        #expect(kept.output == "deployment/web\n", "\(kept.output)")
        #expect(second.interrupt() == 0)
        let down = try cox("get", "pods")
        #expect(down.status != 0 && down.output.contains("cannot reach the API server"), "\(down.output)")
    }
}
