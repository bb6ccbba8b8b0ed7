import API
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// The process runtime's streaming server (what CRI's Exec answers a URL of): HTTP on loopback,
/// one URL per exec with a token that is good once and for 60 s (as the kubelet's are), and the
/// Kubernetes remote-command protocol over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`:
/// binary messages whose first byte is the stream — 0 stdin, 1 stdout, 2 stderr, 3 the final
/// Status, 4 terminal resize, 255 close a stream (v5)). That is what kubectl ≥ 1.30 and `cox
/// exec` speak. SPDY/3.1 (kubectl ≤ 1.29 for exec and attach, every kubectl for port-forward)
/// is served too (`ProcessSPDY.swift`), through the same handlers.
///
/// The command runs on the host like ExecSync's, in the container's environment and directory,
/// in a process group of its own; with a terminal (`-t`) on a pseudo-terminal of its own as its
/// controlling terminal. It is killed with its group when the client goes.
public final class ProcessStreamingServer: Sendable {
    struct Session: Sendable {
        var command: [String]
        var environment: [String: String]
        var directory: String?
        var stdin: Bool
        var stdout: Bool
        var stderr: Bool
        var tty: Bool
        var expires: ContinuousClock.Instant
        /// An attach instead of an exec.
        var attach: AttachTarget?
        /// A port-forward instead: these ports on the node (the pods' network is the node's).
        var ports: [Int32]?
    }

    /// What an attach joins: a running container's output files (read from their current end)
    /// and its stdin FIFO.
    struct AttachTarget: Sendable {
        var pid: pid_t
        var outputs: [(path: String, stream: UInt8)]
        var input: String?
        /// Called once the client's stdin is over (a stdinOnce container's input then ends).
        var inputEnded: @Sendable () -> Void
    }

    static let protocols = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
    /// Port-forward over WebSocket as the kubelet serves it (the official Python client's
    /// portforward): binary channel framing, two channels per port.
    static let portForwardProtocols = [tunnelledSPDY, "v4.channel.k8s.io", "channel.k8s.io"]
    /// kubectl ≥ 1.31's port-forward over WebSocket: SPDY/3.1 carried in binary messages.
    static let tunnelledSPDY = "SPDY/3.1+portforward.k8s.io"

    private let sessions = Mutex<[String: Session]>([:])
    private let listener = Mutex<(channel: (any Channel)?, starting: Task<Int, any Error>?)>((nil, nil))
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    /// A URL for one exec of `command` with these streams.
    func execURL(command: [String], environment: [String: String], directory: String?, stdin: Bool, stdout: Bool, stderr: Bool, tty: Bool) async throws -> String {
        let port = try await start()
        let token = UUID().uuidString.lowercased()
        let now = ContinuousClock.now
        sessions.withLock { sessions in
            sessions = sessions.filter { $0.value.expires > now }
            sessions[token] = Session(command: command, environment: environment, directory: directory, stdin: stdin, stdout: stdout,
                                      stderr: stderr && !tty, tty: tty, expires: now + .seconds(60))
        }
        return "http://127.0.0.1:\(port)/exec/\(token)"
    }

    /// A URL for one attach to a running container.
    func attachURL(_ target: AttachTarget) async throws -> String {
        let port = try await start()
        let token = UUID().uuidString.lowercased()
        let now = ContinuousClock.now
        sessions.withLock { sessions in
            sessions = sessions.filter { $0.value.expires > now }
            sessions[token] = Session(command: [], environment: [:], directory: nil, stdin: target.input != nil,
                                      stdout: target.outputs.contains { $0.stream == 1 }, stderr: target.outputs.contains { $0.stream == 2 },
                                      tty: false, expires: now + .seconds(60), attach: target)
        }
        return "http://127.0.0.1:\(port)/attach/\(token)"
    }

    /// A URL for one port-forward to `ports` on this node.
    func portForwardURL(ports: [Int32]) async throws -> String {
        let port = try await start()
        let token = UUID().uuidString.lowercased()
        let now = ContinuousClock.now
        sessions.withLock { sessions in
            sessions = sessions.filter { $0.value.expires > now }
            sessions[token] = Session(command: [], environment: [:], directory: nil, stdin: false, stdout: false, stderr: false,
                                      tty: false, expires: now + .seconds(60), ports: ports)
        }
        return "http://127.0.0.1:\(port)/portforward/\(token)"
    }

    /// Whether `token` names a live session (without taking it).
    func has(_ token: String) -> Bool {
        sessions.withLock { $0[token].map { $0.expires > .now } ?? false }
    }

    /// The session for `token`, once.
    func take(_ token: String) -> Session? {
        sessions.withLock { sessions in
            guard let session = sessions.removeValue(forKey: token), session.expires > .now else { return nil }
            return session
        }
    }

    /// Stops listening (sessions under way go on until their clients or commands end).
    public func close() {
        let channel = listener.withLock { state -> (any Channel)? in
            defer { state.channel = nil }
            return state.channel
        }
        channel?.close(promise: nil)
    }

    /// Binds on first use; the port.
    private func start() async throws -> Int {
        let task = listener.withLock { state -> Task<Int, any Error> in
            if let starting = state.starting { return starting }
            let task = Task { try await self.bind() }
            state.starting = task
            return task
        }
        do {
            return try await task.value
        } catch {
            listener.withLock { $0.starting = nil }
            throw error
        }
    }

    private func bind() async throws -> Int {
        let server = self
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let upgrader = NIOWebSocketServerUpgrader(
                    maxFrameSize: 1 << 20,
                    shouldUpgrade: { channel, head in
                        channel.eventLoop.makeSucceededFuture(server.accepts(head))
                    },
                    upgradePipelineHandler: { channel, head in
                        channel.eventLoop.makeCompletedFuture {
                            let token = head.uri.split(separator: "/").last.map(String.init) ?? ""
                            let offered = head.headers["Sec-WebSocket-Protocol"].flatMap { $0.split(separator: ",") }
                                .map { $0.trimmingCharacters(in: .whitespaces) }
                            let chosen = offered.first { Self.protocols.contains($0) } ?? Self.protocols[1]
                            guard let session = server.take(token) else {
                                channel.close(promise: nil)
                                return
                            }
                            try channel.pipeline.syncOperations.addHandler(
                                NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 4096, maxAccumulatedFrameSize: 16 << 20))
                            if session.ports != nil, offered.first(where: { Self.portForwardProtocols.contains($0) }) == Self.tunnelledSPDY {
                                server.logger.info("serving a port-forward as SPDY tunnelled in WebSocket")
                                try channel.pipeline.syncOperations.addHandler(WebSocketTunnel())
                                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SPDYFrameDecoder()))
                                try channel.pipeline.syncOperations.addHandler(SPDYPortForwardHandler(logger: server.logger))
                            } else if let ports = session.ports {
                                try channel.pipeline.syncOperations.addHandler(PortForwardStreamHandler(ports: ports, logger: server.logger))
                            } else if let target = session.attach {
                                try channel.pipeline.syncOperations.addHandler(AttachStreamHandler(target: target, v5: chosen == Self.protocols[0], logger: server.logger))
                            } else {
                                try channel.pipeline.syncOperations.addHandler(
                                    ExecStreamHandler(session: session, v5: chosen == Self.protocols[0], logger: server.logger))
                            }
                        }
                    })
                return channel.pipeline.configureHTTPServerPipeline(
                    withServerUpgrade: (upgraders: [upgrader, SPDYUpgrader(server: server)], completionHandler: { _ in })
                ).flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(RefusingHTTPHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        listener.withLock { $0.channel = channel }
        let port = channel.localAddress?.port ?? 0
        logger.info("serving exec streams", metadata: ["address": "http://127.0.0.1:\(port)"])
        return port
    }

    /// The headers to answer a WebSocket upgrade with (the chosen subprotocol), or nil to refuse.
    private func accepts(_ head: HTTPRequestHead) -> HTTPHeaders? {
        let segments = head.uri.split(separator: "/")
        guard segments.count == 2, segments[0] == "exec" || segments[0] == "attach" || segments[0] == "portforward" else { return nil }
        let offered = head.headers["Sec-WebSocket-Protocol"].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        let spoken = segments[0] == "portforward" ? Self.portForwardProtocols : Self.protocols
        guard let chosen = offered.first(where: { spoken.contains($0) }) else { return nil }
        guard sessions.withLock({ $0[String(segments[1])] }) != nil else { return nil }
        return HTTPHeaders([("Sec-WebSocket-Protocol", chosen)])
    }
}

/// Answers what is not an acceptable WebSocket upgrade: SPDY (kubectl ≤ 1.29), a protocol it does
/// not speak, an unknown or used token.
final class RefusingHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let upgrade = head.headers["Upgrade"].first?.lowercased() ?? ""
        let (code, message): (HTTPResponseStatus, String)
        if upgrade.hasPrefix("spdy") {
            code = .badRequest
            message = upgrade == "spdy/3.1"
                ? "unable to upgrade: unknown or expired streaming session, or no protocol this server speaks over SPDY/3.1 (exec and attach: \(SPDYUpgrader.remoteCommandProtocol); port-forward: \(SPDYUpgrader.portForwardProtocol))"
                : "unable to upgrade: SPDY/3.1 is the SPDY this server speaks, not \(upgrade)"
        } else if upgrade == "websocket" {
            code = .badRequest
            message = "unknown or expired exec, attach or port-forward session, or no subprotocol this server speaks (it speaks \(ProcessStreamingServer.protocols.joined(separator: ", ")); port-forward: \(ProcessStreamingServer.portForwardProtocols.joined(separator: ", ")))"
        } else {
            code = .badRequest
            message = "Upgrade request required"
        }
        var status = Status()
        status.apiVersion = "v1"
        status.kind = "Status"
        status.status = "Failure"
        status.message = message
        status.reason = "BadRequest"
        status.code = Int32(code.code)
        let body = status.jsonBytes()
        let headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "\(body.count)"), ("Connection", "close")])
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: code, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Once upgraded, the HTTP handlers (this one too) leave.
        if event is HTTPServerUpgradeEvents { context.pipeline.syncOperations.removeHandler(context: context, promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }
}

/// One exec over WebSocket: runs the command, sends its output as messages, writes stdin
/// messages to it, resizes its terminal, and at its end sends the Status and closes.
final class ExecStreamHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let session: ProcessStreamingServer.Session
    let v5: Bool
    let logger: Logger
    private var process: ExecProcess?
    private var stdinChannel: (any Channel)?
    /// stdin that came before its pipe's channel was ready, and whether it was closed meanwhile.
    private var pendingStdin: [ByteBuffer] = []
    private var stdinClosed = false
    private var openOutputs = 0
    private var exitStatus: Int32?
    private var finished = false
    private var context: ChannelHandlerContext?

    init(session: ProcessStreamingServer.Session, v5: Bool, logger: Logger) {
        self.session = session
        self.v5 = v5
        self.logger = logger
    }

    /// How long a terminal's command waits for the client's first size (kubectl and `cox exec`
    /// send it first thing): a command that asks its size at once (`stty size`, a full-screen
    /// program) then sees the client's window, not 0×0.
    static let firstSizeWait: TimeAmount = .milliseconds(500)
    private var started = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if session.tty {
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: Self.firstSizeWait) { handler.value.start(size: nil) }
        } else {
            start(size: nil)
        }
    }

    /// Spawns the command (once), with the terminal's first size when there is one.
    private func start(size: (width: UInt16, height: UInt16)?) {
        guard !started, let context else { return }
        started = true
        do {
            let process = try ExecProcess.spawn(session, size: size)
            self.process = process
            let loop = context.eventLoop
            let handler = NIOLoopBound(self, eventLoop: loop)
            // Output: each readable descriptor becomes a channel on this event loop.
            for (descriptor, stream) in process.outputs {
                openOutputs += 1
                let reader = OutputForwarder(stream: stream, deliver: { handler.value.send(stream: stream, $0) },
                                             ended: { handler.value.outputEnded() })
                NIOPipeBootstrap(group: loop).channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(reader) }
                }.takingOwnershipOfDescriptor(input: descriptor).whenFailure { error in
                    handler.value.logger.warning("cannot read an exec's output", metadata: ["error": "\(error)"])
                    handler.value.outputEnded()
                }
            }
            if let input = process.input {
                NIOPipeBootstrap(group: loop).takingOwnershipOfDescriptor(output: input).whenComplete { result in
                    if case .success(let channel) = result { handler.value.stdinReady(channel) }
                }
            }
            let pid = process.pid
            Thread.detachNewThread {
                let code = HostExec.wait(pid)
                loop.execute { handler.value.exited(code) }
            }
        } catch {
            sendStatus(failure: "\(error)", exitCode: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .text:
            var payload = frame.unmaskedData
            guard let stream = payload.readInteger(as: UInt8.self) else { return }
            switch stream {
            case 0:
                if let stdinChannel { stdinChannel.writeAndFlush(payload, promise: nil) } else { pendingStdin.append(payload) }
            case 4:
                if let size = try? JSONParser.parse(bytes: Array(payload.readableBytesView)),
                   case .int(let width)? = size["Width"], case .int(let height)? = size["Height"] {
                    if started {
                        process?.resize(width: UInt16(clamping: width), height: UInt16(clamping: height))
                    } else {
                        start(size: (UInt16(clamping: width), UInt16(clamping: height)))
                    }
                }
            case 255 where v5:
                // Close a stream: the client's stdin is done.
                if payload.readInteger(as: UInt8.self) == 0 {
                    stdinClosed = true
                    if let stdinChannel { endInput(stdinChannel) }
                }
            default:
                break
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            // The client is done: so is the command.
            process?.kill()
            var data = context.channel.allocator.buffer(capacity: 2)
            data.write(webSocketErrorCode: .normalClosure)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))).whenComplete { _ in
                context.close(promise: nil)
            }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if exitStatus == nil { process?.kill() }
        stdinChannel?.close(promise: nil)
        self.context = nil
        context.fireChannelInactive()
    }

    func stdinReady(_ channel: any Channel) {
        stdinChannel = channel
        for bytes in pendingStdin { channel.write(bytes, promise: nil) }
        pendingStdin = []
        channel.flush()
        if stdinClosed {
            endInput(channel)
        } else if exitStatus != nil || context == nil {
            channel.close(promise: nil)
        }
    }

    /// The client's stdin is done: after everything it sent (writes still queued for a pipe the
    /// command reads slowly are not dropped, as a close would drop them), the pipe is closed; a
    /// terminal gets ^D instead.
    private func endInput(_ channel: any Channel) {
        if session.tty {
            channel.writeAndFlush(ByteBuffer(bytes: [4]), promise: nil)
        } else {
            channel.writeAndFlush(ByteBuffer()).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func send(stream: UInt8, _ bytes: ByteBuffer) {
        guard let context, !finished else { return }
        var message = context.channel.allocator.buffer(capacity: bytes.readableBytes + 1)
        message.writeInteger(stream)
        message.writeImmutableBuffer(bytes)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: message)), promise: nil)
    }

    func outputEnded() {
        openOutputs -= 1
        finishIfDone()
    }

    func exited(_ code: Int32) {
        exitStatus = code
        process?.release()
        stdinChannel?.close(promise: nil)
        // A background child may hold the output open; a moment after the exit it is cut.
        context?.eventLoop.scheduleTask(in: .seconds(2)) { [weak self] in
            guard let self, !self.finished else { return }
            self.openOutputs = 0
            self.finishIfDone()
        }
        finishIfDone()
    }

    private func finishIfDone() {
        guard let code = exitStatus, openOutputs <= 0, !finished else { return }
        if code == 0 {
            sendStatus(failure: nil, exitCode: 0)
        } else {
            sendStatus(failure: "command terminated with non-zero exit code: error executing command \(session.command), exit code \(code)", exitCode: code)
        }
    }

    /// The Status on stream 3 (Kubernetes' words for a non-zero exit), then the close.
    private func sendStatus(failure: String?, exitCode: Int32?) {
        guard let context, !finished else { return }
        send(stream: 3, ByteBuffer(bytes: Self.status(failure: failure, exitCode: exitCode)))
        finished = true
        Self.close(context)
    }

    /// A normal close frame, then the connection's end.
    static func close(_ context: ChannelHandlerContext) {
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: .normalClosure)
        context.writeAndFlush(NIOAny(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))).whenComplete { _ in
            context.close(promise: nil)
        }
    }

    /// The remote-command Status: Success, or a failure (NonZeroExitCode with the code).
    static func status(failure: String?, exitCode: Int32?) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.key("metadata"); w.beginObject(); w.endObject()
        if let failure {
            w.key("status"); w.string("Failure")
            w.key("message"); w.string(failure)
            if let exitCode {
                w.key("reason"); w.string("NonZeroExitCode")
                w.key("details"); w.beginObject()
                w.key("causes"); w.beginArray()
                w.beginObject(); w.key("reason"); w.string("ExitCode"); w.key("message"); w.string("\(exitCode)"); w.endObject()
                w.endArray()
                w.endObject()
            } else {
                w.key("reason"); w.string("InternalError")
            }
        } else {
            w.key("status"); w.string("Success")
        }
        w.endObject()
        return w.bytes
    }
}

/// One attach over WebSocket to a process runtime container: its output from now on, read from
/// the files it writes (every 100 ms), and stdin written into its FIFO. Ends with a Success
/// Status when the container exits; the client's going leaves the container running.
final class AttachStreamHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let target: ProcessStreamingServer.AttachTarget
    let v5: Bool
    let logger: Logger
    private var offsets: [UInt64] = []
    private var poller: RepeatedTask?
    private var input: (any Channel)?
    private var pendingInput: [ByteBuffer] = []
    private var inputOver = false
    /// The FIFO's channel is being set up.
    private var inputPending = false
    private var finished = false
    private var context: ChannelHandlerContext?

    init(target: ProcessStreamingServer.AttachTarget, v5: Bool, logger: Logger) {
        self.target = target
        self.v5 = v5
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        offsets = target.outputs.map { output in
            var info = stat()
            return stat(output.path, &info) == 0 ? UInt64(info.st_size) : 0
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        if let path = target.input {
            // Non-blocking, so a FIFO nobody reads holds nothing up; NIO queues what waits.
            let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if fd >= 0 {
                inputPending = true
                NIOPipeBootstrap(group: context.eventLoop).takingOwnershipOfDescriptor(output: fd).whenComplete { result in
                    switch result {
                    case .success(let channel): handler.value.inputReady(channel)
                    case .failure(let error): handler.value.inputFailed(error)
                    }
                }
            } else {
                logger.warning("cannot open a container's stdin", metadata: ["path": "\(path)", "error": "\(String(cString: strerror(errno)))"])
            }
        }
        poller = context.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { _ in
            handler.value.poll()
        }
    }

    /// Sends what the container wrote since the last look; ends the stream once it has exited.
    func poll() {
        guard let context, !finished else { return }
        let running = Self.running(target.pid)
        for (index, output) in target.outputs.enumerated() {
            let fd = open(output.path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let count = pread(fd, &chunk, chunk.count, off_t(offsets[index]))
                guard count > 0 else { break }
                offsets[index] += UInt64(count)
                var message = context.channel.allocator.buffer(capacity: count + 1)
                message.writeInteger(output.stream)
                message.writeBytes(chunk[0..<count])
                context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: message)), promise: nil)
            }
        }
        context.flush()
        if !running {
            finished = true
            poller?.cancel()
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: {
                var buffer = context.channel.allocator.buffer(capacity: 64)
                buffer.writeInteger(UInt8(3))
                buffer.writeBytes(ExecStreamHandler.status(failure: nil, exitCode: nil))
                return buffer
            }())), promise: nil)
            ExecStreamHandler.close(context)
        }
    }

    /// Alive and not a zombie.
    static func running(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 && !ProcessRuntime.isZombie(pid)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .text:
            var payload = frame.unmaskedData
            guard let stream = payload.readInteger(as: UInt8.self) else { return }
            if stream == 0 {
                if let input { input.writeAndFlush(payload, promise: nil) } else if target.input != nil { pendingInput.append(payload) }
            } else if stream == 255, v5, payload.readInteger(as: UInt8.self) == 0 {
                endInput()
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            endInput()
            finished = true
            ExecStreamHandler.close(context)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        poller?.cancel()
        endInput()
        self.context = nil
        context.fireChannelInactive()
    }

    func inputFailed(_ error: any Error) {
        logger.warning("cannot write an attach's stdin", metadata: ["error": "\(error)"])
        inputPending = false
        if inputOver { target.inputEnded() }
    }

    func inputReady(_ channel: any Channel) {
        inputPending = false
        input = channel
        for bytes in pendingInput { channel.write(bytes, promise: nil) }
        pendingInput = []
        channel.flush()
        if inputOver { finishInput(channel) }
    }

    /// The client's stdin is over: after what it sent, the FIFO's write end closes (and a
    /// stdinOnce container's input ends).
    private func endInput() {
        guard target.input != nil, !inputOver else { return }
        inputOver = true
        if let input { finishInput(input) } else if !inputPending { target.inputEnded() }
    }

    private func finishInput(_ channel: any Channel) {
        let ended = target.inputEnded
        channel.writeAndFlush(ByteBuffer()).whenComplete { _ in
            channel.close(promise: nil)
            ended()
        }
    }
}

/// Hands a pipe's (or terminal's) bytes to the exec's stream; tells when it ends.
final class OutputForwarder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let stream: UInt8
    let deliver: @Sendable (ByteBuffer) -> Void
    let ended: @Sendable () -> Void

    init(stream: UInt8, deliver: @escaping @Sendable (ByteBuffer) -> Void, ended: @escaping @Sendable () -> Void) {
        self.stream = stream
        self.deliver = deliver
        self.ended = ended
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deliver(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        ended()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A terminal whose last writer closed reads EIO: the end of its output.
        context.close(promise: nil)
    }
}

@_silgen_name("posix_openpt") private func openpt(_ flags: Int32) -> Int32
@_silgen_name("grantpt") private func grantpt(_ fd: Int32) -> Int32
@_silgen_name("unlockpt") private func unlockpt(_ fd: Int32) -> Int32
@_silgen_name("ptsname_r") private func ptsname_r(_ fd: Int32, _ buffer: UnsafeMutablePointer<CChar>, _ length: Int) -> Int32

/// The process of one exec: spawned with pipes, or on a pseudo-terminal.
final class ExecProcess {
    let pid: pid_t
    /// Descriptors to read and the stream each is (1 stdout, 2 stderr); owned by their channels.
    let outputs: [(Int32, UInt8)]
    /// Where stdin goes (owned by its channel), nil without stdin.
    let input: Int32?
    /// The terminal's master side (resize), -1 without one.
    private let terminal: Int32
    /// The terminal's slave side, held open here until the command has exited: once every slave
    /// descriptor is closed a read of the master fails (EIO), and output the command wrote just
    /// before it exited could be lost to that race.
    private var slave: Int32
    private var exited = false

    private init(pid: pid_t, outputs: [(Int32, UInt8)], input: Int32?, terminal: Int32, slave: Int32) {
        self.pid = pid
        self.outputs = outputs
        self.input = input
        self.terminal = terminal
        self.slave = slave
    }

    /// glibc's POSIX_SPAWN_SETSID: the child leads a new session (and so can own a terminal).
    static let spawnSetSID: Int32 = 0x80

    static func spawn(_ session: ProcessStreamingServer.Session, size: (width: UInt16, height: UInt16)? = nil) throws -> ExecProcess {
        guard let executable = session.command.first else { throw RuntimeError("exec needs a command") }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var parentEnds: [Int32] = []
        var childEnds: [Int32] = []
        var outputs: [(Int32, UInt8)] = []
        var input: Int32?
        var master: Int32 = -1
        var slave: Int32 = -1
        func pipePair() throws -> (read: Int32, write: Int32) {
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else { throw RuntimeError("cannot create a pipe: \(String(cString: strerror(errno)))") }
            // Close-on-exec: other children (started at the same time) must not hold these open.
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            return (fds[0], fds[1])
        }
        do {
            if session.tty {
                master = openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)
                guard master >= 0, grantpt(master) == 0, unlockpt(master) == 0 else {
                    throw RuntimeError("cannot open a pseudo-terminal: \(String(cString: strerror(errno)))")
                }
                var name = [CChar](repeating: 0, count: 128)
                guard ptsname_r(master, &name, name.count) == 0 else { throw RuntimeError("cannot name the pseudo-terminal") }
                slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)
                if let size {
                    var window = winsize(ws_row: size.height, ws_col: size.width, ws_xpixel: 0, ws_ypixel: 0)
                    _ = ioctl(master, UInt(TIOCSWINSZ), &window)
                }
                // The child leads a new session; opening the terminal makes it its controlling one.
                spawnStartClean(&attributes, flags: spawnSetSID)
                posix_spawn_file_actions_addopen(&actions, 0, name, O_RDWR, 0)
                posix_spawn_file_actions_adddup2(&actions, 0, 1)
                posix_spawn_file_actions_adddup2(&actions, 0, 2)
                // Reading and writing go through one descriptor each (both the master).
                let reading = dup(master)
                outputs = [(reading, 1)]
                if session.stdin { input = fcntl(master, F_DUPFD_CLOEXEC, 0) }
                parentEnds = [reading] + (input.map { [$0] } ?? [])
            } else {
                posix_spawnattr_setpgroup(&attributes, 0)
                spawnStartClean(&attributes, flags: Int32(POSIX_SPAWN_SETPGROUP))
                if session.stdin {
                    let pair = try pipePair()
                    posix_spawn_file_actions_adddup2(&actions, pair.read, 0)
                    childEnds.append(pair.read)
                    input = pair.write
                    parentEnds.append(pair.write)
                } else {
                    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
                }
                for (wanted, fd, stream) in [(session.stdout, Int32(1), UInt8(1)), (session.stderr, 2, 2)] {
                    if wanted {
                        let pair = try pipePair()
                        posix_spawn_file_actions_adddup2(&actions, pair.write, fd)
                        childEnds.append(pair.write)
                        outputs.append((pair.read, stream))
                        parentEnds.append(pair.read)
                    } else {
                        posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
                    }
                }
            }
            _ = spawnAddCloseFrom(&actions, 3)
            if let directory = session.directory, !directory.isEmpty { _ = directory.withCString { spawnAddChdir(&actions, $0) } }
            let argv = session.command.map { strdup($0) } + [nil]
            let envp = HostExec.environment((session.tty ? ["TERM": "xterm"] : [:]).merging(session.environment) { $1 })
            defer {
                argv.forEach { free($0) }
                envp.forEach { free($0) }
            }
            var pid: pid_t = 0
            let spawned = posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
            for fd in childEnds { close(fd) }
            childEnds = []
            guard spawned == 0 else {
                throw RuntimeError("exec: \"\(executable)\": \(String(cString: strerror(spawned)))")
            }
            for (fd, _) in outputs { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
            if let input { _ = fcntl(input, F_SETFL, fcntl(input, F_GETFL) | O_NONBLOCK) }
            return ExecProcess(pid: pid, outputs: outputs, input: input, terminal: master, slave: slave)
        } catch {
            for fd in parentEnds + childEnds { close(fd) }
            if master >= 0 { close(master) }
            if slave >= 0 { close(slave) }
            throw error
        }
    }

    func resize(width: UInt16, height: UInt16) {
        guard terminal >= 0 else { return }
        var size = winsize(ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(terminal, UInt(TIOCSWINSZ), &size)
    }

    func kill() {
        guard !exited else { return }
        // Its process group (pipes) or session (terminal): the group's id is its pid either way.
        _ = Glibc.kill(-pid, SIGKILL)
    }

    /// The command is over: nothing is signalled any more (its pid may be reused), the terminal goes
    /// (its reader then reads what is left, then the end).
    func release() {
        guard !exited else { return }
        exited = true
        if slave >= 0 {
            close(slave)
            slave = -1
        }
        if terminal >= 0 { close(terminal) }
    }
}

/// One port-forward over WebSocket, as the kubelet serves it: for the i-th port, channel 2i
/// carries its data both ways and channel 2i+1 its errors; the first two bytes the server sends
/// on each are the port (little-endian). Each port is one TCP connection to it on this node
/// (the process runtime's pods share its network), for the life of the WebSocket; when the
/// connection ends, so does the WebSocket, and the other way round.
final class PortForwardStreamHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let ports: [Int32]
    let logger: Logger
    private var upstreams: [(any Channel)?] = []
    /// Data from the client before its port's connection is up.
    private var pending: [[ByteBuffer]] = []
    private var open = 0
    private var finished = false
    private var context: ChannelHandlerContext?

    init(ports: [Int32], logger: Logger) {
        self.ports = ports
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        upstreams = Array(repeating: nil, count: ports.count)
        pending = Array(repeating: [], count: ports.count)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        for (index, port) in ports.enumerated() {
            var prefix = ByteBuffer()
            prefix.writeInteger(UInt16(truncatingIfNeeded: port), endianness: .little)
            send(channel: UInt8(2 * index), prefix)
            send(channel: UInt8(2 * index + 1), prefix)
            open += 1
            let relay = PortRelay(deliver: { handler.value.send(channel: UInt8(2 * index), $0) }, ended: { handler.value.upstreamEnded(index) })
            ClientBootstrap(group: context.eventLoop)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(relay) } }
                .connect(host: "127.0.0.1", port: Int(port))
                .whenComplete { result in
                    switch result {
                    case .success(let channel): handler.value.connected(index, channel)
                    case .failure(let error): handler.value.failed(index, error)
                    }
                }
        }
        if ports.isEmpty { finish() }
    }

    private func connected(_ index: Int, _ channel: any Channel) {
        guard !finished else {
            channel.close(promise: nil)
            return
        }
        upstreams[index] = channel
        for bytes in pending[index] { channel.write(bytes, promise: nil) }
        pending[index] = []
        channel.flush()
    }

    private func failed(_ index: Int, _ error: any Error) {
        // The kubelet's words for a port nothing listens on.
        let message = "error forwarding port \(ports[index]) to pod: failed to connect to localhost:\(ports[index]): \(error)"
        send(channel: UInt8(2 * index + 1), ByteBuffer(string: message))
        upstreamEnded(index)
    }

    private func upstreamEnded(_ index: Int) {
        upstreams[index] = nil
        open -= 1
        if open <= 0 { finish() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary:
            var payload = frame.unmaskedData
            guard let channel = payload.readInteger(as: UInt8.self), channel % 2 == 0, Int(channel / 2) < ports.count else { return }
            let index = Int(channel / 2)
            guard payload.readableBytes > 0 else { return }
            if let upstream = upstreams[index] {
                upstream.writeAndFlush(payload, promise: nil)
            } else {
                pending[index].append(payload)
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            finish()
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finished = true
        for upstream in upstreams { upstream?.close(promise: nil) }
        self.context = nil
        context.fireChannelInactive()
    }

    private func send(channel: UInt8, _ bytes: ByteBuffer) {
        guard let context, !finished else { return }
        var message = context.channel.allocator.buffer(capacity: bytes.readableBytes + 1)
        message.writeInteger(channel)
        message.writeImmutableBuffer(bytes)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: message)), promise: nil)
    }

    private func finish() {
        guard let context, !finished else { return }
        finished = true
        for upstream in upstreams { upstream?.close(promise: nil) }
        ExecStreamHandler.close(context)
    }
}

/// Hands what a forwarded port's connection reads to the WebSocket, and says when it ended.
final class PortRelay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let deliver: (ByteBuffer) -> Void
    let ended: () -> Void
    private var over = false

    init(deliver: @escaping (ByteBuffer) -> Void, ended: @escaping () -> Void) {
        self.deliver = deliver
        self.ended = ended
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deliver(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !over {
            over = true
            ended()
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
