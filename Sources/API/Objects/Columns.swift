import API
import Foundation

/// kubectl-style columns per kind: the CLI's tables and the server's `as=Table` answers (what
/// `kubectl get` prints) come from here.
public enum Table {
    /// Column names and cells; `wideFrom` is the index of the first column only `-o wide` shows.
    public static func columns<T: APIObject>(_ objects: [T]) -> (header: [String], rows: [[String]], wideFrom: Int) {
        var header: [String]
        var rows: [[String]]
        switch objects {
        case let pods as [Pod]:
            // kubectl's columns; those from IP on only with -o wide (no pod is nominated or has
            // readiness gates here: their cells say so, as kubectl's do).
            header = ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
            rows = pods.map { pod in
                let summary = podSummary(pod)
                return [pod.metadata.name, "\(summary.ready)/\(summary.total)", summary.status, "\(summary.restarts)", age(pod.metadata)]
                    + [pod.status.podIp.isEmpty ? "<none>" : pod.status.podIp, pod.spec.nodeName.isEmpty ? "<none>" : pod.spec.nodeName,
                       "<none>", "<none>"]
            }
        case let nodes as [Node]:
            header = ["NAME", "STATUS", "AGE", "VERSION"]
            rows = nodes.map { node in
                let ready = node.status.conditions.first { $0.type == "Ready" }?.status == "True"
                var status = ready ? "Ready" : "NotReady"
                if node.spec.unschedulable { status += ",SchedulingDisabled" }
                return [node.metadata.name, status, age(node.metadata), node.status.nodeInfo.kubeletVersion]
            }
        case let deployments as [Deployment]:
            header = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
            rows = deployments.map { d in
                [d.metadata.name, "\(d.status.readyReplicas)/\(d.spec.replicas)", "\(d.status.updatedReplicas)", "\(d.status.availableReplicas)", age(d.metadata)]
            }
        case let sets as [ReplicaSet]:
            header = ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
            rows = sets.map { rs in [rs.metadata.name, "\(rs.spec.replicas)", "\(rs.status.replicas)", "\(rs.status.readyReplicas)", age(rs.metadata)] }
        case let sets as [DaemonSet]:
            // kubectl's columns; CONTAINERS, IMAGES and SELECTOR only with -o wide.
            header = ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
            rows = sets.map { set in
                let s = set.status, containers = set.spec.template.spec.containers
                let nodeSelector = set.spec.template.spec.nodeSelector.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                return [set.metadata.name, "\(s.desiredNumberScheduled)", "\(s.currentNumberScheduled)", "\(s.numberReady)", "\(s.updatedNumberScheduled)",
                        "\(s.numberAvailable)", nodeSelector.isEmpty ? "<none>" : nodeSelector, age(set.metadata),
                        containers.map(\.name).joined(separator: ","), containers.map(\.image).joined(separator: ","),
                        (try? Selector(set.spec.selector).description) ?? "<none>"]
            }
        case let jobs as [Job]:
            // kubectl's columns; CONTAINERS, IMAGES and SELECTOR only with -o wide.
            header = ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
            rows = jobs.map { job in
                let containers = job.spec.template.spec.containers
                return [job.metadata.name, jobStatus(job), jobCompletions(job), jobDuration(job), age(job.metadata),
                        containers.map(\.name).joined(separator: ","), containers.map(\.image).joined(separator: ","),
                        (try? Selector(job.spec.selector).description) ?? "<none>"]
            }
        case let events as [Event]:
            header = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
            rows = events.sorted { $0.lastTimestamp.seconds < $1.lastTimestamp.seconds }.map { event in
                let seen = event.hasLastTimestamp ? event.lastTimestamp : event.metadata.creationTimestamp
                var meta = ObjectMeta()
                meta.creationTimestamp = seen
                let count = event.count > 1 ? " (x\(event.count))" : ""
                return [age(meta) + count, event.type, event.reason,
                        "\(event.involvedObject.kind.lowercased())/\(event.involvedObject.name)", event.message]
            }
        case let maps as [ConfigMap]:
            header = ["NAME", "DATA", "AGE"]
            rows = maps.map { [$0.metadata.name, "\($0.data.count + $0.binaryData.count)", age($0.metadata)] }
        case let secrets as [Secret]:
            header = ["NAME", "TYPE", "DATA", "AGE"]
            rows = secrets.map { [$0.metadata.name, $0.type, "\($0.data.count)", age($0.metadata)] }
        case let accounts as [ServiceAccount]:
            header = ["NAME", "SECRETS", "AGE"]
            rows = accounts.map { [$0.metadata.name, "\($0.secrets.count)", age($0.metadata)] }
        case let namespaces as [Namespace]:
            header = ["NAME", "STATUS", "AGE"]
            rows = namespaces.map { [$0.metadata.name, $0.status.phase, age($0.metadata)] }
        case let tokens as [Token]:
            header = ["NAME", "USAGE", "USER", "GROUPS", "EXPIRES", "AGE"]
            let now = Date()
            rows = tokens.map { token in
                let spec = token.spec
                let expires = !spec.hasExpires ? "never" : spec.expires.date < now ? "expired" : Self.format(until: spec.expires.date, from: now)
                return [token.metadata.name, spec.usage, spec.user.isEmpty ? "<none>" : spec.user,
                        spec.groups.isEmpty ? "<none>" : spec.groups.joined(separator: ","), expires, age(token.metadata)]
            }
        case let custom as [CustomObject]:
            // The definition's printer columns (priority 0 first; the others with -o wide), or AGE.
            let columns = (CustomResources.current?.columns ?? []).sorted { $0.priority == 0 && $1.priority != 0 }
            header = ["NAME"] + (columns.isEmpty ? ["AGE"] : columns.map { $0.name.uppercased() })
            rows = custom.map { object in
                let json = object.json
                return [object.metadata.name] + (columns.isEmpty ? [age(object.metadata)] : columns.map { cell($0, json) })
            }
            return (header, rows, 1 + (columns.isEmpty ? 1 : columns.filter { $0.priority == 0 }.count))
        case let definitions as [CustomResourceDefinition]:
            header = ["NAME", "CREATED AT"]
            rows = definitions.map { [$0.metadata.name, $0.metadata.hasCreationTimestamp ? $0.metadata.creationTimestamp.rfc3339 : "<unknown>"] }
        default:
            header = ["NAME", "AGE"]
            rows = objects.map { [$0.metadata.name, age($0.metadata)] }
        }
        return (header, rows, objects is [Pod] || objects is [Job] ? 5 : objects is [DaemonSet] ? 8 : header.count)
    }

    /// The text table `cox get` prints.
    public static func render<T: APIObject>(_ objects: [T], allNamespaces: Bool, wide: Bool) -> String {
        var (header, rows, wideFrom) = columns(objects)
        if !wide {
            header = Array(header.prefix(wideFrom))
            rows = rows.map { Array($0.prefix(wideFrom)) }
        }
        if allNamespaces {
            header.insert("NAMESPACE", at: 0)
            for i in rows.indices { rows[i].insert(objects[i].metadata.namespace, at: 0) }
        }
        return align(header: header, rows: rows)
    }

    /// Columns padded to their widest cell, three spaces apart (kubectl's look).
    public static func align(header: [String], rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in i == cells.count - 1 ? cell : cell.padding(toLength: widths[i] + 3, withPad: " ", startingAt: 0) }.joined() + "\n"
        }
        return line(header) + rows.map(line).joined()
    }

    /// A Job's STATUS cell, by kubectl's rules: its final condition, else Terminating, Suspended or
    /// the target it reached, else Running.
    public static func jobStatus(_ job: Job) -> String {
        func has(_ type: String) -> Bool { job.status.conditions.contains { $0.type == type && $0.status == "True" } }
        if has("Complete") { return "Complete" }
        if has("Failed") { return "Failed" }
        if job.metadata.hasDeletionTimestamp { return "Terminating" }
        if has("Suspended") { return "Suspended" }
        if has("FailureTarget") { return "FailureTarget" }
        if has("SuccessCriteriaMet") { return "SuccessCriteriaMet" }
        return "Running"
    }

    /// COMPLETIONS: succeeded/completions, or for a work queue succeeded/1 (of its parallelism).
    public static func jobCompletions(_ job: Job) -> String {
        if job.spec.hasCompletions { return "\(job.status.succeeded)/\(job.spec.completions)" }
        if job.spec.hasParallelism && job.spec.parallelism > 1 { return "\(job.status.succeeded)/1 of \(job.spec.parallelism)" }
        return "\(job.status.succeeded)/1"
    }

    /// DURATION: from the start to the completion (or to now), in kubectl's human form.
    static func jobDuration(_ job: Job) -> String {
        guard job.status.hasStartTime else { return "" }
        let end = job.status.hasCompletionTime ? Int(job.status.completionTime.seconds) : Int(Date().timeIntervalSince1970)
        return humanDuration(max(0, end - Int(job.status.startTime.seconds)))
    }

    /// apimachinery's HumanDuration: 45s, 2m3s, 15m, 3h20m, 30h, 5d3h, 20d, 2y30d.
    static func humanDuration(_ seconds: Int) -> String {
        let minutes = seconds / 60, hours = seconds / 3600, days = hours / 24
        switch seconds {
        case ..<120: return "\(seconds)s"
        case ..<600: return seconds % 60 == 0 ? "\(minutes)m" : "\(minutes)m\(seconds % 60)s"
        case ..<10_800: return "\(minutes)m"
        case ..<28_800: return minutes % 60 == 0 ? "\(hours)h" : "\(hours)h\(minutes % 60)m"
        case ..<172_800: return "\(hours)h"
        case ..<691_200: return hours % 24 == 0 ? "\(days)d" : "\(days)d\(hours % 24)h"
        case ..<(365 * 86_400 * 2): return "\(days)d"
        default: return "\(days / 365)y\(days % 365 == 0 ? "" : "\(days % 365)d")"
        }
    }

    /// What kubectl shows in STATUS: a waiting reason such as CrashLoopBackOff wins over the phase.
    public static func podStatus(_ pod: Pod) -> String { podSummary(pod).status }

    /// A pod's READY (ready/total), STATUS and RESTARTS cells, by kubectl's rules: while init
    /// containers run, `Init:N/M` (or `Init:` and the failing one's reason); then the first
    /// container with a waiting or terminated reason; `Completed` beside a running container is
    /// `Running` (or `NotReady`); sidecars count among the containers once started.
    public static func podSummary(_ pod: Pod) -> (ready: Int, total: Int, status: String, restarts: Int32) {
        var reason = pod.status.reason.isEmpty ? (pod.status.phase.isEmpty ? "Pending" : pod.status.phase) : pod.status.reason
        let sidecars = Set(pod.spec.initContainers.filter(\.isSidecar).map(\.name))
        let total = pod.spec.containers.count + sidecars.count
        var ready = 0
        var restarts: Int32 = 0, sidecarRestarts: Int32 = 0
        var initializing = false
        for (index, status) in pod.status.initContainerStatuses.enumerated() {
            restarts += status.restartCount
            if sidecars.contains(status.name) {
                sidecarRestarts += status.restartCount
                if status.started {
                    if status.ready { ready += 1 }
                    continue
                }
            }
            let state = status.state
            if state.hasTerminated && state.terminated.exitCode == 0 { continue }
            if state.hasTerminated {
                let terminated = state.terminated
                reason = !terminated.reason.isEmpty ? "Init:\(terminated.reason)"
                    : terminated.signal != 0 ? "Init:Signal:\(terminated.signal)" : "Init:ExitCode:\(terminated.exitCode)"
            } else if state.hasWaiting && !state.waiting.reason.isEmpty && state.waiting.reason != "PodInitializing" {
                reason = "Init:\(state.waiting.reason)"
            } else {
                reason = "Init:\(index)/\(pod.spec.initContainers.count)"
            }
            initializing = true
            break
        }
        let initialized = pod.status.conditions.contains { $0.type == "Initialized" && $0.status == "True" }
        if !initializing || initialized {
            restarts = sidecarRestarts
            var running = false
            for status in pod.status.containerStatuses.reversed() {
                restarts += status.restartCount
                let state = status.state
                if state.hasWaiting && !state.waiting.reason.isEmpty {
                    reason = state.waiting.reason
                } else if state.hasTerminated && !state.terminated.reason.isEmpty {
                    reason = state.terminated.reason
                } else if state.hasTerminated {
                    reason = state.terminated.signal != 0 ? "Signal:\(state.terminated.signal)" : "ExitCode:\(state.terminated.exitCode)"
                } else if status.ready && state.hasRunning {
                    running = true
                    ready += 1
                }
            }
            if reason == "Completed" && running {
                reason = pod.status.conditions.contains { $0.type == "Ready" && $0.status == "True" } ? "Running" : "NotReady"
            }
        }
        if pod.metadata.hasDeletionTimestamp && pod.status.phase != "Succeeded" && pod.status.phase != "Failed" { reason = "Terminating" }
        return (ready, total, reason, restarts)
    }

    /// A printer column's cell: the value at its JSON path, a date as an age.
    static func cell(_ column: CustomResourceColumnDefinition, _ object: JSONValue) -> String {
        guard let path = JSONPathLite(column.jsonPath), let value = path.evaluate(object) else { return "" }
        switch value {
        case .string(let text):
            if column.type == "date", let date = ISO8601DateFormatter().date(from: text) {
                return span(max(0, Int(Date().timeIntervalSince(date))))
            }
            return text
        case .int(let number): return "\(number)"
        case .double(let number): return "\(number)"
        case .bool(let flag): return flag ? "true" : "false"
        case .null: return ""
        default: return CustomResourceSchema.text(value)
        }
    }

    public static func age(_ meta: ObjectMeta) -> String {
        guard meta.hasCreationTimestamp else { return "<unknown>" }
        return span(max(0, Int(Date().timeIntervalSince1970) - Int(meta.creationTimestamp.seconds)))
    }

    /// How long until `date`, as `age` writes spans.
    static func format(until date: Date, from now: Date) -> String { span(max(0, Int(date.timeIntervalSince(now)))) }

    static func span(_ seconds: Int) -> String {
        if seconds < 120 { return "\(seconds)s" }
        if seconds < 7200 { return "\(seconds / 60)m" }
        if seconds < 172_800 { return "\(seconds / 3600)h" }
        return "\(seconds / 86400)d"
    }
}
