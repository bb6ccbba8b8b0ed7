import API
import Client
import ControllerRuntime
import Controllers
import Foundation
import Testing
import TestSupport

@Suite(.watchdog) struct ReplicaSetControllerTests {
    @Test func keepsTheReplicasReplacesDeletedPodsAndScales() async throws {
        try await ControllerHarness.run({ [ReplicaSetController(context: $0).controller()] }) { harness, _ in
            let set = try await harness.client.create(replicaSet("web", replicas: 3, labels: ["app": "web"]))
            try await waitUntil("3 pods") { try await harness.pods("app=web").count == 3 }
            let pods = try await harness.pods("app=web")
            #expect(pods.allSatisfy { $0.metadata.controllerReference?.uid == set.metadata.uid && $0.metadata.name.hasPrefix("web-") })
            #expect(pods.allSatisfy { $0.spec.containers.first?.command == ["sleep", "3600"] })

            let victim = pods[0].metadata.name
            _ = try await harness.client.delete(Pod.self, namespace: "default", name: victim)
            try await waitUntil("the deleted pod is replaced") {
                let names = try await harness.pods("app=web").map(\.metadata.name)
                return names.count == 3 && !names.contains(victim)
            }
            try await waitUntil("status counts 3 replicas") {
                let status = try await harness.client.get(ReplicaSet.self, namespace: "default", name: "web").status
                return status.replicas == 3 && status.observedGeneration == set.metadata.generation
            }

            try await harness.modify(ReplicaSet.self, "web") { $0.spec.replicas = 1 }
            try await waitUntil("scaled down to 1") { try await harness.pods("app=web").count == 1 }
            // Settled: it stays at 1.
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await harness.pods("app=web").count == 1)
        }
    }

    @Test func adoptsMatchingOrphansAndReleasesPodsThatStopMatching() async throws {
        try await ControllerHarness.run({ [ReplicaSetController(context: $0).controller()] }) { harness, _ in
            _ = try await harness.client.create(TestObjects.pod("stray", labels: ["app": "api"]))
            // Pods and ReplicaSets come through separate watches: let the orphan reach the cache
            // first, or the ReplicaSet may rightly create two pods and adopt it later.
            try await waitUntil("the orphan is cached") { harness.context.informers.informer(Pod.self).get(namespace: "default", name: "stray") != nil }
            let set = try await harness.client.create(replicaSet("api", replicas: 2, labels: ["app": "api"]))
            try await waitUntil("the orphan is adopted and one more pod made") {
                let pods = try await harness.pods("app=api")
                return pods.count == 2 && pods.allSatisfy { $0.metadata.controllerReference?.uid == set.metadata.uid }
            }
            #expect(try await harness.pods("app=api").contains { $0.metadata.name == "stray" })

            // Relabel the adopted pod: it is released (owner reference removed) and replaced.
            try await harness.modify(Pod.self, "stray") { $0.metadata.labels["app"] = "elsewhere" }
            try await waitUntil("the relabelled pod is released and replaced") {
                let released = try await harness.client.get(Pod.self, namespace: "default", name: "stray")
                let owned = try await harness.pods("app=api")
                return released.metadata.ownerReferences.isEmpty && owned.count == 2 && !owned.contains { $0.metadata.name == "stray" }
            }
        }
    }

    /// The pod cache is behind the controller's own creates: a second reconcile must not create
    /// again. The informers here are fed by hand, so the cache never sees the new pods.
    @Test func expectationsPreventCreatingTwiceWhenTheWatchIsSlow() async throws {
        try await InProcessAPI.with { api in
            let harness = ControllerHarness(api: api, clock: SystemClock())
            let controller = ReplicaSetController(context: harness.context)
            let created = try await api.client.create(replicaSet("slow", replicas: 3, labels: ["app": "slow"]))
            harness.context.informers.informer(ReplicaSet.self).apply(.relisted([created], revision: created.metadata.resourceVersion))
            harness.context.informers.informer(Pod.self).apply(.relisted([], revision: created.metadata.resourceVersion))

            _ = try await controller.reconcile(ObjectKey(created))
            // The cached ReplicaSet is stale too, so its status write may conflict; what matters is the pod count.
            _ = try? await controller.reconcile(ObjectKey(created))
            #expect(try await harness.pods("app=slow").count == 3)
            #expect(!controller.expectations.satisfied(ObjectKey(created)))

            // The watch catches up: the controller counts again and finds nothing to do.
            let pods = try await harness.pods("app=slow")
            for pod in pods { harness.context.informers.informer(Pod.self).apply(.added(pod)) }
            for _ in pods { controller.expectations.creationObserved(ObjectKey(created)) }
            #expect(controller.expectations.satisfied(ObjectKey(created)))
            harness.context.informers.informer(ReplicaSet.self).apply(.modified(try await api.client.get(ReplicaSet.self, namespace: "default", name: "slow")))
            _ = try await controller.reconcile(ObjectKey(created))
            #expect(try await harness.pods("app=slow").count == 3)
        }
    }

    @Test func scaleDownPrefersUnreadyPods() {
        var ready = TestObjects.pod("ready")
        ready.spec.nodeName = "n1"
        ready.status.phase = "Running"
        var condition = PodCondition()
        condition.type = "Ready"
        condition.status = "True"
        ready.status.conditions = [condition]
        var running = ready
        running.metadata.name = "running-unready"
        running.status.conditions = []
        var pending = TestObjects.pod("pending")
        pending.spec.nodeName = "n1"
        pending.status.phase = "Pending"
        let unbound = TestObjects.pod("unbound")
        let order = ReplicaSetController.deletionOrder([ready, running, pending, unbound]).map(\.metadata.name)
        #expect(order == ["unbound", "pending", "running-unready", "ready"])
    }
}
