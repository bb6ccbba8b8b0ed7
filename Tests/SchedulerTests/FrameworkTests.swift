import API
import Foundation
import Scheduler
import Testing
import TestSupport

@Suite(.watchdog) struct FrameworkTests {
    static func node(_ name: String, cpu: String = "2", memory: String = "4Gi", pods: String = "110",
                     labels: [String: String] = [:], taints: [(String, String, String)] = [], ready: Bool = true) -> NodeInfo {
        var node = TestObjects.node(name, labels: labels)
        node.status.capacity = ["cpu": cpu, "memory": memory, "pods": pods]
        node.status.allocatable = node.status.capacity
        var condition = NodeCondition()
        condition.type = "Ready"
        condition.status = ready ? "True" : "False"
        node.status.conditions = [condition]
        node.spec.taints = taints.map { key, value, effect in
            var taint = Taint()
            taint.key = key
            taint.value = value
            taint.effect = effect
            return taint
        }
        return NodeInfo(node: node)
    }

    static func pod(_ name: String, cpu: String? = nil, memory: String? = nil, owner: String? = nil) -> Pod {
        var pod = TestObjects.pod(name)
        if let cpu { pod.spec.containers[0].resources.requests["cpu"] = cpu }
        if let memory { pod.spec.containers[0].resources.requests["memory"] = memory }
        if let owner {
            var reference = OwnerReference()
            reference.uid = owner
            reference.kind = "ReplicaSet"
            reference.name = owner
            reference.controller = true
            pod.metadata.ownerReferences = [reference]
        }
        return pod
    }

    static func toleration(_ key: String, _ op: String = "Equal", _ value: String = "", effect: String = "") -> Toleration {
        var toleration = Toleration()
        toleration.key = key
        toleration.operator = op
        toleration.value = value
        toleration.effect = effect
        return toleration
    }

    @Test func notReadyAndCordonedNodesAreFilteredOut() {
        let filter = NodeReadyFilter()
        #expect(filter.filter(Self.pod("p"), Self.node("a")) == nil)
        #expect(filter.filter(Self.pod("p"), Self.node("b", ready: false))?.reason == "node(s) were not ready")
        var unschedulable = Self.node("c").node
        unschedulable.spec.unschedulable = true
        let cordoned = NodeInfo(node: unschedulable)
        #expect(filter.filter(Self.pod("p"), cordoned)?.reason == "node(s) were unschedulable")
    }

    @Test func requestsMustFitWhatIsLeft() {
        let filter = ResourcesFitFilter()
        let node = Self.node("a", cpu: "2", memory: "4Gi", pods: "2")
        node.add(PodInfo(Self.pod("big", cpu: "1500m", memory: "3Gi")))
        #expect(filter.filter(Self.pod("fits", cpu: "500m", memory: "1Gi"), node) == nil)
        #expect(filter.filter(Self.pod("cpu", cpu: "501m"), node)?.reason == "Insufficient cpu")
        #expect(filter.filter(Self.pod("mem", memory: "1025Mi"), node)?.reason == "Insufficient memory")
        #expect(filter.filter(Self.pod("none"), node) == nil, "a pod without requests fits while there is a pod slot")
        node.add(PodInfo(Self.pod("second")))
        #expect(filter.filter(Self.pod("third"), node)?.reason == "Too many pods")
    }

    /// Kubernetes' effective requests: the containers' and sidecars' sum, or the largest an init
    /// container needs while it runs (beside the sidecars started before it).
    @Test func initContainersCountWhileTheyRun() {
        func container(_ name: String, cpu: String, memory: String, sidecar: Bool = false) -> Container {
            var container = Container()
            container.name = name
            container.command = ["x"]
            container.resources.requests = ["cpu": cpu, "memory": memory]
            if sidecar { container.restartPolicy = "Always" }
            return container
        }
        var pod = Self.pod("p", cpu: "200m", memory: "100Mi")
        pod.spec.initContainers = [container("setup", cpu: "1", memory: "50Mi")]
        #expect(Resources.requests(of: pod) == Resources(milliCPU: 1000, memory: 100 * 1024 * 1024, pods: 1))
        // A sidecar before the init container runs beside it, and beside the containers after.
        pod.spec.initContainers = [container("proxy", cpu: "100m", memory: "10Mi", sidecar: true), container("setup", cpu: "1", memory: "50Mi")]
        #expect(Resources.requests(of: pod) == Resources(milliCPU: 1100, memory: 110 * 1024 * 1024, pods: 1))
        let node = Self.node("a", cpu: "1", memory: "4Gi")
        #expect(ResourcesFitFilter().filter(pod, node)?.reason == "Insufficient cpu", "the init container's 1 CPU and the sidecar's do not fit on 1 CPU")
    }

    @Test func nodeSelectorAndRequiredAffinity() {
        let filter = NodeSelectorFilter()
        let ssd = Self.node("ssd", labels: ["disk": "ssd", "zone": "a", "cores": "16"])
        let hdd = Self.node("hdd", labels: ["disk": "hdd"])
        var pod = Self.pod("p")
        pod.spec.nodeSelector = ["disk": "ssd"]
        #expect(filter.filter(pod, ssd) == nil)
        #expect(filter.filter(pod, hdd) != nil)

        func affinity(_ expressions: [(String, String, [String])]) -> Pod {
            var pod = Self.pod("a")
            var term = NodeSelectorTerm()
            term.matchExpressions = expressions.map { key, op, values in
                var requirement = NodeSelectorRequirement()
                requirement.key = key
                requirement.operator = op
                requirement.values = values
                return requirement
            }
            pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms = [term]
            return pod
        }
        #expect(filter.filter(affinity([("zone", "In", ["a", "b"])]), ssd) == nil)
        #expect(filter.filter(affinity([("zone", "In", ["a", "b"])]), hdd) != nil)
        #expect(filter.filter(affinity([("disk", "NotIn", ["hdd"])]), ssd) == nil)
        #expect(filter.filter(affinity([("disk", "NotIn", ["hdd"])]), hdd) != nil)
        #expect(filter.filter(affinity([("zone", "Exists", [])]), hdd) != nil)
        #expect(filter.filter(affinity([("zone", "DoesNotExist", [])]), hdd) == nil)
        #expect(filter.filter(affinity([("cores", "Gt", ["8"])]), ssd) == nil)
        #expect(filter.filter(affinity([("cores", "Lt", ["8"])]), ssd) != nil)
        #expect(filter.filter(affinity([("zone", "In", ["a"]), ("disk", "In", ["hdd"])]), ssd) != nil, "all expressions of a term must hold")
    }

    @Test func taintsNeedTolerations() {
        let filter = TaintTolerationFilter()
        let gpu = Self.node("gpu", taints: [("dedicated", "gpu", "NoSchedule")])
        #expect(filter.filter(Self.pod("p"), gpu)?.reason == "node(s) had untolerated taint {dedicated: gpu}")
        var equal = Self.pod("equal")
        equal.spec.tolerations = [Self.toleration("dedicated", "Equal", "gpu", effect: "NoSchedule")]
        #expect(filter.filter(equal, gpu) == nil)
        var wrongValue = Self.pod("wrong")
        wrongValue.spec.tolerations = [Self.toleration("dedicated", "Equal", "fpga")]
        #expect(filter.filter(wrongValue, gpu) != nil)
        var exists = Self.pod("exists")
        exists.spec.tolerations = [Self.toleration("dedicated", "Exists")]
        #expect(filter.filter(exists, gpu) == nil)
        var everything = Self.pod("everything")
        everything.spec.tolerations = [Self.toleration("", "Exists")]
        #expect(filter.filter(everything, Self.node("x", taints: [("a", "b", "NoExecute")])) == nil)
        // PreferNoSchedule never filters; it lowers the score.
        let soft = Self.node("soft", taints: [("spot", "true", "PreferNoSchedule")])
        #expect(filter.filter(Self.pod("p"), soft) == nil)
        let score = PreferNoScheduleScore()
        let both = score.score(PodInfo(Self.pod("p")), [soft, Self.node("plain")])
        #expect(both[0] < both[1], "\(both)")
    }

    @Test func scoresPreferEmptierNodesAndSpreadSiblings() {
        let busy = NodeInfo(node: Self.node("busy").node, pods: [Self.pod("x", cpu: "1500m", memory: "3Gi")])
        let empty = Self.node("empty")
        let least = LeastAllocatedScore().score(PodInfo(Self.pod("p", cpu: "100m", memory: "128Mi")), [busy, empty])
        #expect(least[1] > least[0], "\(least)")

        let a = NodeInfo(node: Self.node("a").node, pods: [Self.pod("s1", owner: "rs1"), Self.pod("s2", owner: "rs1")])
        let b = NodeInfo(node: Self.node("b").node, pods: [Self.pod("s3", owner: "rs1")])
        let c = Self.node("c")
        let sibling = PodInfo(Self.pod("s4", owner: "rs1"))
        let scores = SpreadScore().score(sibling, [a, b, c])
        #expect(scores[2] > scores[1] && scores[1] > scores[0], "\(scores)")
        #expect(Framework.standard.schedule(sibling, on: [a, b, c]).node == "c")
    }

    @Test func aPodThatFitsNowhereGetsKubernetesMessage() {
        let small1 = Self.node("small-1", cpu: "1")
        small1.add(PodInfo(Self.pod("x", cpu: "800m")))
        let small2 = Self.node("small-2", cpu: "500m")
        let gpu = Self.node("gpu", cpu: "64", taints: [("dedicated", "gpu", "NoSchedule")])
        let decision = Framework.standard.schedule(PodInfo(Self.pod("p", cpu: "1")), on: [small1, small2, gpu])
        #expect(decision.node == nil)
        #expect(decision.message == "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}.")
        // A node that fits joins: the pod goes there, and the message counts it.
        let roomy = Self.node("roomy", cpu: "4")
        let placed = Framework.standard.schedule(PodInfo(Self.pod("p", cpu: "1")), on: [small1, small2, gpu, roomy], detailed: true)
        #expect(placed.node == "roomy")
        #expect(placed.message == "1/4 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}.")
        let verdict = placed.verdicts.first { $0.node == "roomy" }
        #expect(verdict?.failure == nil)
        #expect(verdict?.scores.map(\.plugin) == ["NodeResourcesLeastAllocated", "OwnerSpread", "TaintTolerationPreference"])
        #expect(placed.verdicts.first { $0.node == "gpu" }?.failure?.plugin == "TaintToleration")
    }

    @Test func largeClustersAreSampledRoundRobin() {
        #expect(Framework.feasibleNodesToFind(50) == 50)
        #expect(Framework.feasibleNodesToFind(1000) == 420, "42 % of 1,000")
        #expect(Framework.feasibleNodesToFind(5000) == 500, "10 % of 5,000")
        #expect(Framework.feasibleNodesToFind(100_000) == 5000, "never below 5 %")
        let nodes = (0..<1000).map { Self.node(String(format: "n%04d", $0)) }
        let decision = Framework.standard.schedule(PodInfo(Self.pod("p")), on: nodes, start: 900, enough: 420)
        #expect(decision.examined == 420 && decision.feasible == 420)
        // It started at node 900 and wrapped around: the winner (name order on a tie) is n0000.
        #expect(decision.node == "n0000")
    }
}

extension FrameworkTests {
    /// A DaemonSet's pod: pinned to a node by name (matchFields), and placed on it even cordoned
    /// when it tolerates the unschedulable taint.
    @Test func nodeNamesInAffinityAndCordonedNodes() {
        var pod = Self.pod("daemon")
        var requirement = NodeSelectorRequirement()
        requirement.key = "metadata.name"
        requirement.operator = "In"
        requirement.values = ["b"]
        var term = NodeSelectorTerm()
        term.matchFields = [requirement]
        pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms = [term]
        #expect(NodeSelectorFilter().filter(PodInfo(pod), Self.node("a")) != nil)
        #expect(NodeSelectorFilter().filter(PodInfo(pod), Self.node("b")) == nil)

        let cordoned = Self.node("b")
        var node = cordoned.node
        node.spec.unschedulable = true
        let info = NodeInfo(node: node)
        #expect(NodeReadyFilter().filter(PodInfo(pod), info)?.reason == "node(s) were unschedulable")
        var toleration = Toleration()
        toleration.key = "node.kubernetes.io/unschedulable"
        toleration.operator = "Exists"
        toleration.effect = "NoSchedule"
        pod.spec.tolerations = [toleration]
        #expect(NodeReadyFilter().filter(PodInfo(pod), info) == nil)
    }
}
