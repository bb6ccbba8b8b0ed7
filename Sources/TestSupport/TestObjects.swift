import API

/// Small valid objects for tests.
public enum TestObjects {
    public static func pod(_ name: String, namespace: String = "default", labels: [String: String] = [:], command: [String] = ["sleep", "3600"]) -> Pod {
        var pod = Pod()
        pod.metadata.name = name
        pod.metadata.namespace = namespace
        pod.metadata.labels = labels
        var container = Container()
        container.name = "main"
        container.command = command
        pod.spec.containers = [container]
        pod.applyDefaults()
        return pod
    }

    public static func node(_ name: String, labels: [String: String] = [:]) -> Node {
        var node = Node()
        node.metadata.name = name
        node.metadata.labels = labels
        node.status.capacity = ["cpu": "2", "memory": "4Gi", "pods": "110"]
        node.applyDefaults()
        return node
    }

    /// A Deployment of `replicas` pods labelled `app: NAME`, each running `TestObjects.pod`'s container.
    public static func deployment(_ name: String, namespace: String = "default", replicas: Int32 = 1) -> Deployment {
        var deployment = Deployment()
        deployment.metadata.name = name
        deployment.metadata.namespace = namespace
        deployment.spec.replicas = replicas
        deployment.spec.selector.matchLabels = ["app": name]
        deployment.spec.template.metadata.labels = ["app": name]
        deployment.spec.template.spec.containers = pod("x").spec.containers
        return deployment
    }
}
