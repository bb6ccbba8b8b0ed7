import API
import ArgumentParser
import Client
import Foundation

/// `cox describe KIND NAME`: the object in words — metadata, the parts of spec and status a person
/// reads first (for pods: each container's state and restarts, the conditions), then its Events.
struct DescribeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "describe", abstract: "Show an object in detail, with its events.")

    @Argument(help: "Kind (pods, po, deployments, deploy, nodes, no, …).") var kindName: String
    @Argument(help: "Name.") var name: String
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let type = try kind(named: kindName)
        let text = try await withClient(client) { client in try await describe(type, client: client) }
        print(text, terminator: "")
    }

    func describe<T: APIObject>(_ type: T.Type, client: APIClient) async throws -> String {
        let object = try await client.get(T.self, namespace: T.kindInfo.namespaced ? namespace : "", name: name)
        var out = Describer()
        out.field("Name", object.metadata.name)
        if T.kindInfo.namespaced { out.field("Namespace", object.metadata.namespace) }
        out.map("Labels", object.metadata.labels)
        out.map("Annotations", object.metadata.annotations)
        out.field("Created", object.metadata.hasCreationTimestamp ? "\(object.metadata.creationTimestamp.rfc3339) (\(Table.age(object.metadata)) ago)" : "<unknown>")
        if object.metadata.hasDeletionTimestamp {
            out.field("Terminating since", object.metadata.deletionTimestamp.rfc3339)
        }
        if !object.metadata.ownerReferences.isEmpty {
            out.field("Controlled By", object.metadata.ownerReferences.map { "\($0.kind)/\($0.name)" }.joined(separator: ", "))
        }
        switch object {
        case let pod as Pod: out.pod(pod)
        case let node as Node: out.node(node)
        default:
            // Other kinds: spec and status as YAML, which says everything there is.
            let json = object.jsonValue()
            for section in ["spec", "status"] {
                guard let value = json[section], value != .object([]) else { continue }
                out.line(section.prefix(1).uppercased() + section.dropFirst() + ":")
                out.block(YAMLWriter.render(value), indent: 2)
            }
        }
        out.events(try await events(for: object, client: client))
        return out.text
    }

    /// The Events about this object, oldest first. Events are few per namespace; they are matched
    /// here rather than through a field selector the server does not index.
    func events(for object: some APIObject, client: APIClient) async throws -> [Event] {
        let namespace = object.metadata.namespace.isEmpty ? "default" : object.metadata.namespace
        let all = try await client.list(Event.self, namespace: namespace).items
        return all.filter { $0.involvedObject.name == object.metadata.name && $0.involvedObject.kind == type(of: object).kindInfo.kind }
            .sorted { ($0.lastTimestamp.seconds, $0.metadata.name) < ($1.lastTimestamp.seconds, $1.metadata.name) }
    }
}

/// Aligned "Key: value" text in kubectl's describe layout.
struct Describer {
    var text = ""

    mutating func line(_ s: String, indent: Int = 0) { text += String(repeating: " ", count: indent) + s + "\n" }

    mutating func field(_ key: String, _ value: String, indent: Int = 0) {
        let label = (key + ":").padding(toLength: max(key.count + 2, 18 - indent), withPad: " ", startingAt: 0)
        line(label + (value.isEmpty ? "<none>" : value), indent: indent)
    }

    mutating func map(_ key: String, _ values: [String: String], indent: Int = 0) {
        let pairs = values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        guard let first = pairs.first else { return field(key, "<none>", indent: indent) }
        field(key, first, indent: indent)
        for pair in pairs.dropFirst() { line(String(repeating: " ", count: max(key.count + 2, 18 - indent)) + pair, indent: indent) }
    }

    mutating func block(_ s: String, indent: Int) {
        for row in s.split(separator: "\n", omittingEmptySubsequences: false).dropLast() { line(String(row), indent: indent) }
    }

    mutating func pod(_ pod: Pod) {
        field("Node", pod.spec.nodeName.isEmpty ? "<none>" : pod.spec.nodeName + (pod.status.hostIp.isEmpty ? "" : "/" + pod.status.hostIp))
        if pod.status.hasStartTime { field("Start Time", pod.status.startTime.rfc3339) }
        field("Status", Table.podStatus(pod))
        if !pod.status.reason.isEmpty { field("Reason", pod.status.reason) }
        if !pod.status.message.isEmpty { field("Message", pod.status.message) }
        field("IP", pod.status.podIp)
        if !pod.spec.initContainers.isEmpty {
            line("Init Containers:")
            for container in pod.spec.initContainers {
                self.container(container, pod.status.initContainerStatuses.first { $0.name == container.name })
            }
        }
        line("Containers:")
        for container in pod.spec.containers {
            self.container(container, pod.status.containerStatuses.first { $0.name == container.name })
        }
        conditions(pod.status.conditions.map { ($0.type, $0.status, $0.reason) })
        field("Restart Policy", pod.spec.restartPolicy)
        if !pod.spec.nodeSelector.isEmpty { map("Node-Selectors", pod.spec.nodeSelector) }
        if !pod.spec.tolerations.isEmpty {
            field("Tolerations", pod.spec.tolerations.map { "\($0.key)\($0.value.isEmpty ? "" : "=" + $0.value):\($0.effect)" }.joined(separator: ", "))
        }
    }

    mutating func container(_ container: Container, _ status: ContainerStatus?) {
        line(container.name + ":", indent: 2)
        if !container.image.isEmpty { field("Image", container.image, indent: 4) }
        if !container.command.isEmpty { field("Command", (container.command + container.args).joined(separator: " "), indent: 4) }
        if let status {
            state("State", status.state)
            if status.lastState.hasTerminated { state("Last State", status.lastState) }
            field("Ready", status.ready ? "True" : "False", indent: 4)
            field("Restart Count", "\(status.restartCount)", indent: 4)
        } else {
            field("State", "Waiting (not started)", indent: 4)
        }
        if !container.resources.limits.isEmpty { map("Limits", container.resources.limits, indent: 4) }
        if !container.resources.requests.isEmpty { map("Requests", container.resources.requests, indent: 4) }
        if container.hasLivenessProbe { field("Liveness", probe(container.livenessProbe), indent: 4) }
        if container.hasReadinessProbe { field("Readiness", probe(container.readinessProbe), indent: 4) }
        if container.hasStartupProbe { field("Startup", probe(container.startupProbe), indent: 4) }
        if !container.env.isEmpty { map("Environment", Dictionary(container.env.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a }), indent: 4) }
    }

    mutating func state(_ label: String, _ state: ContainerState) {
        if state.hasRunning {
            field(label, "Running", indent: 4)
            field("Started", state.running.startedAt.rfc3339, indent: 6)
        } else if state.hasTerminated {
            field(label, "Terminated", indent: 4)
            if !state.terminated.reason.isEmpty { field("Reason", state.terminated.reason, indent: 6) }
            field("Exit Code", "\(state.terminated.exitCode)", indent: 6)
            if state.terminated.hasStartedAt { field("Started", state.terminated.startedAt.rfc3339, indent: 6) }
            if state.terminated.hasFinishedAt { field("Finished", state.terminated.finishedAt.rfc3339, indent: 6) }
        } else if state.hasWaiting {
            field(label, "Waiting", indent: 4)
            if !state.waiting.reason.isEmpty { field("Reason", state.waiting.reason, indent: 6) }
            if !state.waiting.message.isEmpty { field("Message", state.waiting.message, indent: 6) }
        } else {
            field(label, "<unknown>", indent: 4)
        }
    }

    func probe(_ probe: Probe) -> String {
        var action = "unknown"
        if probe.hasExec { action = "exec [\(probe.exec.command.joined(separator: " "))]" }
        if probe.hasHTTPGet { action = "http-get :\(Self.port(probe.httpGet.port))\(probe.httpGet.path)" }
        if probe.hasTcpSocket { action = "tcp-socket :\(Self.port(probe.tcpSocket.port))" }
        return "\(action) delay=\(probe.initialDelaySeconds)s timeout=\(probe.timeoutSeconds)s period=\(probe.periodSeconds)s #success=\(probe.successThreshold) #failure=\(probe.failureThreshold)"
    }

    static func port(_ port: IntOrString) -> String {
        switch port.value {
        case .intVal(let number)?: "\(number)"
        case .strVal(let name)?: name
        case nil: ""
        }
    }

    mutating func conditions(_ rows: [(String, String, String)]) {
        guard !rows.isEmpty else { return }
        line("Conditions:")
        let width = max(18, (rows.map(\.0.count).max() ?? 0) + 2)
        line("Type".padding(toLength: width, withPad: " ", startingAt: 0) + "Status  Reason", indent: 2)
        for (type, status, reason) in rows {
            line(type.padding(toLength: width, withPad: " ", startingAt: 0) + status.padding(toLength: 8, withPad: " ", startingAt: 0) + reason, indent: 2)
        }
    }

    mutating func node(_ node: Node) {
        field("Unschedulable", node.spec.unschedulable ? "true" : "false")
        field("Taints", node.spec.taints.map { "\($0.key)\($0.value.isEmpty ? "" : "=" + $0.value):\($0.effect)" }.joined(separator: ", "))
        conditions(node.status.conditions.map { ($0.type, $0.status, $0.reason) })
        field("Addresses", node.status.addresses.map { "\($0.type)=\($0.address)" }.joined(separator: ", "))
        map("Capacity", node.status.capacity)
        map("Allocatable", node.status.allocatable)
        let info = node.status.nodeInfo
        line("System Info:")
        field("OS", "\(info.operatingSystem) \(info.architecture)", indent: 2)
        field("Kernel Version", info.kernelVersion, indent: 2)
        field("Agent Version", info.kubeletVersion, indent: 2)
        field("Container Runtime", info.containerRuntimeVersion, indent: 2)
    }

    mutating func events(_ events: [Event]) {
        guard !events.isEmpty else { return line("Events:           <none>") }
        line("Events:")
        let rows = events.map { event -> [String] in
            let seconds = max(0, Int(Date().timeIntervalSince1970) - Int(event.lastTimestamp.seconds))
            let age = seconds < 120 ? "\(seconds)s" : seconds < 7200 ? "\(seconds / 60)m" : "\(seconds / 3600)h"
            return [event.type, event.reason, (event.count > 1 ? "\(age) (x\(event.count))" : age), event.source.component, event.message]
        }
        let header = ["Type", "Reason", "Age", "From", "Message"]
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        for row in [header] + rows {
            line(row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0) }.joined(), indent: 2)
        }
    }
}
