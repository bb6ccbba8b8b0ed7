import API
import Foundation
import Logging
@testable import NodeAgent
import Testing
import TestSupport

@Suite("Process runtime", .watchdog)
struct ProcessRuntimeTests {
    @Test func logsAreRotatedAtTheirCap() async throws {
        let dir = TemporaryDirectory()
        let runtime = try ProcessRuntime(root: dir.path, maxLogBytes: 64 * 1024, logger: Logger(label: "test"))
        defer { runtime.shutdown() }
        let launch = ContainerLaunch(podUID: "uid-1", namespace: "default", podName: "noisy", container: "c",
                                     command: ["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x; sleep 60"])
        let container = try await runtime.start(launch)
        // The rotation check runs every few seconds.
        let rotated = container.logPath + ".1"
        let deadline = Date().addingTimeInterval(40)
        while !FileManager.default.fileExists(atPath: rotated) && Date() < deadline { try await Task.sleep(for: .milliseconds(200)) }
        await runtime.stop(id: container.id, grace: .seconds(2))
        #expect(FileManager.default.fileExists(atPath: rotated), "the log was copied aside at its cap")
        let size = (try FileManager.default.attributesOfItem(atPath: container.logPath)[.size] as? Int) ?? .max
        let rotatedSize = (try? FileManager.default.attributesOfItem(atPath: rotated)[.size] as? Int) ?? 0
        #expect(rotatedSize == 200_000, "the 200,000 bytes written were copied aside whole")
        #expect(size == 0, "and the live log was truncated (\(size) bytes)")
        #expect(await runtime.status(id: container.id)?.isRunning == false)
    }

    /// A container whose re-adoption record cannot be written does not count as started: the
    /// start fails, saying so, and the process is stopped (a restarted agent would not know it).
    @Test func aContainerThatCannotBeRecordedIsNotLeftRunning() async throws {
        let dir = TemporaryDirectory()
        let runtime = try ProcessRuntime(root: dir.path, logger: Logger(label: "test"))
        defer { runtime.shutdown() }
        #expect(try FileManager.default.attributesOfItem(atPath: runtime.recordsDirectory)[.posixPermissions] as? Int == 0o700)
        // The records' directory is now a file: no record can be written.
        try FileManager.default.removeItem(atPath: runtime.recordsDirectory)
        #expect(FileManager.default.createFile(atPath: runtime.recordsDirectory, contents: Data()))
        let marker = "unrecorded-\(getpid())"
        let launch = ContainerLaunch(podUID: "uid-3", namespace: "default", podName: "p", container: "c",
                                     command: ["sh", "-c", "sleep 60; echo \(marker)"])
        do {
            _ = try await runtime.start(launch)
            Issue.record("the start succeeded without a record")
        } catch {
            #expect("\(error)".contains("re-adoption"), "\(error)")
        }
        let left = try Tools.run("/usr/bin/pgrep", ["-f", marker])
        #expect(left.output.isEmpty, "the unrecorded container was left running: \(left.output)")
    }

    @Test func aMissingExecutableIsAClearError() async throws {
        let dir = TemporaryDirectory()
        let runtime = try ProcessRuntime(root: dir.path, logger: Logger(label: "test"))
        defer { runtime.shutdown() }
        let launch = ContainerLaunch(podUID: "uid-2", namespace: "default", podName: "p", container: "c", command: ["no-such-program-here"])
        await #expect { _ = try await runtime.start(launch) } throws: { error in
            "\(error)".contains(#"executable file "no-such-program-here" not found in $PATH"#)
        }
    }
}

extension ProcessRuntimeTests {
    /// A container's record written by two at once (its exit seen by the reaper and by a stop)
    /// is written by both, each through a temporary of its own; none is left behind.
    @Test func aRecordWrittenByTwoAtOnceIsWrittenByBoth() async throws {
        let dir = TemporaryDirectory()
        let path = dir.path + "/1.json"
        let failures = await withTaskGroup(of: Int.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    var failed = 0
                    for round in 0..<40 {
                        do { try ProcessRuntime.writeDurably(Data("\(writer)-\(round)".utf8), to: path) } catch { failed += 1 }
                    }
                    return failed
                }
            }
            return await group.reduce(0, +)
        }
        #expect(failures == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["1.json"])
    }
}

@Suite("Probes", .watchdog)
struct ProbeTests {
    /// An exec probe runs through the runtime's ExecSync: the process runtime runs it in the
    /// container's environment and directory; one that times out is killed with everything it
    /// started (its process group), not only its first process.
    @Test func anExecProbeThatTimesOutTakesItsChildrenWithIt() async throws {
        let dir = TemporaryDirectory()
        func run(_ command: [String], timeout: Double = 5) async throws -> HostExec.Outcome {
            try await HostExec.run(command, environment: ["PROBE_MARK": "ok"], directory: dir.path, timeout: timeout)
        }
        #expect(try await run(["sh", "-c", "test \"$PROBE_MARK\" = ok && test \"$(pwd)\" = \"\(dir.path)\""]).exitCode == 0)
        #expect(try await run(["sh", "-c", "exit 3"]).exitCode == 3)
        #expect(try await run(["no-such-probe-program"]).exitCode == 127)

        // The child would outlive any test: a probe that waited for it would hang this test
        // until the watchdog ends the run (no clock is read here).
        let pidFile = dir.path + "/child.pid"
        #expect(try await run(["sh", "-c", "sleep 100000 & echo $! > \(pidFile); wait"], timeout: 1).timedOut)
        let child = try #require(Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        // Gone, or a zombie waiting for init to reap it: either way no longer running.
        try await waitUntil("the probe's background child is gone") {
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8) else { return true }
            return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
        }
    }
}

extension ProbeTests {
    /// HTTP probes run no command.
    static let noExec: @Sendable ([String], Duration) async -> Bool = { _, _ in false }

    /// HTTPS probes succeed against a certificate nobody can verify (as the kubelet's do), send
    /// the probe's headers, and read the status line whole; HTTP probes go on working.
    @Test func httpAndHTTPSProbesSendTheirHeaders() async throws {
        let dir = TemporaryDirectory()
        let openssl = try #require(Tools.find("openssl"))
        let made = try Tools.run(openssl, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                                           "-subj", "/CN=pod", "-keyout", dir.path + "/key.pem", "-out", dir.path + "/cert.pem"])
        #expect(made.status == 0, "\(made.output)")
        let script = """
            import http.server, ssl, sys
            class Handler(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    ok = self.headers.get('X-Probe') == 'yes' and self.path == '/healthz'
                    self.send_response(200 if ok else 403, 'Fine Indeed' if ok else 'Nope')
                    self.end_headers()
                def log_message(self, *args): pass
            for secure in (True, False):
                server = http.server.HTTPServer(('127.0.0.1', 0), Handler)
                if secure:
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    context.load_cert_chain(sys.argv[1], sys.argv[2])
                    server.socket = context.wrap_socket(server.socket, server_side=True)
                print(server.server_address[1], flush=True)
                import threading
                threading.Thread(target=server.serve_forever, daemon=True).start()
            import time
            time.sleep(120)
            """
        let server = try Child(try #require(Tools.find("python3")), ["-c", script, dir.path + "/cert.pem", dir.path + "/key.pem"], stdout: .pipe)
        defer { server.signal(SIGKILL) }
        let ports = try await Tools.read(server.output!, timeout: 30) { $0.split(separator: "\n").count >= 2 }
            .split(separator: "\n").compactMap { Int($0) }
        try #require(ports.count == 2, "the test servers did not start")
        func probe(scheme: String, port: Int, header: Bool) -> Probe {
            var probe = Probe()
            probe.httpGet.scheme = scheme
            probe.httpGet.path = "/healthz"
            probe.httpGet.port = IntOrString(int: Int32(port))
            if header {
                var probeHeader = HTTPHeader()
                probeHeader.name = "X-Probe"
                probeHeader.value = "yes"
                probe.httpGet.httpHeaders = [probeHeader]
            }
            // Generous: the test is about headers and TLS, and a full run loads the machine (a
            // CI run once took more than 5 s to get this answer from a local server).
            probe.timeoutSeconds = 60
            return probe
        }
        let container = Container()
        // A success may take up to three attempts, as a probe with the default failureThreshold
        // does (a CI run under load once saw one attempt fail here).
        func succeeds(_ probe: Probe) async -> Bool {
            for _ in 0..<3 where await Prober.run(probe, container: container, host: "127.0.0.1", exec: Self.noExec) { return true }
            return false
        }
        #expect(await succeeds(probe(scheme: "HTTPS", port: ports[0], header: true)))
        #expect(!(await Prober.run(probe(scheme: "HTTPS", port: ports[0], header: false), container: container, host: "127.0.0.1", exec: Self.noExec)))
        #expect(await succeeds(probe(scheme: "HTTP", port: ports[1], header: true)))
        #expect(!(await Prober.run(probe(scheme: "HTTP", port: ports[0], header: true), container: container, host: "127.0.0.1", exec: Self.noExec)),
                "plain HTTP to a TLS port fails")
    }
}
