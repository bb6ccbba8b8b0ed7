import Etcd
import Foundation
import PKI
import Synchronization
import Testing
import TestSupport

/// The etcd client against a real etcd 3.4 member over mutual TLS: the calls the etcd store is
/// built on (Range, Put, Txn with a mod_revision compare, Watch from a revision, Status), with
/// the names and numbers of etcd's own API.
@Suite("etcd client", .watchdog)
struct EtcdConnectionTests {
    @Test func rangePutTxnWatchAndStatusOverMutualTLS() async throws {
        guard Tools.peer("etcd") != nil else { return }
        let member = try EtcdCluster(size: 1)
        let connection = try EtcdConnection(endpoint: member.endpoints[0], tls: member.tls)
        defer { connection.close() }
        let options = EtcdConnection.options(timeout: .seconds(10))

        // The member answers once it is up.
        var status: Etcdserverpb_StatusResponse?
        var failure: (any Error)?
        for _ in 0..<100 where status == nil {
            do {
                status = try await connection.maintenance.status(Etcdserverpb_StatusRequest(), options: EtcdConnection.options(timeout: .seconds(1)))
            } catch {
                failure = error
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        let log = (try? String(contentsOfFile: member.logPath(0), encoding: .utf8)) ?? ""
        let up = try #require(status, "etcd did not answer Status: \(String(describing: failure)); its log ends: \(log.suffix(1500))")
        #expect(up.version.hasPrefix("3.4") && up.leader != 0, "\(up)")

        var put = Etcdserverpb_PutRequest()
        put.key = Data("/registry/pods/default/a".utf8)
        put.value = Data("first".utf8)
        let written = try await connection.kv.put(put, options: options)
        var range = Etcdserverpb_RangeRequest()
        range.key = Data("/registry/pods/".utf8)
        range.rangeEnd = Data(Etcdserverpb_RangeRequest.prefixEnd(Array("/registry/pods/".utf8)))
        let read = try await connection.kv.range(range, options: options)
        #expect(read.kvs.count == 1 && read.kvs[0].value == Data("first".utf8) && read.kvs[0].modRevision == written.header.revision)

        // Optimistic concurrency: a write that names the revision it read.
        func replace(ifAt revision: Int64, with value: String) async throws -> Etcdserverpb_TxnResponse {
            var compare = Etcdserverpb_Compare()
            compare.key = put.key
            compare.target = .mod
            compare.result = .equal
            compare.modRevision = revision
            var op = Etcdserverpb_RequestOp()
            var change = put
            change.value = Data(value.utf8)
            op.requestPut = change
            var txn = Etcdserverpb_TxnRequest()
            txn.compare = [compare]
            txn.success = [op]
            return try await connection.kv.txn(txn, options: options)
        }
        let current = try await replace(ifAt: written.header.revision, with: "second")
        #expect(current.succeeded && current.header.revision == written.header.revision + 1)
        let stale = try await replace(ifAt: written.header.revision, with: "lost")
        #expect(!stale.succeeded, "a write from a stale read is refused")

        // A watch from the first write's revision sees both changes, in order.
        let (watchedKey, watchedEnd) = (range.key, range.rangeEnd)
        let seen = try await connection.watch.watch(request: .init { writer in
            var create = Etcdserverpb_WatchCreateRequest()
            create.key = watchedKey
            create.rangeEnd = watchedEnd
            create.startRevision = written.header.revision
            var request = Etcdserverpb_WatchRequest()
            request.createRequest = create
            try await writer.write(request)
            try await Task.sleep(for: .seconds(30))
        }, options: EtcdConnection.options(timeout: .seconds(20))) { response in
            var values: [String] = []
            for try await message in response.messages {
                values += message.events.map { String(decoding: $0.kv.value, as: UTF8.self) }
                if values.count >= 2 { break }
            }
            return values
        }
        #expect(seen == ["first", "second"])

        // Without a client certificate the member does not let a client in.
        let anonymous = try EtcdConnection(endpoint: member.endpoints[0].replacingOccurrences(of: "https", with: "http"))
        defer { anonymous.close() }
        await #expect(throws: (any Error).self) {
            _ = try await anonymous.kv.range(range, options: EtcdConnection.options(timeout: .seconds(3)))
        }
    }
}
