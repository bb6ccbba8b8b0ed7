import API
import Client
import ControllerRuntime
import Controllers
import Foundation
import Testing
import TestSupport

@Suite(.watchdog) struct DeploymentControllerTests {
    @Test func surgeAndUnavailableResolveNumbersAndPercentages() {
        var d = deployment("d", replicas: 10, labels: ["a": "b"], command: ["true"])
        d.spec.strategy.rollingUpdate.maxSurge = IntOrString(string: "25%")
        d.spec.strategy.rollingUpdate.maxUnavailable = IntOrString(string: "25%")
        #expect(DeploymentController.limits(d) == (3, 2))   // surge rounds up, unavailable down
        d.spec.strategy.rollingUpdate.maxSurge.intVal = 0
        d.spec.strategy.rollingUpdate.maxUnavailable = IntOrString(string: "5%")
        #expect(DeploymentController.limits(d) == (0, 1))   // 0 and 0 would stall
        d.spec.strategy.rollingUpdate.maxSurge.intVal = 4
        d.spec.strategy.rollingUpdate.maxUnavailable.intVal = 0
        #expect(DeploymentController.limits(d) == (4, 0))
    }

    @Test func templateHashIsStableAndFollowsTheTemplate() throws {
        let a = deployment("d", replicas: 1, labels: ["app": "x", "tier": "web"], command: ["sleep", "1"])
        var b = a
        // The same map built in another order hashes the same.
        b.spec.template.metadata.labels = ["tier": "web", "app": "x"]
        #expect(try DeploymentController.templateHash(a.spec.template) == DeploymentController.templateHash(b.spec.template))
        b.spec.template.spec.containers[0].command = ["sleep", "2"]
        #expect(try DeploymentController.templateHash(a.spec.template) != DeploymentController.templateHash(b.spec.template))
    }

    /// A rolling update never lets ready pods drop below replicas − maxUnavailable (a watcher
    /// checks every change), ends with every pod on the new template, and going back to the old
    /// template reuses its ReplicaSet as the newest revision.
    @Test func rollingUpdateKeepsAvailabilityAndRollsBack() async throws {
        try await ControllerHarness.run({ context in
            [ReplicaSetController(context: context).controller(), DeploymentController(context: context).controller()]
        }) { harness, _ in
            let kubelet = harness.fakeKubelet()
            defer { kubelet.cancel() }
            let created = try await harness.client.create(deployment("web", replicas: 4, labels: ["app": "web"], command: ["sleep", "1"]))
            try await waitUntil("4 pods ready, deployment available") {
                let d = try await harness.client.get(Deployment.self, namespace: "default", name: "web")
                return d.status.availableReplicas == 4 && d.status.updatedReplicas == 4 && d.status.observedGeneration == created.metadata.generation
            }
            let firstSet = try #require(try await harness.client.list(ReplicaSet.self, namespace: "default").items.first)
            #expect(firstSet.metadata.annotations[DeploymentController.revisionAnnotation] == "1")
            #expect(firstSet.metadata.name == "web-\(try DeploymentController.templateHash(created.spec.template))")

            // Watch every pod change during the rollout and keep the lowest ready count seen.
            let lowest = MutexBox(Int.max)
            let watcher = followPods(harness.client, WatchRequest(namespace: "default", labelSelector: "app=web")) { pods in
                let ready = pods.values.filter { $0.isReady && !$0.metadata.hasDeletionTimestamp }.count
                lowest.withLock { $0 = min($0, ready) }
            }
            defer { watcher.cancel() }
            try await waitUntil("the watcher has listed") { lowest.withLock { $0 } != Int.max }

            let updated = try await harness.modify(Deployment.self, "web") { $0.spec.template.spec.containers[0].command = ["sleep", "2"] }
            let newHash = try DeploymentController.templateHash(updated.spec.template)
            try await waitUntil("every pod is on the new template") {
                let d = try await harness.client.get(Deployment.self, namespace: "default", name: "web")
                let pods = try await harness.pods("app=web")
                return d.status.updatedReplicas == 4 && d.status.availableReplicas == 4 && d.status.replicas == 4
                    && pods.count == 4 && pods.allSatisfy { $0.metadata.labels[DeploymentController.hashLabel] == newHash }
            }
            #expect(lowest.withLock { $0 } >= 3, "ready pods fell below replicas − maxUnavailable during the rollout")
            let sets = try await harness.client.list(ReplicaSet.self, namespace: "default").items
            #expect(sets.count == 2)
            #expect(sets.first { $0.metadata.name == firstSet.metadata.name }?.spec.replicas == 0)
            #expect(sets.first { $0.metadata.name == "web-\(newHash)" }?.metadata.annotations[DeploymentController.revisionAnnotation] == "2")

            // Back to the first template: its ReplicaSet comes back as revision 3.
            try await harness.modify(Deployment.self, "web") { $0.spec.template = created.spec.template }
            try await waitUntil("the first ReplicaSet is scaled back up as revision 3") {
                let first = try await harness.client.get(ReplicaSet.self, namespace: "default", name: firstSet.metadata.name)
                let pods = try await harness.pods("app=web")
                return first.spec.replicas == 4 && first.metadata.annotations[DeploymentController.revisionAnnotation] == "3"
                    && pods.count == 4 && pods.allSatisfy { $0.metadata.labels[DeploymentController.hashLabel] == firstSet.metadata.labels[DeploymentController.hashLabel] }
            }
            try await waitUntil("the deployment reports the rollout complete") {
                let d = try await harness.client.get(Deployment.self, namespace: "default", name: "web")
                return d.status.conditions.first { $0.type == "Available" }?.status == "True"
                    && d.status.conditions.first { $0.type == "Progressing" }?.reason == "NewReplicaSetAvailable"
                    && d.metadata.annotations[DeploymentController.revisionAnnotation] == "3"
            }
        }
    }

    @Test func recreateStopsOldPodsBeforeStartingNewOnes() async throws {
        try await ControllerHarness.run({ context in
            [ReplicaSetController(context: context).controller(), DeploymentController(context: context).controller()]
        }) { harness, _ in
            let kubelet = harness.fakeKubelet()
            defer { kubelet.cancel() }
            var spec = deployment("batch", replicas: 2, labels: ["app": "batch"], command: ["sleep", "1"])
            spec.spec.strategy.type = "Recreate"
            spec.spec.strategy.clearRollingUpdate()
            let created = try await harness.client.create(spec)
            try await waitUntil("2 pods ready") { try await harness.client.get(Deployment.self, namespace: "default", name: "batch").status.availableReplicas == 2 }
            let oldHash = try DeploymentController.templateHash(created.spec.template)

            // While the new pods appear, no old pod may still be active.
            let overlap = MutexBox(false)
            let watcher = followPods(harness.client, WatchRequest(namespace: "default", labelSelector: "app=batch")) { pods in
                let hashes = Set(pods.values.filter(\.isActive).compactMap { $0.metadata.labels[DeploymentController.hashLabel] })
                if hashes.count > 1 { overlap.withLock { $0 = true } }
            }
            defer { watcher.cancel() }
            try await harness.modify(Deployment.self, "batch") { $0.spec.template.spec.containers[0].command = ["sleep", "2"] }
            try await waitUntil("2 new pods ready") {
                let pods = try await harness.pods("app=batch")
                return pods.count == 2 && pods.allSatisfy { $0.metadata.labels[DeploymentController.hashLabel] != oldHash && $0.isReady }
            }
            #expect(!overlap.withLock { $0 }, "old and new pods were active at the same time")
        }
    }
}
