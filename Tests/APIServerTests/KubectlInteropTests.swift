import API
import Foundation
import Testing
import TestSupport

/// The real kubectl, oldest and newest installed, with its default flags (client-side validation
/// against our OpenAPI, or the server's when kubectl sees `fieldValidation` in it), through the
/// verbs that change things: create, apply and re-apply, diff, label, annotate, the three patch
/// types, server-side apply with a conflict and --force-conflicts, scale, get all, get -w, api-resources, explain, create configmap|secret|serviceaccount|deployment. (Rollouts, set image/env/resources, delete -l and wait are in `KubectlMatrixTests`, which runs `scripts/kubectl-matrix.sh` with a simulated node.)
@Suite("kubectl interop", .watchdog, .serialized)
struct KubectlInteropTests {
    static let deployment = """
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
    spec:
      replicas: REPLICAS
      selector:
        matchLabels: {app: web}
      template:
        metadata:
          labels: {app: web}
        spec:
          containers:
          - name: web
            image: busybox
            command: ["sleep", "1000"]
            env:
            - {name: MODE, value: "MODEVALUE"}
          - name: side
            image: busybox
            command: ["sleep", "1000"]
    """

    @Test func changingVerbsWithDefaultFlags() async throws {
        let kubectls = Tools.kubectlRange()
        guard !kubectls.isEmpty else { return }
        let server = try await ServerHarness()
        func manifest(_ replicas: Int, mode: String = "a", extra: String = "") throws -> String {
            let path = (server.dir.path as NSString).appendingPathComponent("web-\(replicas)-\(mode).yaml")
            var text = Self.deployment.replacingOccurrences(of: "REPLICAS", with: "\(replicas)").replacingOccurrences(of: "MODEVALUE", with: mode)
            if !extra.isEmpty { text = text.replacingOccurrences(of: "  replicas:", with: "  \(extra)\n  replicas:") }
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        for (version, kubectl) in kubectls {
            func run(_ arguments: String...) async throws -> Tools.Output {
                try await Tools.runDetached(kubectl, ["--kubeconfig", server.kubeconfig] + arguments)
            }
            func expect(_ output: Tools.Output, status: Int32 = 0, contains text: String, _ what: String,
                        sourceLocation: SourceLocation = #_sourceLocation) {
                #expect(output.status == status && output.output.contains(text), "kubectl \(version) \(what): \(output.output)", sourceLocation: sourceLocation)
            }
            // A field the kind does not have is named, whoever validates it.
            let bad = try await run("create", "-f", try manifest(2, extra: "replicaz: 2"))
            expect(bad, status: 1, contains: #"unknown field "spec.replicaz""#, "create with an unknown field")
            expect(try await run("create", "-f", try manifest(2)), contains: "deployment.apps/web created", "create")
            expect(try await run("apply", "-f", try manifest(3, mode: "b")), contains: "deployment.apps/web configured", "apply of a change")
            expect(try await run("apply", "-f", try manifest(3, mode: "b")), contains: "deployment.apps/web unchanged", "re-apply")
            let applied = try Deployment(jsonString: try await run("get", "deployment", "web", "-o", "json").output)
            #expect(applied.spec.replicas == 3 && applied.spec.template.spec.containers.map(\.name) == ["web", "side"]
                    && applied.spec.template.spec.containers[0].env.map(\.value) == ["b"], "kubectl \(version)")
            #expect(applied.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]?.contains(#""replicas":3"#) == true)
            let diff = try await run("diff", "-f", try manifest(4, mode: "b"))
            expect(diff, status: 1, contains: "+  replicas: 4", "diff")
            expect(try await run("label", "deployment", "web", "tier=front"), contains: "deployment.apps/web labeled", "label")
            expect(try await run("annotate", "deployment", "web", "note=hello"), contains: "deployment.apps/web annotate", "annotate")
            expect(try await run("patch", "deployment", "web", "-p", #"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox:2"}]}}}}"#),
                   contains: "deployment.apps/web patched", "strategic patch")
            expect(try await run("patch", "deployment", "web", "--type=merge", "-p", #"{"metadata":{"labels":{"tier":null}}}"#),
                   contains: "deployment.apps/web patched", "merge patch")
            expect(try await run("patch", "deployment", "web", "--type=json", "-p", #"[{"op":"replace","path":"/spec/replicas","value":5}]"#),
                   contains: "deployment.apps/web patched", "JSON patch")
            let patched = try Deployment(jsonString: try await run("get", "deployment", "web", "-o", "json").output)
            #expect(patched.spec.replicas == 5 && patched.metadata.labels["tier"] == nil && patched.metadata.annotations["note"] == "hello"
                    && patched.spec.template.spec.containers.map(\.image) == ["busybox", "busybox:2"], "kubectl \(version): \(patched.jsonString())")
            // scale, through the /scale subresource (a precondition on the current count refused).
            expect(try await run("scale", "deployment", "web", "--replicas=2"), contains: "deployment.apps/web scaled", "scale")
            expect(try await run("scale", "deployment", "web", "--replicas=1", "--current-replicas=3"), status: 1,
                   contains: "Expected replicas to be 3, was 2", "scale with a stale precondition")
            #expect(try Deployment(jsonString: try await run("get", "deployment", "web", "-o", "json").output).spec.replicas == 2)
            expect(try await run("get", "all"), contains: "deployment.apps/web", "get all")
            // get -w prints rows (the server's Table), and ends with its request timeout.
            expect(try await run("get", "deployments", "-w", "--request-timeout=3s"), contains: "NAME   READY   UP-TO-DATE", "get -w")
            expect(try await run("api-resources"), contains: "deployments                  deploy       apps/v1", "api-resources")
            expect(try await run("explain", "deployment.spec.replicas"), contains: "FIELD: replicas <integer>", "explain")
            let containers = try await run("explain", "pods.spec.containers")
            expect(containers, contains: "name\t<string> -required-", "explain of a list")
            expect(try await run("delete", "deployment", "web"), contains: #"deployment.apps "web" deleted"#, "delete")
            // Server-side apply: created, a conflict with the manager that created the field,
            // taken over with --force-conflicts.
            expect(try await run("apply", "--server-side", "-f", try manifest(2)), contains: "deployment.apps/web serverside-applied", "apply --server-side")
            let conflict = try await run("apply", "--server-side", "--field-manager=other", "-f", try manifest(3))
            expect(conflict, status: 1, contains: #"Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas"#, "a conflict")
            expect(try await run("apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", try manifest(3)),
                   contains: "deployment.apps/web serverside-applied", "--force-conflicts")
            let owned = try Deployment(jsonString: try await run("get", "deployment", "web", "-o", "json", "--show-managed-fields").output)
            #expect(owned.spec.replicas == 3 && owned.metadata.managedFields.contains { $0.manager == "other" && $0.operation == "Apply" && $0.fieldsV1.contains("f:replicas") },
                    "kubectl \(version): \(owned.metadata.managedFields.map(\.manager))")
            expect(try await run("delete", "deployment", "web"), contains: "deleted", "delete")
            // The kinds every manifest uses, made by kubectl's own generators (in Kubernetes'
            // protobuf from 1.32 on).
            let file = (server.dir.path as NSString).appendingPathComponent("app.env")
            try "x=1\n".write(toFile: file, atomically: true, encoding: .utf8)
            expect(try await run("create", "configmap", "settings", "--from-literal=mode=fast", "--from-file=\(file)"),
                   contains: "configmap/settings created", "create configmap")
            expect(try await run("create", "secret", "generic", "db", "--from-literal=password=hunter2"), contains: "secret/db created", "create secret")
            expect(try await run("create", "serviceaccount", "robot"), contains: "serviceaccount/robot created", "create serviceaccount")
            expect(try await run("create", "deployment", "made", "--image=busybox", "--replicas=2"), contains: "deployment.apps/made created", "create deployment")
            let map = try ConfigMap(jsonString: try await run("get", "configmap", "settings", "-o", "json").output)
            #expect(map.data == ["mode": "fast", "app.env": "x=1\n"], "kubectl \(version)")
            let secret = try Secret(jsonString: try await run("get", "secret", "db", "-o", "json").output)
            #expect(secret.data["password"] == Data("hunter2".utf8).base64EncodedString() && secret.type == "Opaque", "kubectl \(version)")
            let made = try Deployment(jsonString: try await run("get", "deployment", "made", "-o", "json").output)
            #expect(made.spec.replicas == 2 && made.spec.template.spec.containers.map(\.image) == ["busybox"], "kubectl \(version)")
            expect(try await run("auth", "can-i", "create", "secrets"), contains: "yes", "auth can-i")
            // The columns kubectl shows for them.
            expect(try await run("get", "configmap", "settings"), contains: "NAME       DATA   AGE\nsettings   2", "configmap columns")
            expect(try await run("get", "secret", "db"), contains: "NAME   TYPE     DATA   AGE\ndb     Opaque   1", "secret columns")
            expect(try await run("delete", "configmap/settings", "secret/db", "serviceaccount/robot", "deployment/made"),
                   contains: #"deployment.apps "made" deleted"#, "delete of several kinds")
        }
        await server.stop()
    }
}

/// The README's table, row by row: `scripts/kubectl-matrix.sh` drives each verb (rollouts, set
/// image, delete -l and wait among them) against a `cox server` with its controllers.
@Suite("kubectl verb table", .watchdog, .serialized)
struct KubectlMatrixTests {
    @Test func everyVerbOfTheTableWorksOnTheOldestAndNewestKubectl() async throws {
        let kubectls = Tools.kubectlRange()
        guard !kubectls.isEmpty else { return }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/kubectl-matrix.sh").path
        for (version, _) in kubectls {
            let row = try await Tools.runDetached("/bin/bash", [script, try coxBinary(), version, String(try freePort())], timeout: 180)
            #expect(row.status == 0 && row.output.hasPrefix("| \(version) |") && row.output.contains("✓") && !row.output.contains("✗"),
                    "kubectl \(version): \(row.output)")
        }
    }
}
