/// Realistic manifests in Kubernetes JSON, written by hand for the round-trip tests. They use
/// only fields Coxswain supports, so decoding must keep every one of them.
enum Fixtures {
    static let pod = #"""
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
          {"name": "server", "state": {"running": {"startedAt": "2024-05-01T10:20:32Z"}}, "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2024-05-01T10:20:31Z"}}, "ready": true, "restartCount": 1, "containerID": "process://4242"},
          {"name": "sidecar", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}}, "ready": false, "restartCount": 0}
        ]
      }
    }
    """#

    static let deployment = #"""
    {
      "apiVersion": "apps/v1",
      "kind": "Deployment",
      "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
      "spec": {
        "replicas": 0,
        "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "track", "operator": "NotIn", "values": ["canary"]}]},
        "template": {
          "metadata": {"labels": {"app": "web", "track": "stable"}},
          "spec": {"containers": [{"name": "http", "command": ["python3", "-m", "http.server"], "ports": [{"containerPort": 8000}]}]}
        },
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
        "minReadySeconds": 5,
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": 120
      },
      "status": {
        "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2, "unavailableReplicas": 1,
        "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "lastUpdateTime": "2024-05-01T10:00:00Z"}]
      }
    }
    """#

    static let node = #"""
    {
      "apiVersion": "v1",
      "kind": "Node",
      "metadata": {"name": "node-a", "labels": {"kubernetes.io/hostname": "node-a", "kubernetes.io/os": "linux"}},
      "spec": {"unschedulable": true, "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}], "podCIDR": "10.1.0.0/24"},
      "status": {
        "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "allocatable": {"cpu": "1900m", "memory": "23Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-05-01T10:00:00Z", "reason": "AgentReady", "message": "agent is posting ready status"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}, {"type": "Hostname", "address": "node-a"}],
        "nodeInfo": {"machineID": "abc", "systemUUID": "def", "bootID": "ghi", "kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12", "containerRuntimeVersion": "process://1", "kubeletVersion": "cox-0.1.0", "operatingSystem": "linux", "architecture": "amd64"}
      }
    }
    """#

    static let lease = #"""
    {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-a", "namespace": "kube-node-lease"},
     "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40, "renewTime": "2024-05-01T10:00:00.123456Z", "leaseTransitions": 0}}
    """#
}
