import Foundation
import SwiftProtobuf
import Testing
import TestSupport
@testable import API

/// Object members in key order, so two documents compare by content, not by field order.
func canonical(_ value: JSONValue) -> JSONValue {
    switch value {
    case .object(let members): .object(members.map { JSONMember($0.key, canonical($0.value)) }.sorted { $0.key < $1.key })
    case .array(let elements): .array(elements.map(canonical))
    default: value
    }
}

@Suite("Encodings", .watchdog)
struct CodecTests {
    /// JSON → object → protobuf → object → JSON keeps every field of realistic manifests.
    @Test(arguments: [("pod", Fixtures.pod), ("deployment", Fixtures.deployment), ("node", Fixtures.node), ("lease", Fixtures.lease)])
    func roundTripIsLossless(name: String, json: String) throws {
        let input = try JSONParser.parse(json)
        let object = try Manifests.decodeObjectWithoutDefaults(input)
        let wire: [UInt8] = try object.serializedBytes()
        let back = try type(of: object).init(serializedBytes: wire)
        #expect(back.isEqualTo(message: object))
        let output = try JSONParser.parse(bytes: back.jsonBytes())
        #expect(canonical(output) == canonical(input), "\(name) changed in the round trip:\n\(back.jsonString())")
    }

    /// A manifest without `resources` and the same object read back from its JSON (which always
    /// writes `resources: {}`) are the same spec: re-applying it must not bump the generation
    /// (it did, and `cox diff` showed a change where there was none).
    @Test func aSpecReadBackFromItsJSONIsNotAChange() throws {
        let manifest = try #require(try Manifests.decode("""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web}
            spec:
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}}
                spec: {containers: [{name: web, image: busybox}]}
            """, source: "test")[0].object as? Deployment)
        let readBack = try Deployment(jsonString: manifest.jsonString())
        #expect(readBack.spec != manifest.spec, "the two differ in field presence, which is what this test is about")
        #expect(!readBack.specDiffers(from: manifest) && !manifest.specDiffers(from: readBack))
        var changed = readBack
        changed.spec.template.spec.containers[0].image = "busybox:2"
        #expect(changed.specDiffers(from: manifest))
    }

    @Test func kubernetesFieldShapes() throws {
        let pod = try Pod(jsonString: Fixtures.pod)
        #expect(pod.status.hostIp == "10.0.0.7")
        #expect(pod.metadata.creationTimestamp.seconds == 1_714_558_830)
        #expect(pod.spec.containers[0].livenessProbe.httpGet.port.value == .strVal("http"))
        #expect(pod.spec.containers[0].readinessProbe.tcpSocket.port.value == .intVal(8080))
        let json = pod.jsonString()
        // Counters are numbers, enums are strings, timestamps RFC 3339, quantities strings.
        #expect(json.contains(#""generation":3"#))
        #expect(json.contains(#""restartPolicy":"Always""#))
        #expect(json.contains(#""creationTimestamp":"2024-05-01T10:20:30Z""#))
        #expect(json.contains(#""cpu":"500m""#))
        #expect(json.contains(#""restartCount":0"#), "restartCount is written even when zero, as Kubernetes does")
        let lease = try Lease(jsonString: Fixtures.lease)
        #expect(lease.jsonString().contains(#""renewTime":"2024-05-01T10:00:00.123456Z""#))
    }

    @Test func protobufIsSmallerThanJSON() throws {
        let pod = try Pod(jsonString: Fixtures.pod)
        let protobuf: [UInt8] = try pod.serializedBytes()
        #expect(protobuf.count * 2 <= pod.jsonBytes().count)
    }

    @Test func unknownFieldsAreRejectedWithTheirPath() {
        let json = #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"a","command":["x"]},{"name":"b","comand":["y"]}]}}"#
        #expect {
            _ = try Pod(jsonString: json)
        } throws: { error in
            (error as? JSONDecodeError)?.description == #"unknown field "spec.containers[1].comand""#
        }
    }

    @Test func typeMismatchNamesThePath() {
        let json = #"{"spec":{"replicas":"three"}}"#
        #expect {
            _ = try Deployment(jsonString: json)
        } throws: { error in
            (error as? JSONDecodeError)?.description == "spec.replicas: expected integer, got string"
        }
        #expect(throws: JSONDecodeError.self) { _ = try Pod(jsonString: #"{"metadata":{"labels":{"a":1}}}"#) }
        #expect(throws: JSONDecodeError.self) { _ = try Pod(jsonString: #"{"spec":{"terminationGracePeriodSeconds":1.5}}"#) }
        #expect(throws: JSONDecodeError.self) { _ = try Pod(jsonString: #"{"metadata":{"creationTimestamp":"yesterday"}}"#) }
    }

    @Test func malformedJSONGivesLineAndColumn() {
        #expect {
            _ = try JSONParser.parse("{\n  \"a\": 1,\n  \"b\": tru\n}")
        } throws: { error in
            guard let e = error as? JSONSyntaxError else { return false }
            return e.line == 3 && e.description.contains("invalid literal")
        }
        #expect(throws: JSONSyntaxError.self) { _ = try JSONParser.parse(#"{"a":1,"a":2}"#) }
        #expect(throws: JSONSyntaxError.self) { _ = try JSONParser.parse(#"{"a":1} x"#) }
        #expect(throws: JSONSyntaxError.self) { _ = try JSONParser.parse(#""\ud800""#) }
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect {
            _ = try JSONParser.parse(deep)
        } throws: { error in
            (error as? JSONSyntaxError)?.message.contains("nesting deeper") == true
        }
    }

    @Test func stringsSurviveEscaping() throws {
        let tricky = "quote \" backslash \\ newline \n tab \t control \u{01} unicode é 🚣"
        var pod = Pod()
        pod.metadata.annotations["x"] = tricky
        let back = try Pod(jsonBytes: pod.jsonBytes())
        #expect(back.metadata.annotations["x"] == tricky)
    }

    @Test func malformedProtobufIsAnError() throws {
        let pod = try Pod(jsonString: Fixtures.pod)
        let wire: [UInt8] = try pod.serializedBytes()
        #expect(throws: (any Error).self) { _ = try Pod(serializedBytes: Array(wire.prefix(wire.count / 2))) }
        #expect(throws: (any Error).self) { _ = try Pod(serializedBytes: [0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) }
    }

    @Test func timestampsFormatAndParse() throws {
        let t = try #require(Timestamp(rfc3339: "1999-12-31T23:59:59+01:00"))
        #expect(t.rfc3339 == "1999-12-31T22:59:59Z")
        #expect(Timestamp(rfc3339: "2024-02-30T00:00:00") == nil)
        let micro = try #require(Timestamp(rfc3339: "2024-01-01T00:00:00.5Z"))
        #expect(micro.nanos == 500_000_000)
        #expect(micro.format(microseconds: true) == "2024-01-01T00:00:00.500000Z")
        #expect(micro.rfc3339 == "2024-01-01T00:00:00.5Z", "trailing zeros of a fraction are dropped")
        let early = try #require(Timestamp(rfc3339: "0099-02-03T04:05:06.00012Z"))
        #expect(early.rfc3339 == "0099-02-03T04:05:06.00012Z" && early.format(microseconds: true) == "0099-02-03T04:05:06.000120Z")
        #expect(Timestamp(seconds: -1).rfc3339 == "1969-12-31T23:59:59Z")
    }
}

extension Manifests {
    /// Strict decoding without defaulting or validation, for round-trip tests.
    static func decodeObjectWithoutDefaults(_ json: JSONValue) throws -> any APIObject {
        guard case .string(let apiVersion)? = json["apiVersion"], case .string(let kind)? = json["kind"],
              let type = Kinds.lookup(apiVersion: apiVersion, kind: kind) else { throw JSONDecodeError(.invalidValue("no kind")) }
        return try type.init(json: json)
    }
}

@Suite("Resource version suffix", .watchdog)
struct ResourceVersionSuffixTests {
    /// Every kind has metadata as field 3, so appending the suffix sets the version without
    /// touching anything else.
    @Test func appendingTheSuffixSetsOnlyTheResourceVersion() throws {
        for kind in Kinds.all {
            var object = try kind.init(json: .object([]))
            object.metadata.name = "x"
            object.metadata.labels = ["a": "b"]
            object.metadata.resourceVersion = "7"
            let stored: [UInt8] = try object.serializedBytes()
            let merged = try kind.init(serializedBytes: ResourceVersionSuffix.appending(1_234_567_890_123, to: stored))
            #expect(merged.metadata.resourceVersion == "1234567890123", "\(kind)")
            var expected = object
            expected.metadata.resourceVersion = "1234567890123"
            #expect(merged.isEqualTo(message: expected), "\(kind)")
        }
    }
}

@Suite("YAML output", .watchdog)
struct YAMLWriterTests {
    /// `cox get -o yaml` output read back as a manifest is the same object, for every fixture kind.
    @Test(arguments: [Fixtures.pod, Fixtures.deployment, Fixtures.node, Fixtures.lease])
    func yamlReadsBackIdentically(json: String) throws {
        let input = try JSONParser.parse(json)
        let object = try Manifests.decodeObjectWithoutDefaults(input)
        let yaml = YAMLWriter.render(object.jsonValue())
        let documents = try Manifests.documents(yaml, source: "out.yaml")
        #expect(documents.count == 1)
        let back = try Manifests.decodeObjectWithoutDefaults(try #require(documents.first).0)
        #expect(canonical(back.jsonValue()) == canonical(input), "YAML:\n\(yaml)")
    }

    @Test func ambiguousStringsAreQuoted() {
        let value = JSONValue.object([
            JSONMember("a", .string("true")), JSONMember("b", .string("0123")), JSONMember("c", .string("x: y")),
            JSONMember("d", .string("")), JSONMember("e", .string("plain text")), JSONMember("f", .array([.string("-"), .int(3)])),
        ])
        #expect(YAMLWriter.render(value) == """
            a: "true"
            b: "0123"
            c: "x: y"
            d: ""
            e: plain text
            f:
            - "-"
            - 3

            """)
    }
}
