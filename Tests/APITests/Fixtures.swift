import API

/// Realistic manifests in Kubernetes JSON, written by hand for the round-trip tests. They use
/// only fields Coxswain supports, so decoding must keep every one of them.
enum Fixtures {
    static let pod = Samples.podJSON

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
          "spec": {"containers": [{"name": "http", "command": ["python3", "-m", "http.server"], "ports": [{"containerPort": 8000}], "resources": {}}]}
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
        "nodeInfo": {"machineID": "abc", "systemUUID": "def", "bootID": "ghi", "kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12", "containerRuntimeVersion": "process://1", "kubeletVersion": "cox-0.1.0", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}
      }
    }
    """#

    static let lease = #"""
    {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-a", "namespace": "kube-node-lease"},
     "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40, "renewTime": "2024-05-01T10:00:00.123456Z", "leaseTransitions": 0}}
    """#
}
