import API
import Foundation
import Logging
import Store
import Synchronization

/// What a request asks to do, in RBAC's terms.
public struct RequestAttributes: Sendable, Equatable {
    public var user: String
    public var groups: [String]
    public var verb: String
    /// false for paths that name no resource (`/metrics`, discovery).
    public var isResourceRequest = true
    public var apiGroup = ""
    public var resource = ""
    public var subresource = ""
    public var namespace = ""
    public var name = ""
    public var path = ""

    public init(user: String, groups: [String], verb: String) {
        self.user = user
        self.groups = groups
        self.verb = verb
    }

    /// Kubernetes' wording of a denial.
    public var forbiddenMessage: String {
        guard isResourceRequest else { return "forbidden: User \"\(user)\" cannot \(verb) path \"\(path)\"" }
        let full = subresource.isEmpty ? resource : "\(resource)/\(subresource)"
        let qualified = apiGroup.isEmpty ? resource : "\(resource).\(apiGroup)"
        let object = name.isEmpty ? qualified : "\(qualified) \"\(name)\""
        let scope = namespace.isEmpty ? "at the cluster scope" : "in the namespace \"\(namespace)\""
        return "\(object) is forbidden: User \"\(user)\" cannot \(verb) resource \"\(full)\" in API group \"\(apiGroup)\" \(scope)"
    }
}

/// Role-based access control as Kubernetes defines it: a request is allowed when a
/// ClusterRoleBinding (anywhere) or a RoleBinding (in the request's namespace) binds one of the
/// caller's identities (user, groups, `system:authenticated`) to a role with a matching rule.
/// Members of `system:masters` may do anything. The roles and bindings are kept in memory,
/// reloaded from the store whenever one of them changes.
public final class Authorizer: Sendable {
    public static let superuserGroup = "system:masters"
    public static let authenticatedGroup = "system:authenticated"

    public struct Policy: Sendable {
        public var roles: [String: [PolicyRule]] = [:]
        public var clusterRoles: [String: [PolicyRule]] = [:]
        public var roleBindings: [String: [RoleBinding]] = [:]
        public var clusterRoleBindings: [ClusterRoleBinding] = []

        public init(roles: [Role] = [], clusterRoles: [ClusterRole] = [], roleBindings: [RoleBinding] = [], clusterRoleBindings: [ClusterRoleBinding] = []) {
            for role in roles { self.roles["\(role.metadata.namespace)/\(role.metadata.name)"] = role.rules }
            for role in clusterRoles { self.clusterRoles[role.metadata.name] = role.rules }
            for binding in roleBindings { self.roleBindings[binding.metadata.namespace, default: []].append(binding) }
            self.clusterRoleBindings = clusterRoleBindings
        }
    }

    let policy = Mutex(Policy())

    public init(policy: Policy = Policy()) {
        self.policy.withLock { $0 = policy }
    }

    public func authorize(_ request: RequestAttributes) -> Bool {
        if request.groups.contains(Self.superuserGroup) { return true }
        let policy = self.policy.withLock { $0 }
        let groups = Set(request.groups + [Self.authenticatedGroup])
        for binding in policy.clusterRoleBindings where Self.binds(binding.subjects, request.user, groups) {
            if policy.clusterRoles[binding.roleRef.name]?.contains(where: { Self.matches($0, request) }) == true { return true }
        }
        guard !request.namespace.isEmpty, let bindings = policy.roleBindings[request.namespace] else { return false }
        for binding in bindings where Self.binds(binding.subjects, request.user, groups) {
            let rules = binding.roleRef.kind == "ClusterRole"
                ? policy.clusterRoles[binding.roleRef.name]
                : policy.roles["\(binding.metadata.namespace)/\(binding.roleRef.name)"]
            if rules?.contains(where: { Self.matches($0, request) }) == true { return true }
        }
        return false
    }

    static func binds(_ subjects: [Subject], _ user: String, _ groups: Set<String>) -> Bool {
        subjects.contains { subject in
            switch subject.kind {
            case "User": subject.name == user
            case "Group": groups.contains(subject.name)
            case "ServiceAccount": user == "system:serviceaccount:\(subject.namespace):\(subject.name)"
            default: false
            }
        }
    }

    /// Whether one rule allows the request: verb, API group, resource (with subresource) and
    /// name for resource requests; verb and path for the others.
    public static func matches(_ rule: PolicyRule, _ request: RequestAttributes) -> Bool {
        guard rule.verbs.contains("*") || rule.verbs.contains(request.verb) else { return false }
        guard request.isResourceRequest else {
            return rule.nonResourceUrls.contains { url in
                url == "*" || url == request.path || url.hasSuffix("*") && request.path.hasPrefix(String(url.dropLast()))
            }
        }
        guard rule.apiGroups.contains("*") || rule.apiGroups.contains(request.apiGroup) else { return false }
        let combined = request.subresource.isEmpty ? request.resource : "\(request.resource)/\(request.subresource)"
        let resourceMatches = rule.resources.contains { resource in
            resource == "*" || resource == combined
                || !request.subresource.isEmpty && (resource == "*/\(request.subresource)" || resource == "\(request.resource)/*")
        }
        guard resourceMatches else { return false }
        return rule.resourceNames.isEmpty || !request.name.isEmpty && rule.resourceNames.contains(request.name)
    }

    // MARK: Following the store

    /// Loads every role and binding from the store; returns the store revision they reflect.
    @discardableResult
    public func reload(from store: any ObjectStore) async throws -> Int64 {
        let everything = ListOptions()
        let roles = try await store.list(Role.self, options: everything)
        let clusterRoles = try await store.list(ClusterRole.self, options: everything)
        let roleBindings = try await store.list(RoleBinding.self, options: everything)
        let clusterRoleBindings = try await store.list(ClusterRoleBinding.self, options: everything)
        let loaded = Policy(roles: roles.items, clusterRoles: clusterRoles.items, roleBindings: roleBindings.items,
                            clusterRoleBindings: clusterRoleBindings.items)
        policy.withLock { $0 = loaded }
        return roles.revision
    }

    struct WatchEnded: Error {}

    /// Reloads whenever a role or binding changes, until cancelled. A watch that ends (the store
    /// compacted past it) is followed by a full reload and new watches from there.
    public func follow(_ store: any ObjectStore, from revision: Int64, logger: Logger) async {
        var revision = revision
        while !Task.isCancelled {
            do {
                let start = revision
                try await withThrowingTaskGroup(of: Void.self) { group in
                    let (changes, changed) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
                    for kind in [Role.self, ClusterRole.self, RoleBinding.self, ClusterRoleBinding.self] as [any APIObject.Type] {
                        let watch = try store.watch(from: start, options: Self.watchOptions(kind))
                        group.addTask {
                            defer { watch.cancel() }
                            for try await _ in watch { changed.yield() }
                            throw WatchEnded()
                        }
                    }
                    group.addTask {
                        for await _ in changes { try await self.reload(from: store) }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            } catch {
                if Task.isCancelled { return }
                logger.info("RBAC watch ended; reloading the roles and bindings", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(200))
            }
            if let current = try? await reload(from: store) { revision = current }
        }
    }

    static func watchOptions<T: APIObject>(_ type: T.Type) -> WatchOptions { .of(T.self) }
}
