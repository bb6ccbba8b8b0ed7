import API
import Foundation
import Testing
import TestSupport

/// The OpenAPI documents as kubectl and client generators read them.
@Suite("OpenAPI", .watchdog, .serialized)
struct OpenAPITests {
    @Test func documentsCarryKubernetesNamesKindsAndListSemantics() async throws {
        let server = try await ServerHarness()
        let v2 = try await server.request("/openapi/v2", extra: ["-D", "-"])
        #expect(v2.code == 200)
        let body = String(v2.body[v2.body.range(of: "\r\n\r\n")!.upperBound...])
        let document = try JSONParser.parse(body)
        #expect(document["swagger"] == .string("2.0"))
        let definitions = try #require(document["definitions"])
        let pod = try #require(definitions["io.k8s.api.core.v1.Pod"])
        #expect(pod["x-kubernetes-group-version-kind"] == .array([.object([JSONMember("group", .string("")), JSONMember("kind", .string("Pod")), JSONMember("version", .string("v1"))])]))
        let containers = try #require(definitions["io.k8s.api.core.v1.PodSpec"]?["properties"]?["containers"])
        #expect(containers["x-kubernetes-patch-merge-key"] == .string("name") && containers["x-kubernetes-patch-strategy"] == .string("merge"))
        #expect(containers["x-kubernetes-list-type"] == .string("map") && containers["x-kubernetes-list-map-keys"] == .array([.string("name")]))
        #expect(containers["items"]?["$ref"] == .string("#/definitions/io.k8s.api.core.v1.Container"))
        #expect(definitions["io.k8s.api.core.v1.Container"]?["required"] == .array([.string("name")]))
        #expect(definitions["io.k8s.api.apps.v1.DeploymentSpec"]?["required"] == .array([.string("selector"), .string("template")]))
        // Descriptions (what `kubectl explain` prints) for the kinds and the fields users write.
        #expect(definitions["io.k8s.api.apps.v1.Deployment"]?["description"]?.isNonEmptyString == true)
        #expect(definitions["io.k8s.api.apps.v1.DeploymentSpec"]?["properties"]?["replicas"]?["description"] == .string("How many pods to run. Default 1."))
        for name in ["io.k8s.api.core.v1.Container", "io.k8s.api.core.v1.PodSpec", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"] {
            let undescribed = (definitions[name]?["properties"]?.members ?? []).filter { $0.value["description"]?.isNonEmptyString != true }.map(\.key)
            #expect(undescribed.isEmpty, "\(name): \(undescribed)")
        }
        #expect(definitions["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]?["properties"]?["creationTimestamp"]?["$ref"]
                == .string("#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Time"))
        // Cached by its ETag: the same document again is 304.
        let etag = try #require(v2.body.split(separator: "\r\n").first { $0.lowercased().hasPrefix("etag:") }.map { String($0.dropFirst(5)).trimmingCharacters(in: .whitespaces) })
        #expect(try await server.request("/openapi/v2", extra: ["-H", "If-None-Match: \(etag)"]).code == 304)
        // The protobuf form older kubectl asks for (gnostic's Document: swagger is field 1).
        let file = (server.dir.path as NSString).appendingPathComponent("v2.pb")
        let protobuf = try await server.request("GET", "/openapi/v2", accept: "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                                                extra: ["-D", "-"], outputFile: file)
        #expect(protobuf.code == 200 && protobuf.body.contains("content-type: application/com.github.proto-openapi.spec.v2.v1.0+protobuf"), "\(protobuf.body)")
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
        #expect(Array(bytes.prefix(5)) == [0x0A, 3] + Array("2.0".utf8))
        #expect(bytes.count > 10_000)

        // v3: an index of group-versions, each document at a URL with its hash.
        let index = try #require(try await server.request("/openapi/v3").json)
        let apps = try #require(index["paths"]?["apis/apps/v1"]?["serverRelativeURL"].flatMap { value -> String? in if case .string(let url) = value { url } else { nil } })
        #expect(apps.hasPrefix("/openapi/v3/apis/apps/v1?hash="))
        let v3 = try await server.request(apps, extra: ["-D", "-"])
        #expect(v3.code == 200 && v3.body.contains("cache-control: public, immutable"), "\(v3.body.prefix(500))")
        let appsDocument = try JSONParser.parse(String(v3.body[v3.body.range(of: "\r\n\r\n")!.upperBound...]))
        #expect(appsDocument["openapi"] == .string("3.0.0"))
        #expect(appsDocument["components"]?["schemas"]?["io.k8s.api.apps.v1.Deployment"] != nil)
        let patch = try #require(appsDocument["paths"]?["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]?["patch"])
        #expect(patch["x-kubernetes-group-version-kind"]?["kind"] == .string("Deployment"))
        #expect(patch["parameters"]?.elements?.contains { $0["name"] == .string("fieldValidation") } == true)
        #expect(try await server.request("/openapi/v3/apis/widgets.example.com/v1").code == 404)
        // Not for strangers.
        #expect(try await server.request("/openapi/v2", authenticated: false).code == 401)
        await server.stop()
    }
}

/// Discovery as kubectl ≥ 1.27 asks for it: one aggregated document for /api and one for /apis.
@Suite("Aggregated discovery", .watchdog)
struct AggregatedDiscoveryTests {
    @Test func apiAndApisAnswerAggregatedDocumentsWhenAsked() async throws {
        let server = try await ServerHarness()
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        let core = try await server.request("/api", accept: accept, extra: ["-D", "-"])
        #expect(core.code == 200 && core.body.contains("content-type: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"), "\(core.body.prefix(400))")
        let document = try JSONParser.parse(String(core.body[core.body.range(of: "\r\n\r\n")!.upperBound...]))
        #expect(document["apiVersion"] == .string("apidiscovery.k8s.io/v2") && document["kind"] == .string("APIGroupDiscoveryList"))
        let resources = try #require(document["items"]?.elements?.first?["versions"]?.elements?.first?["resources"]?.elements)
        let pods = try #require(resources.first { $0["resource"] == .string("pods") })
        #expect(pods["scope"] == .string("Namespaced") && pods["categories"] == .array([.string("all")]) && pods["shortNames"] == .array([.string("po")]))
        #expect(pods["subresources"]?.elements?.contains { $0["subresource"] == .string("status") } == true)
        let apis = try #require(try await server.request("/apis", accept: "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList").json)
        #expect(apis["apiVersion"] == .string("apidiscovery.k8s.io/v2beta1"))
        let apps = try #require(apis["items"]?.elements?.first { $0["metadata"]?["name"] == .string("apps") })
        let deployments = try #require(apps["versions"]?.elements?.first?["resources"]?.elements?.first { $0["resource"] == .string("deployments") })
        #expect(deployments["subresources"]?.elements?.contains {
            $0["subresource"] == .string("scale") && $0["responseKind"]?["group"] == .string("autoscaling") && $0["responseKind"]?["kind"] == .string("Scale")
        } == true)
        // Without asking: the legacy lists.
        #expect(try await server.request("/apis").json?["kind"] == .string("APIGroupList"))
        await server.stop()
    }
}

/// `kubectl get -w`: a watch asked for as a Table gets one-row Tables, columns in the first.
@Suite("Table watches", .watchdog)
struct TableWatchTests {
    @Test func aWatchAskedForAsATableSendsRows() async throws {
        let server = try await ServerHarness()
        let created = try Pod(jsonString: try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("first")).body)
        #expect(try await server.request("POST", "/api/v1/namespaces/default/pods", body: podJSON("second")).code == 201)
        // From just before the first: both creates come as events, whatever the timing.
        let since = (Int(created.metadata.resourceVersion) ?? 1) - 1
        let watched = try await server.request("/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1&resourceVersion=\(since)",
                                               accept: "application/json;as=Table;v=v1;g=meta.k8s.io")
        let lines = try watched.body.split(separator: "\n").map { try JSONParser.parse(String($0)) }
        #expect(lines.map { $0["type"] } == [.string("ADDED"), .string("ADDED")], "\(lines)")
        let first = try #require(lines.first?["object"])
        #expect(first["kind"] == .string("Table") && first["columnDefinitions"]?.elements?.first?["name"] == .string("Name"))
        #expect(first["rows"]?.elements?.first?["cells"]?.elements?.first == .string("first"))
        #expect(first["rows"]?.elements?.first?["object"]?["kind"] == .string("PartialObjectMetadata"))
        let second = try #require(lines.last?["object"])
        #expect(second["columnDefinitions"] == .array([]) && second["rows"]?.elements?.first?["cells"]?.elements?.first == .string("second"))
        await server.stop()
    }
}

extension JSONValue {
    var isNonEmptyString: Bool { if case .string(let text) = self { !text.isEmpty } else { false } }
}
