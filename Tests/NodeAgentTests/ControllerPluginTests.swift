import API
import Foundation
import Testing
import TestSupport

/// Controllers in any language: a small operator written with the official Python client
/// watches a custom resource's objects, creates Pods owned by them, writes their status — and
/// deleting an owner garbage-collects its Pods (the garbage collector reads owners of custom
/// kinds through discovery).
@Suite("Controller plugins", .watchdog, .serialized)
struct ControllerPluginTests {
    static let definition = """
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: greetings.example.cox.io}
        spec:
          group: example.cox.io
          scope: Namespaced
          names: {plural: greetings, kind: Greeting}
          versions:
          - name: v1
            served: true
            storage: true
            subresources: {status: {}}
            schema:
              openAPIV3Schema:
                type: object
                properties:
                  spec: {type: object, properties: {replicas: {type: integer, minimum: 0, default: 1}}}
                  status: {type: object, properties: {pods: {type: integer}}}
        """

    /// The operator: list+watch Greetings (again after each 5 s watch), make `replicas` Pods
    /// named NAME-i owned by the Greeting, remove the extra ones, report the count in status.
    static let operatorScript = """
        import sys, time
        from kubernetes import client, config, watch
        config.load_kube_config(sys.argv[1])
        core, custom = client.CoreV1Api(), client.CustomObjectsApi()
        G, V, P = "example.cox.io", "v1", "greetings"
        def reconcile(obj):
            meta = obj["metadata"]
            name, ns = meta["name"], meta["namespace"]
            want = obj.get("spec", {}).get("replicas", 1)
            owner = client.V1OwnerReference(api_version=G + "/" + V, kind="Greeting", name=name, uid=meta["uid"],
                                            controller=True, block_owner_deletion=True)
            have = {p.metadata.name for p in core.list_namespaced_pod(ns, label_selector="greeting=" + name).items}
            for i in range(want):
                if name + "-" + str(i) not in have:
                    pod = client.V1Pod(metadata=client.V1ObjectMeta(name=name + "-" + str(i), labels={"greeting": name}, owner_references=[owner]),
                                       spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="busybox", command=["sleep", "3600"])]))
                    core.create_namespaced_pod(ns, pod)
                    print("created", pod.metadata.name, flush=True)
            for pod in have:
                if int(pod.rsplit("-", 1)[1]) >= want:
                    core.delete_namespaced_pod(pod, ns)
                    print("deleted", pod, flush=True)
            if obj.get("status", {}).get("pods") != want:
                custom.patch_namespaced_custom_object_status(G, V, ns, P, name, {"status": {"pods": want}})
        deadline = time.time() + float(sys.argv[2])
        while time.time() < deadline:
            for event in watch.Watch().stream(custom.list_namespaced_custom_object, G, V, "default", P, timeout_seconds=5):
                obj = event["object"]
                if event["type"] in ("ADDED", "MODIFIED") and not obj["metadata"].get("deletionTimestamp"):
                    reconcile(obj)
        """

    @Test func aPythonOperatorConvergesAndItsPodsAreCollectedWithTheirOwner() async throws {
        guard Tools.pythonKubernetesClient(), let (_, kubectl) = Tools.kubectlRange().last else { return }
        try await AgentCluster.run(firstAgent: false) { cluster in
            func run(_ arguments: [String], input: String? = nil) async throws -> Tools.Output {
                try await Tools.runDetached(kubectl, ["--kubeconfig", cluster.kubeconfig] + arguments, input: input, timeout: 60)
            }
            let applied = try await run(["apply", "-f", "-"], input: Self.definition)
            #expect(applied.status == 0, "\(applied.output)")
            let log = cluster.dir.path + "/operator.log"
            let operatorProcess = try Child(try #require(Tools.find("python3")), ["-u", "-c", Self.operatorScript, cluster.kubeconfig, "300"],
                                            stdout: .file(log), stderr: .stdout)
            defer { operatorProcess.signal(SIGKILL) }
            func operatorLog() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
            func pods() async throws -> [String] {
                try await run(["get", "pods", "-l", "greeting=hello", "-o", "jsonpath={.items[*].metadata.name}"]).output
                    .split(separator: " ").map(String.init).sorted()
            }

            let created = try await run(["apply", "-f", "-"], input: "apiVersion: example.cox.io/v1\nkind: Greeting\nmetadata: {name: hello}\nspec: {replicas: 2}\n")
            #expect(created.status == 0, "\(created.output)")
            try await eventually("the operator made two Pods and said so in the status") {
                if !operatorProcess.isRunning { Issue.record("the operator ended: \(operatorLog())"); return true }
                let status = try await run(["get", "greeting", "hello", "-o", "jsonpath={.status.pods}"]).output
                return try await pods() == ["hello-0", "hello-1"] && status == "2"
            }
            let owner = try await run(["get", "pod", "hello-0", "-o", "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"])
            #expect(owner.output == "Greeting/hello", "\(owner.output)")
            let scaled = try await run(["patch", "greeting", "hello", "--type=merge", "-p", #"{"spec":{"replicas":3}}"#])
            #expect(scaled.status == 0, "\(scaled.output)")
            try await eventually("the operator followed the change") {
                let status = try await run(["get", "greeting", "hello", "-o", "jsonpath={.status.pods}"]).output
                return try await pods() == ["hello-0", "hello-1", "hello-2"] && status == "3"
            }
            // The owner goes: the garbage collector deletes what it owned.
            let deleted = try await run(["delete", "greeting", "hello"])
            #expect(deleted.status == 0, "\(deleted.output)")
            try await eventually("the garbage collector deleted the Pods of the deleted Greeting") {
                try await pods().isEmpty
            }
            #expect(operatorProcess.isRunning, "the operator kept running: \(operatorLog())")
        }
    }
}
