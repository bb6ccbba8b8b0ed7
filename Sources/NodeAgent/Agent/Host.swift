import API
import Foundation

/// What the node reports about its host.
enum Host {
    static func labels(nodeName: String) -> [String: String] {
        ["kubernetes.io/hostname": nodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": architecture]
    }

    static var architecture: String {
        #if arch(x86_64)
        "amd64"
        #elseif arch(arm64)
        "arm64"
        #else
        "unknown"
        #endif
    }

    static func nodeStatus(previous: NodeStatus, address: String, maxPods: Int, runtime: String, logPort: Int, cgroups: Cgroups,
                           capacity: [String: String]? = nil, health: RuntimeHealth = RuntimeHealth(), runtimeVersion: String = "") -> NodeStatus {
        var status = NodeStatus()
        let cpu = "\(ProcessInfo.processInfo.activeProcessorCount)"
        let memory = "\(ProcessInfo.processInfo.physicalMemory / 1024)Ki"
        status.capacity = ["cpu": cpu, "memory": memory, "pods": "\(maxPods)"].merging(capacity ?? [:]) { _, given in given }
        status.allocatable = status.capacity
        var internalIP = NodeAddress()
        internalIP.type = "InternalIP"
        internalIP.address = address
        var hostname = NodeAddress()
        hostname.type = "Hostname"
        hostname.address = ProcessInfo.processInfo.hostName
        status.addresses = [internalIP, hostname]
        var info = NodeSystemInfo()
        info.operatingSystem = "linux"
        info.architecture = architecture
        info.kernelVersion = kernelVersion
        info.osImage = osImage
        info.kubeletVersion = "cox-" + CoxVersion.version
        info.containerRuntimeVersion = "\(runtime)://\(runtimeVersion.isEmpty ? CoxVersion.version : runtimeVersion)"
        info.machineID = (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        info.bootID = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        status.nodeInfo = info
        status.daemonEndpoints.kubeletEndpoint.port = Int32(logPort)

        let now = Timestamp(date: Date())
        var ready = NodeCondition()
        ready.type = "Ready"
        if health.isReady {
            ready.status = "True"
            ready.reason = "AgentReady"
            ready.message = "cox agent is posting ready status"
        } else {
            // The kubelet's words for a runtime that is down or whose network is not ready.
            ready.status = "False"
            ready.reason = "KubeletNotReady"
            ready.message = health.message
        }
        ready.lastHeartbeatTime = now
        let before = previous.conditions.first { $0.type == "Ready" }
        ready.lastTransitionTime = before?.status == ready.status ? before!.lastTransitionTime : now
        // Whether containers' resources.limits are enforced (never a silent no-op).
        var limits = NodeCondition()
        limits.type = "ResourceLimitsEnforced"
        limits.status = cgroups.version == .none ? "False" : "True"
        if cgroups.version == .runtime {
            limits.reason = "EnforcedByRuntime"
            limits.message = "the container runtime (\(runtime)) enforces memory and cpu limits"
        } else {
            limits.reason = cgroups.version == .none ? "NoUsableCgroups" : "Cgroup" + cgroups.version.rawValue.uppercased()
            limits.message = cgroups.problems.isEmpty ? "memory, cpu and pids limits through cgroup \(cgroups.version.rawValue)" : cgroups.problems.joined(separator: "; ")
        }
        limits.lastHeartbeatTime = now
        let limitsBefore = previous.conditions.first { $0.type == limits.type }
        limits.lastTransitionTime = limitsBefore?.status == limits.status ? limitsBefore!.lastTransitionTime : now
        status.conditions = [ready, limits]
        return status
    }

    static var kernelVersion: String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    static var osImage: String {
        guard let text = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8) else { return "Linux" }
        for line in text.split(separator: "\n") where line.hasPrefix("PRETTY_NAME=") {
            return String(line.dropFirst("PRETTY_NAME=".count)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        return "Linux"
    }
}
