import API
import ArgumentParser
import Client
import ControllerRuntime
import Controllers
import Foundation
import Logging
import PKI
import Scheduler

/// Settings of the controller manager, shared by `cox controllers`, `cox server` and `cox up`.
struct ControllerOptions: ParsableArguments {
    @Option(help: "Seconds without a lease renewal before a node is NotReady and tainted.") var nodeMonitorGracePeriod = 40
    @Option(help: "Seconds a pod stays on an unreachable node (unless it tolerates the taint for a different time).") var podEvictionTimeout = 300
    @Option(help: "Seconds a controller-manager leader's lease lasts without renewal.") var leaderLeaseDuration = 15
    @Option(help: "Leader identity (default: host name and a random suffix).") var leaderIdentity: String?
    @Option(help: "The pods' address range, split into one range per node (spec.podCIDR, for its CNI network); empty: nodes get none.")
    var clusterCIDR = "10.244.0.0/16"
    @Option(help: "Prefix length of each node's pod range.") var nodeCIDRMaskSize = 24

    func managerOptions() throws -> ControllerManager.Options {
        guard nodeMonitorGracePeriod > 0, podEvictionTimeout >= 0, leaderLeaseDuration >= 2 else {
            throw ValidationError("--node-monitor-grace-period must be > 0, --pod-eviction-timeout >= 0 and --leader-lease-duration >= 2 seconds")
        }
        var options = leaderIdentity.map { ControllerManager.Options(identity: $0) } ?? ControllerManager.Options()
        options.nodeLifecycle.gracePeriod = .seconds(nodeMonitorGracePeriod)
        options.nodeLifecycle.evictionTimeout = .seconds(podEvictionTimeout)
        (options.leaseDuration, options.renewDeadline, options.retryPeriod) = Self.leaseTiming(seconds: leaderLeaseDuration)
        if clusterCIDR.isEmpty {
            options.nodeIPAM = nil
        } else {
            guard let cidr = CIDR(clusterCIDR) else { throw ValidationError("--cluster-cidr: \"\(clusterCIDR)\" is not an IPv4 range in CIDR notation (e.g. 10.244.0.0/16)") }
            guard nodeCIDRMaskSize >= cidr.prefix, nodeCIDRMaskSize <= 30 else {
                throw ValidationError("--node-cidr-mask-size must be between the cluster range's prefix (\(cidr.prefix)) and 30")
            }
            options.nodeIPAM = NodeIPAMController.Options(clusterCIDR: cidr, nodeMaskSize: nodeCIDRMaskSize)
        }
        return options
    }

    /// Lease, renew deadline and retry period from a lease duration, as Kubernetes' defaults
    /// relate (15 s, 10 s, 2 s): renew within 2/3 of the lease, retry every 2/15 of it.
    static func leaseTiming(seconds: Int) -> (lease: Duration, renew: Duration, retry: Duration) {
        (.seconds(seconds), .milliseconds(seconds * 2000 / 3), .milliseconds(max(500, seconds * 2000 / 15)))
    }

    /// The scheduler run next to the controllers by `cox server` and `cox up`: the same identity
    /// and lease timing, on its own lease.
    func schedulerOptions() -> Scheduler.Options {
        let manager = (try? managerOptions()) ?? ControllerManager.Options()
        var options = Scheduler.Options(identity: leaderIdentity ?? manager.identity)
        options.leaseDuration = manager.leaseDuration
        options.renewDeadline = manager.renewDeadline
        options.retryPeriod = manager.retryPeriod
        return options
    }
}

/// `cox controllers`: the controller manager on its own (several may run; one leads).
struct ControllersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "controllers", abstract: "Run the controller manager (ReplicaSet, Deployment, node lifecycle, garbage collector, namespace, node IPAM) with leader election.")

    @Option(help: "Kubeconfig of the controllers' identity.") var kubeconfig = ".cox/admin.kubeconfig"
    @OptionGroup var controllers: ControllerOptions

    func run() async throws {
        try await LocalControllers.run(kubeconfig: try Kubeconfig.load(path: kubeconfig), options: try controllers.managerOptions())
    }
}

enum LocalControllers {
    /// Runs the controller manager until SIGINT or SIGTERM; leadership is released on the way out.
    static func run(kubeconfig: Kubeconfig, options: ControllerManager.Options) async throws {
        let logger = Logger(label: "cox.controllers")
        let client = try APIClient(kubeconfig: kubeconfig, timeout: .seconds(10), userAgent: "cox-controllers")
        let manager = ControllerManager(client: client, options: options, logger: logger)
        await SignalWaiter.runUntilSignalled { await manager.run() }
        try? await client.shutdown()
    }
}
