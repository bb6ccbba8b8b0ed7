// The kinds of the first release. Each conformance names the kind and what counts as its spec.

extension Namespace: APIObject {
    public static let kindInfo = KindInfo(group: "", version: "v1", kind: "Namespace", resource: "namespaces",
                                          singular: "namespace", shortNames: ["ns"], namespaced: false)
    public func specDiffers(from other: Namespace) -> Bool { Self.differs(spec, other.spec) }
    public mutating func copyStatus(from other: Namespace) { if other.hasStatus { status = other.status } else { clearStatus() } }
}

extension Pod: APIObject {
    public static let kindInfo = KindInfo(group: "", version: "v1", kind: "Pod", resource: "pods",
                                          singular: "pod", shortNames: ["po"], namespaced: true)
    public func specDiffers(from other: Pod) -> Bool { Self.differs(spec, other.spec) }
    public mutating func copyStatus(from other: Pod) { if other.hasStatus { status = other.status } else { clearStatus() } }
}

extension Node: APIObject {
    public static let kindInfo = KindInfo(group: "", version: "v1", kind: "Node", resource: "nodes",
                                          singular: "node", shortNames: ["no"], namespaced: false)
    public func specDiffers(from other: Node) -> Bool { Self.differs(spec, other.spec) }
    public mutating func copyStatus(from other: Node) { if other.hasStatus { status = other.status } else { clearStatus() } }
}

extension Event: APIObject {
    public static let kindInfo = KindInfo(group: "", version: "v1", kind: "Event", resource: "events",
                                          singular: "event", shortNames: ["ev"], namespaced: true)
    /// Events have no spec; their generation never moves.
    public func specDiffers(from other: Event) -> Bool { false }
    public mutating func copyStatus(from other: Event) {}
}

extension Lease: APIObject {
    public static let kindInfo = KindInfo(group: "coordination.k8s.io", version: "v1", kind: "Lease", resource: "leases",
                                          singular: "lease", shortNames: [], namespaced: true)
    public func specDiffers(from other: Lease) -> Bool { Self.differs(spec, other.spec) }
    public mutating func copyStatus(from other: Lease) {}
}

extension ReplicaSet: APIObject {
    public static let kindInfo = KindInfo(group: "apps", version: "v1", kind: "ReplicaSet", resource: "replicasets",
                                          singular: "replicaset", shortNames: ["rs"], namespaced: true)
    public func specDiffers(from other: ReplicaSet) -> Bool { Self.differs(spec, other.spec) }
    public mutating func copyStatus(from other: ReplicaSet) { if other.hasStatus { status = other.status } else { clearStatus() } }
}

extension Deployment: APIObject {
    public static let kindInfo = KindInfo(group: "apps", version: "v1", kind: "Deployment", resource: "deployments",
                                          singular: "deployment", shortNames: ["deploy"], namespaced: true)
    public func specDiffers(from other: Deployment) -> Bool { Self.differs(spec, other.spec) }
    public mutating func copyStatus(from other: Deployment) { if other.hasStatus { status = other.status } else { clearStatus() } }
}

extension DaemonSet: APIObject {
    public static let kindInfo = KindInfo(group: "apps", version: "v1", kind: "DaemonSet", resource: "daemonsets",
                                          singular: "daemonset", shortNames: ["ds"], namespaced: true)
    public func specDiffers(from other: DaemonSet) -> Bool { Self.differs(spec, other.spec) }
    public mutating func copyStatus(from other: DaemonSet) { if other.hasStatus { status = other.status } else { clearStatus() } }
}

extension Job: APIObject {
    public static let kindInfo = KindInfo(group: "batch", version: "v1", kind: "Job", resource: "jobs",
                                          singular: "job", shortNames: [], namespaced: true)
    public func specDiffers(from other: Job) -> Bool { Self.differs(spec, other.spec) }
    public mutating func copyStatus(from other: Job) { if other.hasStatus { status = other.status } else { clearStatus() } }
}

extension Role: APIObject {
    public static let kindInfo = KindInfo(group: "rbac.authorization.k8s.io", version: "v1", kind: "Role", resource: "roles",
                                          singular: "role", shortNames: [], namespaced: true)
    public func specDiffers(from other: Role) -> Bool { rules != other.rules }
    public mutating func copyStatus(from other: Role) {}
}

extension ClusterRole: APIObject {
    public static let kindInfo = KindInfo(group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRole", resource: "clusterroles",
                                          singular: "clusterrole", shortNames: [], namespaced: false)
    public func specDiffers(from other: ClusterRole) -> Bool { rules != other.rules }
    public mutating func copyStatus(from other: ClusterRole) {}
}

extension RoleBinding: APIObject {
    public static let kindInfo = KindInfo(group: "rbac.authorization.k8s.io", version: "v1", kind: "RoleBinding", resource: "rolebindings",
                                          singular: "rolebinding", shortNames: [], namespaced: true)
    public func specDiffers(from other: RoleBinding) -> Bool { subjects != other.subjects || roleRef != other.roleRef }
    public mutating func copyStatus(from other: RoleBinding) {}
}

extension ClusterRoleBinding: APIObject {
    public static let kindInfo = KindInfo(group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRoleBinding",
                                          resource: "clusterrolebindings", singular: "clusterrolebinding", shortNames: [], namespaced: false)
    public func specDiffers(from other: ClusterRoleBinding) -> Bool { subjects != other.subjects || roleRef != other.roleRef }
    public mutating func copyStatus(from other: ClusterRoleBinding) {}
}

extension ConfigMap: APIObject {
    public static let kindInfo = KindInfo(group: "", version: "v1", kind: "ConfigMap", resource: "configmaps",
                                          singular: "configmap", shortNames: ["cm"], namespaced: true)
    public func specDiffers(from other: ConfigMap) -> Bool { false }
    public mutating func copyStatus(from other: ConfigMap) {}
}

extension Secret: APIObject {
    public static let kindInfo = KindInfo(group: "", version: "v1", kind: "Secret", resource: "secrets",
                                          singular: "secret", shortNames: [], namespaced: true)
    public func specDiffers(from other: Secret) -> Bool { false }
    public mutating func copyStatus(from other: Secret) {}
}

extension ServiceAccount: APIObject {
    public static let kindInfo = KindInfo(group: "", version: "v1", kind: "ServiceAccount", resource: "serviceaccounts",
                                          singular: "serviceaccount", shortNames: ["sa"], namespaced: true)
    public func specDiffers(from other: ServiceAccount) -> Bool { false }
    public mutating func copyStatus(from other: ServiceAccount) {}
}

extension ConfigMapList: APIObjectList {}
extension SecretList: APIObjectList {}
extension ServiceAccountList: APIObjectList {}
extension NamespaceList: APIObjectList {}
extension RoleList: APIObjectList {}
extension ClusterRoleList: APIObjectList {}
extension RoleBindingList: APIObjectList {}
extension ClusterRoleBindingList: APIObjectList {}
extension PodList: APIObjectList {}
extension NodeList: APIObjectList {}
extension EventList: APIObjectList {}
extension LeaseList: APIObjectList {}
extension ReplicaSetList: APIObjectList {}
extension DeploymentList: APIObjectList {}
extension JobList: APIObjectList {}
extension DaemonSetList: APIObjectList {}

extension Token: APIObject {
    public static let kindInfo = KindInfo(group: "auth.cox.io", version: "v1", kind: "Token", resource: "tokens",
                                          singular: "token", shortNames: [], namespaced: false)
    public func specDiffers(from other: Token) -> Bool { Self.differs(spec, other.spec) }
    public mutating func copyStatus(from other: Token) {}
}

extension TokenList: APIObjectList {}
