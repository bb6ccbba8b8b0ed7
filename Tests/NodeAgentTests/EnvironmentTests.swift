import API
import Client
import Foundation
import Testing
import TestSupport

/// A container's environment from ConfigMaps, Secrets, the pod's fields and its resources, as
/// the kubelet resolves it; a missing key holds the container in CreateContainerConfigError.
@Suite("Container environment from references", .watchdog, .serialized)
struct EnvironmentTests {
    @Test func variablesComeFromConfigMapsSecretsFieldsAndResources() async throws {
        try await AgentCluster.run { cluster in
            var settings = ConfigMap()
            settings.metadata.name = "settings"
            settings.metadata.namespace = "default"
            settings.data = ["mode": "fast", "level": "3"]
            _ = try await cluster.client.create(settings)
            var secret = Secret()
            secret.metadata.name = "db"
            secret.metadata.namespace = "default"
            secret.stringData = ["password": "hunter2"]
            _ = try await cluster.client.create(secret)

            var pod = cluster.pod("env", #"echo "MODE=$MODE PASSWORD=$PASSWORD NAME=$NAME NODE=$NODE MEM=$MEM CFG_level=$CFG_level LATE=$LATE"; sleep 60"#)
            func variable(_ name: String, _ fill: (inout EnvVarSource) -> Void) -> EnvVar {
                var variable = EnvVar()
                variable.name = name
                fill(&variable.valueFrom)
                return variable
            }
            pod.spec.containers[0].resources.limits = ["memory": "64Mi"]
            pod.spec.containers[0].env = [
                variable("MODE") { $0.configMapKeyRef.name = "settings"; $0.configMapKeyRef.key = "mode" },
                variable("PASSWORD") { $0.secretKeyRef.name = "db"; $0.secretKeyRef.key = "password" },
                variable("NAME") { $0.fieldRef.fieldPath = "metadata.name" },
                variable("NODE") { $0.fieldRef.fieldPath = "spec.nodeName" },
                variable("MEM") { $0.resourceFieldRef.resource = "limits.memory"; $0.resourceFieldRef.divisor = "1Mi" },
                // Not there yet: the container waits, named, until it is.
                variable("LATE") { $0.configMapKeyRef.name = "settings"; $0.configMapKeyRef.key = "late" },
            ]
            var fromMap = EnvFromSource()
            fromMap.prefix = "CFG_"
            fromMap.configMapRef.name = "settings"
            pod.spec.containers[0].envFrom = [fromMap]
            _ = try await cluster.client.create(pod)
            try await eventually("the missing key holds the container, named", timeout: 30) {
                let waiting = try await cluster.get("env").status.containerStatuses.first?.state.waiting
                return waiting?.reason == "CreateContainerConfigError" && waiting?.message == "couldn't find key late in ConfigMap default/settings"
            }
            try await cluster.client.modify(ConfigMap.self, namespace: "default", name: "settings") { $0.data["late"] = "now" }
            try await eventually("the container starts once the key exists", timeout: 60) {
                let output = String(decoding: (try? await cluster.client.logs(namespace: "default", pod: "env", container: nil)) ?? [], as: UTF8.self)
                return output.contains("MODE=fast PASSWORD=hunter2 NAME=env NODE=n1 MEM=64 CFG_level=3 LATE=now")
            }
            _ = try await cluster.client.delete(Pod.self, namespace: "default", name: "env")
        }
    }
}
