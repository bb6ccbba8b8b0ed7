import API
import ArgumentParser
import Client
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `cox exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARGS...]`: runs a command in a container, as
/// `kubectl exec` does (WebSocket, v5.channel.k8s.io), and exits with the command's exit code.
struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exec", abstract: "Run a command in a container (-i passes stdin, -t gives it a terminal).")

    @Argument(help: "Pod name.") var pod: String
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @Option(name: .shortAndLong, help: "Container (needed when the pod has several).") var container: String?
    @Flag(name: [.customShort("i"), .long], help: "Pass stdin to the command.") var stdin = false
    @Flag(name: .shortAndLong, help: "Give the command a terminal.") var tty = false
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []
    @OptionGroup var client: ClientOptions

    func validate() throws {
        if command.isEmpty { throw ValidationError("you must specify at least one command for the container (after --)") }
    }

    func run() async throws {
        var remote = RemoteCommand(namespace: namespace, pod: pod, container: container, command: command)
        remote.stdin = stdin
        try await Self.run(remote, tty: tty, client: client)
    }

    /// Runs an exec or attach session with this terminal: stdin when asked, the window's size
    /// and its changes with a terminal, the remote exit code as this process's.
    static func run(_ remote: RemoteCommand, tty wanted: Bool, client options: ClientOptions) async throws {
        var remote = remote
        // As kubectl: a terminal needs -i and a terminal to read from; -t alone is dropped
        // quietly, -it from a pipe or file with kubectl's words.
        let tty = wanted && remote.stdin && isatty(0) == 1
        if wanted && remote.stdin && !tty {
            FileHandle.standardError.write(Data("Unable to use a TTY - input is not a terminal or the right kind of file\n".utf8))
        }
        remote.tty = tty
        let stdin = remote.stdin
        let terminal = tty ? RawTerminal() : nil
        let code: Int32
        do {
            code = try await withClient(options) { client in
                try await client.exec(remote, started: { session in
                    if tty {
                        if let size = RawTerminal.size() { session.resize(width: size.width, height: size.height) }
                        // The window's later sizes follow it (SIGWINCH).
                        RawTerminal.followResizes { width, height in session.resize(width: width, height: height) }
                    }
                    guard stdin else { return }
                    // Reading stdin blocks: a thread of its own, never a task's.
                    Thread.detachNewThread {
                        var buffer = [UInt8](repeating: 0, count: 32 * 1024)
                        while true {
                            let count = read(0, &buffer, buffer.count)
                            if count < 0 && errno == EINTR { continue }
                            guard count > 0 else { break }
                            session.write(Array(buffer[0..<count]))
                        }
                        session.closeInput()
                    }
                }, output: { stream, bytes in
                    let data = Data(bytes.readableBytesView)
                    (stream == 2 ? FileHandle.standardError : FileHandle.standardOutput).write(data)
                })
            }
        } catch {
            terminal?.restore()
            throw error
        }
        terminal?.restore()
        if code != 0 { throw ExitCode(code) }
    }
}

/// `cox attach POD [-c CONTAINER] [-i] [-t]`: the container's output from now on, and with -i its
/// stdin (a container with `stdin: true`; with `stdinOnce` the end of this input is its end), as
/// `kubectl attach` does. Ctrl-C leaves the container running.
struct AttachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "attach", abstract: "Attach to a running container's output (-i: and its stdin).")

    @Argument(help: "Pod name.") var pod: String
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @Option(name: .shortAndLong, help: "Container (needed when the pod has several).") var container: String?
    @Flag(name: [.customShort("i"), .long], help: "Pass stdin to the container.") var stdin = false
    @Flag(name: .shortAndLong, help: "The container has a terminal (tty: true).") var tty = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        var remote = RemoteCommand(namespace: namespace, pod: pod, container: container, command: [])
        remote.attach = true
        remote.stdin = stdin
        try await ExecCommand.run(remote, tty: tty, client: client)
    }
}

/// The local terminal in raw mode while a remote one is in use (keys go through as typed).
final class RawTerminal {
    private var saved = termios()

    init?() {
        guard tcgetattr(0, &saved) == 0 else { return nil }
        var raw = saved
        cfmakeraw(&raw)
        tcsetattr(0, TCSANOW, &raw)
    }

    func restore() {
        var saved = self.saved
        tcsetattr(0, TCSANOW, &saved)
    }

    nonisolated(unsafe) private static var resizes: (any DispatchSourceSignal)?

    /// Calls `resized` with the terminal's size whenever the window changes (for the process's life).
    static func followResizes(_ resized: @escaping @Sendable (Int, Int) -> Void) {
        signal(SIGWINCH, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGWINCH, queue: .global())
        source.setEventHandler {
            if let size = size() { resized(size.width, size.height) }
        }
        source.resume()
        resizes = source
    }

    static func size() -> (width: Int, height: Int)? {
        var size = winsize()
        guard ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return nil }
        return (Int(size.ws_col), Int(size.ws_row))
    }
}
