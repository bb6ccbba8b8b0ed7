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

        /// Its log (stderr), for what a failed shutdown was doing.
        let log: String

        init(cox: String, dir: String, manifests: String?) throws {
            log = "\(dir)/up-\(UInt32.random(in: 0...UInt32.max)).log"
            process = try Child(cox, ["up", "--port", "0"] + (manifests.map { ["-f", $0] } ?? []), directory: dir, stdout: .pipe, stderr: .file(log))
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
            let started = ContinuousClock.now
            await process.wait(killAfter: 60)
            if process.terminationStatus != 0 {
                // What it logged, and how long it took: a shutdown that hung (or failed) says why.
                // A crash report is shown from its crashed thread on (its first frames say where).
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                var shown = String(text.suffix(4000))
                if let report = text.range(of: "*** Signal") {
                    // The lines before the report (a fatal error's message), then the crashed thread.
                    shown = String(text[..<report.lowerBound].suffix(3000)) + "\n"
                        + (text.range(of: " crashed:\n").map { String(text[$0.lowerBound...].prefix(6000)) } ?? "")
                }
                Issue.record("cox up exited \(process.terminationStatus) \(ContinuousClock.now - started) after Ctrl-C; its log:\n\(shown)")
            }
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
    /// `cox server` (without the controllers and the scheduler, whose informers would hold
    /// watches of their own), ready; its standard error goes to `stderr`.
    static func startServer(in dir: TemporaryDirectory, stderr: String? = nil) async throws -> (server: Child, port: Int, pki: String, auth: [String]) {
        let binary = try coxBinary()
        let curl = try #require(Tools.find("curl"))
        let port = try freePort()
        let server = try Child(binary, ["server", "--data-dir", dir.path, "--port", "\(port)", "--no-controllers", "--no-scheduler"],
                               stderr: stderr.map { .file($0) } ?? .null)
        let pki = (dir.path as NSString).appendingPathComponent("pki")
        let auth = ["--cacert", "\(pki)/ca.crt", "--cert", "\(pki)/admin.crt", "--key", "\(pki)/admin.key"]
        var ready = false
        for _ in 0..<100 where !ready {
            ready = (try? await Tools.runDetached(curl, ["-sf"] + auth + ["https://127.0.0.1:\(port)/readyz"]))?.output == "ok"
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        if !ready { kill(server.pid, SIGKILL) }
        try #require(ready, "cox server did not become ready")
        return (server, port, pki, auth)
    }

    @Test func sigtermEndsWatchesCleanlyAndExitsZero() async throws {
        let curl = try #require(Tools.find("curl"))
        let dir = TemporaryDirectory()
        let (server, port, _, auth) = try await Self.startServer(in: dir)
        defer { if server.isRunning { kill(server.pid, SIGKILL) } }

        // A watch without a timeout (it would last 30 minutes), over HTTP/2 and over HTTP/1.1.
        var watchers: [Child] = []
        for version in ["--http2", "--http1.1"] {
            watchers.append(try Child(curl, ["-sS", version, "-o", "/dev/null"] + auth + ["https://127.0.0.1:\(port)/api/v1/namespaces/default/pods?watch=true"]))
        }
        defer { for watcher in watchers where watcher.isRunning { kill(watcher.pid, SIGKILL) } }
        // And a connection that finished its TLS handshake and sends nothing (its first request's
        // head is awaited before HTTP/1.1 is set up): it must not hold the shutdown either.
        let openssl = try #require(Tools.find("openssl"))
        let idle = try Child(openssl, ["s_client", "-connect", "127.0.0.1:\(port)", "-alpn", "http/1.1", "-quiet"], stdin: true)
        defer { if idle.isRunning { kill(idle.pid, SIGKILL) } }
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

    /// Connections accepted before SIGTERM whose TLS handshakes finish after it, over HTTP/1.1 and
    /// HTTP/2, each with a request (on HTTP/2 a stream opened after the server's GOAWAY may be
    /// refused). Once, a stream opened during shutdown ended the server with "Deinited
    /// NIOAsyncWriter without calling finish()" (swift-nio-http2's per-stream channels, which the
    /// server no longer uses); whatever arrives during shutdown, the server exits 0 and says
    /// nothing of the kind.
    static let lateClients = #"""
import os, socket, ssl, sys, time
port, pid, pki = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
context = {}
for protocol in ("h2", "http/1.1"):
    context[protocol] = ssl.create_default_context(cafile=pki + "/ca.crt")
    context[protocol].check_hostname = False
    context[protocol].load_cert_chain(pki + "/admin.crt", pki + "/admin.key")
    context[protocol].set_alpn_protocols([protocol])
# HEADERS on stream 1 (END_STREAM|END_HEADERS): :method GET, :scheme https, :path /livez
# (HPACK; the path a literal with indexed name 4).
block = b"\x82\x87\x44\x06/livez"
headers = len(block).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01" + block
conns = []
for i in range(40):
    protocol = "h2" if i % 2 else "http/1.1"
    conn = context[protocol].wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
    # Before the signal: the HTTP/2 preface and SETTINGS; the first line of an HTTP/1.1 request.
    if protocol == "h2":
        conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    else:
        conn.sendall(b"GET /livez HTTP/1.1\r\n")
    conns.append((protocol, conn))
time.sleep(0.3)
os.kill(pid, 15)
answered = 0
for protocol, conn in conns:
    try:
        # After it: a new stream; the rest of the request head.
        conn.sendall(headers if protocol == "h2" else b"Host: localhost\r\n\r\n")
        while True:
            data = conn.recv(65536)
            if not data:
                break
            if b"HTTP/1.1 200" in data or b"ok" in data:
                answered += 1
                break
        conn.close()
    except (OSError, ssl.SSLError):
        pass  # the server closed it: allowed while shutting down
print(answered)
"""#

    @Test func connectionsAndStreamsOpenedDuringShutdownEndCleanly() async throws {
        let python = try #require(Tools.peer("python3"))
        let dir = TemporaryDirectory()
        let log = (dir.path as NSString).appendingPathComponent("server.stderr")
        let (server, port, pki, _) = try await Self.startServer(in: dir, stderr: log)
        defer { if server.isRunning { kill(server.pid, SIGKILL) } }
        let clients = try await Tools.runDetached(python, ["-c", Self.lateClients, "\(port)", "\(server.pid)", pki], timeout: 60)
        #expect(clients.status == 0, "\(clients.output)")
        await server.wait(killAfter: 30)
        let stderr = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(server.terminationStatus == 0, "cox server's status after SIGTERM: \(server.terminationStatus); stderr: \(stderr.suffix(2_000))")
        #expect(!stderr.contains("Deinited") && !stderr.contains("Fatal error"), "\(stderr.suffix(2_000))")
    }
}

/// What the tests start does not outlive them: a killed or crashed test run leaves no server,
/// agent or peer behind holding ports and files.
@Suite("Test children die with the test process", .watchdog)
struct ChildLifetimeTests {
    /// The child itself reports the signal the kernel sends it when its parent thread ends, and
    /// that its parent is this process (through setpriv, which execs in place).
    @Test func aChildIsKilledWhenTheTestProcessEnds() async throws {
        let python = try #require(Tools.peer("python3"))
        let script = """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        signal = ctypes.c_int(0)
        assert libc.prctl(2, ctypes.byref(signal)) == 0  # PR_GET_PDEATHSIG
        print(signal.value, os.getppid())
        """
        let child = try Child(python, ["-c", script], stdout: .pipe)
        let output = try await Tools.read(child.output!, timeout: 30) { $0.hasSuffix("\n") }
        await child.wait(killAfter: 30)
        #expect(child.terminationStatus == 0)
        #expect(output == "\(SIGKILL) \(getpid())\n")
    }
}
