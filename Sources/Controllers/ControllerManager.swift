import API
import Client
import ControllerRuntime
import Foundation
import Logging

/// Runs the built-in controllers (ReplicaSet, Deployment, Job, DaemonSet, node lifecycle, garbage collector,
/// namespace, node IPAM) under leader election on the Lease `kube-system/cox-controller-manager`: of several
/// managers against one API server, exactly one set is active. Each term of leadership starts with
/// fresh informers and queues; losing the lease stops every controller before anyone else may lead.
public final class ControllerManager: Sendable {
    public struct Options: Sendable {
        public var identity: String
        public var nodeLifecycle = NodeLifecycleController.Options()
        public var job = JobController.Options()
        /// Pod ranges for nodes (nil: nodes get none, as `--allocate-node-cidrs=false`).
        public var nodeIPAM: NodeIPAMController.Options? = NodeIPAMController.Options(clusterCIDR: CIDR("10.244.0.0/16")!)
        public var leaseDuration: Duration = .seconds(15)
        public var renewDeadline: Duration = .seconds(10)
        public var retryPeriod: Duration = .seconds(2)
        public var workers = 2

        public init(identity: String = "\(ProcessInfo.processInfo.hostName)_\(UUID().uuidString.prefix(8).lowercased())") {
            self.identity = identity
        }
    }

    public static let leaseName = "cox-controller-manager"

    let client: APIClient
    let options: Options
    let clock: any Clock
    let logger: Logger
    /// The controllers of the current term (for tests and metrics).
    let current = MutexBox<[Controller]>([])

    public init(client: APIClient, options: Options, clock: any Clock = SystemClock(), logger: Logger) {
        self.client = client
        self.options = options
        self.clock = clock
        self.logger = logger
    }

    public var controllers: [Controller] { current.withLock { $0 } }

    /// Campaigns and runs the controllers while leading, until cancelled.
    public func run() async {
        let election = LeaderElector.Configuration(name: Self.leaseName, identity: options.identity, leaseDuration: options.leaseDuration,
                                                   renewDeadline: options.renewDeadline, retryPeriod: options.retryPeriod)
        let elector = LeaderElector(configuration: election, client: client, clock: clock, logger: logger)
        await elector.run { await self.term() }
    }

    /// One term of leadership: informers, then every controller, until cancelled.
    func term() async {
        let informers = InformerFactory(client: client)
        let recorder = EventRecorder(client: client, component: "cox-controller-manager", clock: clock, logger: logger)
        let context = ControllerContext(client: client, informers: informers, recorder: recorder, clock: clock, logger: logger)
        let workers = options.workers
        let controllers = [
            ReplicaSetController(context: context).controller(workers: workers),
            DeploymentController(context: context).controller(workers: workers),
            JobController(context: context, options: options.job).controller(workers: workers),
            DaemonSetController(context: context).controller(workers: workers),
            NodeLifecycleController(context: context, options: options.nodeLifecycle).controller(),
            GarbageCollector(context: context).controller(workers: workers),
            NamespaceController(context: context).controller(),
        ] + (options.nodeIPAM.map { [NodeIPAMController(context: context, options: $0).controller()] } ?? [])
        current.withLock { $0 = controllers }
        logger.info("controllers starting", metadata: ["controllers": "\(controllers.map(\.name).joined(separator: ","))"])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await informers.run() }
            for controller in controllers { group.addTask { await controller.run() } }
            // The controllers end on cancellation (after finishing their keys); then the informers.
            for _ in controllers { await group.next() }
            group.cancelAll()
        }
        logger.info("controllers stopped")
    }
}
