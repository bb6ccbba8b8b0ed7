import API
import ArgumentParser
import Etcd
import Foundation
import Logging
import Store

struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store", abstract: "Work on a cluster's stored state.", subcommands: [StoreMigrateCommand.self])
}

/// Copies every object of a single-server cluster (the embedded store) into an empty etcd prefix,
/// so that the cluster can grow to several servers on etcd and keep everything it holds.
struct StoreMigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Move a cluster from the embedded store to etcd.",
        discussion: """
            Stop the server first (the embedded store is locked while it runs). Every live object is
            copied as stored (uid, creation time, generation, Secrets re-encrypted with the data
            directory's secrets.key) into an empty prefix; the embedded store is left as it was.
            What changes: resource versions are etcd's revisions from then on, so clients start
            their lists and watches again (a watch resumed from an old version gets 410 Gone or
            waits for etcd to reach it), and no history older than the migration is kept.
            Then start the server on the same data directory with the same --etcd-* flags.
            """)

    @Option(help: "The store to copy: sqlite:DATA_DIR (the server's --data-dir).") var from: String
    @Option(help: "Where to: etcd://HOST:PORT[,HOST:PORT…] (https with the --etcd-* files, else http), or https://… URLs.") var to: String
    @Option(help: "CA certificate that signed the etcd members' certificates.") var etcdCafile: String?
    @Option(help: "Client certificate for etcd.") var etcdCertfile: String?
    @Option(help: "Client certificate's key for etcd.") var etcdKeyfile: String?
    @Option(help: "Every key is written under this prefix (it must be empty).") var etcdPrefix = "/registry"

    func endpoints() throws -> [String] {
        let secure = etcdCafile != nil && etcdCertfile != nil && etcdKeyfile != nil
        if to.hasPrefix("etcd://") {
            let hosts = to.dropFirst("etcd://".count).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard !hosts.isEmpty, hosts.allSatisfy({ !$0.isEmpty && !$0.contains("/") }) else {
                throw ValidationError("--to: expected etcd://HOST:PORT[,HOST:PORT…], got \"\(to)\"")
            }
            return hosts.map { (secure ? "https://" : "http://") + $0 }
        }
        let urls = to.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !urls.isEmpty, urls.allSatisfy({ $0.hasPrefix("https://") || $0.hasPrefix("http://") }) else {
            throw ValidationError("--to: expected etcd://HOST:PORT[,…] or https://HOST:PORT[,…], got \"\(to)\"")
        }
        return urls
    }

    func run() async throws {
        guard from.hasPrefix("sqlite:") else { throw ValidationError("--from: expected sqlite:DATA_DIR, got \"\(from)\"") }
        let directory = String(from.dropFirst("sqlite:".count))
        let database = (directory as NSString).appendingPathComponent(SQLiteStore.databaseFileName)
        guard FileManager.default.fileExists(atPath: database) else {
            throw ValidationError("--from: \(database) does not exist (give the server's --data-dir)")
        }
        let urls = try endpoints()
        var tls: EtcdConnection.TLSFiles?
        if let etcdCafile, let etcdCertfile, let etcdKeyfile {
            tls = EtcdConnection.TLSFiles(caFile: etcdCafile, certFile: etcdCertfile, keyFile: etcdKeyfile)
        } else if urls.contains(where: { $0.hasPrefix("https://") }) {
            throw ValidationError("https needs --etcd-cafile, --etcd-certfile and --etcd-keyfile")
        }
        var logger = Logger(label: "cox.migrate")
        logger.logLevel = .warning
        let secrets = try SecretsKey.load(path: (directory as NSString).appendingPathComponent(SecretsKey.fileName))
        var sourceOptions = SQLiteStore.Options()
        sourceOptions.secretsKey = secrets
        let source: SQLiteStore
        do {
            source = try SQLiteStore(directory: directory, options: sourceOptions, logger: logger)
        } catch is DirectoryLock.InUse {
            throw ValidationError("\(directory) is in use: stop the server (or cox up) that uses it first")
        }
        defer { source.close() }
        var targetOptions = EtcdStore.Options(endpoints: urls, tls: tls)
        targetOptions.prefix = etcdPrefix
        targetOptions.secretsKey = secrets
        targetOptions.startTimeout = .seconds(15)
        let target = try await EtcdStore(options: targetOptions, logger: logger)
        defer { target.close() }
        let existing = try await target.keyCount()
        if existing > 0 {
            throw ValidationError("etcd already holds \(existing) keys under \(etcdPrefix): migrate into an empty prefix (or name another with --etcd-prefix); nothing was written")
        }

        let resources = try source.liveResources()
        print("copying the objects of \(resources.count) resources from \(database) (revision \(source.currentRevision)) to etcd \(urls.joined(separator: ",")) under \(etcdPrefix)")
        let clock = ContinuousClock()
        let started = clock.now
        var total = 0
        for resource in resources {
            var copied = 0
            var after = (namespace: "", name: "")
            while true {
                let page = try source.liveObjects(of: resource, after: after, limit: 500)
                if page.isEmpty { break }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (index, object) in page.enumerated() {
                        if index >= 16 { try await group.next() }
                        group.addTask {
                            guard try await target.importObject(object.key, bytes: object.bytes) else {
                                throw ValidationError("\(object.key) exists in etcd already (written by someone else meanwhile?); stopped")
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                copied += page.count
                after = (page.last!.key.namespace, page.last!.key.name)
            }
            let stored = try await target.objectCount(of: resource)
            guard stored == Int64(copied) else {
                throw ValidationError("\(resource): copied \(copied) but etcd holds \(stored); stopped (the embedded store is unchanged)")
            }
            print("  \(resource): \(copied)")
            total += copied
        }
        let seconds = Double((clock.now - started).components.attoseconds) / 1e18 + Double((clock.now - started).components.seconds)
        let revision = try await target.latestRevision()
        print(String(format: "copied %d objects in %.1f s; etcd is at revision %lld.", total, seconds, revision))
        print("Resource versions are etcd's from now on: clients list and watch again. \(directory) is unchanged.")
        let flags = ["--etcd-servers", urls.joined(separator: ",")] + (tls.map { ["--etcd-cafile", $0.caFile, "--etcd-certfile", $0.certFile, "--etcd-keyfile", $0.keyFile] } ?? [])
            + (etcdPrefix == "/registry" ? [] : ["--etcd-prefix", etcdPrefix])
        print("Start the server on etcd: cox server --data-dir \(directory) \(flags.joined(separator: " "))")
    }
}
