import API
import APIServer
import ArgumentParser
import Dispatch
import Etcd
import Foundation
import PKI
import Store

/// One etcd member for `cox bench api --etcd`: a temporary data directory, client certificates
/// required (a CA made for it), on loopback ports.
final class BenchEtcd: Sendable {
    let dir: String
    let process: Process
    let endpoint: String
    let tls: EtcdConnection.TLSFiles

    init() throws {
        guard let etcd = ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":").map({ "\($0)/etcd" })
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ValidationError("--etcd needs etcd on PATH (apt-get install etcd-server)")
        }
        let directory = (NSTemporaryDirectory() as NSString).appendingPathComponent("cox-bench-etcd-\(getpid())")
        dir = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let authority = try CertificateAuthority.create(commonName: "bench-etcd-ca")
        let member = try authority.issue(commonName: "etcd", usage: .peer(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"]))
        let client = try authority.issue(commonName: "cox-apiserver", usage: .client)
        func write(_ name: String, _ text: String) throws -> String {
            let path = (directory as NSString).appendingPathComponent(name)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let ca = try write("ca.crt", authority.certificatePEM)
        let tls = EtcdConnection.TLSFiles(caFile: ca, certFile: try write("client.crt", client.certificatePEM), keyFile: try write("client.key", client.privateKeyPEM))
        self.tls = tls
        let (clientPort, peerPort) = (try Self.freePort(), try Self.freePort())
        let endpoint = "https://127.0.0.1:\(clientPort)"
        self.endpoint = endpoint
        let peer = "http://127.0.0.1:\(peerPort)"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: etcd)
        process.arguments = ["--name", "bench", "--data-dir", (directory as NSString).appendingPathComponent("data"),
                             "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
                             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "bench=\(peer)",
                             "--cert-file", try write("member.crt", member.certificatePEM), "--key-file", try write("member.key", member.privateKeyPEM),
                             "--trusted-ca-file", ca, "--client-cert-auth"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { throw ValidationError("cannot bind a loopback port") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Waits until the member answers Status with a leader.
    func waitUntilServing() async throws {
        let connection = try EtcdConnection(endpoint: endpoint, tls: tls)
        defer { connection.close() }
        for _ in 0..<300 {
            if let status = try? await connection.maintenance.status(Etcdserverpb_StatusRequest(), options: EtcdConnection.options(timeout: .seconds(1))),
               status.leader != 0 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ValidationError("the bench's etcd member did not start")
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

extension APIBench {
    /// `--etcd`: the same creates against cox on SQLite, cox on etcd, and etcd alone (a Put of the
    /// pod's stored bytes per create, over `connections` TLS connections), in one run.
    func compareStores() async throws {
        guard request == .create, resource == .pods, kubeconfig == nil else {
            throw ValidationError("--etcd measures pod creates (--request create, --resource pods) against servers it starts (no --kubeconfig)")
        }
        let member = try BenchEtcd()
        defer { member.stop() }
        try await member.waitUntilServing()
        print("\(clients) clients creating \(creates) pods over TLS (protobuf, HTTP/2 on \(connections) clients) while \(watchers) watchers stream them; etcd 3.4 member on loopback with client certificates")
        let sqlite = try await measure(.protobuf)
        print("  cox on SQLite   \(fmt(sqlite.rate, 0)) creates/s; p50 \(fmt(sqlite.p50, 1)) ms, p99 \(fmt(sqlite.p99, 1)) ms; watch lag p99 \(fmt(sqlite.lagP99, 1)) ms")
        var options = EtcdStore.Options(endpoints: [member.endpoint], tls: member.tls)
        options.prefix = "/bench-\(getpid())"
        let onEtcd = try await measure(.protobuf, etcdStore: options)
        print("  cox on etcd     \(fmt(onEtcd.rate, 0)) creates/s; p50 \(fmt(onEtcd.p50, 1)) ms, p99 \(fmt(onEtcd.p99, 1)) ms; watch lag p99 \(fmt(onEtcd.lagP99, 1)) ms")
        let raw = try await rawPuts(member)
        print("  etcd puts       \(fmt(raw.rate, 0)) puts/s; p50 \(fmt(raw.p50, 1)) ms, p99 \(fmt(raw.p99, 1)) ms (the \(raw.bytes) bytes cox stores per pod, no watchers)")
        print("  → cox on etcd creates at \(fmt(onEtcd.rate / sqlite.rate, 2))× cox on SQLite's rate and \(fmt(onEtcd.rate / raw.rate, 2))× raw etcd puts; p99 \(fmt(onEtcd.p99 / max(sqlite.p99, 0.001), 2))× SQLite's, \(fmt(onEtcd.p99 / max(raw.p99, 0.001), 2))× raw etcd's")
    }

    /// `creates` Puts of one pod's stored encoding, `clients` at a time over `connections` connections.
    func rawPuts(_ member: BenchEtcd) async throws -> (rate: Double, p50: Double, p99: Double, bytes: Int) {
        var pod = Pod()
        pod.metadata.name = "bench-raw-000000"
        pod.metadata.namespace = "default"
        pod.metadata.uid = UUID().uuidString.lowercased()
        pod.metadata.annotations["bench/sent"] = String(DispatchTime.now().uptimeNanoseconds)
        var container = Container()
        container.name = "main"
        container.command = ["sleep", "3600"]
        pod.spec.containers = [container]
        let value = Data(pod.asCreated().protobufBytes())
        let links = try (0..<max(1, min(connections, clients))).map { _ in try EtcdConnection(endpoint: member.endpoint, tls: member.tls) }
        defer { for link in links { link.close() } }
        let total = creates
        let start = DispatchTime.now().uptimeNanoseconds
        let latencies = try await timedOperations(clients: clients, total: total) { c, i in
            var put = Etcdserverpb_PutRequest()
            put.key = Data("/bench-raw/pods/default/p\(i)".utf8)
            put.value = value
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try await links[c % links.count].kv.put(put, options: EtcdConnection.options(timeout: .seconds(30)))
            return t0
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let sorted = latencies.sorted()
        return (Double(total) / seconds, percentile(sorted, 0.5), percentile(sorted, 0.99), value.count)
    }
}
