import API
import Foundation
import Testing
import TestSupport

/// The `cox` binary as a user runs it: `cox up -f manifests/`, then `cox get` and `cox apply`,
/// Ctrl-C, and a second `cox up` that keeps everything.
@Suite("End to end: cox up", .watchdog, .serialized)
struct EndToEndTests {
    final class Up: @unchecked Sendable {
        let process: Child
        var port = 0

        init(cox: String, dir: String, manifests: String?) throws {
            process = try Child(cox, ["up", "--port", "0"] + (manifests.map { ["-f", $0] } ?? []), directory: dir, stdout: .pipe)
        }

        /// Reads the banner (and, with manifests, the apply lines) until `marker` appears.
        func read(until marker: String) async throws -> String {
            let text = try await Tools.read(process.output!, timeout: 60) { $0.contains(marker) }
            if let range = text.range(of: #"https://127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                port = Int(text[range].split(separator: ":").last!) ?? 0
            }
            return text
        }

        /// Ctrl-C, and its exit status (SIGKILL after 60 s: a shutdown that hangs fails the test).
        func interrupt() async -> Int32 {
            kill(process.pid, SIGINT)
            await process.wait(killAfter: 60)
            return process.terminationStatus
        }
    }

    static func processes(containing text: String) -> [pid_t] { TestHost.processes(containing: text) }

    @Test func upApplyGetAndRestart() async throws {
        let binary = try coxBinary()
        let dir = TemporaryDirectory()
        let manifests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../manifests").standardized.path
        let first = try Up(cox: binary, dir: dir.path, manifests: manifests)
        let watchdog = DispatchWorkItem { [first] in kill(first.process.pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
        defer { watchdog.cancel() }
        let banner = try await first.read(until: "deployment/web created")
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
        let watcher = try Child(binary, ["get", "pods", "-w", "--kubeconfig", kubeconfig], stdout: .pipe)
        defer { if watcher.isRunning { kill(watcher.pid, SIGKILL) } }
        let handle = watcher.output!
        @Sendable func readWatch(until marker: String, after seen: String) async throws -> String {
            seen + (try await Tools.read(handle, timeout: 30) { (seen + $0).contains(marker) })
        }
        var seen = try await readWatch(until: "hello", after: "")
        let extra = TestObjects.pod("watched").jsonString()
        _ = try await Tools.runDetached(binary, ["apply", "-f", "-", "--kubeconfig", kubeconfig], input: extra)
        seen = try await readWatch(until: "watched", after: seen)
        #expect(seen.hasPrefix("NAME") && seen.contains("watched") && seen.components(separatedBy: "NAME").count == 2, "\(seen)")
        kill(watcher.pid, SIGINT)
        await watcher.wait()
        _ = try await cox("delete", "pod", "watched")

        #expect(await first.interrupt() == 0, "Ctrl-C is a clean shutdown")
        #expect(Self.processes(containing: "alive $(date").isEmpty, "Ctrl-C stops the pods' processes")

        let second = try Up(cox: binary, dir: dir.path, manifests: nil)
        _ = try await second.read(until: "Ctrl-C stops it.")
        let kept = try await cox("get", "deploy", "-o", "name")
        #expect(kept.output == "deployment/web\n", "\(kept.output)")
        #expect(await second.interrupt() == 0)
        #expect(Self.processes(containing: "alive $(date").isEmpty)
        let down = try await cox("get", "pods")
        #expect(down.status != 0 && down.output.contains("cannot reach the API server"), "\(down.output)")
    }
}

@Suite("End to end: cox server shutdown", .watchdog)
struct ServerShutdownTests {
    @Test func sigtermEndsWatchesCleanlyAndExitsZero() async throws {
        let binary = try coxBinary()
        let curl = try #require(Tools.find("curl"))
        let dir = TemporaryDirectory()
        let port = try freePort()
        // Without the controllers and the scheduler, whose informers would hold watches of their own.
        let server = try Child(binary, ["server", "--data-dir", dir.path, "--port", "\(port)", "--no-controllers", "--no-scheduler"])
        defer { if server.isRunning { kill(server.pid, SIGKILL) } }
        let pki = (dir.path as NSString).appendingPathComponent("pki")
        let auth = ["--cacert", "\(pki)/ca.crt", "--cert", "\(pki)/admin.crt", "--key", "\(pki)/admin.key"]
        var ready = false
        for _ in 0..<100 where !ready {
            ready = (try? await Tools.runDetached(curl, ["-sf"] + auth + ["https://127.0.0.1:\(port)/readyz"]))?.output == "ok"
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(ready, "cox server did not become ready")

        // A watch without a timeout (it would last 30 minutes), over HTTP/2 and over HTTP/1.1.
        var watchers: [Child] = []
        for version in ["--http2", "--http1.1"] {
            watchers.append(try Child(curl, ["-sS", version, "-o", "/dev/null"] + auth + ["https://127.0.0.1:\(port)/api/v1/namespaces/default/pods?watch=true"]))
        }
        defer { for watcher in watchers where watcher.isRunning { kill(watcher.pid, SIGKILL) } }
        var metrics = ""
        for _ in 0..<100 where !metrics.contains("cox_apiserver_watchers 2") {
            metrics = (try? await Tools.runDetached(curl, ["-sS"] + auth + ["https://127.0.0.1:\(port)/metrics"]))?.output ?? ""
            if !metrics.contains("cox_apiserver_watchers 2") { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(metrics.contains("cox_apiserver_watchers 2"))

        kill(server.pid, SIGTERM)
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
