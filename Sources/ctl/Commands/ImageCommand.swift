import ArgumentParser
import CRI
import Foundation

/// `cox image ls|import|rm`: a node's images, through its CRI runtime (as crictl does). CRI has
/// no import: on containerd, `import` hands the archive to containerd's own client (`ctr images
/// import` in the `k8s.io` namespace, where the CRI plugin looks); other runtimes are told so.
struct ImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "List, import and remove a node's images, through its CRI runtime.",
        subcommands: [ImageList.self, ImageImport.self, ImageRemove.self])
}

struct RuntimeEndpointOption: ParsableArguments {
    @Option(help: "The CRI runtime's socket.") var containerRuntimeEndpoint = "unix:///run/containerd/containerd.sock"

    func connect() async throws -> (CRIConnection, String) {
        let connection: CRIConnection
        do { connection = try CRIConnection(endpoint: containerRuntimeEndpoint) } catch { throw ValidationError("--container-runtime-endpoint: \(error)") }
        var request = Runtime_V1_VersionRequest()
        request.version = "v1"
        do {
            let version = try await connection.runtime.version(request, options: CRIConnection.options(timeout: .seconds(10)))
            return (connection, version.runtimeName)
        } catch {
            connection.close()
            throw Refused("cannot reach the container runtime at \(containerRuntimeEndpoint): \(error) (is it running? --container-runtime-endpoint names another)")
        }
    }
}

struct ImageList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the runtime's images.")
    @OptionGroup var runtime: RuntimeEndpointOption

    func run() async throws {
        let (connection, _) = try await runtime.connect()
        defer { connection.close() }
        let images = try await connection.images.listImages(Runtime_V1_ListImagesRequest(), options: CRIConnection.options(timeout: .seconds(30))).images
        var rows = [["IMAGE", "TAG", "IMAGE ID", "SIZE"]]
        for image in images {
            let id = image.id.hasPrefix("sha256:") ? String(image.id.dropFirst(7).prefix(13)) : String(image.id.prefix(13))
            let tags = image.repoTags.isEmpty ? ["<none>:<none>"] : image.repoTags
            for tag in tags {
                let split = tag.lastIndex(of: ":").map { (String(tag[..<$0]), String(tag[tag.index(after: $0)...])) } ?? (tag, "<none>")
                rows.append([split.0, split.1, id, Self.size(image.size)])
            }
        }
        let widths = (0..<4).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(row.enumerated().map { $0.offset == 3 ? $0.element : $0.element.padding(toLength: widths[$0.offset] + 3, withPad: " ", startingAt: 0) }.joined())
        }
    }

    static func size(_ bytes: UInt64) -> String {
        let units = ["B", "kB", "MB", "GB"]
        var value = Double(bytes), unit = 0
        while value >= 1000, unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(bytes)B" : String(format: "%.3g%@", value, units[unit])
    }
}

struct ImageImport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import", abstract: "Import an image archive (OCI or docker save) into the runtime (containerd).")
    @OptionGroup var runtime: RuntimeEndpointOption
    @Argument(help: "The archive (.tar).") var file: String

    func run() async throws {
        guard FileManager.default.isReadableFile(atPath: file) else { throw Refused("cannot read \(file)") }
        let (connection, name) = try await runtime.connect()
        connection.close()
        guard name == "containerd" else {
            throw Refused("the \(name) runtime takes no image imports over CRI (CRI can only pull from a registry); \(name == "cox-process" ? "the process runtime has no images: its containers run their command on the host" : "use the runtime's own tool")")
        }
        guard let ctr = ["/usr/bin/ctr", "/usr/local/bin/ctr"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw Refused("importing into containerd needs its client, ctr (apt-get install containerd)")
        }
        let socket = try CRIConnection.socketPath(runtime.containerRuntimeEndpoint)
        // Through containerd's own API: CRI has no import. The k8s.io namespace is where its CRI plugin looks.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ctr)
        process.arguments = ["--address", socket, "-n", "k8s.io", "images", "import", file]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Refused("ctr images import failed (exit \(process.terminationStatus))") }
    }
}

struct ImageRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove an image from the runtime.")
    @OptionGroup var runtime: RuntimeEndpointOption
    @Argument(help: "The image (name:tag or ID).") var image: String

    func run() async throws {
        let (connection, _) = try await runtime.connect()
        defer { connection.close() }
        var status = Runtime_V1_ImageStatusRequest()
        status.image.image = image
        let found = try await connection.images.imageStatus(status, options: CRIConnection.options(timeout: .seconds(30)))
        guard found.hasImage else { throw Refused("no such image: \(image)") }
        var request = Runtime_V1_RemoveImageRequest()
        request.image.image = found.image.id
        _ = try await connection.images.removeImage(request, options: CRIConnection.options(timeout: .seconds(60)))
        print("Deleted: \(found.image.repoTags.first ?? found.image.id)")
    }
}
