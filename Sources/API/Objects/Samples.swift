/// Sample objects for documentation, benchmarks and tests.
public enum Samples {
    /// A realistic pod: two containers with probes, resources, env and ports; tolerations,
    /// affinity, owner references and a populated status. Kubernetes JSON.
    public static let podJSON = #"""
    {
      "apiVersion": "v1",
      "kind": "Pod",
      "metadata": {
        "name": "api-7d9f",
        "namespace": "shop",
        "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "resourceVersion": "4711",
        "generation": 3,
        "creationTimestamp": "2024-05-01T10:20:30Z",
        "deletionTimestamp": "2024-05-02T11:00:00Z",
        "deletionGracePeriodSeconds": 30,
        "labels": {"app": "api", "tier": "backend", "example.com/team": "payments"},
        "annotations": {"note": "line one\nline \"two\""},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-7d9f", "uid": "9f0e", "controller": true, "blockOwnerDeletion": true}],
        "finalizers": ["example.com/cleanup"]
      },
      "spec": {
        "containers": [
          {
            "name": "server",
            "image": "registry.example.com/api:1.4.2",
            "command": ["/bin/api"],
            "args": ["--port", "8080", "--log-level=debug"],
            "workingDir": "/srv",
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"containerPort": 9090, "hostPort": 19090, "protocol": "UDP"}],
            "env": [{"name": "MODE", "value": "production"}, {"name": "EMPTY"}],
            "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi", "ephemeral-storage": "1.5G"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3, "successThreshold": 1},
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
            "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]}, "failureThreshold": 30, "periodSeconds": 1}
          },
          {
            "name": "sidecar",
            "command": ["sh", "-c", "tail -F /var/log/api.log"],
            "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}}
          }
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 45,
        "nodeSelector": {"disktype": "ssd"},
        "nodeName": "node-a",
        "tolerations": [
          {"key": "dedicated", "operator": "Equal", "value": "api", "effect": "NoSchedule"},
          {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}
      },
      "status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:21:00Z"}],
        "hostIP": "10.0.0.7",
        "podIP": "10.1.2.3",
        "startTime": "2024-05-01T10:20:31Z",
        "containerStatuses": [
          {"name": "server", "state": {"running": {"startedAt": "2024-05-01T10:20:32Z"}}, "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2024-05-01T10:20:31Z"}}, "ready": true, "restartCount": 1, "image": "", "imageID": "", "containerID": "process://4242"},
          {"name": "sidecar", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}}, "lastState": {}, "ready": false, "restartCount": 0, "image": "", "imageID": ""}
        ]
      }
    }
    """#

    /// `podJSON` decoded.
    public static func pod() -> Pod {
        // The sample is a constant checked by the codec tests; decoding it cannot fail.
        try! Pod(jsonString: podJSON)
    }
}
