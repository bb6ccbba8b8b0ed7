import Foundation
import Logging

/// Resource limits for containers through cgroups, under the agent's own cgroup: v1 (memory, cpu,
/// pids hierarchies, as on hosts that mount them separately) or v2 (where the unified hierarchy
/// delegates the controllers). What is not usable is said once, and reported on the node.
public struct Cgroups: Sendable {
    /// `runtime`: a CRI runtime enforces the limits the agent passes it.
    public enum Version: String, Sendable { case v1, v2, none, runtime }
    public let version: Version
    /// v1: controller → directory the agent creates container groups in; v2: "" → that directory.
    let roots: [String: String]
    /// Why limits are (partly) unavailable; empty when all of memory, cpu and pids work.
    public let problems: [String]

    public var memory: Bool { roots["memory"] != nil || roots[""] != nil && controllersV2.contains("memory") }
    let controllersV2: Set<String>

    /// No limits, for the reason given (a runtime that starts nothing, say).
    public static func unavailable(_ reason: String) -> Cgroups {
        Cgroups(version: .none, roots: [:], problems: [reason], controllersV2: [])
    }

    /// Limits passed to a CRI runtime, which enforces them (LinuxContainerResources).
    public static let enforcedByRuntime = Cgroups(version: .runtime, roots: [:], problems: [], controllersV2: [])

    public static func detect(logger: Logger) -> Cgroups {
        let lines = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8))?.split(separator: "\n") ?? []
        var own: [String: String] = [:]  // controller → path
        for line in lines {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            for controller in parts[1].split(separator: ",") { own[String(controller)] = String(parts[2]) }
            if parts[1].isEmpty { own[""] = String(parts[2]) }
        }
        var roots: [String: String] = [:]
        var problems: [String] = []
        for controller in ["memory", "cpu", "pids"] {
            let mount = "/sys/fs/cgroup/\(controller)"
            guard let path = own[controller], FileManager.default.fileExists(atPath: mount + "/cgroup.procs") else { continue }
            let root = mount + (path == "/" ? "" : path) + "/cox"
            if (try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)) != nil, access(root, W_OK) == 0 {
                roots[controller] = root
            } else {
                problems.append("cgroup v1 \(controller): cannot create \(root)")
            }
        }
        if !roots.isEmpty {
            let missing = ["memory", "cpu", "pids"].filter { roots[$0] == nil }
            if !missing.isEmpty { problems.append("cgroup v1 without \(missing.joined(separator: ", ")) limits") }
            let cgroups = Cgroups(version: .v1, roots: roots, problems: problems, controllersV2: [])
            cgroups.logOnce(logger)
            return cgroups
        }
        // v2: the unified hierarchy with the controllers enabled for our subtree.
        let unified = FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified"
        if let path = own[""], let available = try? String(contentsOfFile: unified + (path == "/" ? "" : path) + "/cgroup.controllers", encoding: .utf8) {
            let controllers = Set(available.split(whereSeparator: \.isWhitespace).map(String.init))
            let root = unified + (path == "/" ? "" : path) + "/cox"
            if controllers.contains("memory"), (try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)) != nil {
                let wanted = ["memory", "cpu", "pids"].filter(controllers.contains)
                try? ("" + wanted.map { "+\($0)" }.joined(separator: " ")).write(toFile: root + "/cgroup.subtree_control", atomically: false, encoding: .utf8)
                let cgroups = Cgroups(version: .v2, roots: ["": root], problems: [], controllersV2: Set(wanted))
                cgroups.logOnce(logger)
                return cgroups
            }
            problems.append("cgroup v2 delegates no memory controller here (available: \(controllers.isEmpty ? "none" : controllers.sorted().joined(separator: " ")))")
        }
        if problems.isEmpty { problems.append("no usable cgroup hierarchy") }
        let cgroups = Cgroups(version: .none, roots: [:], problems: problems, controllersV2: [])
        cgroups.logOnce(logger)
        return cgroups
    }

    func logOnce(_ logger: Logger) {
        if version == .none {
            logger.warning("container resource limits are NOT enforced: \(problems.joined(separator: "; "))")
        } else {
            logger.info("container resource limits through cgroup \(version.rawValue)", metadata: ["limits": "\(version == .v1 ? roots.keys.sorted() : controllersV2.sorted())", "problems": "\(problems)"])
        }
    }

    /// Creates the container's groups with its limits and moves `pid` into them.
    func place(pid: pid_t, name: String, memoryBytes: Int64?, cpuMillis: Int64?, maxPids: Int) {
        switch version {
        case .none, .runtime: return
        case .v1:
            if let root = roots["memory"] {
                let dir = root + "/" + name
                try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                if let memoryBytes { write(dir + "/memory.limit_in_bytes", "\(memoryBytes)") }
                write(dir + "/cgroup.procs", "\(pid)")
            }
            if let root = roots["cpu"] {
                let dir = root + "/" + name
                try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                if let cpuMillis {
                    write(dir + "/cpu.cfs_period_us", "100000")
                    write(dir + "/cpu.cfs_quota_us", "\(max(cpuMillis * 100, 1000))")
                }
                write(dir + "/cgroup.procs", "\(pid)")
            }
            if let root = roots["pids"] {
                let dir = root + "/" + name
                try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                write(dir + "/pids.max", "\(maxPids)")
                write(dir + "/cgroup.procs", "\(pid)")
            }
        case .v2:
            guard let root = roots[""] else { return }
            let dir = root + "/" + name
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            if let memoryBytes, controllersV2.contains("memory") { write(dir + "/memory.max", "\(memoryBytes)") }
            if let cpuMillis, controllersV2.contains("cpu") { write(dir + "/cpu.max", "\(max(cpuMillis * 100, 1000)) 100000") }
            if controllersV2.contains("pids") { write(dir + "/pids.max", "\(maxPids)") }
            write(dir + "/cgroup.procs", "\(pid)")
        }
    }

    /// Whether the kernel's OOM killer acted in the container's memory group.
    func oomKilled(name: String) -> Bool {
        switch version {
        case .none, .runtime: return false
        case .v1:
            guard let root = roots["memory"], let text = try? String(contentsOfFile: root + "/" + name + "/memory.oom_control", encoding: .utf8) else { return false }
            return text.split(separator: "\n").contains { $0.hasPrefix("oom_kill ") && $0.split(separator: " ").last != "0" }
        case .v2:
            guard let root = roots[""], let text = try? String(contentsOfFile: root + "/" + name + "/memory.events", encoding: .utf8) else { return false }
            return text.split(separator: "\n").contains { $0.hasPrefix("oom_kill ") && $0.split(separator: " ").last != "0" }
        }
    }

    /// Bytes of memory the container's group uses now (nil without a memory controller).
    func memoryUsage(name: String) -> UInt64? {
        let file: String
        switch version {
        case .none, .runtime: return nil
        case .v1:
            guard let root = roots["memory"] else { return nil }
            file = root + "/" + name + "/memory.usage_in_bytes"
        case .v2:
            guard let root = roots[""] else { return nil }
            file = root + "/" + name + "/memory.current"
        }
        return (try? String(contentsOfFile: file, encoding: .utf8)).flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Removes the container's (empty) groups.
    func remove(name: String) {
        for root in roots.values { rmdir(root + "/" + name) }
    }

    func write(_ path: String, _ value: String) {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { return }
        _ = value.withCString { Glibc.write(fd, $0, strlen($0)) }
        close(fd)
    }
}
