import API
import Client
import Foundation
import Testing
import TestSupport

/// Containers' lifecycle hooks with real processes (`cox server`, `cox agent`, the process
/// runtime), applied with kubectl: postStart after the start, preStop before SIGTERM.
@Suite("Lifecycle hooks end to end", .watchdog, .serialized)
struct LifecycleHookTests {
    func kubectl(_ cluster: AgentCluster, _ arguments: [String], input: String? = nil) async throws -> Tools.Output {
        let (_, path) = try #require(Tools.kubectlRange().last)
        return try await Tools.runDetached(path, ["--kubeconfig", cluster.kubeconfig] + arguments, input: input, timeout: 60)
    }

    @Test func preStopRunsBeforeSIGTERMAndPostStartAfterTheStart() async throws {
        try await AgentCluster.run { cluster in
            // An HTTP hook's target: a server of the test's that prints the paths it is asked for.
            let server = try Child(try #require(Tools.find("python3")), ["-u", "-c", """
                import http.server
                class Handler(http.server.BaseHTTPRequestHandler):
                    def do_GET(self):
                        print("GET", self.path, flush=True)
                        self.send_response(200)
                        self.end_headers()
                    def log_message(self, *args): pass
                server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
                print(server.server_address[1], flush=True)
                server.serve_forever()
                """], stdout: .pipe)
            defer { server.signal(SIGKILL) }
            let port = try #require(Int(try await Tools.read(server.output!, timeout: 30) { $0.hasSuffix("\n") }.trimmingCharacters(in: .whitespacesAndNewlines)))
            let order = cluster.dir.path + "/order"
            let manifest = """
                apiVersion: v1
                kind: Pod
                metadata: {name: hooked}
                spec:
                  nodeName: n1
                  terminationGracePeriodSeconds: 5
                  containers:
                    - name: main
                      command: ["sh", "-c", "trap 'echo term >> \(order); exit 0' TERM; while true; do sleep 0.2; done", "\(cluster.marker)"]
                      lifecycle:
                        postStart: {exec: {command: ["sh", "-c", "echo post-start >> \(order)"]}}
                        preStop: {exec: {command: ["sh", "-c", "echo pre-stop >> \(order)"]}}
                    - name: web
                      command: ["sh", "-c", "exec sleep 300", "\(cluster.marker)"]
                      lifecycle:
                        preStop: {httpGet: {host: 127.0.0.1, port: \(port), path: /draining}}
                """
            let applied = try await kubectl(cluster, ["apply", "-f", "-"], input: manifest)
            #expect(applied.status == 0, "\(applied.output)")
            try await eventually("hooked is Running, its postStart hook done") {
                let running = try await cluster.get("hooked").status.phase == "Running"
                return running && (try? String(contentsOfFile: order, encoding: .utf8)) == "post-start\n"
            }
            let deleted = try await kubectl(cluster, ["delete", "pod", "hooked"])
            #expect(deleted.status == 0, "\(deleted.output)")
            #expect(try String(contentsOfFile: order, encoding: .utf8) == "post-start\npre-stop\nterm\n", "the preStop hook ran, then SIGTERM")
            let asked = try await Tools.read(server.output!, timeout: 30) { $0.contains("GET /draining") }
            #expect(asked.contains("GET /draining"), "the HTTP preStop hook reached its target: \(asked)")
        }
    }

    @Test func aFailedPostStartHookRestartsTheContainerAndBadHooksAreRefused() async throws {
        try await AgentCluster.run { cluster in
            let manifest = """
                apiVersion: v1
                kind: Pod
                metadata: {name: badhook}
                spec:
                  nodeName: n1
                  terminationGracePeriodSeconds: 1
                  containers:
                    - name: main
                      command: ["sh", "-c", "exec sleep 300", "\(cluster.marker)"]
                      lifecycle:
                        postStart: {exec: {command: ["sh", "-c", "echo not today; exit 7"]}}
                """
            #expect(try await kubectl(cluster, ["apply", "-f", "-"], input: manifest).status == 0)
            try await eventually("the container was restarted after its postStart hook failed", timeout: 30) {
                (try await cluster.get("badhook").status.containerStatuses.first?.restartCount ?? 0) >= 1
            }
            let events = try await cluster.client.list(Event.self, namespace: "default", fieldSelector: "involvedObject.name=badhook,reason=FailedPostStartHook").items
            #expect(events.contains { $0.type == "Warning" && $0.message.contains("exited with 7") && $0.message.contains("not today") }, "\(events.map(\.message))")

            // A sleep longer than the grace period, two actions in one hook: refused, named.
            let bad = """
                apiVersion: v1
                kind: Pod
                metadata: {name: refused}
                spec:
                  terminationGracePeriodSeconds: 2
                  containers:
                    - name: main
                      command: ["sleep", "1"]
                      lifecycle:
                        preStop: {sleep: {seconds: 5}}
                        postStart: {sleep: {seconds: 1}, exec: {command: ["true"]}}
                """
            let refused = try await kubectl(cluster, ["apply", "-f", "-"], input: bad)
            #expect(refused.status != 0 && refused.output.contains("spec.containers[0].lifecycle.preStop.sleep.seconds: Invalid value: 5: must be non-negative and less than terminationGracePeriodSeconds (2)")
                    && refused.output.contains("spec.containers[0].lifecycle.postStart: Forbidden: may not specify more than 1 handler type"), "\(refused.output)")
        }
    }
}
