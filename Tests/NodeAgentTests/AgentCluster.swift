import API
import Client
import Foundation
import PKI
import Testing
import TestSupport

/// A real cluster as separate processes: `cox server` and `cox agent` (node n1) on loopback, with a
/// 1-second heartbeat and crash back-off so tests are quick. Everything is killed on `stop()`,
/// and every container process the tests started is checked to be gone.
final class AgentCluster: @unchecked Sendable {
    let dir = TemporaryDirectory()
    let binary: String
    let port: Int
    var server: Child?
    var agent: Child?
    /// Agents besides n1, by node name.
    var agents: [String: Child] = [:]
    let serverArguments: [String]
    /// With `etcdMembers`: the etcd cluster the server keeps its state in, and a fault proxy in
    /// front of each member's client port (the server reaches the members through them only).
    let etcd: EtcdCluster?
    let etcdProxies: [FaultProxy]
    var client: APIClient!
    /// Every command line of a test's containers carries this, so leaks can be found.
    let marker = "cox-test-\(UInt32.random(in: 0..<UInt32.max))"

    var kubeconfig: String { (dir.path as NSString).appendingPathComponent("admin.kubeconfig") }

    init(serverArguments: [String] = [], firstAgent: Bool = true, etcdMembers: Int = 0) async throws {
        if etcdMembers > 0 {
            let etcd = try EtcdCluster(size: etcdMembers)
            try await etcd.waitUntilServing()
            var proxies: [FaultProxy] = []
            for endpoint in etcd.endpoints {
                proxies.append(try await FaultProxy(port: Int(endpoint.split(separator: ":").last!)!, seed: UInt64(proxies.count + 11)))
            }
            let urls = proxies.map { "https://127.0.0.1:\($0.port)" }.joined(separator: ",")
            self.serverArguments = serverArguments + ["--etcd-servers", urls, "--etcd-cafile", etcd.tls.caFile,
                                                      "--etcd-certfile", etcd.tls.certFile, "--etcd-keyfile", etcd.tls.keyFile]
            self.etcd = etcd
            self.etcdProxies = proxies
        } else {
            self.serverArguments = serverArguments
            self.etcd = nil
            self.etcdProxies = []
        }
        binary = try coxBinary()
        port = try freeLoopbackPort()
        try await startServer()
        client = try APIClient(kubeconfig: try Kubeconfig.load(path: kubeconfig), timeout: InProcessAPI.deadline)
        guard firstAgent else { return }
        try startAgent()
        try await eventually("node n1 is Ready") {
            let node = try? await self.client.get(Node.self, namespace: "", name: "n1")
            return node?.status.conditions.first { $0.type == "Ready" }?.status == "True"
        }
    }

    /// Runs `body` against a fresh cluster and always tears it down (and checks for leaks), also
    /// when the body fails.
    static func run(serverArguments: [String] = [], firstAgent: Bool = true, etcdMembers: Int = 0,
                    _ body: (AgentCluster) async throws -> Void) async throws {
        // Without etcd the etcd variant is skipped (a failure with COX_REQUIRE_PEERS=1).
        if etcdMembers > 0 && Tools.peer("etcd") == nil { return }
        let cluster = try await AgentCluster(serverArguments: serverArguments, firstAgent: firstAgent, etcdMembers: etcdMembers)
        do {
            try await body(cluster)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    func launch(_ arguments: [String], log: String) throws -> Child {
        let path = (dir.path as NSString).appendingPathComponent(log)
        return try Child(binary, arguments, stdout: .file(path), stderr: .stdout)
    }

    func startServer() async throws {
        server = try launch(["server", "--data-dir", dir.path, "--port", "\(port)"] + serverArguments, log: "server.log")
        try await eventually("the API server answers") {
            guard FileManager.default.fileExists(atPath: self.kubeconfig) else { return false }
            let ready = try? await Tools.runDetached("/usr/bin/curl", ["-sf", "--max-time", "5", "--cacert", "\(self.dir.path)/pki/ca.crt",
                                                                       "https://127.0.0.1:\(self.port)/readyz"])
            return ready?.output == "ok"
        }
    }

    func stopServer() async {
        guard let server else { return }
        kill(server.pid, SIGTERM)
        await server.wait()
        self.server = nil
    }

    func startAgent() throws {
        agent = try launchAgent("n1")
    }

    /// Another agent on this host, as node `name` with its own data directory.
    func startAgent(named name: String) throws {
        agents[name] = try launchAgent(name)
    }

    func launchAgent(_ name: String, _ extra: [String] = []) throws -> Child {
        let data = name == "n1" ? "agent" : "agent-\(name)"
        return try launch(["agent", "--kubeconfig", kubeconfig, "--pki", "\(dir.path)/pki", "--data-dir", "\(dir.path)/\(data)",
                           "--node-name", name, "--port", "0", "--heartbeat-seconds", "1", "--crash-backoff-seconds", "1"] + extra, log: "\(data).log")
    }

    /// A simulated node (`--runtime fake`): registers with the given flags, runs nothing.
    func startSimulatedAgent(named name: String, _ flags: String...) throws {
        agents[name] = try launchAgent(name, ["--runtime", "fake"] + flags)
    }

    /// The log a component wrote (its name as launched: `server`, `agent-NAME`, or a given one).
    func log(_ name: String) -> String {
        (try? String(contentsOfFile: (dir.path as NSString).appendingPathComponent("\(name).log"), encoding: .utf8)) ?? ""
    }

    func killAgent() async {
        guard let agent else { return }
        kill(agent.pid, SIGKILL)
        await agent.wait()
        self.agent = nil
    }

    func stop() async {
        // Pods first (so the agent stops their processes), then the components.
        if let pods = try? await client.list(Pod.self, namespace: nil).items {
            for pod in pods { _ = try? await client.delete(Pod.self, namespace: pod.metadata.namespace, name: pod.metadata.name) }
            try? await eventually("every pod is gone", timeout: 30) { ((try? await self.client.list(Pod.self, namespace: nil).items.count) ?? 1) == 0 }
        }
        await killAgent()
        for (_, process) in agents {
            kill(process.pid, SIGKILL)
            await process.wait()
        }
        agents = [:]
        await stopServer()
        try? await client.shutdown()
        for proxy in etcdProxies { await proxy.close() }
        // Whatever is left of the tests' containers is a leak: report it, then kill it.
        let leaked = processes(matching: marker)
        #expect(leaked.isEmpty, "container processes left running: \(leaked)")
        for pid in leaked { kill(pid, SIGKILL) }
    }

    /// PIDs whose command line contains `text`.
    func processes(matching text: String) -> [pid_t] { TestHost.processes(containing: text) }

    func cox(_ arguments: String...) async throws -> Tools.Output {
        try await Tools.runDetached(binary, arguments + ["--kubeconfig", kubeconfig])
    }

    /// A pod on n1 running `sh -c SCRIPT` (the marker rides along as an argument).
    func pod(_ name: String, _ script: String, restartPolicy: String = "Always", grace: Int64 = 2) -> Pod {
        var pod = TestObjects.pod(name, command: ["sh", "-c", script, marker])
        pod.spec.nodeName = "n1"
        pod.spec.restartPolicy = restartPolicy
        pod.spec.terminationGracePeriodSeconds = grace
        return pod
    }

    /// Read, change, write — again on a conflict.
    func modify<T: APIObject>(_ type: T.Type, _ name: String, namespace: String = "default", _ change: (inout T) -> Void) async throws {
        try await client.modify(T.self, namespace: namespace, name: name, attempts: 20, change)
    }

    func get(_ name: String) async throws -> Pod {
        try await client.get(Pod.self, namespace: "default", name: name)
    }

    /// The PID of the pod's first container: its containerID (`cox-process://ID`) names the process
    /// plugin's record of it in its node's agent data directory, which holds `process://PID`.
    func pid(_ pod: Pod) -> pid_t? {
        guard let containerID = pod.status.containerStatuses.first?.containerID, containerID.hasPrefix("cox-process://") else { return nil }
        let id = containerID.dropFirst("cox-process://".count)
        let data = pod.spec.nodeName == "n1" || pod.spec.nodeName.isEmpty ? "agent" : "agent-\(pod.spec.nodeName)"
        let record = "\(dir.path)/\(data)/runtime/cri/containers/\(id).json"
        guard let data = FileManager.default.contents(atPath: record),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let process = object["processID"] as? String else { return nil }
        return pid_t(process.replacingOccurrences(of: "process://", with: ""))
    }
}

/// Polls `condition` until it holds (or fails the test after `timeout` seconds).
func eventually(_ what: String, timeout: Double = 60, _ condition: @escaping () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    Issue.record("timed out after \(timeout) s waiting until \(what)")
    throw CancellationError()
}

func freeLoopbackPort() throws -> Int { try TestHost.freePort() }
