import API
import Foundation
import Testing
import TestSupport

/// The `cox` binary's changing verbs, as a user types them, against a real server: server-side
/// apply with a conflict and --force-conflicts, diff, label, annotate, the three patch types (and
/// a subresource), and edit through $EDITOR.
@Suite("cox change verbs", .watchdog)
struct CoxVerbsTests {
    static let deployment = """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: REPLICAS
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec: {containers: [{name: web, image: busybox, command: [sleep, "1000"]}]}
        """

    @Test func serverSideApplyDiffLabelAnnotatePatchAndEdit() async throws {
        let server = try await ServerHarness()
        let binary = try coxBinary()
        func manifest(_ replicas: Int) throws -> String {
            let path = (server.dir.path as NSString).appendingPathComponent("web-\(replicas).yaml")
            try Self.deployment.replacingOccurrences(of: "REPLICAS", with: "\(replicas)").write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        func cox(_ arguments: String..., editor: String? = nil) async throws -> Tools.Output {
            let command = [arguments[0]] + arguments.dropFirst() + ["--kubeconfig", server.kubeconfig]
            if let editor { return try await Tools.runDetached("/usr/bin/env", ["EDITOR=\(editor)", "KUBE_EDITOR=", binary] + command) }
            return try await Tools.runDetached(binary, command)
        }
        func stored() async throws -> Deployment {
            try Deployment(jsonString: try await server.request("/apis/apps/v1/namespaces/default/deployments/web").body)
        }
        func expect(_ output: Tools.Output, status: Int32 = 0, _ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(output.status == status && output.output.contains(text), "\(output.output)", sourceLocation: sourceLocation)
        }

        // Server-side apply: a second manager changing a field the first set is a conflict naming both.
        expect(try await cox("apply", "--server-side", "-f", try manifest(2)), "deployment/web serverside-applied")
        let conflict = try await cox("apply", "--server-side", "--field-manager", "other", "-f", try manifest(3))
        expect(conflict, status: 1, #"conflict with "cox""#)
        let kept = try await stored()
        #expect(conflict.output.contains(".spec.replicas") && kept.spec.replicas == 2)
        expect(try await cox("apply", "--server-side", "--field-manager", "other", "--force-conflicts", "-f", try manifest(3)), "serverside-applied")
        let owners = try await stored().metadata.managedFields
        #expect(owners.first { $0.manager == "other" }?.fieldsV1.contains("f:replicas") == true, "\(owners)")
        #expect(owners.first { $0.manager == "cox" }?.fieldsV1.contains("f:replicas") == false, "\(owners)")

        // Diff: nothing for what is there, the change (and only as a preview) for a new manifest.
        let same = try await cox("diff", "-f", try manifest(3))
        #expect(same.status == 0 && same.output.isEmpty, "\(same.output)")
        let changed = try await cox("diff", "-f", try manifest(4))
        expect(changed, status: 1, "-  replicas: 3\n+  replicas: 4")
        #expect(try await stored().spec.replicas == 3, "diff changes nothing")

        // Labels and annotations: set, refuse to overwrite without --overwrite, remove.
        expect(try await cox("label", "deployment", "web", "tier=front"), "deployment/web labeled")
        expect(try await cox("label", "deploy/web", "tier=back"), status: 1, "'tier' already has a value (front), and --overwrite is false")
        expect(try await cox("label", "deploy/web", "tier=back", "--overwrite"), "labeled")
        #expect(try await stored().metadata.labels == ["tier": "back"])
        expect(try await cox("annotate", "deploy/web", "note=hello"), "deployment/web annotated")
        expect(try await cox("label", "deploy/web", "tier-"), "labeled")
        let labelled = try await stored()
        #expect(labelled.metadata.labels.isEmpty && labelled.metadata.annotations["note"] == "hello")

        // Patches: strategic (YAML accepted), merge, JSON (a failed test names the path), a subresource.
        expect(try await cox("patch", "deploy", "web", "-p", "spec: {template: {spec: {containers: [{name: side, image: busybox}]}}}"), "deployment/web patched")
        #expect(try await stored().spec.template.spec.containers.map(\.name) == ["web", "side"])
        expect(try await cox("patch", "deploy", "web", "--type", "merge", "-p", #"{"spec":{"replicas":5}}"#), "deployment/web patched")
        expect(try await cox("patch", "deploy", "web", "--type", "merge", "-p", #"{"spec":{"replicas":5}}"#), "deployment/web patched (no change)")
        expect(try await cox("patch", "deploy", "web", "--type", "json", "-p", #"[{"op":"test","path":"/spec/replicas","value":6}]"#),
               status: 1, "test of /spec/replicas failed")
        expect(try await cox("patch", "deploy", "web", "--subresource", "scale", "--type", "merge", "-p", #"{"spec":{"replicas":6}}"#), "patched")
        #expect(try await stored().spec.replicas == 6)

        // Edit: the saved file is written back; an unchanged one is nothing; one naming another object is refused and kept.
        expect(try await cox("edit", "deploy/web", editor: "sed -i s/replicas:\\ 6/replicas:\\ 7/"), "deployment/web edited")
        #expect(try await stored().spec.replicas == 7)
        expect(try await cox("edit", "deploy/web", editor: "true"), "Edit cancelled, no changes made.")
        let renamed = try await cox("edit", "deploy/web", editor: "sed -i s/name:\\ web$/name:\\ other/")
        expect(renamed, status: 1, "A copy of your changes has been stored to")
        #expect(renamed.output.contains("cannot change"), "\(renamed.output)")
        if let range = renamed.output.range(of: #"/[^"]*cox-edit-[^"]*\.yaml"#, options: .regularExpression) {
            try? FileManager.default.removeItem(atPath: String(renamed.output[range]))
        }
        await server.stop()
    }
}
