import API
import Client
import Foundation
import Testing
import TestSupport
@testable import NodeAgent

/// Pod volumes on the node: laid out and kept up to date by the agent, refused by the process
/// runtime (it cannot mount), removed with the pod. Mounting into containers is checked against
/// containerd in `RuntimeConformanceTests.coxUpOnContainerd`.
@Suite("Pod volumes", .watchdog, .serialized)
struct VolumeTests {
    @Test func theAgentLaysVolumesOutUpdatesThemAndRemovesThemWithThePod() async throws {
        try await AgentCluster.run(firstAgent: false) { cluster in
            cluster.agent = try cluster.launchAgent("n1", ["--volume-sync-seconds", "1"])
            try await eventually("node n1 is Ready") {
                let node = try? await cluster.client.get(Node.self, namespace: "", name: "n1")
                return node?.status.conditions.first { $0.type == "Ready" }?.status == "True"
            }
            var settings = ConfigMap()
            settings.metadata.name = "settings"
            settings.metadata.namespace = "default"
            settings.data = ["mode": "fast"]
            _ = try await cluster.client.create(settings)
            var secret = Secret()
            secret.metadata.name = "db"
            secret.metadata.namespace = "default"
            secret.stringData = ["password": "hunter2"]
            _ = try await cluster.client.create(secret)

            var pod = cluster.pod("vols", "sleep 60")
            pod.metadata.labels = ["app": "vols"]
            func volume(_ name: String, _ fill: (inout Volume) -> Void) -> Volume {
                var volume = Volume()
                volume.name = name
                fill(&volume)
                return volume
            }
            var labelsFile = DownwardAPIVolumeFile()
            labelsFile.path = "labels"
            labelsFile.fieldRef.fieldPath = "metadata.labels"
            pod.spec.volumes = [
                volume("config") { $0.configMap.name = "settings" },
                volume("secret") { $0.secret.secretName = "db"; $0.secret.defaultMode = 0o400 },
                volume("info") { $0.downwardApi.items = [labelsFile] },
                volume("scratch") { $0.emptyDir = EmptyDirVolumeSource() },
                // Not there yet: the pod waits for it, saying so.
                volume("late") { $0.configMap.name = "late" },
            ]
            var mount = VolumeMount()
            mount.name = "config"
            mount.mountPath = "/config"
            pod.spec.containers[0].volumeMounts = [mount]
            let created = try await cluster.client.create(pod)
            let volumes = "\(cluster.dir.path)/agent/pod-data/\(created.metadata.uid)/volumes"

            try await eventually("a missing ConfigMap is a FailedMount event, and the container waits", timeout: 30) {
                let events = try await cluster.client.list(Event.self, namespace: "default", fieldSelector: "involvedObject.name=vols,reason=FailedMount").items
                let waiting = try await cluster.get("vols").status.containerStatuses.first?.state.waiting
                return events.contains { $0.message == "MountVolume.SetUp failed for volume \"late\" : configmap \"late\" not found" }
                    && waiting?.reason == "ContainerCreating"
            }
            var late = ConfigMap()
            late.metadata.name = "late"
            late.metadata.namespace = "default"
            late.data = ["here": "now"]
            _ = try await cluster.client.create(late)

            // The process runtime cannot mount: the container is refused, saying why and what to do.
            try await eventually("the process runtime refuses the mount, named", timeout: 60) {
                let waiting = try await cluster.get("vols").status.containerStatuses.first?.state.waiting
                return waiting?.message.contains("the process runtime cannot mount volumes: container \"main\" mounts /config") == true
                    && waiting?.reason == "CreateContainerError"
            }
            func read(_ path: String) -> String? { try? String(contentsOfFile: "\(volumes)/\(path)", encoding: .utf8) }
            #expect(read("kubernetes.io~configmap/config/mode") == "fast")
            #expect(read("kubernetes.io~configmap/late/here") == "now")
            #expect(read("kubernetes.io~secret/secret/password") == "hunter2")
            #expect(read("kubernetes.io~downward-api/info/labels") == "app=\"vols\"")
            #expect(FileManager.default.fileExists(atPath: "\(volumes)/kubernetes.io~empty-dir/scratch"))
            let mode = try FileManager.default.attributesOfItem(atPath: "\(volumes)/kubernetes.io~secret/secret/..data/password")[.posixPermissions] as? Int
            #expect(mode == 0o400, "the secret's defaultMode")
            #expect(TestHost.mountPoints(under: volumes) == ["\(volumes)/kubernetes.io~secret/secret"], "a secret lives on a tmpfs, never on the node's disk")

            // Sources change, files follow (swapped whole through ..data).
            try await cluster.modify(ConfigMap.self, "settings") { $0.data = ["mode": "slow"] }
            try await cluster.modify(Pod.self, "vols") { $0.metadata.labels["tier"] = "test" }
            try await eventually("the files follow their sources", timeout: 30) {
                read("kubernetes.io~configmap/config/mode") == "slow" && read("kubernetes.io~downward-api/info/labels") == "app=\"vols\"\ntier=\"test\""
            }

            _ = try await cluster.client.delete(Pod.self, namespace: "default", name: "vols")
            try await eventually("the pod's volumes go with it", timeout: 30) {
                !FileManager.default.fileExists(atPath: "\(cluster.dir.path)/agent/pod-data/\(created.metadata.uid)") && TestHost.mountPoints(under: volumes).isEmpty
            }
        }
    }

    /// Foundation reads only the first 4 KB of a /proc file: with ~40 mounts on the node (a CI
    /// run with containerd) the agent missed tmpfs mounts of its own.
    @Test func theMountTableIsReadWhole() throws {
        let directory = TemporaryDirectory()
        let points = (0..<80).map { "\(directory.path)/m\($0)" }
        defer { for point in points { umount2(point, Int32(MNT_DETACH)) } }
        for point in points {
            try FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
            #expect(mount("tmpfs", point, "tmpfs", 0, nil) == 0, "mount needs root, as the agent does")
        }
        #expect((MountTable.readWhole("/proc/self/mountinfo") ?? "").utf8.count > 4096)
        #expect(Set(MountTable.points(under: directory.path)) == Set(points))
    }

    /// Only UID-shaped directories are ever taken for a pod's volumes: the first version kept
    /// them in DATA/pods, the CRI log root, and its orphan sweep removed every pod's logs (CI).
    @Test func onlyPodVolumeDirectoriesAreEverOrphans() throws {
        let directory = TemporaryDirectory()
        let uid = "0193f22e-bc14-4f48-a8f8-3a2a910c999b"
        for name in [uid, "default_web_\(uid)", "notes"] {
            try FileManager.default.createDirectory(atPath: "\(directory.path)/\(name)", withIntermediateDirectories: true)
        }
        #expect(PodVolumes(root: directory.path).podsOnDisk() == [uid])
    }

    @Test func anUpdateSwapsTheWholeSetAndLeavesNoStaleName() throws {
        let directory = TemporaryDirectory()
        let writer = AtomicWriter(directory: directory.path)
        func file(_ text: String, _ mode: Int32 = 0o644) -> AtomicWriter.File { .init(data: Data(text.utf8), mode: mode) }
        #expect(try writer.write(["a": file("1"), "dir/b": file("2", 0o600)]))
        #expect(try !writer.write(["a": file("1"), "dir/b": file("2", 0o600)]), "the same files are not written again")
        let first = try FileManager.default.destinationOfSymbolicLink(atPath: "\(directory.path)/..data")
        #expect(try writer.write(["a": file("3"), "c": file("4")]))
        let second = try FileManager.default.destinationOfSymbolicLink(atPath: "\(directory.path)/..data")
        #expect(first != second)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(names == ["..data", second, "a", "c"].sorted(), "the old timestamped directory and the name no longer there are gone: \(names)")
        #expect(try String(contentsOfFile: "\(directory.path)/a", encoding: .utf8) == "3")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "\(directory.path)/a") == "..data/a", "names resolve through ..data")
    }

    @Test func downwardFilesSubPathsAndHostPathChecks() throws {
        #expect(PodVolumes.formatMap(["b": "two \"quoted\"\n", "a": "1"]) == "a=\"1\"\nb=\"two \\\"quoted\\\"\\n\"")
        #expect(PodVolumes.expand("logs/$(POD)/$$(POD)/$(NONE)", ["POD": "web-1"]) == "logs/web-1/$(POD)/$(NONE)")

        let directory = TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: "\(directory.path)/vol", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(directory.path)/vol/out", withDestinationPath: "/etc")
        var container = Container()
        container.name = "c"
        var mount = VolumeMount()
        mount.name = "v"
        mount.mountPath = "/data"
        mount.subPathExpr = "$(POD)/cache"
        container.volumeMounts = [mount]
        let mounts = try PodVolumes.mounts(for: container, volumes: ["v": "\(directory.path)/vol"], environment: ["POD": "web-1"])
        #expect(mounts.map(\.hostPath) == ["\(directory.path)/vol/web-1/cache"])
        #expect(FileManager.default.fileExists(atPath: "\(directory.path)/vol/web-1/cache"), "a missing subPath is made")
        container.volumeMounts[0].subPathExpr = ""
        container.volumeMounts[0].subPath = "out"
        #expect(throws: EnvSources.ConfigError.self, "a subPath through a link out of the volume is refused") {
            try PodVolumes.mounts(for: container, volumes: ["v": "\(directory.path)/vol"], environment: [:])
        }

        var hostPath = HostPathVolumeSource()
        hostPath.path = "\(directory.path)/made/here"
        hostPath.type = "DirectoryOrCreate"
        #expect(try PodVolumes.hostPath(hostPath) == hostPath.path)
        hostPath.type = "File"
        #expect(throws: PodVolumes.SetUpError.self) { try PodVolumes.hostPath(hostPath) }
        do {
            _ = try PodVolumes.hostPath(hostPath)
        } catch let error as PodVolumes.SetUpError {
            #expect(error.message == "hostPath type check failed: \(hostPath.path) is not a file")
        }
    }
}
