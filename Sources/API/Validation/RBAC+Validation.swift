/// RBAC objects as Kubernetes validates them. Their names are path segments (`system:node` is
/// fine; `/`, `%`, `.` and `..` are not).
public enum RBACNames {
    public static let group = "rbac.authorization.k8s.io"

    static func pathSegmentProblem(_ name: String) -> String? {
        if name == "." || name == ".." { return "may not be '\(name)'" }
        if name.contains("/") { return "may not contain '/'" }
        if name.contains("%") { return "may not contain '%'" }
        return nil
    }
}

extension PolicyRule {
    /// A resource rule.
    public init(verbs: [String], apiGroups: [String], resources: [String], resourceNames: [String] = []) {
        self.init()
        self.verbs = verbs
        self.apiGroups = apiGroups
        self.resources = resources
        self.resourceNames = resourceNames
    }

    /// A rule for paths that name no resource (`/metrics`, discovery).
    public init(verbs: [String], nonResourceURLs: [String]) {
        self.init()
        self.verbs = verbs
        self.nonResourceUrls = nonResourceURLs
    }
}

func validateRules(_ rules: [PolicyRule], namespaced: Bool) -> [FieldError] {
    var errors: [FieldError] = []
    for (i, rule) in rules.enumerated() {
        let path = "rules[\(i)]"
        if rule.verbs.isEmpty { errors.append(.required("\(path).verbs", "verbs must contain at least one value")) }
        if !rule.nonResourceUrls.isEmpty {
            if namespaced {
                errors.append(.invalid("\(path).nonResourceURLs", rule.nonResourceUrls.joined(separator: ","), "namespaced rules cannot apply to non-resource URLs"))
            }
            if !rule.apiGroups.isEmpty || !rule.resources.isEmpty {
                errors.append(.invalid("\(path).nonResourceURLs", rule.nonResourceUrls.joined(separator: ","), "rules cannot apply to both regular resources and non-resource URLs"))
            }
            continue
        }
        if rule.apiGroups.isEmpty { errors.append(.required("\(path).apiGroups", "resource rules must supply at least one api group")) }
        if rule.resources.isEmpty { errors.append(.required("\(path).resources", "resource rules must supply at least one resource")) }
    }
    return errors
}

func validateBinding(subjects: [Subject], roleRef: RoleRef, kinds: [String], namespaced: Bool) -> [FieldError] {
    var errors: [FieldError] = []
    if roleRef.apiGroup != RBACNames.group { errors.append(.notSupported("roleRef.apiGroup", roleRef.apiGroup, [RBACNames.group])) }
    if !kinds.contains(roleRef.kind) { errors.append(.notSupported("roleRef.kind", roleRef.kind, kinds)) }
    if roleRef.name.isEmpty {
        errors.append(.required("roleRef.name"))
    } else if let problem = RBACNames.pathSegmentProblem(roleRef.name) {
        errors.append(.invalid("roleRef.name", roleRef.name, problem))
    }
    for (i, subject) in subjects.enumerated() {
        let path = "subjects[\(i)]"
        if subject.name.isEmpty { errors.append(.required("\(path).name")) }
        switch subject.kind {
        case "User", "Group":
            if subject.apiGroup != RBACNames.group { errors.append(.notSupported("\(path).apiGroup", subject.apiGroup, [RBACNames.group])) }
        case "ServiceAccount":
            if !subject.apiGroup.isEmpty { errors.append(.notSupported("\(path).apiGroup", subject.apiGroup, [""])) }
            if subject.namespace.isEmpty && !namespaced { errors.append(.required("\(path).namespace")) }
        default:
            errors.append(.notSupported("\(path).kind", subject.kind, ["User", "Group", "ServiceAccount"]))
        }
    }
    return errors
}

func defaultSubjects(_ subjects: inout [Subject], namespace: String) {
    for i in subjects.indices {
        if (subjects[i].kind == "User" || subjects[i].kind == "Group") && subjects[i].apiGroup.isEmpty { subjects[i].apiGroup = RBACNames.group }
        if subjects[i].kind == "ServiceAccount" && subjects[i].namespace.isEmpty { subjects[i].namespace = namespace }
    }
}

extension Role {
    public mutating func applyDefaults() {
        setTypeMeta()
        if metadata.namespace.isEmpty { metadata.namespace = "default" }
    }

    public func validate() -> [FieldError] {
        validateObjectMeta(metadata, namespaced: true, nameRule: RBACNames.pathSegmentProblem) + validateRules(rules, namespaced: true)
    }
}

extension ClusterRole {
    public mutating func applyDefaults() { setTypeMeta() }

    public func validate() -> [FieldError] {
        validateObjectMeta(metadata, namespaced: false, nameRule: RBACNames.pathSegmentProblem) + validateRules(rules, namespaced: false)
    }
}

extension RoleBinding {
    public mutating func applyDefaults() {
        setTypeMeta()
        if metadata.namespace.isEmpty { metadata.namespace = "default" }
        if roleRef.apiGroup.isEmpty { roleRef.apiGroup = RBACNames.group }
        defaultSubjects(&subjects, namespace: metadata.namespace)
    }

    public func validate() -> [FieldError] {
        validateObjectMeta(metadata, namespaced: true, nameRule: RBACNames.pathSegmentProblem)
            + validateBinding(subjects: subjects, roleRef: roleRef, kinds: ["Role", "ClusterRole"], namespaced: true)
    }
}

extension ClusterRoleBinding {
    public mutating func applyDefaults() {
        setTypeMeta()
        if roleRef.apiGroup.isEmpty { roleRef.apiGroup = RBACNames.group }
        defaultSubjects(&subjects, namespace: "")
    }

    public func validate() -> [FieldError] {
        validateObjectMeta(metadata, namespaced: false, nameRule: RBACNames.pathSegmentProblem)
            + validateBinding(subjects: subjects, roleRef: roleRef, kinds: ["ClusterRole"], namespaced: false)
    }
}
