import Foundation
import Testing

/// Runs other people's tools (openssl, kubectl, curl) as independent peers in tests.
public enum Tools {
    /// Set by `.ci/run` once it has installed the peers: a test that finds one missing then fails
    /// instead of skipping its check (a skip that passes would hide that nothing was checked).
    public static let peersRequiredVariable = "COX_REQUIRE_PEERS"

    /// Whether the run promised every peer (`COX_REQUIRE_PEERS=1`).
    public static var peersRequired: Bool { ProcessInfo.processInfo.environment[peersRequiredVariable] == "1" }

    /// The path of a peer tool the test checks against. When it is missing: nil and a printed
    /// skip on a developer's machine, a recorded failure where the run promised the peers.
    public static func peer(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
        if let path = find(name) { return path }
        missingPeer(name, sourceLocation: sourceLocation)
        return nil
    }

    /// Where the Google Cloud SDK keeps one kubectl per minor version (these machines have
    /// 1.27–1.33 there).
    public static let kubectlVersionsDirectory = "/usr/lib/google-cloud-sdk/bin"

    /// The oldest and the newest kubectl installed as `kubectl.1.N` (the same one twice when
    /// there is one; same rule as `peer` when there is none).
    public static func kubectlRange(sourceLocation: SourceLocation = #_sourceLocation) -> [(version: String, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: kubectlVersionsDirectory)) ?? []
        let versions = names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("kubectl.1."), let minor = Int(name.dropFirst("kubectl.1.".count)) else { return nil }
            return (minor, "\(kubectlVersionsDirectory)/\(name)")
        }.sorted { $0.0 < $1.0 }
        guard let oldest = versions.first, let newest = versions.last else {
            missingPeer("kubectl.1.N (several kubectl versions in \(kubectlVersionsDirectory))", sourceLocation: sourceLocation)
            return []
        }
        return oldest.0 == newest.0 ? [("1.\(oldest.0)", oldest.1)] : [("1.\(oldest.0)", oldest.1), ("1.\(newest.0)", newest.1)]
    }

    /// Whether the Python `kubernetes` client can be imported (same rule as `peer`).
    public static func pythonKubernetesClient(sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        if let python = find("python3"), let check = try? run(python, ["-c", "import kubernetes"], timeout: 60), check.status == 0 { return true }
        missingPeer("the Python kubernetes package", sourceLocation: sourceLocation)
        return false
    }

    static func missingPeer(_ name: String, sourceLocation: SourceLocation) {
        if peersRequired {
            Issue.record("\(name) is missing, but \(peersRequiredVariable)=1 says this run installed every peer", sourceLocation: sourceLocation)
        } else {
            print("\(name) not installed: skipping the checks that need it (\(peersRequiredVariable)=1 would make this a failure)")
        }
    }

    /// The full path of `name` on PATH, or nil when it is not installed.
    public static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    public struct Output: Sendable {
        public let status: Int32
        public let output: String
    }

    /// `run` on a thread of its own: waiting for a slow tool (a CLI following a rollout) must not
    /// hold one of the few threads every async test in this process shares. (With two cores there
    /// are two: two tests blocked in a tool that waits for anything async stop the whole run.)
    public static func runDetached(_ tool: String, _ arguments: [String], input: String? = nil, timeout: Double = 120) async throws -> Output {
        try await detached { try run(tool, arguments, input: input, timeout: timeout) }
    }

    /// Runs blocking work (reading a child's pipe, say) on a thread of its own (see `runDetached`).
    public static func detached<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    /// Reads what a child writes to `handle` until `done` holds for the text so far, the writer
    /// closes it, or `timeout` seconds pass — a child that goes quiet cannot hold the test.
    public static func read(_ handle: FileHandle, timeout: Double, until done: @escaping @Sendable (String) -> Bool) async throws -> String {
        try await detached {
            let deadline = Date().addingTimeInterval(timeout)
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while !done(String(decoding: bytes, as: UTF8.self)) {
                let left = deadline.timeIntervalSinceNow
                guard left > 0 else { break }
                var ready = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
                let polled = poll(&ready, 1, Int32(left * 1000) + 1)
                if polled < 0 && errno == EINTR { continue }
                guard polled > 0 else { break }
                let count = Glibc.read(handle.fileDescriptor, &buffer, buffer.count)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                bytes += buffer[..<count]
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Runs `tool` with `arguments`, standard output and error together; waits for it to exit, or
    /// kills it after `timeout` seconds (a peer that hangs fails its test instead of the run).
    public static func run(_ tool: String, _ arguments: [String], input: String? = nil, timeout: Double = 120) throws -> Output {
        let child = try Child(tool, arguments, stdout: .pipe, stderr: .stdout, stdin: input != nil)
        let watchdog = DispatchWorkItem { child.signal(SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        defer { watchdog.cancel() }
        if let input, let stdin = child.input {
            try? stdin.write(contentsOf: Data(input.utf8))
            try? stdin.close()
        }
        let data = child.output?.readDataToEndOfFile() ?? Data()
        child.waitBlocking()
        return Output(status: child.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }
}

/// The repository's root (where Package.swift is).
public var repositoryRoot: String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}

/// Locates the `cox` binary built next to the tests (override with COX_BINARY).
public func coxBinary() throws -> String {
    if let path = ProcessInfo.processInfo.environment["COX_BINARY"] { return path }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    for candidate in [".build/debug/cox", ".build/x86_64-unknown-linux-gnu/debug/cox", ".build/aarch64-unknown-linux-gnu/debug/cox"] {
        let path = root.appendingPathComponent(candidate).path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "cox binary under \(root.path)/.build (run `swift build` first)"])
}
