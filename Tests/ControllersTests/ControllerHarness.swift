import API
import Client
import ControllerRuntime
import Controllers
import Foundation
import Logging
import Testing
import TestSupport

/// Controllers against a real in-process API server: shared informers, an event recorder and the
/// given clock. `run` starts the informers and controllers after `setup` made them, and always
/// stops everything.
final class ControllerHarness: Sendable {
    let api: InProcessAPI
    let context: ControllerContext
    var client: APIClient { api.client }

    init(api: InProcessAPI, clock: any Clock) {
        self.api = api
        var logger = Logger(label: "cox.controllers.test")
        logger.logLevel = ProcessInfo.processInfo.environment["COX_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        let informers = InformerFactory(client: api.client)
        context = ControllerContext(client: api.client, informers: informers,
                                    recorder: EventRecorder(client: api.client, component: "test", clock: clock, logger: logger),
                                    clock: clock, logger: logger)
    }

    static func run(clock: any Clock = SystemClock(), _ setup: (ControllerContext) -> [Controller],
                    _ body: (ControllerHarness, [Controller]) async throws -> Void) async throws {
        try await InProcessAPI.with { api in
            let harness = ControllerHarness(api: api, clock: clock)
            let controllers = setup(harness.context)
            let informers = harness.context.informers
            let running = Task {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await informers.run() }
                    for controller in controllers { group.addTask { await controller.run() } }
                }
            }
            defer { running.cancel() }
            await informers.waitForSync()
            try await body(harness, controllers)
            running.cancel()
            await running.value
        }
    }

    /// Read, change, write — again on a conflict (a controller may write the object meanwhile).
    @discardableResult
    func modify<T: APIObject>(_ type: T.Type, _ name: String, namespace: String = "default", _ change: (inout T) -> Void) async throws -> T {
        try await client.modify(T.self, namespace: namespace, name: name, attempts: 20, change)
    }

    func pods(_ selector: String? = nil, namespace: String = "default") async throws -> [Pod] {
        try await client.list(Pod.self, namespace: namespace, labelSelector: selector).items
    }

    /// Plays the node agent for unbound pods: every pod becomes Running and Ready shortly after it appears.
    func fakeKubelet() -> Task<Void, Never> {
        let client = self.client
        return Task {
            do {
                for try await event in client.watch(Pod.self, WatchRequest(namespace: nil)) {
                    let pods: [Pod]
                    switch event {
                    case .added(let pod), .modified(let pod): pods = [pod]
                    case .relisted(let all, _): pods = all
                    default: continue
                    }
                    for var pod in pods where !pod.isReady && !pod.metadata.hasDeletionTimestamp {
                        pod.status.phase = "Running"
                        var ready = PodCondition()
                        ready.type = "Ready"
                        ready.status = "True"
                        ready.lastTransitionTime = .init(date: Date())
                        pod.status.conditions = [ready]
                        _ = try? await client.updateStatus(pod)
                    }
                }
            } catch {}
        }
    }
}

func replicaSet(_ name: String, replicas: Int32, labels: [String: String], namespace: String = "default") -> ReplicaSet {
    var set = ReplicaSet()
    set.setTypeMeta()
    set.metadata.name = name
    set.metadata.namespace = namespace
    set.spec.replicas = replicas
    set.spec.selector.matchLabels = labels
    set.spec.template.metadata.labels = labels
    var container = Container()
    container.name = "main"
    container.command = ["sleep", "3600"]
    set.spec.template.spec.containers = [container]
    set.applyDefaults()
    return set
}

func deployment(_ name: String, replicas: Int32, labels: [String: String], command: [String], surge: Int32 = 1, unavailable: Int32 = 1) -> Deployment {
    var deployment = Deployment()
    deployment.setTypeMeta()
    deployment.metadata.name = name
    deployment.metadata.namespace = "default"
    deployment.spec.replicas = replicas
    deployment.spec.selector.matchLabels = labels
    deployment.spec.template.metadata.labels = labels
    var container = Container()
    container.name = "main"
    container.command = command
    deployment.spec.template.spec.containers = [container]
    deployment.spec.strategy.type = "RollingUpdate"
    deployment.spec.strategy.rollingUpdate.maxSurge.intVal = surge
    deployment.spec.strategy.rollingUpdate.maxUnavailable.intVal = unavailable
    deployment.applyDefaults()
    return deployment
}
