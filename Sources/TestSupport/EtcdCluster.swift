import Etcd
import Foundation
import PKI
import Synchronization

/// A real etcd 3.4 cluster on loopback (Debian's `etcd-server`) for tests: `size` members, each
/// serving clients over mutual TLS with certificates from a CA made for it (client certificates
/// required), talking to each other over TLS too. Members can be killed, stopped and started
/// again on their data; everything is SIGKILLed when the cluster is released.
public final class EtcdCluster: Sendable {
    public let dir: TemporaryDirectory
    /// The members' client URLs, in member order.
    public let endpoints: [String]
    /// What an API server passes as `--etcd-cafile/--etcd-certfile/--etcd-keyfile`.
    public let tls: EtcdConnection.TLSFiles
    let executable: String
    let peerURLs: [String]
    let serverFiles: (cert: String, key: String)
    let processes: Mutex<[Child?]>

    /// Starts the members (they elect a leader on their own; `waitUntilServing` waits for it).
    /// Throws when etcd is not installed.
    public init(size: Int = 1) throws {
        guard let executable = Tools.find("etcd") else { throw ChildError("etcd is not installed (apt-get install etcd-server)") }
        self.executable = executable
        let dir = TemporaryDirectory("cox-etcd")
        self.dir = dir
        let authority = try CertificateAuthority.create(commonName: "etcd-ca")
        // One certificate for every member: it serves clients and peers and dials peers.
        let member = try authority.issue(commonName: "etcd", usage: .peer(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"]))
        let client = try authority.issue(commonName: "cox-apiserver", usage: .client)
        func write(_ name: String, _ text: String) throws -> String {
            let path = dir.path + "/" + name
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let ca = try write("ca.crt", authority.certificatePEM)
        tls = EtcdConnection.TLSFiles(caFile: ca, certFile: try write("client.crt", client.certificatePEM),
                                      keyFile: try write("client.key", client.privateKeyPEM))
        serverFiles = (try write("member.crt", member.certificatePEM), try write("member.key", member.privateKeyPEM))
        var endpoints: [String] = []
        var peers: [String] = []
        for _ in 0..<size {
            endpoints.append("https://127.0.0.1:\(try TestHost.freePort())")
            peers.append("https://127.0.0.1:\(try TestHost.freePort())")
        }
        self.endpoints = endpoints
        self.peerURLs = peers
        self.processes = Mutex(Array(repeating: nil, count: size))
        for index in 0..<size { try start(index, existing: false) }
    }

    deinit {
        processes.withLock { $0.forEach { $0?.signal(SIGKILL) } }
    }

    public var size: Int { endpoints.count }

    /// The log file of member `index`.
    public func logPath(_ index: Int) -> String { dir.path + "/m\(index).log" }

    /// Starts member `index` on its data directory (again, after `kill` or `stop`).
    public func start(_ index: Int, existing: Bool = true) throws {
        let cluster = peerURLs.enumerated().map { "m\($0.offset)=\($0.element)" }.joined(separator: ",")
        let (ca, cert, key) = (tls.caFile, serverFiles.cert, serverFiles.key)
        let child = try Child(executable, [
            "--name", "m\(index)", "--data-dir", dir.path + "/m\(index).etcd",
            "--listen-client-urls", endpoints[index], "--advertise-client-urls", endpoints[index],
            "--listen-peer-urls", peerURLs[index], "--initial-advertise-peer-urls", peerURLs[index],
            "--initial-cluster", cluster, "--initial-cluster-state", existing ? "existing" : "new",
            "--initial-cluster-token", "cox-test",
            "--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
            "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca, "--peer-client-cert-auth",
            // Small and quick for tests: leaders are elected fast, nothing is kept long.
            "--heartbeat-interval", "100", "--election-timeout", "1000", "--snapshot-count", "10000",
        ], stdout: .file(logPath(index)), stderr: .stdout)
        processes.withLock { $0[index] = child }
    }

    /// SIGKILLs member `index` (its data stays: `start` brings it back).
    public func kill(_ index: Int) async {
        guard let child = processes.withLock({ $0[index] }) else { return }
        child.signal(SIGKILL)
        await child.wait()
        processes.withLock { $0[index] = nil }
    }

    /// Whether member `index` runs.
    public func isRunning(_ index: Int) -> Bool { processes.withLock { $0[index]?.isRunning ?? false } }

    /// Waits until every running member answers a Status with a leader known (the cluster has
    /// quorum), or throws with the end of their logs.
    public func waitUntilServing(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        for index in 0..<size where isRunning(index) {
            let connection = try EtcdConnection(endpoint: endpoints[index], tls: tls)
            defer { connection.close() }
            var lastError = "no answer"
            while true {
                do {
                    let status = try await connection.maintenance.status(Etcdserverpb_StatusRequest(), options: EtcdConnection.options(timeout: .seconds(1)))
                    if status.leader != 0 { break }
                    lastError = "no leader yet"
                } catch {
                    lastError = "\(error)"
                }
                if ContinuousClock.now > deadline {
                    let log = (try? String(contentsOfFile: logPath(index), encoding: .utf8)) ?? ""
                    throw ChildError("etcd member \(index) did not serve within \(timeout): \(lastError); its log ends: \(log.suffix(1500))")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }
}
