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

    static func processes(containing text: String) -> [pid_t] { TestHost.processes(containing: text) }

    @Test func upApplyGetAndRestart() async throws {
        let binary = try coxBinary()
        let dir = TemporaryDirectory()
        let manifests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../manifests").standardized.path
        let first = try Up(cox: binary, dir: dir.path, manifests: manifests)
        let watchdog = DispatchWorkItem { [first] in kill(first.process.processIdentifier, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
        defer { watchdog.cancel() }
        let banner = try await Tools.detached { try first.read(until: "deployment/web created") }
        #expect(banner.contains("Coxswain is up") && banner.contains("pod/hello created"), "\(banner)")
        // The join command for a second host: a fresh bootstrap token and the CA's hash.
        #expect(banner.range(of: #"join a host: cox agent --server https://127\.0\.0\.1:\d+ --token [a-z0-9]{6}\.[a-z0-9]{16} --ca-cert-hash sha256:[0-9a-f]{64}"#,
                             options: .regularExpression) != nil, "\(banner)")
        #expect(first.port > 0)
        let kubeconfig = (dir.path as NSString).appendingPathComponent(".cox/admin.kubeconfig")

        func cox(_ args: String...) async throws -> Tools.Output {
            try await Tools.runDetached(binary, args + ["--kubeconfig", kubeconfig])
        }
        // The local agent runs the example pods as real processes.
        var pods = try await cox("get", "pods")
        for _ in 0..<100 {
            pods = try await cox("get", "pods")
            if pods.output.split(separator: "\n").contains(where: { $0.hasPrefix("hello ") && $0.contains("Running") }) { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(pods.status == 0 && pods.output.hasPrefix("NAME"), "\(pods.output)")
        let helloRunning = pods.output.split(separator: "\n").contains { $0.hasPrefix("hello ") && $0.contains("Running") }
        #expect(helloRunning, "\(pods.output)")
        var heartbeat = ""
        for _ in 0..<50 where !heartbeat.contains("alive") {
            heartbeat = try await cox("logs", "hello", "-c", "heartbeat").output
            if !heartbeat.contains("alive") { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(heartbeat.hasPrefix("alive "), "cox logs shows the container's output: \(heartbeat)")
        let again = try await cox("apply", "-f", manifests)
        #expect(again.output.contains("pod/hello unchanged") && again.output.contains("deployment/web unchanged"), "\(again.output)")
        let unknown = try await cox("get", "widgets")
        #expect(unknown.status != 0 && unknown.output.contains("known: namespaces, pods"), "\(unknown.output)")
        let yaml = try await cox("get", "pod", "hello", "-o", "yaml")
        #expect(yaml.status == 0 && yaml.output.hasPrefix("apiVersion: v1\nkind: Pod\nmetadata:\n"), "\(yaml.output)")
        let reapplied = try await Tools.runDetached(binary, ["apply", "-f", "-", "--kubeconfig", kubeconfig], input: yaml.output)
        #expect(reapplied.output.contains("pod/hello unchanged"), "-o yaml output is a manifest: \(reapplied.output)")
        let described = try await cox("describe", "pod", "hello")
        #expect(described.status == 0 && described.output.contains("Name:             hello") && described.output.contains("Containers:"), "\(described.output)")

        // `cox get pods -w` prints the list, then each change as a row.
        let watcher = Process()
        let watched = Pipe()
        watcher.executableURL = URL(fileURLWithPath: binary)
        watcher.arguments = ["get", "pods", "-w", "--kubeconfig", kubeconfig]
        watcher.standardOutput = watched
        try watcher.run()
        defer { if watcher.isRunning { kill(watcher.processIdentifier, SIGKILL) } }
        let handle = watched.fileHandleForReading
        @Sendable func readWatch(until marker: String, after seen: String) async throws -> String {
            try await Tools.detached {
                var seen = seen
                let deadline = Date().addingTimeInterval(30)
                while !seen.contains(marker) && Date() < deadline {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    seen += String(decoding: chunk, as: UTF8.self)
                }
                return seen
            }
        }
        var seen = try await readWatch(until: "hello", after: "")
        let extra = TestObjects.pod("watched").jsonString()
        _ = try await Tools.runDetached(binary, ["apply", "-f", "-", "--kubeconfig", kubeconfig], input: extra)
        seen = try await readWatch(until: "watched", after: seen)
        #expect(seen.hasPrefix("NAME") && seen.contains("watched") && seen.components(separatedBy: "NAME").count == 2, "\(seen)")
        kill(watcher.processIdentifier, SIGINT)
        await Tools.waitForExit(watcher)
        _ = try await cox("delete", "pod", "watched")

        #expect(try await Tools.detached { first.interrupt() } == 0, "Ctrl-C is a clean shutdown")
        #expect(Self.processes(containing: "alive $(date").isEmpty, "Ctrl-C stops the pods' processes")

        let second = try Up(cox: binary, dir: dir.path, manifests: nil)
        _ = try await Tools.detached { try second.read(until: "Ctrl-C stops it.") }
        let kept = try await cox("get", "deploy", "-o", "name")
        #expect(kept.output == "deployment/web\n", "\(kept.output)")
        #expect(try await Tools.detached { second.interrupt() } == 0)
        #expect(Self.processes(containing: "alive $(date").isEmpty)
        let down = try await cox("get", "pods")
        #expect(down.status != 0 && down.output.contains("cannot reach the API server"), "\(down.output)")
    }
}

@Suite("End to end: cox server shutdown")
struct ServerShutdownTests {
    @Test func sigtermEndsWatchesCleanlyAndExitsZero() async throws {
        let binary = try coxBinary()
        let curl = try #require(Tools.find("curl"))
        let dir = TemporaryDirectory()
        let port = try freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: binary)
        // Without the controllers and the scheduler, whose informers would hold watches of their own.
        server.arguments = ["server", "--data-dir", dir.path, "--port", "\(port)", "--no-controllers", "--no-scheduler"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        let pki = (dir.path as NSString).appendingPathComponent("pki")
        let auth = ["--cacert", "\(pki)/ca.crt", "--cert", "\(pki)/admin.crt", "--key", "\(pki)/admin.key"]
        var ready = false
        for _ in 0..<100 where !ready {
            ready = (try? await Tools.runDetached(curl, ["-sf"] + auth + ["https://127.0.0.1:\(port)/readyz"]))?.output == "ok"
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(ready, "cox server did not become ready")

        // A watch without a timeout (it would last 30 minutes), over HTTP/2 and over HTTP/1.1.
        var watchers: [Process] = []
        for version in ["--http2", "--http1.1"] {
            let watcher = Process()
            watcher.executableURL = URL(fileURLWithPath: curl)
            watcher.arguments = ["-sS", version, "-o", "/dev/null"] + auth + ["https://127.0.0.1:\(port)/api/v1/namespaces/default/pods?watch=true"]
            watcher.standardError = FileHandle.nullDevice
            try watcher.run()
            watchers.append(watcher)
        }
        defer { for watcher in watchers where watcher.isRunning { kill(watcher.processIdentifier, SIGKILL) } }
        var metrics = ""
        for _ in 0..<100 where !metrics.contains("cox_apiserver_watchers 2") {
            metrics = (try? await Tools.runDetached(curl, ["-sS"] + auth + ["https://127.0.0.1:\(port)/metrics"]))?.output ?? ""
            if !metrics.contains("cox_apiserver_watchers 2") { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(metrics.contains("cox_apiserver_watchers 2"))

        kill(server.processIdentifier, SIGTERM)
        // Bounded wait: the shutdown must not wait for the watches' own 30-minute end.
        for _ in 0..<300 where server.isRunning || watchers.contains(where: \.isRunning) {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(!server.isRunning, "cox server still running 30 s after SIGTERM")
        #expect(server.terminationStatus == 0)
        for watcher in watchers {
            #expect(!watcher.isRunning)
            #expect(watcher.terminationStatus == 0, "curl sees the watch stream end cleanly, not a reset")
        }
    }
}
