import API
import ArgumentParser
import Client
import Foundation
import Logging
import PKI
import Scheduler

/// `cox scheduler`: the scheduler on its own (several may run; one leads).
struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler", abstract: "Run the scheduler: place pods without a node on the best node (leader election on kube-system/cox-scheduler).")

    @Option(help: "Kubeconfig of the scheduler's identity.") var kubeconfig = ".cox/admin.kubeconfig"
    @Option(help: "Leader identity (default: host name and a random suffix).") var leaderIdentity: String?
    @Option(help: "Seconds a leader's lease lasts without renewal.") var leaderLeaseDuration = 15
    @Flag(help: "Look at every node for every pod (default: stop once enough feasible nodes are found in a large cluster).") var examineAllNodes = false

    func run() async throws {
        guard leaderLeaseDuration >= 2 else { throw ValidationError("--leader-lease-duration must be at least 2 seconds") }
        var options = leaderIdentity.map { Scheduler.Options(identity: $0) } ?? Scheduler.Options()
        (options.leaseDuration, options.renewDeadline, options.retryPeriod) = ControllerOptions.leaseTiming(seconds: leaderLeaseDuration)
        options.examineAllNodes = examineAllNodes
        try await LocalScheduler.run(kubeconfig: try Kubeconfig.load(path: kubeconfig), options: options)
    }
}

enum LocalScheduler {
    /// Runs the scheduler until SIGINT or SIGTERM; leadership is released on the way out.
    static func run(kubeconfig: Kubeconfig, options: Scheduler.Options) async throws {
        // Many small calls at once (bindings), as streams of one HTTP/2 connection: with both
        // ends handling streams as frames this costs no more than HTTP/1.1 over 64 connections
        // (cox bench sched: 141-148 µs of scheduler CPU per pod either way, the server 155-160
        // against 172-174).
        let client = try APIClient(kubeconfig: kubeconfig, timeout: .seconds(10), userAgent: "cox-scheduler")
        let scheduler = Scheduler(client: client, options: options, logger: Logger(label: "cox.scheduler"))
        await SignalWaiter.runUntilSignalled { await scheduler.run() }
        try? await client.shutdown()
    }
}
