import API
import Client
import ControllerRuntime
import CronTask
import Foundation
import Logging

/// `crontask-controller [--kubeconfig PATH]`: runs the CronTask controller against a Coxswain (or
/// Kubernetes) API server until it is stopped. The kubeconfig defaults to $KUBECONFIG, then
/// ./.cox/admin.kubeconfig (what `cox up` writes).
@main
struct Main {
    static func main() async throws {
        var arguments = CommandLine.arguments.dropFirst()
        var path = ProcessInfo.processInfo.environment["KUBECONFIG"] ?? ".cox/admin.kubeconfig"
        while let argument = arguments.popFirst() {
            if argument == "--kubeconfig", let value = arguments.popFirst() {
                path = value
            } else {
                FileHandle.standardError.write(Data("usage: crontask-controller [--kubeconfig PATH]\n".utf8))
                exit(2)
            }
        }
        var logger = Logger(label: "crontask")
        logger.logLevel = .info
        let client = try APIClient(kubeconfigPath: path, userAgent: "crontask-controller")
        let informer = CronTasks.resource(client).dynamic.informer()
        let queue = WorkQueue<ObjectKey>()
        informer.addHandler { event in
            let key = ObjectKey(namespace: event.object.metadata.namespace, name: event.object.metadata.name)
            Task { await queue.add(key) }
        }
        let controller = Controller(name: "crontask", queue: queue, reconciler: CronTaskReconciler(client: client, logger: logger), logger: logger) {
            await informer.waitForSync()
        }
        logger.info("watching crontasks.\(CronTasks.group)", metadata: ["kubeconfig": "\(path)"])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await informer.run() }
            group.addTask { await controller.run() }
        }
    }
}
