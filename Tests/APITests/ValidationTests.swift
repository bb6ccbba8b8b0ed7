import Testing
import TestSupport
@testable import API

@Suite("Validation and defaulting", .watchdog)
struct ValidationTests {
    func pod(_ json: String) throws -> Pod {
        var pod = try Pod(jsonString: json)
        pod.applyDefaults()
        return pod
    }

    /// Names, namespaces and label keys by apimachinery's rules (IsDNS1123Subdomain,
    /// IsDNS1123Label, IsQualifiedName).
    @Test func namesAndKeysFollowKubernetesSyntax() {
        let label63 = String(repeating: "a", count: 63)
        for good in ["a", "0abc", "a.b", "a-b.c-d", "web-7f9c", "\(label63).\(label63)", String(repeating: "a.", count: 126) + "a"] {
            #expect(NameSyntax.subdomainProblem(good) == nil, "\(good)")
        }
        for bad in ["", "-a", "a-", "a..b", ".a", "a.", "A", "a_b", "a.-b", "a-.b", "\(label63)a.b", String(repeating: "a.", count: 127) + "a"] {
            #expect(NameSyntax.subdomainProblem(bad) != nil, "\(bad)")
        }
        #expect(NameSyntax.labelProblem("kube-system") == nil && NameSyntax.labelProblem(label63) == nil)
        for bad in ["a.b", "-a", "a-", "\(label63)a", "Default"] { #expect(NameSyntax.labelProblem(bad) != nil, "\(bad)") }
        for good in ["app", "App_1.x", "example.com/app", "bench/sent", "a.b-c/\(label63)", "kubernetes.io/hostname"] {
            #expect(LabelSyntax.keyProblem(good) == nil, "\(good)")
        }
        let bad: [(String, String)] = [("a/b/c", "qualified name"), ("/x", "prefix part must be non-empty"), ("Example.com/x", "prefix part a lowercase"),
                                       ("x/", "name part must be non-empty"), ("a/-b", "name part must consist"), ("\(label63)b", "no more than 63"),
                                       ("-a.com/b", "prefix part a lowercase")]
        for (key, problem) in bad {
            #expect(LabelSyntax.keyProblem(key)?.contains(problem) == true, "\(key): \(LabelSyntax.keyProblem(key) ?? "accepted")")
        }
    }

    @Test func defaultsAreKubernetesDefaults() throws {
        let pod = try pod(#"{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","command":["x"],"ports":[{"containerPort":80}],"livenessProbe":{"httpGet":{"port":80}}}],"tolerations":[{"key":"k","effect":"NoSchedule"}]}}"#)
        #expect(pod.apiVersion == "v1" && pod.kind == "Pod")
        #expect(pod.metadata.namespace == "default")
        #expect(pod.spec.restartPolicy == "Always")
        #expect(pod.spec.terminationGracePeriodSeconds == 30)
        #expect(pod.spec.containers[0].ports[0].protocol == "TCP")
        let probe = pod.spec.containers[0].livenessProbe
        #expect(probe.periodSeconds == 10 && probe.timeoutSeconds == 1 && probe.failureThreshold == 3 && probe.successThreshold == 1)
        #expect(probe.httpGet.path == "/" && probe.httpGet.scheme == "HTTP")
        #expect(pod.spec.tolerations[0].operator == "Equal")
        #expect(pod.validate().isEmpty, "\(pod.validate())")

        var deployment = try Deployment(jsonString: #"{"metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","command":["x"]}]}}}}"#)
        deployment.applyDefaults()
        #expect(deployment.spec.replicas == 1)
        #expect(deployment.spec.strategy.type == "RollingUpdate")
        #expect(deployment.spec.strategy.rollingUpdate.maxSurge.displayString == "25%")
        #expect(deployment.spec.revisionHistoryLimit == 10)
        #expect(deployment.validate().isEmpty, "\(deployment.validate())")
    }

    @Test func errorsNameTheirFieldPath() throws {
        let bad = try pod(#"""
        {"metadata":{"name":"Bad_Name","labels":{"-x":"ok"}},
         "spec":{"restartPolicy":"Sometimes","containers":[
            {"name":"web","command":["a"],"resources":{"limits":{"cpu":"1x"}}},
            {"name":"web","command":["b"],"ports":[{"containerPort":70000}]},
            {"name":"nocmd"}]}}
        """#)
        let messages = bad.validate().map(\.description)
        #expect(messages.contains(#"spec.containers[1].name: Duplicate value: "web""#))
        #expect(messages.contains(where: { $0.hasPrefix(#"metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#) }))
        #expect(messages.contains(where: { $0.hasPrefix(#"metadata.labels: Invalid value: "-x""#) }))
        #expect(messages.contains(#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#))
        #expect(messages.contains(where: { $0.hasPrefix(#"spec.containers[0].resources.limits[cpu]: Invalid value: "1x""#) }))
        #expect(messages.contains(#"spec.containers[1].ports[0].containerPort: Invalid value: "70000": must be between 1 and 65535, inclusive"#))
        #expect(messages.contains(where: { $0.hasPrefix("spec.containers[2].command: Required value") }))
        #expect(messages.count == 7, "\(messages)")
        #expect(throws: ValidationError.self) { _ = try bad.validated() }
    }

    @Test func workloadSelectorMustMatchTemplate() throws {
        var rs = try ReplicaSet(jsonString: #"{"metadata":{"name":"r"},"spec":{"selector":{"matchLabels":{"app":"a"}},"template":{"metadata":{"labels":{"app":"b"}},"spec":{"containers":[{"name":"c","command":["x"]}]}}}}"#)
        rs.applyDefaults()
        #expect(rs.validate().map(\.description) == [#"spec.template.metadata.labels: Invalid value: "app=b": `selector` does not match template `labels`"#])
    }

    @Test func quantities() throws {
        #expect(try Quantity(parsing: "500m").milliValue == 500)
        #expect(try Quantity(parsing: "2").milliValue == 2000)
        #expect(try Quantity(parsing: "128Mi").integerValue == 134_217_728)
        #expect(try Quantity(parsing: "1.5G").integerValue == 1_500_000_000)
        #expect(try Quantity(parsing: "1e3").integerValue == 1000)
        #expect(try Quantity(parsing: "0.1").milliValue == 100)
        #expect(try Quantity(parsing: "1n").milliValue == 1, "rounds up, as Kubernetes does")
        for bad in ["", "m", "1.2.3", "12Q", "abc", "1 Gi", "--1"] {
            #expect(throws: Quantity.ParseError.self, "\(bad)") { _ = try Quantity(parsing: bad) }
        }
    }

    @Test func manifestsFromYAML() throws {
        let yaml = """
        apiVersion: v1
        kind: Pod
        metadata:
          name: one
        spec:
          containers:
            - name: c
              command: [sleep, "1"]
              resources:
                limits: {cpu: 2, memory: 64Mi}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: two}
        spec:
          selector: {matchLabels: {a: b}}
          template:
            metadata: {labels: {a: b}}
            spec: {containers: [{name: c, command: [x]}]}
        """
        let objects = try Manifests.decode(yaml, source: "test.yaml")
        #expect(objects.count == 2)
        let pod = try #require(objects[0].object as? Pod)
        #expect(pod.spec.containers[0].resources.limits["cpu"] == "2", "YAML numbers are accepted as quantities")
        #expect(objects[1].object is Deployment)
        #expect(objects[1].line == 12)
    }

    @Test func manifestErrorsNameFileAndLine() {
        let unknown = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, command: [x]}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec:\n  containers: [{name: c, command: [x], imagge: y}]\n"
        #expect {
            _ = try Manifests.decode(unknown, source: "pods.yaml")
        } throws: { error in
            "\(error)" == #"pods.yaml:6: unknown field "spec.containers[0].imagge""#
        }
        #expect {
            _ = try Manifests.decode("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [a\n", source: "bad.yaml")
        } throws: { error in
            (error as? ManifestError)?.line != nil && "\(error)".hasPrefix("bad.yaml:")
        }
        #expect {
            _ = try Manifests.decode("apiVersion: v1\nkind: Widget\nmetadata: {name: a}\n", source: "w.yaml")
        } throws: { error in
            "\(error)".contains(#"no kind "Widget" is registered for version "v1""#) && "\(error)".contains("apps/v1/Deployment")
        }
    }

    @Test func exampleManifestsAreValid() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../manifests").standardized.path
        let objects = try Manifests.load(path: dir)
        #expect(objects.count >= 2)
    }

    @Test func kindLookupAcceptsEveryName() {
        for name in ["po", "pod", "pods", "Pod", "deploy", "deployments", "no", "rs", "ns", "lease", "ev"] {
            #expect(Kinds.lookup(name) != nil, "\(name)")
        }
        #expect(Kinds.lookup("widgets") == nil)
    }
}

import Foundation

/// Pod volumes and mounts: Kubernetes' JSON shape (an empty `emptyDir: {}` kept, `downwardAPI`,
/// defaults shown as `kubectl get -o yaml` shows them) and its messages for bad ones.
@Suite("Pod volumes in the API", .watchdog)
struct VolumeAPITests {
    let manifest = #"""
        {"metadata":{"name":"v"},"spec":{"containers":[{"name":"c","image":"busybox","volumeMounts":[{"name":"scratch","mountPath":"/s"},{"name":"cfg","mountPath":"/c","readOnly":true,"subPath":"x"}]}],
         "volumes":[{"name":"scratch","emptyDir":{}},{"name":"cfg","configMap":{"name":"app","items":[{"key":"k","path":"p/k","mode":384}]}},
                    {"name":"info","downwardAPI":{"items":[{"path":"labels","fieldRef":{"fieldPath":"metadata.labels"}}]}},
                    {"name":"host","hostPath":{"path":"/var/log"}},{"name":"ram","emptyDir":{"medium":"Memory","sizeLimit":"64Mi"}},
                    {"name":"all","projected":{"sources":[{"secret":{"name":"s"}},{"configMap":{"name":"app"}}]}}]}}
        """#

    @Test func volumesKeepKubernetesShapeThroughJSONAndProtobuf() throws {
        var pod = try Pod(jsonString: manifest)
        pod.applyDefaults()
        #expect(pod.validate().isEmpty, "\(pod.validate())")
        let json = pod.jsonString()
        for part in [#""emptyDir":{}"#, #""downwardAPI":{"items":[{"path":"labels","fieldRef":{"apiVersion":"v1","fieldPath":"metadata.labels"}}],"defaultMode":420}"#,
                     #""hostPath":{"path":"/var/log","type":""}"#, #""sizeLimit":"64Mi""#, #""mode":384"#, #""defaultMode":420"#,
                     #""volumeMounts":[{"name":"scratch","mountPath":"/s"},{"name":"cfg","readOnly":true,"mountPath":"/c","subPath":"x"}]"#] {
            #expect(json.contains(part), "\(part) in \(json)")
        }
        let reread = try Pod(jsonString: json)
        #expect(reread.spec.volumes == pod.spec.volumes && reread.spec.containers[0].volumeMounts == pod.spec.containers[0].volumeMounts, "\(reread.jsonString())\n\(json)")
        let back = try Pod(protobuf: pod.protoBytes())
        #expect(back.spec == pod.spec && back.spec.volumes[0].hasEmptyDir, "an empty emptyDir survives the store's encoding")
    }

    @Test func badVolumesAreRefusedInKubernetesWords() throws {
        func problems(_ change: (inout Pod) -> Void) throws -> [String] {
            var pod = try Pod(jsonString: manifest)
            change(&pod)
            pod.applyDefaults()
            return pod.validate().map(\.description)
        }
        #expect(try problems { $0.spec.containers[0].volumeMounts[0].name = "nope" } == [#"spec.containers[0].volumeMounts[0].name: Not found: "nope""#])
        #expect(try problems { $0.spec.containers[0].volumeMounts[1].mountPath = "/s" } == [#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/s": must be unique"#])
        #expect(try problems { $0.spec.volumes[1].name = "scratch" }.contains(#"spec.volumes[1].name: Duplicate value: "scratch""#))
        let twoTypes = try problems { $0.spec.volumes[0].hostPath.path = "/tmp" }
        #expect(twoTypes == ["spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"], "\(twoTypes)")
        #expect(try problems { $0.spec.volumes.append(Volume()); $0.spec.volumes[6].name = "none" } == ["spec.volumes[6]: Required value: must specify a volume type"])
        #expect(try problems { $0.spec.volumes[1].configMap.items[0].path = "../etc" } == [#"spec.volumes[1].configMap.items[0].path: Invalid value: "../etc": must not contain '..'"#])
        #expect(try problems { $0.spec.volumes[1].configMap.items[0].mode = 0o1000 } == [#"spec.volumes[1].configMap.items[0].mode: Invalid value: "512": must be a number between 0 and 0777 (octal), both inclusive"#])
        #expect(try problems { $0.spec.volumes[2].downwardApi.items[0].fieldRef.fieldPath = "spec.nodeName" }
                == [#"spec.volumes[2].downwardAPI.items[0].fieldRef.fieldPath: Unsupported value: "spec.nodeName": supported values: "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid""#])
        #expect(try problems { $0.spec.volumes[3].hostPath.type = "Dir" }.first?.hasPrefix(#"spec.volumes[3].hostPath.type: Unsupported value: "Dir""#) == true)
        #expect(try problems { $0.spec.volumes[1].configMap.name = "" } == ["spec.volumes[1].configMap.name: Required value"])
        #expect(try problems { $0.spec.containers[0].volumeMounts[1].subPath = "/abs" } == [#"spec.containers[0].volumeMounts[1].subPath: Invalid value: "/abs": must be a relative path"#])
        var token = VolumeProjection()
        token.serviceAccountToken.path = "token"
        #expect(try problems { $0.spec.volumes[5].projected.sources.append(token) }.first?.hasPrefix("spec.volumes[5].projected.sources[2].serviceAccountToken: Forbidden: service account token projections are not supported") == true)
    }

    /// A custom resource's formats and keyed lists, in Kubernetes' words.
    @Test func customObjectFormatsAndKeyedListsAreChecked() throws {
        let schema = try JSONParser.parse(#"""
            {"type":"object","properties":{"spec":{"type":"object","properties":{
              "at":{"type":"string","format":"date-time"},"id":{"type":"string","format":"uuid"},
              "address":{"type":"string","format":"ipv4"},"range":{"type":"string","format":"cidr"},
              "free":{"type":"string","format":"no-such-format"},
              "template":{"type":"object","x-kubernetes-embedded-resource":true,"x-kubernetes-preserve-unknown-fields":true},
              "routes":{"type":"array","x-kubernetes-list-type":"map","x-kubernetes-list-map-keys":["path"],
                        "items":{"type":"object","properties":{"path":{"type":"string"}}}}}}}}
            """#)
        let good = try JSONParser.parse(#"""
            {"spec":{"at":"2026-12-06T20:00:00Z","id":"7d1c5a2e-3b4f-4c5d-8e9f-0a1b2c3d4e5f","address":"10.0.0.1","range":"fd00::/64",
                     "free":"anything","routes":[{"path":"/a"},{"path":"/b"}],"template":{"apiVersion":"v1","kind":"Pod","spec":{}}}}
            """#)
        #expect(CustomResourceSchema.validateObject(good, schema: schema).isEmpty)
        let bad = try JSONParser.parse(#"""
            {"spec":{"at":"yesterday","id":"not-a-uuid","address":"10.0.0.300","range":"10.0.0.0/40","routes":[{"path":"/a"},{"path":"/a"}],
                     "template":{"kind":"Pod"}}}
            """#)
        let messages = CustomResourceSchema.validateObject(bad, schema: schema).map(\.description)
        #expect(messages == [
            #"spec.at: Invalid value: "yesterday": spec.at in body must be of type date-time: "yesterday""#,
            #"spec.id: Invalid value: "not-a-uuid": spec.id in body must be of type uuid: "not-a-uuid""#,
            #"spec.address: Invalid value: "10.0.0.300": spec.address in body must be of type ipv4: "10.0.0.300""#,
            #"spec.range: Invalid value: "10.0.0.0/40": spec.range in body must be of type cidr: "10.0.0.0/40""#,
            #"spec.routes[1]: Duplicate value: map[string]interface {}{"path":"/a"}"#,
            "spec.template.apiVersion: Required value: must not be empty",
        ], "\(messages)")
    }
}
