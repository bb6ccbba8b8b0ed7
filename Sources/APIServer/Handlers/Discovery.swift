import API

/// `/version`, `/api`, `/apis` and the resource lists, so generic Kubernetes clients find what is served.
enum Discovery {
    /// The pods' stream subresources and the options kind of each.
    static let podStreams = [("attach", "PodAttachOptions"), ("exec", "PodExecOptions"), ("portforward", "PodPortForwardOptions")]

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

    /// Categories by kind, as Kubernetes lists them (`kubectl get all` asks for `all`).
    static let categories: [String: [String]] = ["Pod": ["all"], "ReplicaSet": ["all"], "Deployment": ["all"], "DaemonSet": ["all"], "Job": ["all"]]

    /// Groups (v1) whose one resource can only be created: group → (resource, kind).
    static let createOnly = [
        "authentication.k8s.io": ("selfsubjectreviews", "SelfSubjectReview"),
        "authorization.k8s.io": ("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
        "certificates.k8s.io": ("certificatesigningrequests", "CertificateSigningRequest"),
    ]

    static func groupList(custom: [CustomResourceDefinition] = []) -> JSONValue {
        var items: [JSONValue] = groups.keys.sorted().map { group in
            let version: JSONValue = .object([JSONMember("groupVersion", .string("\(group)/\(groups[group]!)")), JSONMember("version", .string(groups[group]!))])
            return .object([JSONMember("name", .string(group)), JSONMember("versions", .array([version])), JSONMember("preferredVersion", version)])
        }
        for (group, versions) in customGroups(custom) where groups[group] == nil {
            let entries: [JSONValue] = versions.map { .object([JSONMember("groupVersion", .string("\(group)/\($0)")), JSONMember("version", .string($0))]) }
            items.append(.object([JSONMember("name", .string(group)), JSONMember("versions", .array(entries)), JSONMember("preferredVersion", entries[0])]))
        }
        return .object([JSONMember("kind", .string("APIGroupList")), JSONMember("apiVersion", .string("v1")), JSONMember("groups", .array(items))])
    }

    /// The groups of custom resources and their served versions (the storage version first), by group name.
    static func customGroups(_ definitions: [CustomResourceDefinition]) -> [(String, [String])] {
        var versions: [String: [String]] = [:]
        for definition in definitions where !definition.metadata.hasDeletionTimestamp {
            let served = definition.spec.versions.filter(\.served).sorted { $0.storage && !$1.storage }.map(\.name)
            for version in served where !(versions[definition.spec.group]?.contains(version) ?? false) {
                versions[definition.spec.group, default: []].append(version)
            }
        }
        return versions.keys.sorted().map { ($0, versions[$0]!) }
    }

    /// The custom resources served at group/version.
    static func customResources(_ definitions: [CustomResourceDefinition], group: String, version: String) -> [CustomResource] {
        definitions.filter { $0.spec.group == group && !$0.metadata.hasDeletionTimestamp }.compactMap { CustomResource($0, version: version) }
    }

    static let allVerbs: [JSONValue] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"].map { .string($0) }

    /// A custom resource's entries in a resource list: itself, and its status subresource.
    static func customEntries(_ resource: CustomResource) -> [JSONValue] {
        let info = resource.info
        let names = resource.definition.status.acceptedNames
        var entry: [JSONMember] = [
            JSONMember("name", .string(info.resource)), JSONMember("singularName", .string(info.singular)),
            JSONMember("namespaced", .bool(info.namespaced)), JSONMember("kind", .string(info.kind)), JSONMember("verbs", .array(allVerbs)),
        ]
        if !info.shortNames.isEmpty { entry.append(JSONMember("shortNames", .array(info.shortNames.map { .string($0) }))) }
        if !names.categories.isEmpty { entry.append(JSONMember("categories", .array(names.categories.map { .string($0) }))) }
        var out: [JSONValue] = [.object(entry)]
        if resource.scale != nil {
            out.append(.object([
                JSONMember("name", .string(info.resource + "/scale")), JSONMember("singularName", .string("")),
                JSONMember("namespaced", .bool(info.namespaced)), JSONMember("group", .string("autoscaling")),
                JSONMember("version", .string("v1")), JSONMember("kind", .string("Scale")),
                JSONMember("verbs", .array([.string("get"), .string("patch"), .string("update")])),
            ]))
        }
        if resource.statusSubresource {
            out.append(.object([
                JSONMember("name", .string(info.resource + "/status")), JSONMember("singularName", .string("")),
                JSONMember("namespaced", .bool(info.namespaced)), JSONMember("kind", .string(info.kind)),
                JSONMember("verbs", .array([.string("get"), .string("patch"), .string("update")])),
            ]))
        }
        return out
    }

    /// The resources of one group/version; nil when nothing is served there.
    static func resourceList(group: String, version: String, custom: [CustomResourceDefinition] = []) -> JSONValue? {
        let customs = customResources(custom, group: group, version: version)
        if !customs.isEmpty, groups[group] == nil {
            return .object([JSONMember("kind", .string("APIResourceList")), JSONMember("apiVersion", .string("v1")),
                            JSONMember("groupVersion", .string("\(group)/\(version)")),
                            JSONMember("resources", .array(customs.flatMap(customEntries)))])
        }
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
            ] + (Self.categories[info.kind].map { [JSONMember("categories", .array($0.map { .string($0) }))] } ?? [])))
            if info.kind == "Pod" {
                resources.append(.object([
                    JSONMember("name", .string("pods/eviction")), JSONMember("singularName", .string("")),
                    JSONMember("namespaced", .bool(true)), JSONMember("group", .string("policy")),
                    JSONMember("version", .string("v1")), JSONMember("kind", .string("Eviction")),
                    JSONMember("verbs", .array([.string("create")])),
                ]))
                for (stream, kind) in podStreams {
                    resources.append(.object([
                        JSONMember("name", .string("pods/\(stream)")), JSONMember("singularName", .string("")),
                        JSONMember("namespaced", .bool(true)), JSONMember("kind", .string(kind)),
                        JSONMember("verbs", .array([.string("create"), .string("get")])),
                    ]))
                }
            }
            if ["ReplicaSet", "Deployment"].contains(info.kind) {
                resources.append(.object([
                    JSONMember("name", .string(info.resource + "/scale")), JSONMember("singularName", .string("")),
                    JSONMember("namespaced", .bool(info.namespaced)), JSONMember("group", .string("autoscaling")),
                    JSONMember("version", .string("v1")), JSONMember("kind", .string("Scale")),
                    JSONMember("verbs", .array([.string("get"), .string("patch"), .string("update")])),
                ]))
            }
            if ["Pod", "Node", "Namespace", "ReplicaSet", "Deployment", "DaemonSet", "Job"].contains(info.kind) {
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

extension Discovery {
    /// Which aggregated discovery document (`apidiscovery.k8s.io`) an Accept header asks for:
    /// "v2", "v2beta1", or nil for the legacy lists. Kubernetes ≥ 1.30 clients ask for v2 first.
    static func aggregatedVersion(_ accept: String?) -> String? {
        guard let accept else { return nil }
        for entry in accept.split(separator: ",") {
            let parameters = entry.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parameters.contains("g=apidiscovery.k8s.io"), parameters.contains("as=APIGroupDiscoveryList") else { continue }
            if parameters.contains("v=v2") { return "v2" }
            if parameters.contains("v=v2beta1") { return "v2beta1" }
        }
        return nil
    }

    static func aggregatedContentType(_ version: String) -> String {
        "application/json;g=apidiscovery.k8s.io;v=\(version);as=APIGroupDiscoveryList"
    }

    static func gvk(_ group: String, _ version: String, _ kind: String) -> JSONValue {
        .object([JSONMember("group", .string(group)), JSONMember("version", .string(version)), JSONMember("kind", .string(kind))])
    }

    /// The resources of one group-version in aggregated form, subresources inside their resource.
    static func aggregatedResources(group: String, version: String, custom: [CustomResourceDefinition] = []) -> [JSONValue] {
        let customs = customResources(custom, group: group, version: version)
        if !customs.isEmpty, groups[group] == nil {
            return customs.map { resource in
                let info = resource.info
                var members: [JSONMember] = [
                    JSONMember("resource", .string(info.resource)), JSONMember("responseKind", gvk(group, version, info.kind)),
                    JSONMember("scope", .string(info.namespaced ? "Namespaced" : "Cluster")), JSONMember("singularResource", .string(info.singular)),
                    JSONMember("verbs", .array(allVerbs)),
                ]
                if !info.shortNames.isEmpty { members.append(JSONMember("shortNames", .array(info.shortNames.map { .string($0) }))) }
                let categories = resource.definition.status.acceptedNames.categories
                if !categories.isEmpty { members.append(JSONMember("categories", .array(categories.map { .string($0) }))) }
                var subresources: [JSONValue] = []
                if resource.statusSubresource {
                    subresources.append(.object([
                        JSONMember("subresource", .string("status")), JSONMember("responseKind", gvk(group, version, info.kind)),
                        JSONMember("verbs", .array([.string("get"), .string("patch"), .string("update")])),
                    ]))
                }
                if resource.scale != nil {
                    subresources.append(.object([
                        JSONMember("subresource", .string("scale")), JSONMember("responseKind", gvk("autoscaling", "v1", "Scale")),
                        JSONMember("verbs", .array([.string("get"), .string("patch"), .string("update")])),
                    ]))
                }
                if !subresources.isEmpty { members.append(JSONMember("subresources", .array(subresources))) }
                return .object(members)
            }
        }
        if version == "v1", let (resource, kind) = createOnly[group] {
            return [.object([
                JSONMember("resource", .string(resource)), JSONMember("responseKind", gvk(group, version, kind)),
                JSONMember("scope", .string("Cluster")), JSONMember("singularResource", .string(String(resource.dropLast()))),
                JSONMember("verbs", .array([.string("create")])),
            ])]
        }
        return Kinds.all.filter { $0.kindInfo.group == group && $0.kindInfo.version == version }.map { kind in
            let info = kind.kindInfo
            var subresources: [JSONValue] = []
            if ["Pod", "Node", "Namespace", "ReplicaSet", "Deployment", "DaemonSet", "Job"].contains(info.kind) {
                subresources.append(.object([JSONMember("subresource", .string("status")), JSONMember("responseKind", gvk(group, version, info.kind)),
                                             JSONMember("verbs", .array([.string("get"), .string("patch"), .string("update")]))]))
            }
            if info.kind == "Pod" {
                subresources.append(.object([JSONMember("subresource", .string("eviction")), JSONMember("responseKind", gvk("policy", "v1", "Eviction")),
                                             JSONMember("verbs", .array([.string("create")]))]))
                for (stream, kind) in podStreams {
                    subresources.append(.object([JSONMember("subresource", .string(stream)), JSONMember("responseKind", gvk("", "v1", kind)),
                                                 JSONMember("verbs", .array([.string("create"), .string("get")]))]))
                }
            }
            if ["ReplicaSet", "Deployment"].contains(info.kind) {
                subresources.append(.object([JSONMember("subresource", .string("scale")), JSONMember("responseKind", gvk("autoscaling", "v1", "Scale")),
                                             JSONMember("verbs", .array([.string("get"), .string("patch"), .string("update")]))]))
            }
            var members: [JSONMember] = [
                JSONMember("resource", .string(info.resource)), JSONMember("responseKind", gvk(group, version, info.kind)),
                JSONMember("scope", .string(info.namespaced ? "Namespaced" : "Cluster")), JSONMember("singularResource", .string(info.singular)),
                JSONMember("verbs", .array(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"].map { .string($0) })),
            ]
            if !info.shortNames.isEmpty { members.append(JSONMember("shortNames", .array(info.shortNames.map { .string($0) }))) }
            if let categories = categories[info.kind] { members.append(JSONMember("categories", .array(categories.map { .string($0) }))) }
            if !subresources.isEmpty { members.append(JSONMember("subresources", .array(subresources))) }
            return .object(members)
        }
    }

    /// `/api` (core: true) or `/apis` as an APIGroupDiscoveryList: every group, version and
    /// resource in one answer.
    static func aggregated(core: Bool, version apiVersion: String, custom: [CustomResourceDefinition] = []) -> JSONValue {
        func groupEntry(_ name: String, _ versions: [String]) -> JSONValue {
            .object([
                JSONMember("metadata", .object([JSONMember("name", .string(name)), JSONMember("creationTimestamp", .null)])),
                JSONMember("versions", .array(versions.map { version in .object([
                    JSONMember("version", .string(version)),
                    JSONMember("resources", .array(aggregatedResources(group: name, version: version, custom: custom))),
                    JSONMember("freshness", .string("Current")),
                ]) })),
            ])
        }
        var items = core ? [groupEntry("", ["v1"])] : groups.keys.sorted().map { groupEntry($0, [groups[$0]!]) }
        if !core {
            for (group, versions) in customGroups(custom) where groups[group] == nil { items.append(groupEntry(group, versions)) }
        }
        return .object([
            JSONMember("kind", .string("APIGroupDiscoveryList")), JSONMember("apiVersion", .string("apidiscovery.k8s.io/\(apiVersion)")),
            JSONMember("metadata", .object([])), JSONMember("items", .array(items)),
        ])
    }
}
