import API
import Foundation
import Glibc

/// A pod's volumes on the node, laid out as the kubelet lays them out
/// (`DATA/pod-data/UID/volumes/kubernetes.io~configmap/NAME`, …), for runtimes that bind-mount host
/// paths into containers (CRI `Mount`s).
///
/// - emptyDir: a directory (mode 0777); `medium: Memory` is a tmpfs of `sizeLimit`.
/// - hostPath: the node's path, checked (or made) by its `type`.
/// - configMap, secret, downwardAPI, projected: files written by `AtomicWriter` (a `..data` link
///   swapped in one rename, so a reader sees the old set or the new one, never half); secrets and
///   projected volumes live on a tmpfs, so their values never reach the node's disk.
struct PodVolumes: Sendable {
    /// `DATA/pod-data` (beside `DATA/pods`, the CRI logs).
    let root: String

    struct SetUpError: Error, CustomStringConvertible {
        let volume: String
        let message: String
        /// The kubelet's event message.
        var description: String { "MountVolume.SetUp failed for volume \"\(volume)\" : \(message)" }
    }

    /// A ConfigMap's or Secret's data by key (decoded), nil when there is no such object.
    typealias Fetch = @Sendable (_ secret: Bool, _ name: String) async throws -> [String: Data]?

    func podDirectory(_ uid: String) -> String { "\(root)/\(uid)" }

    func directory(_ uid: String, _ volume: Volume) -> String {
        let plugin = switch volume.sourceNames.first ?? "" {
        case "emptyDir": "kubernetes.io~empty-dir"
        case "secret": "kubernetes.io~secret"
        case "configMap": "kubernetes.io~configmap"
        case "downwardAPI": "kubernetes.io~downward-api"
        case "projected": "kubernetes.io~projected"
        default: "kubernetes.io~host-path"
        }
        return "\(podDirectory(uid))/volumes/\(plugin)/\(volume.name)"
    }

    /// Makes every volume of the pod ready (again: file contents follow their sources) and answers
    /// where each is on the node, by volume name.
    func setUp(_ pod: Pod, fetch: Fetch) async throws -> [String: String] {
        var paths: [String: String] = [:]
        for volume in pod.spec.volumes {
            do {
                paths[volume.name] = try await setUp(volume, of: pod, fetch: fetch)
            } catch let error as SetUpError {
                throw SetUpError(volume: volume.name, message: error.message)
            } catch {
                throw SetUpError(volume: volume.name, message: "\(error)")
            }
        }
        return paths
    }

    func setUp(_ volume: Volume, of pod: Pod, fetch: Fetch) async throws -> String {
        let uid = pod.metadata.uid
        if volume.hasHostPath { return try Self.hostPath(volume.hostPath) }
        let directory = directory(uid, volume)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func fail(_ message: String) -> SetUpError { SetUpError(volume: volume.name, message: message) }
        if volume.hasEmptyDir {
            if volume.emptyDir.medium == "Memory" {
                var options = "mode=0777"
                if !volume.emptyDir.sizeLimit.isEmpty, let limit = try? Quantity(parsing: volume.emptyDir.sizeLimit) {
                    options += ",size=\(NSDecimalNumber(decimal: limit.value).int64Value)"
                }
                try Self.mountTmpfs(at: directory, options: options)
            }
            chmod(directory, 0o777)
            return directory
        }
        let namespace = pod.metadata.namespace
        var files: [String: AtomicWriter.File] = [:]
        if volume.hasConfigMap {
            let source = volume.configMap
            files = try await Self.keyFiles(secret: false, name: source.name, items: source.items, optional: source.optional,
                                            mode: source.hasDefaultMode ? source.defaultMode : VolumeValues.defaultMode, namespace: namespace, fetch: fetch)
        } else if volume.hasSecret {
            let source = volume.secret
            try Self.mountTmpfs(at: directory, options: "mode=0755")
            files = try await Self.keyFiles(secret: true, name: source.secretName, items: source.items, optional: source.optional,
                                            mode: source.hasDefaultMode ? source.defaultMode : VolumeValues.defaultMode, namespace: namespace, fetch: fetch)
        } else if volume.hasDownwardApi {
            files = try Self.downwardFiles(volume.downwardApi.items, of: pod,
                                           mode: volume.downwardApi.hasDefaultMode ? volume.downwardApi.defaultMode : VolumeValues.defaultMode)
        } else if volume.hasProjected {
            try Self.mountTmpfs(at: directory, options: "mode=0755")
            let mode = volume.projected.hasDefaultMode ? volume.projected.defaultMode : VolumeValues.defaultMode
            for source in volume.projected.sources {
                let part: [String: AtomicWriter.File]
                if source.hasConfigMap {
                    part = try await Self.keyFiles(secret: false, name: source.configMap.name, items: source.configMap.items,
                                                   optional: source.configMap.optional, mode: mode, namespace: namespace, fetch: fetch)
                } else if source.hasSecret {
                    part = try await Self.keyFiles(secret: true, name: source.secret.name, items: source.secret.items,
                                                   optional: source.secret.optional, mode: mode, namespace: namespace, fetch: fetch)
                } else if source.hasDownwardApi {
                    part = try Self.downwardFiles(source.downwardApi.items, of: pod, mode: mode)
                } else {
                    throw fail("service account token projections are not supported")
                }
                files.merge(part) { _, new in new }
            }
        } else {
            throw fail("no volume source this node supports")
        }
        try AtomicWriter(directory: directory).write(files)
        return directory
    }

    /// The files of a ConfigMap's or Secret's keys: every key, or the listed ones at their paths.
    /// The kubelet's messages for what is missing (unless `optional`).
    static func keyFiles(secret: Bool, name: String, items: [KeyToPath], optional: Bool, mode: Int32, namespace: String,
                         fetch: Fetch) async throws -> [String: AtomicWriter.File] {
        guard let data = try await fetch(secret, name) else {
            if optional { return [:] }
            throw SetUpError.plain(secret ? "secret \"\(name)\" not found" : "configmap \"\(name)\" not found")
        }
        if items.isEmpty {
            return data.reduce(into: [:]) { files, pair in files[pair.key] = AtomicWriter.File(data: pair.value, mode: mode) }
        }
        var files: [String: AtomicWriter.File] = [:]
        for item in items {
            guard let value = data[item.key] else {
                if optional { continue }
                throw SetUpError.plain(secret ? "references non-existent secret key: \(item.key)" : "configmap references non-existent config key: \(item.key)")
            }
            files[item.path] = AtomicWriter.File(data: value, mode: item.hasMode ? item.mode : mode)
        }
        return files
    }

    /// The downward API's files: a field as text, labels and annotations as `key="value"` lines.
    static func downwardFiles(_ items: [DownwardAPIVolumeFile], of pod: Pod, mode: Int32) throws -> [String: AtomicWriter.File] {
        var files: [String: AtomicWriter.File] = [:]
        for item in items {
            let text: String
            if item.hasFieldRef {
                switch item.fieldRef.fieldPath {
                case "metadata.labels": text = formatMap(pod.metadata.labels)
                case "metadata.annotations": text = formatMap(pod.metadata.annotations)
                default: text = try EnvSources.field(item.fieldRef.fieldPath, of: pod)
                }
            } else {
                let named = item.resourceFieldRef.containerName
                guard let container = pod.spec.allContainers.first(where: { $0.name == named }) else {
                    throw SetUpError.plain("container \"\(named)\" not found in the pod")
                }
                text = try EnvSources.resource(item.resourceFieldRef, of: container)
            }
            files[item.path] = AtomicWriter.File(data: Data(text.utf8), mode: item.hasMode ? item.mode : mode)
        }
        return files
    }

    /// Kubernetes' format of a label or annotation map in a downward API file: sorted
    /// `key="value"` lines, values quoted as Go quotes them.
    static func formatMap(_ map: [String: String]) -> String {
        map.keys.sorted().map { "\($0)=\(goQuote(map[$0]!))" }.joined(separator: "\n")
    }

    static func goQuote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += String(format: "\\x%02x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// A hostPath volume's path, after the check its `type` asks for (made when it says OrCreate).
    static func hostPath(_ source: HostPathVolumeSource) throws -> String {
        let path = source.path
        var info = stat()
        let exists = stat(path, &info) == 0
        let format = info.st_mode & S_IFMT
        func fail(_ what: String) -> SetUpError { .plain("hostPath type check failed: \(path) is not \(what)") }
        switch source.type {
        case "DirectoryOrCreate":
            if !exists {
                do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755]) }
                catch { throw SetUpError.plain("cannot create directory \(path): \(error.localizedDescription)") }
            } else if format != S_IFDIR { throw fail("a directory") }
        case "Directory":
            if !exists || format != S_IFDIR { throw fail("a directory") }
        case "FileOrCreate":
            if !exists {
                try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o644]) else {
                    throw SetUpError.plain("cannot create file \(path)")
                }
            } else if format != S_IFREG { throw fail("a file") }
        case "File":
            if !exists || format != S_IFREG { throw fail("a file") }
        case "Socket":
            if !exists || format != S_IFSOCK { throw fail("a socket file") }
        case "CharDevice":
            if !exists || format != S_IFCHR { throw fail("a character device") }
        case "BlockDevice":
            if !exists || format != S_IFBLK { throw fail("a block device") }
        default:
            break  // "": no check, as in Kubernetes
        }
        return path
    }

    /// Where each of the container's mounts comes from on the node: the volume's path, or the
    /// `subPath` (or expanded `subPathExpr`) within it, made if missing and refused if it leads
    /// outside the volume.
    static func mounts(for container: Container, volumes: [String: String], environment: [String: String]) throws -> [ContainerLaunch.Mount] {
        try container.volumeMounts.map { mount in
            guard let base = volumes[mount.name] else { throw EnvSources.ConfigError("volume \"\(mount.name)\" is not ready") }
            var source = base
            var sub = mount.subPath
            if !mount.subPathExpr.isEmpty { sub = expand(mount.subPathExpr, environment) }
            if !sub.isEmpty {
                source = (base as NSString).appendingPathComponent(sub)
                if !FileManager.default.fileExists(atPath: source) {
                    try? FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
                }
                let real = URL(fileURLWithPath: source).resolvingSymlinksInPath().path
                let realBase = URL(fileURLWithPath: base).resolvingSymlinksInPath().path
                guard real == realBase || real.hasPrefix(realBase + "/") else {
                    throw EnvSources.ConfigError("failed to prepare subPath for volumeMount \"\(mount.name)\" of container \"\(container.name)\": \(sub) leads outside the volume")
                }
                source = real
            }
            return ContainerLaunch.Mount(containerPath: mount.mountPath, hostPath: source, readOnly: mount.readOnly,
                                         propagation: mount.mountPropagation == "HostToContainer" ? .hostToContainer : .none)
        }
    }

    /// `$(VAR)` references replaced by the environment's values (`$$` stands for `$`), as
    /// Kubernetes expands `subPathExpr`; unknown references stay as written.
    static func expand(_ text: String, _ environment: [String: String]) -> String {
        var out = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            out += rest[..<dollar]
            let after = rest[rest.index(after: dollar)...]
            if after.hasPrefix("$") {
                out += "$"
                rest = after.dropFirst()
            } else if after.hasPrefix("("), let close = after.firstIndex(of: ")") {
                let name = String(after[after.index(after: after.startIndex)..<close])
                out += environment[name] ?? "$(\(name))"
                rest = after[after.index(after: close)...]
            } else {
                out += "$"
                rest = after
            }
        }
        return out + rest
    }

    /// Bytes used under `path` (files only, links not followed), for an emptyDir's `sizeLimit`.
    static func usage(_ path: String) -> Int64 {
        guard let walker = FileManager.default.enumerator(atPath: path) else { return 0 }
        var total: Int64 = 0
        for case let name as String in walker {
            var info = stat()
            if lstat((path as NSString).appendingPathComponent(name), &info) == 0, info.st_mode & S_IFMT == S_IFREG {
                total += Int64(info.st_blocks) * 512
            }
        }
        return total
    }

    // MARK: - Mounts and removal

    /// A tmpfs at `path`, unless one is there already.
    static func mountTmpfs(at path: String, options: String) throws {
        if mountPoints(under: path).contains(path) { return }
        let result = options.withCString { mount("tmpfs", path, "tmpfs", UInt(MS_NOSUID | MS_NODEV), $0) }
        guard result == 0 else {
            throw SetUpError.plain("cannot mount a tmpfs at \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func mountPoints(under path: String) -> [String] { MountTable.points(under: path) }

    /// Everything of the pod's volumes: its tmpfs mounts, then its directory. hostPath volumes
    /// are never touched. Answers a problem to log, nil when all went.
    func tearDown(_ uid: String) -> String? {
        let directory = podDirectory(uid)
        guard FileManager.default.fileExists(atPath: directory) else { return nil }
        for point in Self.mountPoints(under: directory) where umount2(point, Int32(MNT_DETACH)) != 0 {
            return "cannot unmount \(point): \(String(cString: strerror(errno))) (its directory stays)"
        }
        do { try FileManager.default.removeItem(atPath: directory) } catch { return "cannot remove \(directory): \(error.localizedDescription)" }
        return nil
    }

    /// Pods with volumes here, by uid: only names shaped as UIDs are ever taken for one (nothing
    /// else under the root is removed as an orphan).
    func podsOnDisk() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter {
            $0.count == 36 && $0.split(separator: "-", omittingEmptySubsequences: false).map(\.count) == [8, 4, 4, 4, 12]
        }
    }
}

extension PodVolumes.SetUpError {
    /// A failure of no one volume yet (the caller names it).
    static func plain(_ message: String) -> PodVolumes.SetUpError { .init(volume: "", message: message) }
}

/// Writes a set of files into a directory so that readers see either the whole old set or the
/// whole new one, as the kubelet's atomic writer does: the files live in a timestamped directory
/// `..TIMESTAMP`, `..data` links to it, and each top-level name links through `..data`. An update
/// writes a new timestamped directory and swaps `..data` with one rename.
struct AtomicWriter {
    struct File: Equatable, Sendable {
        var data: Data
        var mode: Int32
    }

    let directory: String
    static let dataLink = "..data"

    /// Writes `files` (relative paths); nothing when they are what is there. Answers whether it wrote.
    @discardableResult
    func write(_ files: [String: File]) throws -> Bool {
        let manager = FileManager.default
        let link = "\(directory)/\(Self.dataLink)"
        let old = try? manager.destinationOfSymbolicLink(atPath: link)
        if let old, read("\(directory)/\(old)") == files { return false }
        let name = "..\(Self.stamp(Date())).\(UInt32.random(in: 0...UInt32.max))"
        let target = "\(directory)/\(name)"
        try manager.createDirectory(atPath: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        for (path, file) in files {
            let full = "\(target)/\(path)"
            try manager.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            guard manager.createFile(atPath: full, contents: file.data, attributes: [.posixPermissions: Int(file.mode)]) else {
                throw PodVolumes.SetUpError.plain("cannot write \(full)")
            }
            chmod(full, mode_t(file.mode))  // the umask does not narrow it
        }
        let temporary = "\(directory)/..data_tmp"
        try? manager.removeItem(atPath: temporary)
        try manager.createSymbolicLink(atPath: temporary, withDestinationPath: name)
        guard rename(temporary, link) == 0 else { throw PodVolumes.SetUpError.plain("cannot swap \(link): \(String(cString: strerror(errno)))") }
        // The user-visible names: one link per top-level entry, through ..data.
        let top = Set(files.keys.map { String($0.split(separator: "/").first ?? "") })
        for entry in top where (try? manager.destinationOfSymbolicLink(atPath: "\(directory)/\(entry)")) == nil {
            try manager.createSymbolicLink(atPath: "\(directory)/\(entry)", withDestinationPath: "\(Self.dataLink)/\(entry)")
        }
        for entry in (try? manager.contentsOfDirectory(atPath: directory)) ?? [] where !entry.hasPrefix("..") && !top.contains(entry) {
            try? manager.removeItem(atPath: "\(directory)/\(entry)")
        }
        if let old { try? manager.removeItem(atPath: "\(directory)/\(old)") }
        return true
    }

    /// The files under a timestamped directory, as written.
    func read(_ path: String) -> [String: File] {
        var files: [String: File] = [:]
        guard let walker = FileManager.default.enumerator(atPath: path) else { return files }
        for case let name as String in walker {
            let full = "\(path)/\(name)"
            var info = stat()
            guard lstat(full, &info) == 0, info.st_mode & S_IFMT == S_IFREG, let data = FileManager.default.contents(atPath: full) else { continue }
            files[name] = File(data: data, mode: Int32(info.st_mode & 0o7777))
        }
        return files
    }

    /// `2026_12_05_23_59_01` (UTC), as the kubelet names its timestamped directories.
    static func stamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d_%02d_%02d_%02d_%02d_%02d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec)
    }
}

/// This process's mount table (/proc/self/mountinfo), read whole: Foundation's
/// `String(contentsOfFile:)` stops after the first page of a /proc file (4 KB, about 40 mounts on
/// a node running containers: later mounts were missed).
public enum MountTable {
    /// Mount points at or below `path`, deepest first.
    public static func points(under path: String) -> [String] {
        guard let text = readWhole("/proc/self/mountinfo") else { return [] }
        let prefix = path.hasSuffix("/") ? path : path + "/"
        return text.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let point = unescape(String(fields[4]))
            return point == path || point.hasPrefix(prefix) ? point : nil
        }.sorted { $0.count > $1.count }
    }

    /// A file read with read(2) until its end (what /proc files need).
    public static func readWhole(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
    static func unescape(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var bytes: [UInt8] = []
        let utf8 = Array(text.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == 0x5C, i + 3 < utf8.count, let value = UInt8(String(decoding: utf8[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
