import API
import Logging
import Store

/// The roles and bindings every cluster starts with (Kubernetes' names where it has them),
/// created at the first start and whenever one is missing; an edited one is left as it is.
public enum BootstrapPolicy {
    static func rule(_ verbs: [String], _ groups: [String], _ resources: [String]) -> PolicyRule {
        PolicyRule(verbs: verbs, apiGroups: groups, resources: resources)
    }

    static func paths(_ verbs: [String], _ urls: [String]) -> PolicyRule { PolicyRule(verbs: verbs, nonResourceURLs: urls) }

    static let read = ["get", "list", "watch"]
    static let write = ["create", "update", "patch", "delete", "deletecollection"]
    static let coordination = "coordination.k8s.io"

    /// The users the built-in components would run as with identities of their own (issue #7's
    /// node bootstrap gives nodes theirs: CN=cox:node:NAME, O=cox:nodes).
    public static let schedulerUser = "system:kube-scheduler"
    public static let controllerManagerUser = "system:kube-controller-manager"
    public static let nodesGroup = NodeIdentity.group

    public static var clusterRoles: [ClusterRole] {
        func role(_ name: String, _ rules: [PolicyRule]) -> ClusterRole {
            var role = ClusterRole()
            role.metadata.name = name
            role.metadata.labels = ["kubernetes.io/bootstrapping": "rbac-defaults"]
            role.rules = rules
            role.applyDefaults()
            return role
        }
        let viewRules = [
            rule(read, [""], ["pods", "pods/log", "pods/status", "events", "namespaces", "namespaces/status"]),
            rule(read, ["apps"], ["deployments", "deployments/status", "replicasets", "replicasets/status", "daemonsets", "daemonsets/status"]),
            rule(read, ["batch"], ["jobs", "jobs/status"]),
        ]
        let editRules = viewRules + [
            rule(write, [""], ["pods"]),
            // Running commands in a pod, attaching to it and forwarding its ports (as Kubernetes'
            // edit role allows: `create`, and `get` for the older clients that asked with GET).
            rule(["get", "create"], [""], ["pods/exec", "pods/attach", "pods/portforward"]),
            rule(write, ["apps"], ["deployments", "replicasets", "daemonsets"]),
            rule(write, ["batch"], ["jobs"]),
        ]
        let adminRules = editRules + [
            rule(read + write, ["rbac.authorization.k8s.io"], ["roles", "rolebindings"]),
            rule(read + write, [coordination], ["leases"]),
        ]
        return [
            role("cluster-admin", [rule(["*"], ["*"], ["*"]), paths(["*"], ["*"])]),
            role("admin", adminRules),
            role("edit", editRules),
            role("view", viewRules),
            role("system:discovery", [paths(["get"], ["/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/livez", "/readyz"])]),
            role("system:monitoring", [paths(["get"], ["/metrics", "/livez", "/readyz"])]),
            role("system:kube-scheduler", [
                rule(read, [""], ["pods", "nodes", "namespaces"]),
                rule(["create"], [""], ["pods/binding"]),
                rule(["update", "patch"], [""], ["pods/status"]),
                // What its pods' environments name (node restriction narrows it to those).
                rule(["get"], [""], ["configmaps", "secrets"]),
                rule(["get", "create", "update", "patch"], [""], ["events"]),
                rule(["get", "create", "update"], [coordination], ["leases"]),
            ]),
            role("system:kube-controller-manager", [
                rule(read + write, [""], ["pods", "events"]),
                rule(read + ["update", "patch", "delete"], [""], ["nodes", "nodes/status", "namespaces", "namespaces/status"]),
                rule(["update", "patch"], [""], ["pods/status"]),
                // What its pods' environments name (node restriction narrows it to those).
                rule(["get"], [""], ["configmaps", "secrets"]),
                rule(read + write, ["apps"], ["deployments", "deployments/status", "replicasets", "replicasets/status", "daemonsets", "daemonsets/status"]),
                rule(read + write, ["batch"], ["jobs", "jobs/status"]),
                rule(read + write, [coordination], ["leases"]),
                // The namespace controller empties a namespace being deleted.
                rule(read + ["delete", "deletecollection"], ["rbac.authorization.k8s.io"], ["roles", "rolebindings"]),
                // The garbage collector follows owners and dependents of any kind (custom
                // resources' too) and deletes or updates them, as Kubernetes' does.
                rule(["get", "list", "watch", "update", "patch", "delete"], ["*"], ["*"]),
            ]),
            role("system:node", [
                rule(read + ["create", "update", "patch"], [""], ["nodes", "nodes/status"]),
                rule(read + ["delete"], [""], ["pods"]),
                rule(["update", "patch"], [""], ["pods/status"]),
                // What its pods' environments name (node restriction narrows it to those).
                rule(["get"], [""], ["configmaps", "secrets"]),
                rule(["get", "create", "update", "patch"], [""], ["events"]),
                rule(["get", "create", "update"], [coordination], ["leases"]),
                // Renewing its client certificate and getting a serving one.
                rule(["create"], ["certificates.k8s.io"], ["certificatesigningrequests"]),
            ]),
            // Holders of a bootstrap token may ask for a node certificate and nothing more.
            role("system:node-bootstrapper", [rule(["create"], ["certificates.k8s.io"], ["certificatesigningrequests"])]),
        ]
    }

    public static var clusterRoleBindings: [ClusterRoleBinding] {
        func binding(_ name: String, role: String, _ kind: String, _ subject: String) -> ClusterRoleBinding {
            var binding = ClusterRoleBinding()
            binding.metadata.name = name
            binding.metadata.labels = ["kubernetes.io/bootstrapping": "rbac-defaults"]
            binding.roleRef.kind = "ClusterRole"
            binding.roleRef.name = role
            var who = Subject()
            who.kind = kind
            who.name = subject
            binding.subjects = [who]
            binding.applyDefaults()
            return binding
        }
        return [
            binding("cluster-admin", role: "cluster-admin", "Group", Authorizer.superuserGroup),
            binding("system:discovery", role: "system:discovery", "Group", Authorizer.authenticatedGroup),
            binding("system:kube-scheduler", role: "system:kube-scheduler", "User", schedulerUser),
            binding("system:kube-controller-manager", role: "system:kube-controller-manager", "User", controllerManagerUser),
            binding("system:node", role: "system:node", "Group", nodesGroup),
            binding("system:node-bootstrapper", role: "system:node-bootstrapper", "Group", TokenFormat.bootstrappersGroup),
        ]
    }

    /// As in Kubernetes, a built-in object annotated `rbac.authorization.kubernetes.io/autoupdate:
    /// "false"` is left as its administrator edited it; the others follow this version's policy.
    static let autoupdate = "rbac.authorization.kubernetes.io/autoupdate"

    /// Creates what is missing and brings the built-in objects up to this version's policy.
    public static func ensure(in store: any ObjectStore, logger: Logger) async throws {
        var changed: [String] = []
        for role in clusterRoles {
            if try await reconcile(role, store, differs: { $0.rules != role.rules }, adopt: { $0.rules = role.rules }) {
                changed.append("clusterrole/\(role.metadata.name)")
            }
        }
        for binding in clusterRoleBindings {
            if try await reconcile(binding, store, differs: { $0.subjects != binding.subjects || $0.roleRef != binding.roleRef },
                                   adopt: { $0.subjects = binding.subjects; $0.roleRef = binding.roleRef }) {
                changed.append("clusterrolebinding/\(binding.metadata.name)")
            }
        }
        if !changed.isEmpty { logger.info("wrote the built-in RBAC policy", metadata: ["objects": "\(changed.joined(separator: ", "))"]) }
    }

    /// Creates `wanted`, or updates the stored one when it differs and may be updated; true when it wrote.
    /// Several servers of one cluster (on etcd) may start at once: a write that loses to another
    /// server's (AlreadyExists, Conflict) is tried again on what that one wrote.
    static func reconcile<T: APIObject>(_ wanted: T, _ store: any ObjectStore, differs: (T) -> Bool, adopt: (inout T) -> Void) async throws -> Bool {
        var attempt = 0
        while true {
            attempt += 1
            do {
                var current = try await store.get(T.self, namespace: "", name: wanted.metadata.name)
                guard differs(current), current.metadata.annotations[autoupdate] != "false" else { return false }
                adopt(&current)
                _ = try await store.update(try current.validated())
                return true
            } catch let error as StoreError where error.code == .notFound {
                do {
                    _ = try await store.create(try wanted.validated())
                    return true
                } catch let error as StoreError where error.code == .alreadyExists && attempt < 5 {
                    continue
                }
            } catch let error as StoreError where error.code == .conflict && attempt < 5 {
                continue
            }
        }
    }
}
