import API
import Client
import ControllerRuntime
import Controllers
import Foundation
import Testing
import TestSupport

/// Pod ranges for nodes: each its own, none twice, freed with the node, and a full cluster range
/// said out loud.
@Suite(.watchdog) struct NodeIPAMTests {
    @Test func everyNodeGetsItsOwnRangeAndADeletedNodesRangeIsReused() async throws {
        // A /22 holds four /24s: enough to fill it.
        let options = NodeIPAMController.Options(clusterCIDR: CIDR("10.50.0.0/22")!, nodeMaskSize: 24)
        try await ControllerHarness.run(clock: FakeClock(), { context in
            [NodeIPAMController(context: context, options: options).controller()]
        }) { harness, _ in
            let client = harness.client
            // One node brings its own range (an administrator's): it is kept and not handed out.
            var own = TestObjects.node("own")
            own.spec.podCidr = "10.50.2.0/24"
            _ = try await client.create(own)
            for name in ["a", "b", "c"] { _ = try await client.create(TestObjects.node(name)) }
            func ranges() async throws -> [String: String] {
                Dictionary(uniqueKeysWithValues: try await client.list(Node.self, namespace: nil).items.map { ($0.metadata.name, $0.spec.podCidr) })
            }
            try await waitUntil("every node has a range") { try await ranges().values.allSatisfy { !$0.isEmpty } }
            let given = try await ranges()
            #expect(given["own"] == "10.50.2.0/24")
            #expect(Set(given.values) == ["10.50.0.0/24", "10.50.1.0/24", "10.50.2.0/24", "10.50.3.0/24"], "\(given)")
            let a = try await client.get(Node.self, namespace: "", name: "a")
            #expect(a.spec.podCidrs == [a.spec.podCidr], "podCIDRs carries the same range")

            // The range is full: a fifth node gets none, and an event says why.
            _ = try await client.create(TestObjects.node("d"))
            try await waitUntil("the node is told there is no range left") {
                try await client.list(Event.self, namespace: nil).items.contains { $0.reason == "CIDRNotAvailable" && $0.involvedObject.name == "d" }
            }
            #expect(try await client.get(Node.self, namespace: "", name: "d").spec.podCidr.isEmpty)

            // Deleting a node frees its range for the next one.
            _ = try await client.delete(Node.self, namespace: "", name: "b")
            _ = try await client.create(TestObjects.node("e"))
            try await waitUntil("the new node gets the freed range") {
                let e = try await client.get(Node.self, namespace: "", name: "e").spec.podCidr
                let d = try await client.get(Node.self, namespace: "", name: "d").spec.podCidr
                return !e.isEmpty || !d.isEmpty
            }
            let after = try await ranges()
            #expect(Set(after.values.filter { !$0.isEmpty }).count == 4, "no range twice: \(after)")
            #expect([after["d"], after["e"]].contains(given["b"]), "b's range went to d or e: \(after)")
        }
    }

    @Test func aNodesRangeIsSetOnce() async throws {
        try await InProcessAPI.with { api in
            var node = TestObjects.node("n")
            node.spec.podCidr = "10.1.0.0/24"
            node = try await api.client.create(node)
            #expect(node.spec.podCidrs == ["10.1.0.0/24"], "podCIDRs follows podCIDR")
            node.spec.podCidr = "10.1.1.0/24"
            node.spec.podCidrs = ["10.1.1.0/24"]
            await #expect(throws: ClientError.self) { _ = try await api.client.update(node) }
            do {
                _ = try await api.client.update(node)
            } catch let error as ClientError {
                #expect(error.code == 422)
                #expect(error.message.contains("spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"), "\(error.message)")
            }
            var bad = TestObjects.node("bad")
            bad.spec.podCidr = "10.1.0.0/33"
            do {
                _ = try await api.client.create(bad)
                Issue.record("an invalid range was stored")
            } catch let error as ClientError {
                #expect(error.code == 422)
                #expect(error.message.contains("spec.podCIDRs[0]: Invalid value: \"10.1.0.0/33\": must be a valid CIDR value"), "\(error.message)")
            }
        }
    }

    @Test func rangesAreCountedAndFound() {
        let cluster = CIDR("10.244.0.0/16")!
        #expect(cluster.subnetCount(prefix: 24) == 256)
        #expect(cluster.subnet(3, prefix: 24)?.description == "10.244.3.0/24")
        #expect(cluster.subnet(256, prefix: 24) == nil)
        #expect(cluster.index(of: CIDR("10.244.200.0/24")!, prefix: 24) == 200)
        #expect(cluster.index(of: CIDR("10.245.0.0/24")!, prefix: 24) == nil, "outside the cluster range")
        #expect(CIDR("10.244.1.7/16")?.description == "10.244.0.0/16", "the network address")
        for bad in ["10.244.0.0", "10.244.0/16", "10.244.0.256/24", "a.b.c.d/8", "10.0.0.0/-1", "10.0.0.0/ 8", ""] {
            #expect(CIDR(bad) == nil, "\(bad)")
        }
    }
}
