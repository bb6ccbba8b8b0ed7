import API
import Client
import Foundation
import Testing
import TestSupport

/// The JSON Kubernetes' own clients read: the official Python client (with its strict models)
/// lists, gets and watches every kind of a running cluster, and fails on any field Kubernetes
/// always writes that is missing; and writes with it, every patch type included.
@Suite("Kubernetes JSON, read by the official Python client", .watchdog, .serialized)
struct KubernetesJSONTests {
    static let script = """
        import os, sys
        for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            os.environ.pop(variable, None)
        from kubernetes import client, config, watch
        config.load_kube_config(config_file=sys.argv[1])
        core, apps = client.CoreV1Api(), client.AppsV1Api()
        coordination, rbac = client.CoordinationV1Api(), client.RbacAuthorizationV1Api()
        batch = client.BatchV1Api()
        kinds = [
            ("pods", core.list_pod_for_all_namespaces, lambda o: core.read_namespaced_pod(o.metadata.name, o.metadata.namespace)),
            ("nodes", core.list_node, lambda o: core.read_node(o.metadata.name)),
            ("namespaces", core.list_namespace, lambda o: core.read_namespace(o.metadata.name)),
            ("events", core.list_event_for_all_namespaces, lambda o: core.read_namespaced_event(o.metadata.name, o.metadata.namespace)),
            ("deployments", apps.list_deployment_for_all_namespaces, lambda o: apps.read_namespaced_deployment(o.metadata.name, o.metadata.namespace)),
            ("replicasets", apps.list_replica_set_for_all_namespaces, lambda o: apps.read_namespaced_replica_set(o.metadata.name, o.metadata.namespace)),
            ("jobs", batch.list_job_for_all_namespaces, lambda o: batch.read_namespaced_job(o.metadata.name, o.metadata.namespace)),
            ("daemonsets", apps.list_daemon_set_for_all_namespaces, lambda o: apps.read_namespaced_daemon_set(o.metadata.name, o.metadata.namespace)),
            ("leases", coordination.list_lease_for_all_namespaces, lambda o: coordination.read_namespaced_lease(o.metadata.name, o.metadata.namespace)),
            ("clusterroles", rbac.list_cluster_role, lambda o: rbac.read_cluster_role(o.metadata.name)),
            ("clusterrolebindings", rbac.list_cluster_role_binding, lambda o: rbac.read_cluster_role_binding(o.metadata.name)),
            ("roles", rbac.list_role_for_all_namespaces, lambda o: rbac.read_namespaced_role(o.metadata.name, o.metadata.namespace)),
            ("rolebindings", rbac.list_role_binding_for_all_namespaces, lambda o: rbac.read_namespaced_role_binding(o.metadata.name, o.metadata.namespace)),
            ("configmaps", core.list_config_map_for_all_namespaces, lambda o: core.read_namespaced_config_map(o.metadata.name, o.metadata.namespace)),
            ("secrets", core.list_secret_for_all_namespaces, lambda o: core.read_namespaced_secret(o.metadata.name, o.metadata.namespace)),
            ("serviceaccounts", core.list_service_account_for_all_namespaces, lambda o: core.read_namespaced_service_account(o.metadata.name, o.metadata.namespace)),
        ]
        for name, list_call, read_call in kinds:
            try:
                listed = list_call()
                for item in listed.items:
                    read_call(item)
                events = 0
                for event in watch.Watch().stream(list_call, resource_version="0", timeout_seconds=1):
                    events += 1
                print("OK", name, len(listed.items), events, flush=True)
            except Exception as error:
                print("FAIL", name, type(error).__name__, str(error).replace("\\n", " ")[:600], flush=True)
        deployment = apps.read_namespaced_deployment("fresh", "default")
        print("OK fresh-deployment-status", deployment.status.ready_replicas, flush=True)
        """

    static let writes = """
        import os, sys
        for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            os.environ.pop(variable, None)
        from kubernetes import client, config
        config.load_kube_config(config_file=sys.argv[1])
        core, apps, batch = client.CoreV1Api(), client.AppsV1Api(), client.BatchV1Api()
        def check(name, condition):
            print(("OK " if condition else "FAIL ") + name, flush=True)
        core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"mode": "fast"}))
        core.create_namespaced_secret("default", client.V1Secret(metadata=client.V1ObjectMeta(name="db"), string_data={"password": "hunter2"}))
        core.create_namespaced_service_account("default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="robot")))
        container = client.V1Container(name="app", image="app:1", command=["sleep", "3600"], env=[client.V1EnvVar(name="A", value="1")])
        template = client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels={"app": "web"}), spec=client.V1PodSpec(containers=[container]))
        spec = client.V1DeploymentSpec(replicas=1, selector=client.V1LabelSelector(match_labels={"app": "web"}), template=template)
        apps.create_namespaced_deployment("default", client.V1Deployment(metadata=client.V1ObjectMeta(name="web"), spec=spec))
        # Strategic merge (the client's default for a dict): the container merges by name.
        patched = apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]}}}})
        check("strategic", [e.name for e in patched.spec.template.spec.containers[0].env] == ["A", "B"] and patched.spec.template.spec.containers[0].image == "app:1")
        patched = apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"tier": "front"}}}, _content_type="application/merge-patch+json")
        check("merge", patched.metadata.labels == {"tier": "front"})
        patched = apps.patch_namespaced_deployment("web", "default", [{"op": "replace", "path": "/spec/replicas", "value": 3}])
        check("json", patched.spec.replicas == 3)
        scale = apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 2}})
        check("scale", scale.spec.replicas == 2 and scale.status.selector == "app=web")
        config_map = core.patch_namespaced_config_map("settings", "default", {"data": {"mode": "slow"}})
        check("configmap", config_map.data == {"mode": "slow"})
        secret = core.read_namespaced_secret("db", "default")
        check("secret", secret.data == {"password": "aHVudGVyMg=="} and secret.type == "Opaque" and secret.string_data is None)
        check("serviceaccount", core.read_namespaced_service_account("default", "default").metadata.name == "default")
        try:
            apps.patch_namespaced_deployment("web", "default", {"spec": {"replicaz": 1}}, field_validation="Strict")
            check("strict", False)
        except client.ApiException as error:
            check("strict", error.status == 400 and "unknown field" in error.body)
        applied = core.patch_namespaced_config_map("applied", "default", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}},
                                                   field_manager="python", _content_type="application/apply-patch+yaml")
        check("apply", applied.data == {"a": "1"} and any(e.manager == "python" and e.operation == "Apply" for e in applied.metadata.managed_fields))
        deleted = core.delete_collection_namespaced_config_map("default", label_selector="")
        check("deletecollection", core.list_namespaced_config_map("default").items == [])
        # Every kind: create, the three patch types, server-side apply, read (the model checks
        # each answer), delete.
        rbac, coordination = client.RbacAuthorizationV1Api(), client.CoordinationV1Api()
        workload = {"replicas": 0, "selector": {"matchLabels": {"k": "every"}},
                    "template": {"metadata": {"labels": {"k": "every"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        rules = [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
        binding = {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                   "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}
        every = [
            (core, "pod", True, "v1", "Pod", {"spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "60"]}]}}),
            (core, "namespace", False, "v1", "Namespace", {}),
            (core, "node", False, "v1", "Node", {}),
            (core, "event", True, "v1", "Event", {"involvedObject": {"kind": "Pod", "name": "x", "namespace": "default"}, "reason": "Tested", "message": "by python"}),
            (core, "config_map", True, "v1", "ConfigMap", {"data": {"k": "v"}}),
            (core, "secret", True, "v1", "Secret", {"stringData": {"k": "v"}}),
            (core, "service_account", True, "v1", "ServiceAccount", {}),
            (apps, "deployment", True, "apps/v1", "Deployment", {"spec": workload}),
            (apps, "replica_set", True, "apps/v1", "ReplicaSet", {"spec": workload}),
            (apps, "daemon_set", True, "apps/v1", "DaemonSet", {"spec": {k: v for k, v in workload.items() if k != "replicas"}}),
            (batch, "job", True, "batch/v1", "Job", {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}}}),
            (coordination, "lease", True, "coordination.k8s.io/v1", "Lease", {"spec": {"holderIdentity": "python"}}),
            (rbac, "cluster_role", False, "rbac.authorization.k8s.io/v1", "ClusterRole", {"rules": rules}),
            (rbac, "cluster_role_binding", False, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", binding),
            (rbac, "role", True, "rbac.authorization.k8s.io/v1", "Role", {"rules": rules}),
            (rbac, "role_binding", True, "rbac.authorization.k8s.io/v1", "RoleBinding", binding),
        ]
        for api, kind, namespaced, api_version, kind_name, extra in every:
            name = "every-" + kind.replace("_", "-")
            ns = ("default",) if namespaced else ()
            def call(verb, *args, **options):
                return getattr(api, verb + "_" + ("namespaced_" if namespaced else "") + kind)(*args, **options)
            try:
                call("create", *ns, dict(extra, apiVersion=api_version, kind=kind_name, metadata={"name": name}))
                call("patch", name, *ns, {"metadata": {"labels": {"a": "1"}}})
                call("patch", name, *ns, {"metadata": {"labels": {"b": "2"}}}, _content_type="application/merge-patch+json")
                call("patch", name, *ns, [{"op": "add", "path": "/metadata/labels/c", "value": "3"}])
                applied = call("patch", name, *ns, {"apiVersion": api_version, "kind": kind_name, "metadata": {"name": name, "labels": {"d": "4"}}},
                               field_manager="python", _content_type="application/apply-patch+yaml")
                labels = call("read", name, *ns).metadata.labels or {}
                owners = [(e.manager, e.operation) for e in applied.metadata.managed_fields]
                good = labels == {"a": "1", "b": "2", "c": "3", "d": "4"} and ("python", "Apply") in owners
                check("every " + kind + ("" if good else " labels=%s owners=%s" % (labels, owners)), good)
                call("delete", name, *ns)
            except Exception as error:
                print("FAIL every", kind, type(error).__name__, str(error)[:600], flush=True)
        """

    /// The official Python client creates, patches (the three types, /scale, strict field
    /// validation), applies server-side and reads back, its models validating every answer;
    /// then does each of those to an object of every kind.
    @Test func theOfficialPythonClientWritesAndPatches() async throws {
        guard Tools.pythonKubernetesClient() else { return }
        try await AgentCluster.run { cluster in
            let python = try await Tools.runDetached(try #require(Tools.find("python3")), ["-c", Self.writes, cluster.kubeconfig], timeout: 120)
            let lines = python.output.split(separator: "\n").map(String.init)
            #expect(python.status == 0 && !lines.contains { $0.hasPrefix("FAIL") } && lines.filter { $0.hasPrefix("OK") }.count == 26, "\(python.output)")
            _ = try await cluster.client.delete(Deployment.self, namespace: "default", name: "web")
        }
    }

    @Test func theOfficialPythonClientReadsEveryKindStrictly() async throws {
        guard Tools.pythonKubernetesClient() else { return }
        try await AgentCluster.run { cluster in
            // A Deployment with a running pod, a role and a binding: every kind has objects.
            _ = try await cluster.client.create(TestObjects.deployment("web"))
            // One the controllers have not seen yet: read back as Kubernetes writes it, status {}.
            _ = try await cluster.client.create(TestObjects.deployment("fresh", replicas: 0))
            // A Job run to its end: conditions, times and counts read strictly too.
            var job = Job()
            job.metadata.name = "once"
            job.metadata.namespace = "default"
            var container = Container()
            container.name = "c"
            container.command = ["true"]
            job.spec.template.spec.containers = [container]
            job.spec.template.spec.restartPolicy = "Never"
            _ = try await cluster.client.create(job)
            // A DaemonSet with its pod on the node.
            var daemons = DaemonSet()
            daemons.metadata.name = "daemons"
            daemons.metadata.namespace = "default"
            daemons.spec.selector.matchLabels = ["app": "daemons"]
            daemons.spec.template.metadata.labels = ["app": "daemons"]
            var daemon = Container()
            daemon.name = "d"
            daemon.command = ["sh", "-c", "exec sleep 3600", cluster.marker]
            daemons.spec.template.spec.containers = [daemon]
            _ = try await cluster.client.create(daemons)
            var role = Role()
            role.metadata.name = "reader"
            role.metadata.namespace = "default"
            var rule = PolicyRule()
            rule.verbs = ["get"]
            rule.apiGroups = [""]
            rule.resources = ["pods"]
            role.rules = [rule]
            _ = try await cluster.client.create(role)
            var binding = RoleBinding()
            binding.metadata.name = "reader"
            binding.metadata.namespace = "default"
            binding.roleRef.apiGroup = "rbac.authorization.k8s.io"
            binding.roleRef.kind = "Role"
            binding.roleRef.name = "reader"
            var subject = Subject()
            subject.kind = "User"
            subject.name = "alice"
            binding.subjects = [subject]
            _ = try await cluster.client.create(binding)
            var settings = ConfigMap()
            settings.metadata.name = "settings"
            settings.metadata.namespace = "default"
            settings.data = ["mode": "fast"]
            _ = try await cluster.client.create(settings)
            var secret = Secret()
            secret.metadata.name = "db"
            secret.metadata.namespace = "default"
            secret.stringData = ["password": "hunter2"]
            _ = try await cluster.client.create(secret)
            try await waitUntil("the Deployment's pod runs and the Job completed", timeout: 60) {
                let running = try await cluster.client.list(Pod.self, namespace: "default").items.contains { $0.status.phase == "Running" }
                let job = try await cluster.client.get(Job.self, namespace: "default", name: "once")
                let daemons = try await cluster.client.get(DaemonSet.self, namespace: "default", name: "daemons")
                return running && job.status.conditions.contains { $0.type == "Complete" } && daemons.status.numberReady == 1
            }
            let python = try await Tools.runDetached(try #require(Tools.find("python3")), ["-c", Self.script, cluster.kubeconfig], timeout: 120)
            let lines = python.output.split(separator: "\n").map(String.init)
            #expect(python.status == 0 && !lines.contains { $0.hasPrefix("FAIL") } && lines.filter { $0.hasPrefix("OK") }.count == 17,
                    "\(python.output)")
            // Without their Deployments, the pods can go (the cluster's teardown waits for that).
            for name in ["web", "fresh"] { _ = try await cluster.client.delete(Deployment.self, namespace: "default", name: name) }
            _ = try await cluster.client.delete(DaemonSet.self, namespace: "default", name: "daemons")
        }
    }
}
