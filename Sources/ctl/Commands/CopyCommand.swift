import API
import ArgumentParser
import Client
import Foundation
import NIOCore

/// `cox cp SRC DEST`: copies files and directories into or out of a container, as `kubectl cp`
/// does — a tar stream through exec (`tar xmf -` or `tar cf -` in the container, so the
/// container needs `tar`; GNU tar here). One side is `[NAMESPACE/]POD:PATH`. Copying onto an
/// existing directory puts the source inside it; otherwise the copy takes the destination's name.
struct CopyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cp", abstract: "Copy files and directories to and from containers.",
                                                    discussion: "cox cp ./file web-0:/tmp/file; cox cp other/web-0:/var/log ./logs")

    @Argument(help: "Source: a local path or [NAMESPACE/]POD:PATH.") var source: String
    @Argument(help: "Destination: a local path or [NAMESPACE/]POD:PATH.") var destination: String
    @Option(name: .shortAndLong, help: "Namespace (when the pod's spec does not name one).") var namespace = "default"
    @Option(name: .shortAndLong, help: "Container (needed when the pod has several).") var container: String?
    @OptionGroup var client: ClientOptions

    /// One side of the copy.
    enum Spec: Equatable {
        case local(String)
        case remote(namespace: String?, pod: String, path: String)

        /// kubectl's reading: a colon after a pod name (no slash before it, or one slash for the
        /// namespace) makes it remote; paths starting with / or . are always local.
        static func parse(_ text: String) -> Spec {
            guard !text.hasPrefix("/"), !text.hasPrefix("."), let colon = text.firstIndex(of: ":") else { return .local(text) }
            let target = text[..<colon]
            let path = String(text[text.index(after: colon)...])
            let parts = target.split(separator: "/", omittingEmptySubsequences: false)
            switch parts.count {
            case 1 where !parts[0].isEmpty: return .remote(namespace: nil, pod: String(parts[0]), path: path)
            case 2 where !parts[0].isEmpty && !parts[1].isEmpty: return .remote(namespace: String(parts[0]), pod: String(parts[1]), path: path)
            default: return .local(text)
            }
        }
    }

    func validate() throws {
        switch (Spec.parse(source), Spec.parse(destination)) {
        case (.local, .local): throw ValidationError("one of src or dest must be a remote file specification ([NAMESPACE/]POD:PATH)")
        case (.remote, .remote): throw ValidationError("one of src or dest must be a local file specification")
        case (.remote(_, _, let path), _) where path.isEmpty, (_, .remote(_, _, let path)) where path.isEmpty:
            throw ValidationError("filepath can not be empty")
        default: break
        }
    }

    func run() async throws {
        guard let tar = ["/usr/bin/tar", "/bin/tar"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ValidationError("cox cp needs tar on this machine")
        }
        try await withClient(client) { client in
            switch (Spec.parse(source), Spec.parse(destination)) {
            case (.local(let local), .remote(let space, let pod, let path)):
                try await copyIn(client, tar: tar, local: local, namespace: space ?? namespace, pod: pod, remote: path)
            case (.remote(let space, let pod, let path), .local(let local)):
                try await copyOut(client, tar: tar, namespace: space ?? namespace, pod: pod, remote: path, local: local)
            default:
                break
            }
        }
    }

    /// Local → container: `tar cf -` here, named as the destination, into `tar xmf -` there.
    func copyIn(_ client: APIClient, tar: String, local: String, namespace: String, pod: String, remote: String) async throws {
        guard FileManager.default.fileExists(atPath: local) else { throw ValidationError("\(local) doesn't exist in local filesystem") }
        var destination = remote
        // An existing directory there takes the source inside it, as cp does.
        if try await run(client, namespace: namespace, pod: pod, ["test", "-d", remote]).code == 0 {
            destination = (remote as NSString).appendingPathComponent(Self.base(local))
        }
        let directory = Self.directory(destination)
        let packer = Process()
        packer.executableURL = URL(fileURLWithPath: tar)
        packer.arguments = ["cf", "-", "-C", Self.directory(local), Self.rename(Self.base(local), to: Self.base(destination)), Self.base(local)]
        let pipe = Pipe()
        packer.standardOutput = pipe
        try packer.run()
        var command = RemoteCommand(namespace: namespace, pod: pod, container: container, command: ["tar", "xmf", "-", "-C", directory])
        command.stdin = true
        let code = try await client.exec(command, started: { session in
            Thread.detachNewThread {
                let handle = pipe.fileHandleForReading
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    session.write(Array(chunk))
                }
                session.closeInput()
            }
        }, output: { _, bytes in
            FileHandle.standardError.write(Data(bytes.readableBytesView))
        })
        packer.waitUntilExit()
        guard packer.terminationStatus == 0 else { throw ExitCode(packer.terminationStatus) }
        if code != 0 { throw ValidationError("copying into \(pod) failed: tar in the container exited with \(code)") }
    }

    /// Container → local: `tar cf -` there, `tar xf -` here, named as the destination.
    func copyOut(_ client: APIClient, tar: String, namespace: String, pod: String, remote: String, local: String) async throws {
        var destination = local
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: local, isDirectory: &isDirectory), isDirectory.boolValue {
            destination = (local as NSString).appendingPathComponent(Self.base(remote))
        }
        let unpacker = Process()
        unpacker.executableURL = URL(fileURLWithPath: tar)
        unpacker.arguments = ["xf", "-", "-C", Self.directory(destination), Self.rename(Self.base(remote), to: Self.base(destination))]
        let pipe = Pipe()
        unpacker.standardInput = pipe
        try unpacker.run()
        let input = pipe.fileHandleForWriting
        let command = RemoteCommand(namespace: namespace, pod: pod, container: container,
                                    command: ["tar", "cf", "-", "-C", Self.directory(remote), Self.base(remote)])
        let code: Int32
        do {
            code = try await client.exec(command, output: { stream, bytes in
                if stream == 1 {
                    input.write(Data(bytes.readableBytesView))
                } else {
                    FileHandle.standardError.write(Data(bytes.readableBytesView))
                }
            })
        } catch {
            try? input.close()
            unpacker.terminate()
            throw error
        }
        try? input.close()
        unpacker.waitUntilExit()
        if code != 0 { throw ValidationError("copying from \(pod) failed: tar in the container exited with \(code)") }
        guard unpacker.terminationStatus == 0 else { throw ExitCode(unpacker.terminationStatus) }
    }

    /// Runs a command in the container for its exit code.
    func run(_ client: APIClient, namespace: String, pod: String, _ argv: [String]) async throws -> (code: Int32, output: String) {
        let collected = Collected()
        let code = try await client.exec(RemoteCommand(namespace: namespace, pod: pod, container: container, command: argv)) { _, bytes in
            collected.append(bytes)
        }
        return (code, collected.text)
    }

    /// The last component of a path ("/" and trailing slashes aside).
    static func base(_ path: String) -> String {
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        return (trimmed as NSString).lastPathComponent
    }

    /// The directory holding a path ("." for a bare name).
    static func directory(_ path: String) -> String {
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        let directory = (trimmed as NSString).deletingLastPathComponent
        return directory.isEmpty ? "." : directory
    }

    /// GNU tar's --transform renaming the leading `from` of member names (not link targets) to `to`.
    static func rename(_ from: String, to: String) -> String {
        let pattern = from.map { "\\.*[]^$,".contains($0) ? "\\\($0)" : String($0) }.joined()
        let replacement = to.map { "\\&,".contains($0) ? "\\\($0)" : String($0) }.joined()
        return "--transform=s,^\(pattern)\\(/\\|$\\),\(replacement)\\1,rSh"
    }
}

/// Bytes gathered from a callback on an event loop.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ bytes: ByteBuffer) {
        lock.lock()
        data.append(contentsOf: bytes.readableBytesView)
        lock.unlock()
    }
    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}
