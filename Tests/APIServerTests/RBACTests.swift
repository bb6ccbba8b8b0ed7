import API
import APIServer
import Client
import Foundation
import PKI
import Testing
import TestSupport

/// RBAC as Kubernetes defines it: the rule matching on its own, then a real server (TLS on
/// loopback) with identities minted from its CA, impersonation, access reviews and `cox auth can-i`.
@Suite(.watchdog) struct RBACRuleTests {
    static func rule(_ verbs: [String], _ groups: [String] = [""], _ resources: [String], names: [String] = []) -> PolicyRule {
        PolicyRule(verbs: verbs, apiGroups: groups, resources: resources, resourceNames: names)
    }

    static func ask(_ verb: String, _ resource: String, sub: String = "", group: String = "", namespace: String = "default", name: String = "",
                    user: String = "alice", groups: [String] = []) -> RequestAttributes {
        var attributes = RequestAttributes(user: user, groups: groups, verb: verb)
        attributes.apiGroup = group
        attributes.resource = resource
        attributes.subresource = sub
        attributes.namespace = namespace
        attributes.name = name
        return attributes
    }

    static func subject(_ kind: String, _ name: String, namespace: String = "") -> Subject {
        var subject = Subject()
        subject.kind = kind
        subject.name = name
        subject.namespace = namespace
        return subject
    }

    @Test func rulesMatchVerbGroupResourceSubresourceAndName() {
        let read = Self.rule(["get", "list"], ["", "apps"], ["pods", "deployments"])
        #expect(Authorizer.matches(read, Self.ask("list", "pods")))
        #expect(Authorizer.matches(read, Self.ask("get", "deployments", group: "apps")))
        #expect(!Authorizer.matches(read, Self.ask("create", "pods")))
        #expect(!Authorizer.matches(read, Self.ask("list", "nodes")))
        #expect(!Authorizer.matches(read, Self.ask("get", "pods", sub: "log")), "a subresource is its own resource")
        #expect(Authorizer.matches(Self.rule(["get"], [""], ["pods/log"]), Self.ask("get", "pods", sub: "log")))
        #expect(Authorizer.matches(Self.rule(["get"], [""], ["*/status"]), Self.ask("get", "pods", sub: "status")))
        #expect(Authorizer.matches(Self.rule(["*"], ["*"], ["*"]), Self.ask("delete", "nodes", namespace: "")))
        let named = Self.rule(["get", "create"], [""], ["pods"], names: ["web"])
        #expect(Authorizer.matches(named, Self.ask("get", "pods", name: "web")))
        #expect(!Authorizer.matches(named, Self.ask("get", "pods", name: "db")))
        #expect(!Authorizer.matches(named, Self.ask("create", "pods")), "a create names no object yet, so resourceNames never match it")
        let metrics = PolicyRule(verbs: ["get"], nonResourceURLs: ["/metrics", "/apis/*"])
        var path = RequestAttributes(user: "alice", groups: [], verb: "get")
        path.isResourceRequest = false
        path.path = "/metrics"
        #expect(Authorizer.matches(metrics, path))
        path.path = "/apis/apps/v1"
        #expect(Authorizer.matches(metrics, path))
        path.path = "/version"
        #expect(!Authorizer.matches(metrics, path))
    }

    @Test func bindingsGrantTheirRolesToUsersGroupsAndServiceAccountsInTheirScope() {
        var view = ClusterRole()
        view.metadata.name = "view"
        view.rules = [Self.rule(["get", "list", "watch"], [""], ["pods"])]
        var edit = Role()
        edit.metadata.namespace = "team"
        edit.metadata.name = "pod-editor"
        edit.rules = [Self.rule(["create", "delete"], [""], ["pods"])]
        var everywhere = ClusterRoleBinding()
        everywhere.metadata.name = "viewers"
        everywhere.roleRef.kind = "ClusterRole"
        everywhere.roleRef.name = "view"
        everywhere.subjects = [Self.subject("Group", "viewers")]
        var inTeam = RoleBinding()
        inTeam.metadata.namespace = "team"
        inTeam.metadata.name = "editors"
        inTeam.roleRef.kind = "Role"
        inTeam.roleRef.name = "pod-editor"
        inTeam.subjects = [Self.subject("User", "bob"), Self.subject("ServiceAccount", "deployer", namespace: "ci")]
        var viewInTeam = RoleBinding()
        viewInTeam.metadata.namespace = "team"
        viewInTeam.metadata.name = "carol-views"
        viewInTeam.roleRef.kind = "ClusterRole"
        viewInTeam.roleRef.name = "view"
        viewInTeam.subjects = [Self.subject("User", "carol")]
        let authorizer = Authorizer(policy: .init(roles: [edit], clusterRoles: [view], roleBindings: [inTeam, viewInTeam], clusterRoleBindings: [everywhere]))

        #expect(authorizer.authorize(Self.ask("list", "pods", namespace: "anywhere", groups: ["viewers"])))
        #expect(!authorizer.authorize(Self.ask("create", "pods", groups: ["viewers"])))
        #expect(authorizer.authorize(Self.ask("create", "pods", namespace: "team", user: "bob")))
        #expect(!authorizer.authorize(Self.ask("create", "pods", namespace: "default", user: "bob")), "a RoleBinding grants only in its namespace")
        #expect(authorizer.authorize(Self.ask("delete", "pods", namespace: "team", name: "x", user: "system:serviceaccount:ci:deployer")))
        #expect(authorizer.authorize(Self.ask("get", "pods", namespace: "team", name: "x", user: "carol")), "a ClusterRole bound in a namespace")
        #expect(!authorizer.authorize(Self.ask("get", "pods", namespace: "default", name: "x", user: "carol")))
        #expect(!authorizer.authorize(Self.ask("list", "pods", user: "mallory")))
        #expect(authorizer.authorize(Self.ask("delete", "nodes", namespace: "", user: "root", groups: ["system:masters"])))
    }

    @Test func denialsSayWhatWasDeniedInKubernetesWords() {
        #expect(Self.ask("list", "pods").forbiddenMessage
                == #"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#)
        #expect(Self.ask("delete", "deployments", group: "apps", name: "web").forbiddenMessage
                == #"deployments.apps "web" is forbidden: User "alice" cannot delete resource "deployments" in API group "apps" in the namespace "default""#)
        #expect(Self.ask("get", "pods", sub: "log", name: "web").forbiddenMessage
                == #"pods "web" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the namespace "default""#)
        #expect(Self.ask("list", "nodes", namespace: "").forbiddenMessage
                == #"nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#)
    }
}

@Suite(.serialized, .watchdog) struct RBACServerTests {
    /// A client for a new identity issued by the server's CA (CN = user, O = groups).
    static func client(_ api: InProcessAPI, user: String, groups: [String], server: String? = nil) throws -> APIClient {
        let identity = try Self.identity(api, user, groups)
        let admin = try Kubeconfig.load(path: api.kubeconfigPath)
        let kubeconfig = Kubeconfig(server: server ?? admin.server, caPEM: admin.caPEM, user: user,
                                    clientCertificatePEM: identity.certificatePEM, clientKeyPEM: identity.privateKeyPEM)
        return try APIClient(kubeconfig: kubeconfig, timeout: InProcessAPI.deadline, maxAttempts: 1)
    }

    static func code(_ body: () async throws -> Void) async -> Int {
        do {
            try await body()
            return 200
        } catch let error as ClientError {
            return error.code
        } catch {
            return -1
        }
    }

    @Test func aViewerReadsButCannotWriteAndImpersonationIsChecked() async throws {
        try await InProcessAPI.with { api in
            let roles = try await api.client.list(ClusterRole.self, namespace: nil).items.map(\.metadata.name)
            for builtIn in ["cluster-admin", "admin", "edit", "view", "system:kube-scheduler", "system:kube-controller-manager", "system:node"] {
                #expect(roles.contains(builtIn), "built-in ClusterRole \(builtIn)")
            }
            let alice = try Self.client(api, user: "alice", groups: ["viewers"])
            defer { Task { try? await alice.shutdown() } }

            // Nothing is bound to alice yet: authenticated, but forbidden, and told exactly what.
            do {
                _ = try await alice.list(Pod.self, namespace: "default")
                Issue.record("alice listed pods without any role")
            } catch let error as ClientError {
                #expect(error.code == 403)
                #expect(error.message == #"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#)
            }
            #expect(try await alice.accessReview(Self.attributes("list", "pods")).allowed == false)

            // Viewers may view in default.
            var binding = RoleBinding()
            binding.metadata.namespace = "default"
            binding.metadata.name = "viewers-view"
            binding.roleRef.kind = "ClusterRole"
            binding.roleRef.name = "view"
            binding.subjects = [RBACRuleTests.subject("Group", "viewers")]
            _ = try await api.client.create(binding)
            try await waitUntil("the binding takes effect") { await Self.code { _ = try await alice.list(Pod.self, namespace: "default") } == 200 }
            #expect(await Self.code { _ = try await alice.create(TestObjects.pod("p")) } == 403)
            #expect(await Self.code { _ = try await alice.list(Pod.self, namespace: "kube-system") } == 403)
            #expect(await Self.code { _ = try await alice.list(Node.self, namespace: nil) } == 403)
            #expect(try await alice.accessReview(Self.attributes("list", "pods")).allowed)
            #expect(try await alice.accessReview(Self.attributes("create", "pods")).allowed == false)

            // The admin may act as alice, and is then held to alice's rights; alice may not act as the admin.
            let asAlice = try APIClient(kubeconfig: try Kubeconfig.load(path: api.kubeconfigPath), timeout: InProcessAPI.deadline, maxAttempts: 1,
                                        impersonate: ("alice", ["viewers"]))
            defer { Task { try? await asAlice.shutdown() } }
            #expect(await Self.code { _ = try await asAlice.list(Pod.self, namespace: "default") } == 200)
            #expect(await Self.code { _ = try await asAlice.create(TestObjects.pod("p")) } == 403)
            let admin = try Kubeconfig.load(path: api.kubeconfigPath)
            let aliceIdentity = try Self.identity(api, "alice", ["viewers"])
            let sneaky = try APIClient(kubeconfig: Kubeconfig(server: admin.server, caPEM: admin.caPEM, user: "alice",
                                                              clientCertificatePEM: aliceIdentity.certificatePEM, clientKeyPEM: aliceIdentity.privateKeyPEM),
                                       timeout: .seconds(10), maxAttempts: 1, impersonate: ("admin", ["system:masters"]))
            defer { Task { try? await sneaky.shutdown() } }
            let sneakyCode = await Self.code { _ = try await sneaky.create(TestObjects.pod("p")) }
            #expect(sneakyCode == 403, "alice impersonating the admin got \(sneakyCode)")
            #expect(try await api.client.list(Pod.self, namespace: "default").items.isEmpty, "nothing was created by anyone denied")
        }
    }

    static func identity(_ api: InProcessAPI, _ user: String, _ groups: [String]) throws -> KeyPair {
        try ClusterPKI.loadAuthority(directory: (api.dir.path as NSString).appendingPathComponent("pki")).issue(commonName: user, organizations: groups, usage: .client)
    }

    static func attributes(_ verb: String, _ resource: String, namespace: String = "default") -> ResourceAttributes {
        var attributes = ResourceAttributes()
        attributes.verb = verb
        attributes.resource = resource
        attributes.namespace = namespace
        return attributes
    }

    @Test func coxAuthCanIAnswersForOthers() async throws {
        try await InProcessAPI.with { api in
            var binding = ClusterRoleBinding()
            binding.metadata.name = "alice-views"
            binding.roleRef.kind = "ClusterRole"
            binding.roleRef.name = "view"
            binding.subjects = [RBACRuleTests.subject("User", "alice")]
            _ = try await api.client.create(binding)
            let cox = try coxBinary()
            func canI(_ arguments: String...) async throws -> Tools.Output {
                try await Tools.runDetached(cox, ["auth", "can-i"] + arguments + ["--kubeconfig", api.kubeconfigPath])
            }
            try await waitUntil("the binding takes effect") { try await canI("list", "pods", "--as", "alice").output.hasPrefix("yes") }
            let no = try await canI("create", "deployments", "--as", "alice")
            #expect(no.status == 1 && no.output.hasPrefix("no"), "\(no.output)")
            let logs = try await canI("get", "pods/log", "--as", "alice", "-n", "kube-system")
            #expect(logs.status == 0 && logs.output.hasPrefix("yes"), "a ClusterRoleBinding grants in every namespace: \(logs.output)")
            let admin = try await canI("delete", "nodes")
            #expect(admin.status == 0 && admin.output.hasPrefix("yes"))
        }
    }
}
