import API
import Client
import ControllerRuntime
import Controllers
import Foundation
import SwiftProtobuf
import Testing
import TestSupport

/// Node health on a fake clock: no test waits 40 seconds for a grace period.
@Suite(.watchdog) struct NodeLifecycleTests {
    static func lease(_ node: String, at date: Date) -> Lease {
        var lease = Lease()
        lease.setTypeMeta()
        lease.metadata.namespace = NodeLifecycleController.leaseNamespace
        lease.metadata.name = node
        lease.spec.holderIdentity = node
        lease.spec.leaseDurationSeconds = 40
        lease.spec.renewTime = Google_Protobuf_Timestamp(date: date)
        return lease
    }

    @Test func aSilentNodeIsTaintedAndItsPodsEvictedAfterTheirToleration() async throws {
        let clock = FakeClock()
        var options = NodeLifecycleController.Options()
        options.gracePeriod = .seconds(40)
        options.evictionTimeout = .seconds(60)
        let lifecycle = MutexBox<NodeLifecycleController?>(nil)
        try await ControllerHarness.run(clock: clock, { context in
            let controller = NodeLifecycleController(context: context, options: options)
            lifecycle.withLock { $0 = controller }
            return [controller.controller()]
        }) { harness, controllers in
            let client = harness.client
            var node = TestObjects.node("n1")
            var ready = NodeCondition()
            ready.type = "Ready"
            ready.status = "True"
            node.status.conditions = [ready]
            node = try await client.create(node)
            _ = try await client.updateStatus(node)
            var lease = try await client.create(Self.lease("n1", at: clock.now))
            for name in ["a", "b"] {
                var pod = TestObjects.pod(name)
                if name == "b" {
                    var toleration = Toleration()
                    toleration.key = NodeLifecycleController.unreachableTaint
                    toleration.operator = "Exists"
                    toleration.effect = "NoExecute"
                    toleration.tolerationSeconds = 120
                    pod.spec.tolerations = [toleration]
                }
                _ = try await client.create(pod)
                try await client.bind(namespace: "default", pod: name, node: "n1")
            }
            let queue = controllers[0].queue

            // Within the grace period nothing happens.
            try await waitUntil("the controller has seen the lease") { lifecycle.withLock { $0 }?.heartbeatSeen("n1") != nil }
            try await waitUntil("the node is looked at and its next check scheduled") { await queue.delayedCount == 1 }
            try await clock.waitForSleepers(1)
            clock.advance(by: .seconds(30))
            try await Task.sleep(for: .milliseconds(100))
            #expect(try await client.get(Node.self, namespace: "", name: "n1").spec.taints.isEmpty)

            // Past it: NotReady (Unknown) and tainted; the pods stay for their toleration.
            clock.advance(by: .seconds(11))
            try await waitUntil("the node is Unknown and tainted") {
                let node = try await client.get(Node.self, namespace: "", name: "n1")
                return node.status.conditions.first { $0.type == "Ready" }?.status == "Unknown"
                    && Set(node.spec.taints.filter { $0.key == NodeLifecycleController.unreachableTaint }.map(\.effect)) == ["NoSchedule", "NoExecute"]
            }
            #expect(try await harness.pods().allSatisfy { !$0.metadata.hasDeletionTimestamp })

            // After the eviction timeout: a is evicted (marked for deletion), b tolerates longer.
            try await waitUntil("the next eviction check is scheduled") { await queue.delayedCount == 1 }
            clock.advance(by: .seconds(61))
            try await waitUntil("pod a is evicted") { try await client.get(Pod.self, namespace: "default", name: "a").metadata.hasDeletionTimestamp }
            #expect(!(try await client.get(Pod.self, namespace: "default", name: "b").metadata.hasDeletionTimestamp))
            try await waitUntil("the next eviction check is scheduled") { await queue.delayedCount == 1 }
            clock.advance(by: .seconds(60))
            try await waitUntil("pod b is evicted after its 120 s") { try await client.get(Pod.self, namespace: "default", name: "b").metadata.hasDeletionTimestamp }

            // The agent comes back: a renewed lease lifts the taints.
            lease = try await client.get(Lease.self, namespace: NodeLifecycleController.leaseNamespace, name: "n1")
            lease.spec.renewTime = Google_Protobuf_Timestamp(date: clock.now)
            let renewed = try await client.update(lease)
            try await waitUntil("the controller has seen the renewal") { lifecycle.withLock { $0 }?.heartbeatSeen("n1") == clock.now }
            _ = renewed
            try await waitUntil("the taints are removed") {
                try await client.get(Node.self, namespace: "", name: "n1").spec.taints.isEmpty
            }
        }
    }
}
