@testable import API
import Foundation
import Testing
import TestSupport

/// Kubernetes' protobuf envelope, as kubectl ≥ 1.32 sends `create configmap`.
@Suite("Kubernetes protobuf", .watchdog)
struct KubernetesProtobufTests {
    /// A ConfigMap as Go writes it: every string field, set or not, and the TypeMeta outside.
    static func envelope(extraMetaField: (Int, String)? = nil) -> [UInt8] {
        var meta = ProtoWriter()
        meta.string(1, "settings")
        meta.bytesField(3, [])  // namespace "" (written by Go)
        meta.bytesField(4, [])  // selfLink ""
        meta.message(11) { w in w.string(1, "app"); w.string(2, "web") }
        if let (number, value) = extraMetaField { meta.string(number, value) }
        var object = ProtoWriter()
        object.bytesField(1, meta.bytes)
        object.message(2) { w in w.string(1, "mode"); w.string(2, "fast") }
        object.message(3) { w in w.string(1, "blob"); w.bytesField(2, [0, 1, 2]) }
        var unknown = ProtoWriter()
        unknown.message(1) { w in w.string(1, "v1"); w.string(2, "ConfigMap") }
        unknown.bytesField(2, object.bytes)
        unknown.bytesField(3, [])
        unknown.string(4, "application/vnd.kubernetes.protobuf")
        return [0x6B, 0x38, 0x73, 0x00] + unknown.bytes
    }

    @Test func aConfigMapIsReadIntoItsJSON() throws {
        let json = try KubernetesProtobuf.json(Self.envelope(), kind: "ConfigMap")
        let map = try ConfigMap(json: json)
        #expect(map.apiVersion == "v1" && map.kind == "ConfigMap" && map.metadata.name == "settings" && map.metadata.namespace.isEmpty)
        #expect(map.metadata.labels == ["app": "web"] && map.data == ["mode": "fast"] && map.binaryData == ["blob": "AAEC"])
    }

    @Test func whatItDoesNotReadIsRefusedWithItsNumber() throws {
        // ObjectMeta field 16 is not read here: set, it fails the body, named.
        #expect(throws: KubernetesProtobuf.Unsupported.self) { try KubernetesProtobuf.json(Self.envelope(extraMetaField: (16, "x")), kind: "ConfigMap") }
        do {
            _ = try KubernetesProtobuf.json(Self.envelope(extraMetaField: (16, "x")), kind: "ConfigMap")
        } catch let error as KubernetesProtobuf.Unsupported {
            #expect(error.description == "ConfigMap.metadata: field 16 of ObjectMeta is not read in Kubernetes' protobuf here: send it as application/json")
        }
        // Empty, it is what Go writes for an unset field: fine.
        #expect(try ConfigMap(json: try KubernetesProtobuf.json(Self.envelope(extraMetaField: (16, "")), kind: "ConfigMap")).metadata.name == "settings")
        #expect(throws: KubernetesProtobuf.Unsupported.self) { try KubernetesProtobuf.json(Self.envelope(), kind: "Secret") }
        #expect(throws: KubernetesProtobuf.Unsupported.self) { try KubernetesProtobuf.json(Array("{}".utf8), kind: "ConfigMap") }
    }

    /// A Deployment whose pods have an init container and a sidecar (PodSpec field 20, Container
    /// field 24), as a Go client writes it.
    @Test func initContainersAndSidecarsAreRead() throws {
        func container(_ name: String, restartPolicy: String? = nil) -> [UInt8] {
            var c = ProtoWriter()
            c.string(1, name)
            c.string(3, "run")
            if let restartPolicy { c.string(24, restartPolicy) }
            return c.bytes
        }
        var podSpec = ProtoWriter()
        podSpec.bytesField(2, container("app"))
        podSpec.bytesField(20, container("setup"))
        podSpec.bytesField(20, container("proxy", restartPolicy: "Always"))
        var template = ProtoWriter()
        template.message(1) { w in w.message(11) { m in m.string(1, "app"); m.string(2, "web") } }
        template.bytesField(2, podSpec.bytes)
        var spec = ProtoWriter()
        spec.message(2) { w in w.message(1) { m in m.string(1, "app"); m.string(2, "web") } }
        spec.bytesField(3, template.bytes)
        var object = ProtoWriter()
        object.message(1) { w in w.string(1, "web") }
        object.bytesField(2, spec.bytes)
        var unknown = ProtoWriter()
        unknown.message(1) { w in w.string(1, "apps/v1"); w.string(2, "Deployment") }
        unknown.bytesField(2, object.bytes)
        let deployment = try Deployment(json: try KubernetesProtobuf.json([0x6B, 0x38, 0x73, 0x00] + unknown.bytes, kind: "Deployment"))
        let pod = deployment.spec.template.spec
        #expect(pod.initContainers.map(\.name) == ["setup", "proxy"] && pod.initContainers.map(\.restartPolicy) == ["", "Always"])
        #expect(pod.containers.map(\.name) == ["app"])
    }
}
