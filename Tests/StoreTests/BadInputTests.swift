import API
import Testing
import TestSupport
@testable import Store

@Suite("Bad input", .watchdog)
struct BadInputTests {
    /// What the API server will do with a body: decode, default, validate, store.
    func admit(_ body: [UInt8], as format: WireFormat, into store: SQLiteStore) async throws {
        var pod = try Pod.decode(body, as: format)
        pod.applyDefaults()
        _ = try await store.create(try pod.validated())
    }

    @Test func eachBadInputHasAPreciseErrorAndChangesNothing() async throws {
        let dir = TemporaryDirectory()
        let store = try openStore(dir) { $0.maxObjectBytes = 256 * 1024 }
        defer { store.close() }
        _ = try await store.create(TestObjects.pod("existing"))
        let good = TestObjects.pod("good").protobufBytes()
        var huge = TestObjects.pod("huge")
        huge.spec.containers[0].args = [String(repeating: "a", count: 300 * 1024)]
        var badName = TestObjects.pod("Not_A_DNS_Name")
        badName.metadata.namespace = "default"

        let cases: [(String, [UInt8], WireFormat, String)] = [
            ("malformed JSON", Array(#"{"metadata": {"name": "a",}}"#.utf8), .json, "invalid JSON at line 1, column 27: expected a string key"),
            ("unknown field", Array(#"{"metadata":{"name":"a","nmae":"b"}}"#.utf8), .json, #"unknown field "metadata.nmae""#),
            ("truncated protobuf", Array(good.prefix(good.count - 3)), .protobuf, "malformed protobuf for Pod"),
            ("garbage protobuf", [0xFF, 0xFF, 0xFF, 0xFF], .protobuf, "malformed protobuf for Pod"),
            ("invalid name", badName.jsonBytes(), .json, #"metadata.name: Invalid value: "Not_A_DNS_Name""#),
            ("oversized value", huge.protobufBytes(), .protobuf, "more than the limit of 262144"),
        ]
        for (label, body, format, expected) in cases {
            do {
                try await admit(body, as: format, into: store)
                Issue.record("\(label) was accepted")
            } catch {
                #expect("\(error)".contains(expected), "\(label): \(error)")
            }
        }
        #expect(store.currentRevision == 1)
        #expect(try await store.list(Pod.self, options: ListOptions()).items.map(\.metadata.name) == ["existing"])
    }
}
