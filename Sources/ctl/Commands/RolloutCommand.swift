import API
import ArgumentParser
import Client
import Controllers
import Foundation

/// `deployment/web`, `deploy web` or `web` (a Deployment) → the name.
func deploymentName(_ arguments: [String]) throws -> String {
    try rolloutTarget(arguments, kinds: [Deployment.self]).name
}

/// `KIND/NAME`, `KIND NAME` or `NAME` (a Deployment) → the kind, one of `kinds`, and the name.
func rolloutTarget(_ arguments: [String], kinds: [any APIObject.Type]) throws -> (kind: any APIObject.Type, name: String) {
    var words = arguments
    if words.count == 1, let slash = words[0].firstIndex(of: "/") {
        words = [String(words[0][..<slash]), String(words[0][words[0].index(after: slash)...])]
    }
    let served = kinds.map { $0.kindInfo.resource }.joined(separator: " and ")
    if words.count == 2 {
        guard let kind = Kinds.lookup(words[0]), kinds.contains(where: { $0 == kind }) else {
            throw ValidationError("this rollout verb serves \(served); \"\(words[0])\" is not one of them (try `deployment/NAME`)")
        }
        return (kind, words[1])
    }
    guard words.count == 1, !words[0].isEmpty else { throw ValidationError("name one of the \(served), e.g. `deployment/web`") }
    return (Deployment.self, words[0])
}

/// `cox rollout status|history|undo deployment/NAME`.
struct RolloutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout", abstract: "Follow a Deployment's or DaemonSet's rollout; list or undo a Deployment's.",
        subcommands: [RolloutStatus.self, RolloutHistory.self, RolloutUndo.self])
}

/// The ReplicaSets a Deployment owns, oldest revision first.
func ownedReplicaSets(of deployment: Deployment, client: APIClient) async throws -> [ReplicaSet] {
    try await client.list(ReplicaSet.self, namespace: deployment.metadata.namespace).items
        .filter { $0.metadata.ownerReferences.contains { $0.uid == deployment.metadata.uid && $0.controller } }
        .sorted { revision($0) < revision($1) }
}

func revision(_ set: ReplicaSet) -> Int { Int(set.metadata.annotations[DeploymentController.revisionAnnotation] ?? "") ?? 0 }

struct RolloutStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Wait until the rollout is complete, printing its progress.")
    @Argument(help: "deployment/NAME or daemonset/NAME") var target: [String]
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @Option(help: "Give up after this many seconds (0: wait as long as it takes).") var timeout = 0
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let (kind, name) = try rolloutTarget(target, kinds: [Deployment.self, DaemonSet.self])
        let deadline = timeout > 0 ? Date().addingTimeInterval(Double(timeout)) : Date.distantFuture
        try await withClient(client) { client in
            var last = ""
            while true {
                let (done, message) = kind == DaemonSet.self
                    ? try Self.progress(try await client.get(DaemonSet.self, namespace: namespace, name: name))
                    : Self.progress(try await client.get(Deployment.self, namespace: namespace, name: name))
                if message != last { print(message); fflush(nil); last = message }
                if done { return }
                if Date() > deadline { throw ValidationError("timed out after \(timeout) s waiting for the rollout of \(kind.kindInfo.singular) \"\(name)\"") }
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// kubectl's wording for where a rollout stands.
    static func progress(_ d: Deployment) -> (done: Bool, message: String) {
        let name = d.metadata.name
        let want = d.spec.hasReplicas ? d.spec.replicas : 1
        let s = d.status
        if s.observedGeneration < d.metadata.generation { return (false, "Waiting for deployment spec update to be observed...") }
        if s.updatedReplicas < want {
            return (false, "Waiting for deployment \"\(name)\" rollout to finish: \(s.updatedReplicas) out of \(want) new replicas have been updated...")
        }
        if s.replicas > s.updatedReplicas {
            return (false, "Waiting for deployment \"\(name)\" rollout to finish: \(s.replicas - s.updatedReplicas) old replicas are pending termination...")
        }
        if s.availableReplicas < s.updatedReplicas {
            return (false, "Waiting for deployment \"\(name)\" rollout to finish: \(s.availableReplicas) of \(s.updatedReplicas) updated replicas are available...")
        }
        return (true, "deployment \"\(name)\" successfully rolled out")
    }

    /// kubectl's wording for a DaemonSet's rollout (RollingUpdate only, as kubectl says).
    static func progress(_ set: DaemonSet) throws -> (done: Bool, message: String) {
        let name = set.metadata.name, s = set.status
        guard set.spec.updateStrategy.type == "RollingUpdate" else {
            throw ValidationError("rollout status is only available for RollingUpdate strategy type")
        }
        if s.observedGeneration < set.metadata.generation { return (false, "Waiting for daemon set spec update to be observed...") }
        if s.updatedNumberScheduled < s.desiredNumberScheduled {
            return (false, "Waiting for daemon set \"\(name)\" rollout to finish: \(s.updatedNumberScheduled) out of \(s.desiredNumberScheduled) new pods have been updated...")
        }
        if s.numberAvailable < s.desiredNumberScheduled {
            return (false, "Waiting for daemon set \"\(name)\" rollout to finish: \(s.numberAvailable) of \(s.desiredNumberScheduled) updated pods are available...")
        }
        return (true, "daemon set \"\(name)\" successfully rolled out")
    }
}

struct RolloutHistory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "history", abstract: "List a Deployment's revisions.")
    @Argument(help: "deployment/NAME") var target: [String]
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let name = try deploymentName(target)
        try await withClient(client) { client in
            let d = try await client.get(Deployment.self, namespace: namespace, name: name)
            let sets = try await ownedReplicaSets(of: d, client: client)
            print("deployment.apps/\(name)")
            print("REVISION  REPLICAS  REPLICASET            COMMAND")
            for set in sets {
                let command = set.spec.template.spec.containers.map { ($0.command + $0.args).joined(separator: " ") }.joined(separator: "; ")
                print(String(revision(set)).padding(toLength: 10, withPad: " ", startingAt: 0)
                      + String(set.spec.replicas).padding(toLength: 10, withPad: " ", startingAt: 0)
                      + set.metadata.name.padding(toLength: max(22, set.metadata.name.count + 1), withPad: " ", startingAt: 0) + command)
            }
        }
    }
}

struct RolloutUndo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "undo", abstract: "Roll a Deployment back to its previous (or a given) revision.")
    @Argument(help: "deployment/NAME") var target: [String]
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @Option(help: "The revision to go back to (default: the one before the current).") var toRevision: Int?
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let name = try deploymentName(target)
        try await withClient(client) { client in
            for _ in 0..<5 {
                var d = try await client.get(Deployment.self, namespace: namespace, name: name)
                let sets = try await ownedReplicaSets(of: d, client: client)
                let current = Int(d.metadata.annotations[DeploymentController.revisionAnnotation] ?? "") ?? sets.map(revision).max() ?? 0
                let target: ReplicaSet?
                if let toRevision {
                    target = sets.first { revision($0) == toRevision }
                    guard target != nil else {
                        throw ValidationError("deployment \"\(name)\" has no revision \(toRevision) (it has \(sets.map { String(revision($0)) }.joined(separator: ", ")))")
                    }
                } else {
                    target = sets.filter { revision($0) < current }.max { revision($0) < revision($1) }
                    guard target != nil else { throw ValidationError("deployment \"\(name)\" has no revision before \(current) to go back to") }
                }
                guard let target else { return }
                var template = target.spec.template
                template.metadata.labels[DeploymentController.hashLabel] = nil
                if template == d.spec.template {
                    print("deployment.apps/\(name) skipped rollback (current template already matches revision \(revision(target)))")
                    return
                }
                d.spec.template = template
                do {
                    _ = try await client.update(d)
                    print("deployment.apps/\(name) rolled back to revision \(revision(target))")
                    return
                } catch let error as ClientError where error.code == 409 {
                    continue
                }
            }
            throw ValidationError("deployment \"\(name)\" kept changing; try again")
        }
    }
}

/// `cox scale deployment/NAME --replicas N` (also ReplicaSets).
struct ScaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "Set the replicas of a Deployment or ReplicaSet.")
    @Argument(help: "deployment/NAME, replicaset/NAME, or KIND NAME.") var target: [String]
    @Option(help: "The number of replicas.") var replicas: Int32
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @OptionGroup var client: ClientOptions

    func run() async throws {
        guard replicas >= 0 else { throw ValidationError("--replicas must be 0 or more, not \(replicas)") }
        var words = target
        if words.count == 1, let slash = words[0].firstIndex(of: "/") {
            words = [String(words[0][..<slash]), String(words[0][words[0].index(after: slash)...])]
        }
        guard words.count == 2 else { throw ValidationError("name what to scale, e.g. `deployment/web`") }
        let type = try kind(named: words[0])
        try await withClient(client) { client in
            switch type {
            case is Deployment.Type: try await scale(Deployment.self, words[1], client) { $0.spec.replicas = replicas }
            case is ReplicaSet.Type: try await scale(ReplicaSet.self, words[1], client) { $0.spec.replicas = replicas }
            default: throw ValidationError("\(type.kindInfo.resource) cannot be scaled; deployments and replicasets can")
            }
        }
    }

    func scale<T: APIObject>(_ type: T.Type, _ name: String, _ client: APIClient, _ change: (inout T) -> Void) async throws {
        try await client.modify(T.self, namespace: namespace, name: name, change)
        print("\(T.kindInfo.groupResource)/\(name) scaled")
    }
}
