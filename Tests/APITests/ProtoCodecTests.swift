import SwiftProtobuf
import Testing
import TestSupport
@testable import API

@Suite("Generated protobuf codec", .watchdog)
struct ProtoCodecTests {
    static let objects: [any APIObject] = [
        try! Pod(jsonString: Fixtures.pod), try! Deployment(jsonString: Fixtures.deployment),
        try! Node(jsonString: Fixtures.node), try! Lease(jsonString: Fixtures.lease),
    ]

    /// The generated codec and swift-protobuf read each other's bytes: one wire format.
    @Test func wireCompatibleWithSwiftProtobuf() throws {
        for object in Self.objects {
            let kind = type(of: object)
            let ours = object.protoBytes()
            let theirs: [UInt8] = try object.serializedBytes()
            #expect(ours.count == theirs.count, "\(kind)")
            #expect(try kind.init(serializedBytes: ours).isEqualTo(message: object), "\(kind): swift-protobuf reads ours")
            #expect(try kind.init(protobuf: theirs).isEqualTo(message: object), "\(kind): ours reads swift-protobuf's")
        }
    }

    @Test func edgeValuesSurvive() throws {
        var pod = Pod()
        pod.spec.priority = -5                          // negative int32: 10-byte varint
        pod.spec.terminationGracePeriodSeconds = 0      // optional, set to zero: present
        pod.spec.containers = [Container()]
        pod.spec.containers[0].readinessProbe.tcpSocket.port = IntOrString(int: 0)
        pod.metadata.annotations["big"] = String(repeating: "é", count: 100_000)  // multi-byte length
        pod.metadata.generation = Int64.max
        let back = try Pod(protobuf: pod.protoBytes())
        #expect(back == pod)
        #expect(back.spec.hasTerminationGracePeriodSeconds)
        #expect(try Pod(serializedBytes: pod.protoBytes()) == pod)
    }

    @Test func repeatedMessagesMergeAsProtobufSays() throws {
        var a = Pod()
        a.metadata.name = "x"
        a.metadata.labels = ["k": "v"]
        var b = Pod()
        b.metadata.namespace = "ns"
        let merged = try Pod(protobuf: a.protoBytes() + b.protoBytes())
        #expect(merged.metadata.name == "x" && merged.metadata.namespace == "ns" && merged.metadata.labels == ["k": "v"])
    }

    @Test func malformedInputIsAnErrorWithItsOffset() throws {
        let good = Self.objects[0].protoBytes()
        for cut in [1, 2, good.count / 3, good.count - 1] {
            #expect(throws: ProtoDecodingError.self, "cut at \(cut)") { _ = try Pod(protobuf: Array(good.prefix(cut))) }
        }
        #expect(throws: ProtoDecodingError.self) { _ = try Pod(protobuf: [0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) }
        #expect(throws: ProtoDecodingError.self) { _ = try Pod(protobuf: [0x0A, 0x02, 0xC3, 0x28]) }  // invalid UTF-8
        #expect(throws: ProtoDecodingError.self) { _ = try Pod(protobuf: [0x0B]) }  // wire type 3 (groups)
        #expect(throws: ProtoDecodingError.self) { _ = try Pod(protobuf: [0x08, 0x01]) }  // field 1 is a string, not a varint
        // Metadata nested in itself beyond the depth limit: field 3 (length-delimited) 200 levels deep.
        var deep: [UInt8] = []
        for _ in 0..<200 { deep = [0x1A] + varint(deep.count) + deep }
        #expect(throws: ProtoDecodingError.self) { _ = try Pod(protobuf: deep) }
    }

    func varint(_ n: Int) -> [UInt8] {
        var out: [UInt8] = []
        var v = n
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        out.append(UInt8(v))
        return out
    }
}
