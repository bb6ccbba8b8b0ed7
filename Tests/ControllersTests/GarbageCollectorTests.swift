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
}
