import API

/// `/version`, `/api`, `/apis` and the resource lists, so generic Kubernetes clients find what is served.
enum Discovery {
    static func version() -> JSONValue {
        .object([
            JSONMember("major", .string("1")), JSONMember("minor", .string("30")),
            JSONMember("gitVersion", .string("v1.30.0+cox-\(CoxVersion.version)")),
            JSONMember("platform", .string("linux/amd64")),
        ])
    }

    static func coreVersions() -> JSONValue {
        .object([JSONMember("kind", .string("APIVersions")), JSONMember("versions", .array([.string("v1")])),
                 JSONMember("serverAddressByClientCIDRs", .array([]))])
    }

    static var groups: [String: String] {
        var out: [String: String] = [:]
        for kind in Kinds.all where !kind.kindInfo.group.isEmpty { out[kind.kindInfo.group] = kind.kindInfo.version }
        for group in createOnly.keys { out[group] = "v1" }
        return out
    }

    /// Groups (v1) whose one resource can only be created: group → (resource, kind).
    static let createOnly = [
        "authentication.k8s.io": ("selfsubjectreviews", "SelfSubjectReview"),
        "authorization.k8s.io": ("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
        "certificates.k8s.io": ("certificatesigningrequests", "CertificateSigningRequest"),
    ]

    static func groupList() -> JSONValue {
        let items: [JSONValue] = groups.keys.sorted().map { group in
            let version: JSONValue = .object([JSONMember("groupVersion", .string("\(group)/\(groups[group]!)")), JSONMember("version", .string(groups[group]!))])
            return .object([JSONMember("name", .string(group)), JSONMember("versions", .array([version])), JSONMember("preferredVersion", version)])
        }
        return .object([JSONMember("kind", .string("APIGroupList")), JSONMember("apiVersion", .string("v1")), JSONMember("groups", .array(items))])
    }

    /// The resources of one group/version; nil when nothing is served there.
    static func resourceList(group: String, version: String) -> JSONValue? {
        if version == "v1", let (resource, kind) = createOnly[group] {
            // Asked, answered and never stored: access reviews (`kubectl auth can-i`, `cox auth
            // can-i`) and certificate signing requests (joining nodes).
            let entry: JSONValue = .object([
                JSONMember("name", .string(resource)), JSONMember("singularName", .string(String(resource.dropLast()))),
                JSONMember("namespaced", .bool(false)), JSONMember("kind", .string(kind)),
                JSONMember("verbs", .array([.string("create")])),
            ])
            return .object([JSONMember("kind", .string("APIResourceList")), JSONMember("apiVersion", .string("v1")),
                            JSONMember("groupVersion", .string("\(group)/v1")), JSONMember("resources", .array([entry]))])
        }
        let kinds = Kinds.all.filter { $0.kindInfo.group == group && $0.kindInfo.version == version }
        guard !kinds.isEmpty else { return nil }
        var resources: [JSONValue] = []
        for kind in kinds {
            let info = kind.kindInfo
            let verbs: [JSONValue] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"].map { .string($0) }
            resources.append(.object([
                JSONMember("name", .string(info.resource)), JSONMember("singularName", .string(info.singular)),
                JSONMember("namespaced", .bool(info.namespaced)), JSONMember("kind", .string(info.kind)),
                JSONMember("verbs", .array(verbs)), JSONMember("shortNames", .array(info.shortNames.map { .string($0) })),
            ]))
            if ["ReplicaSet", "Deployment"].contains(info.kind) {
                resources.append(.object([
                    JSONMember("name", .string(info.resource + "/scale")), JSONMember("singularName", .string("")),
                    JSONMember("namespaced", .bool(info.namespaced)), JSONMember("group", .string("autoscaling")),
                    JSONMember("version", .string("v1")), JSONMember("kind", .string("Scale")),
                    JSONMember("verbs", .array([.string("get"), .string("patch"), .string("update")])),
                ]))
            }
            if ["Pod", "Node", "Namespace", "ReplicaSet", "Deployment"].contains(info.kind) {
                resources.append(.object([
                    JSONMember("name", .string(info.resource + "/status")), JSONMember("singularName", .string("")),
                    JSONMember("namespaced", .bool(info.namespaced)), JSONMember("kind", .string(info.kind)),
                    JSONMember("verbs", .array([.string("get"), .string("patch"), .string("update")])),
                ]))
            }
        }
        return .object([JSONMember("kind", .string("APIResourceList")), JSONMember("apiVersion", .string("v1")),
                        JSONMember("groupVersion", .string(group.isEmpty ? version : "\(group)/\(version)")),
                        JSONMember("resources", .array(resources))])
    }
}
