import API
import Client
import ControllerRuntime
import Controllers
import Foundation
import Testing
import TestSupport

@Suite(.watchdog) struct GarbageCollectorTests {
    static func controllers(_ context: ControllerContext) -> [Controller] {
        [ReplicaSetController(context: context).controller(), GarbageCollector(context: context).controller()]
    }

    @Test func backgroundDeletionRemovesTheOwnersPods() async throws {
        try await ControllerHarness.run(Self.controllers) { harness, _ in
            _ = try await harness.client.create(replicaSet("bg", replicas: 3, labels: ["app": "bg"]))
            try await waitUntil("3 pods") { try await harness.pods("app=bg").count == 3 }
            _ = try await harness.client.delete(ReplicaSet.self, namespace: "default", name: "bg")
            try await waitUntil("the pods are collected") { try await harness.pods("app=bg").isEmpty }
        }
    }

    @Test func foregroundDeletionKeepsTheOwnerUntilItsDependentsAreGone() async throws {
        try await ControllerHarness.run(Self.controllers) { harness, _ in
            _ = try await harness.client.create(replicaSet("fg", replicas: 2, labels: ["app": "fg"]))
            try await waitUntil("2 pods") { try await harness.pods("app=fg").count == 2 }
            let marked = try await harness.client.delete(ReplicaSet.self, namespace: "default", name: "fg", propagationPolicy: "Foreground")
            #expect(marked.metadata.hasDeletionTimestamp)
            #expect(marked.metadata.finalizers == [GarbageCollector.foregroundFinalizer])
            try await waitUntil("pods and then the owner are gone") {
                let owner = try? await harness.client.get(ReplicaSet.self, namespace: "default", name: "fg")
                let pods = try await harness.pods("app=fg")
                return owner == nil && pods.isEmpty
            }
        }
    }

    @Test func orphanDeletionLeavesTheDependentsUnowned() async throws {
        try await ControllerHarness.run(Self.controllers) { harness, _ in
            _ = try await harness.client.create(replicaSet("or", replicas: 2, labels: ["app": "or"]))
            try await waitUntil("2 pods") { try await harness.pods("app=or").count == 2 }
            _ = try await harness.client.delete(ReplicaSet.self, namespace: "default", name: "or", propagationPolicy: "Orphan")
            try await waitUntil("the owner is gone") { (try? await harness.client.get(ReplicaSet.self, namespace: "default", name: "or")) == nil }
            let pods = try await harness.pods("app=or")
            #expect(pods.count == 2)
            #expect(pods.allSatisfy { $0.metadata.ownerReferences.isEmpty })
        }
    }

    @Test func anUnknownPropagationPolicyIsRejectedAndNothingIsDeleted() async throws {
        try await InProcessAPI.with { api in
            _ = try await api.client.create(replicaSet("keep", replicas: 0, labels: ["app": "keep"]))
            await #expect(throws: ClientError.self) {
                _ = try await api.client.delete(ReplicaSet.self, namespace: "default", name: "keep", propagationPolicy: "Sideways")
            }
            let kept = try await api.client.get(ReplicaSet.self, namespace: "default", name: "keep")
            #expect(!kept.metadata.hasDeletionTimestamp)
        }
    }

    @Test func deletingANamespaceDeletesEverythingInItThenTheNamespace() async throws {
        try await ControllerHarness.run({ context in
            Self.controllers(context) + [NamespaceController(context: context).controller()]
        }) { harness, _ in
            var namespace = Namespace()
            namespace.metadata.name = "scratch"
            _ = try await harness.client.create(namespace)
            _ = try await harness.client.create(replicaSet("rs", replicas: 2, labels: ["app": "rs"], namespace: "scratch"))
            try await waitUntil("2 pods in scratch") { try await harness.pods("app=rs", namespace: "scratch").count == 2 }

            let terminating = try await harness.client.delete(Namespace.self, namespace: "", name: "scratch")
            #expect(terminating.status.phase == "Terminating")
            do {
                _ = try await harness.client.create(TestObjects.pod("late", namespace: "scratch"))
                Issue.record("a pod was created in a terminating namespace")
            } catch let error as ClientError {
                #expect(error.code == 403 || error.code == 404)
            }
            try await waitUntil("the namespace and its contents are gone") {
                let gone = (try? await harness.client.get(Namespace.self, namespace: "", name: "scratch")) == nil
                let sets = try await harness.client.list(ReplicaSet.self, namespace: "scratch").items
                let pods = try await harness.pods(namespace: "scratch")
                return gone && sets.isEmpty && pods.isEmpty
            }
        }
    }

    static let widgets = """
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: widgets.gc.example.com}
        spec:
          group: gc.example.com
          scope: Namespaced
          names: {plural: widgets, kind: Widget}
          versions:
          - name: v1
            served: true
            storage: true
            schema:
              openAPIV3Schema: {type: object}
        """

    /// Owners and dependents of any kind: a custom object owning a custom object owning a
    /// ConfigMap (background), a custom owner waiting for a Secret (foreground), a ConfigMap left
    /// unowned (orphan).
    @Test func ownersAndDependentsOfAnyKindAreCollected() async throws {
        try await ControllerHarness.run(Self.controllers) { harness, _ in
            let client = harness.client
            _ = try await client.create(try CustomResourceDefinition(json: try Manifests.singleDocument(Self.widgets)))
            let widgets = DynamicResource(client: client, group: "gc.example.com", version: "v1", kind: "Widget", plural: "widgets", namespaced: true)
            try await waitUntil("widgets are served") { (try? await widgets.list(namespace: "default")) != nil }
            func reference(_ owner: CustomObject) -> OwnerReference {
                var reference = OwnerReference()
                reference.apiVersion = "gc.example.com/v1"
                reference.kind = "Widget"
                reference.name = owner.metadata.name
                reference.uid = owner.metadata.uid
                reference.blockOwnerDeletion = true
                return reference
            }
            func widget(_ name: String, owner: CustomObject? = nil) async throws -> CustomObject {
                var object = widgets.object(namespace: "default", name: name)
                if let owner { object.metadata.ownerReferences = [reference(owner)] }
                return try await widgets.create(object)
            }
            func configMap(_ name: String, owner: CustomObject) async throws {
                var map = ConfigMap()
                map.metadata.name = name
                map.metadata.namespace = "default"
                map.metadata.ownerReferences = [reference(owner)]
                _ = try await client.create(map)
            }

            // Background: the owner goes, then its Widget, then that one's ConfigMap.
            let owner = try await widget("owner")
            let child = try await widget("child", owner: owner)
            try await configMap("of-child", owner: child)
            _ = try await widgets.delete(namespace: "default", name: "owner")
            try await waitUntil("the chain is collected") {
                let widget = try? await widgets.get(namespace: "default", name: "child")
                let map = try? await client.get(ConfigMap.self, namespace: "default", name: "of-child")
                return widget == nil && map == nil
            }

            // Foreground: the owner waits for its Secret (held by a finalizer of its own).
            let second = try await widget("second")
            var secret = Secret()
            secret.metadata.name = "of-second"
            secret.metadata.namespace = "default"
            secret.metadata.ownerReferences = [reference(second)]
            secret.metadata.finalizers = ["example.com/hold"]
            _ = try await client.create(secret)
            _ = try await widgets.delete(namespace: "default", name: "second", propagationPolicy: "Foreground")
            try await waitUntil("the Secret is being deleted") {
                try await client.get(Secret.self, namespace: "default", name: "of-second").metadata.hasDeletionTimestamp
            }
            let waiting = try await widgets.get(namespace: "default", name: "second")
            #expect(waiting.metadata.finalizers == [GarbageCollector.foregroundFinalizer], "the owner waits for its dependent")
            try await harness.modify(Secret.self, "of-second") { $0.metadata.finalizers.removeAll { $0 == "example.com/hold" } }
            try await waitUntil("then the owner goes") { (try? await widgets.get(namespace: "default", name: "second")) == nil }

            // Orphan: the ConfigMap stays, without the reference.
            let third = try await widget("third")
            try await configMap("of-third", owner: third)
            _ = try await widgets.delete(namespace: "default", name: "third", propagationPolicy: "Orphan")
            try await waitUntil("the orphaning owner is gone") { (try? await widgets.get(namespace: "default", name: "third")) == nil }
            let left = try await client.get(ConfigMap.self, namespace: "default", name: "of-third")
            #expect(left.metadata.ownerReferences.isEmpty)
        }
    }
}
