import API
import Store

/// What a node identity (`cox:node:NAME` in `cox:nodes`) may touch beyond its RBAC role, as
/// Kubernetes' node authorizer and NodeRestriction admission narrow it: its own Node and Lease,
/// the pods bound to it (read, status, delete) and Events. Everything else is 403, so a
/// compromised node cannot read or change other nodes' workloads.
enum NodeRestriction {
    static let leaseNamespace = "kube-node-lease"

    /// The node's name when `identity` is a node; nil for everyone else.
    static func nodeName(_ identity: ClientIdentity) -> String? {
        identity.groups.contains(NodeIdentity.group) ? NodeIdentity.nodeName(ofUser: identity.user) : nil
    }

    static func denied(_ node: String, _ attributes: RequestAttributes) -> APIError {
        APIError(403, "Forbidden", attributes.forbiddenMessage + ": node \"\(node)\" may only use its own Node and Lease and the pods bound to it")
    }

    /// A create names its object in the body: only the node's own Node and Lease.
    static func admitCreate(_ object: any APIObject, node: String, attributes: RequestAttributes) throws {
        switch object {
        case is Node where object.metadata.name == node: return
        case is Lease where object.metadata.name == node && object.metadata.namespace == leaseNamespace: return
        case is Event: return
        default: throw denied(node, attributes)
        }
    }
}

extension APIResponder {
    /// Checks a node's request (already allowed by RBAC) against what the node is related to.
    func restrictNode(_ node: String, _ attributes: RequestAttributes, query: QueryParameters) async throws {
        guard attributes.isResourceRequest else { return }
        let deny = NodeRestriction.denied(node, attributes)
        switch (attributes.apiGroup, attributes.resource) {
        case ("", "events"):
            return
        case ("", "nodes"):
            if attributes.name.isEmpty && attributes.verb == "create" { return }  // admitted by body
            guard attributes.name == node else { throw deny }
        case ("coordination.k8s.io", "leases"):
            guard attributes.namespace == NodeRestriction.leaseNamespace else { throw deny }
            if attributes.name.isEmpty && attributes.verb == "create" { return }
            guard attributes.name == node else { throw deny }
        case ("", "configmaps"), ("", "secrets"):
            // Only one by name, and only one a pod bound to this node takes its environment from or mounts.
            guard attributes.verb == "get", !attributes.name.isEmpty else { throw deny }
            var options = ListOptions(namespace: attributes.namespace)
            options.predicate = { ($0 as? Pod)?.spec.nodeName == node }
            let pods = try await store.list(Pod.self, options: options).items
            let secret = attributes.resource == "secrets"
            let referenced = pods.contains { $0.referencedNames(secrets: secret).contains(attributes.name) }
            guard referenced else { throw deny }
        case ("", "pods"):
            if attributes.name.isEmpty {
                // Lists and watches only of its own pods: the field selector says so.
                guard ["list", "watch"].contains(attributes.verb),
                      let selector = query["fieldSelector"],
                      selector.split(separator: ",").contains(where: { $0 == "spec.nodeName=\(node)" || $0 == "spec.nodeName==\(node)" })
                else { throw deny }
                return
            }
            guard attributes.subresource.isEmpty || attributes.subresource == "status" else { throw deny }
            let pod = try await store.get(Pod.self, namespace: attributes.namespace, name: attributes.name)
            guard pod.spec.nodeName == node else { throw deny }
        default:
            throw deny
        }
    }
}
