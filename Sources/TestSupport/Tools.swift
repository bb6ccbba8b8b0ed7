import Foundation

/// Runs other people's tools (openssl, kubectl, curl) as independent peers in tests.
public enum Tools {
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
    /// hold one of the few threads every async test in this process shares.
    public static func runDetached(_ tool: String, _ arguments: [String], input: String? = nil) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try run(tool, arguments, input: input) }) }
            thread.start()
        }
    }

    /// Runs blocking work (reading a child's pipe, say) on a thread of its own (see `runDetached`).
    public static func detached<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    /// Waits for a process to exit on a thread of its own (see `runDetached`).
    public static func waitForExit(_ process: Process) async {
        await withCheckedContinuation { continuation in
            Thread { process.waitUntilExit(); continuation.resume() }.start()
        }
    }

    /// Runs `tool` with `arguments`, standard output and error together; waits for it to exit.
    public static func run(_ tool: String, _ arguments: [String], input: String? = nil) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try? stdin.fileHandleForWriting.close()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }
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
