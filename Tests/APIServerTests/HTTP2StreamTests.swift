import Foundation
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import Synchronization
import Testing
import TestSupport

/// A bare HTTP/2 client, frame by frame: what a browser or a Go client does with streams, which
/// the project's own client never does (it does not reset streams it still wants answered).
final class RawHTTP2: Sendable {
    final class Recorder: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTP2Frame
        let statuses = Mutex<[Int: String]>([:])
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            if case .headers(let headers) = frame.payload, let status = headers.headers.first(name: ":status") {
                statuses.withLock { $0[Int(frame.streamID)] = status }
            }
        }
    }

    let channel: any Channel
    let recorder: Recorder

    /// `authenticated: false`: no client certificate (a stranger).
    init(port: Int, pki: String, authenticated: Bool = true) async throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file("\(pki)/ca.crt")
        if authenticated {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile("\(pki)/admin.crt").map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(try String(contentsOfFile: "\(pki)/admin.key", encoding: .utf8).utf8), format: .pem))
        }
        tls.applicationProtocols = ["h2"]
        let context = try NIOSSLContext(configuration: tls)
        let recorder = Recorder()
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client))
                    try channel.pipeline.syncOperations.addHandler(recorder)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        self.recorder = recorder
    }

    func get(_ path: String, stream: Int) async throws {
        let headers = HPACKHeaders([(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", path),
                                    ("accept", "application/json")])
        try await channel.writeAndFlush(HTTP2Frame(streamID: HTTP2StreamID(stream), payload: .headers(.init(headers: headers, endStream: true)))).get()
    }

    /// Opens a POST on `stream` and sends `chunks` DATA frames of `chunkBytes` without ever
    /// ending the body. Written without waiting: frames past the server's window wait in this
    /// client's flow-control buffer.
    func unfinishedPost(_ path: String, stream: Int, chunkBytes: Int, chunks: Int, bearer: String? = nil) {
        var headers = HPACKHeaders([(":method", "POST"), (":scheme", "https"), (":authority", "localhost"), (":path", path),
                                    ("content-type", "application/json")])
        if let bearer { headers.add(name: "authorization", value: "Bearer \(bearer)") }
        let id = HTTP2StreamID(stream)
        channel.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers, endStream: false))), promise: nil)
        let chunk = ByteBuffer(repeating: UInt8(ascii: " "), count: chunkBytes)
        for _ in 0..<chunks {
            channel.write(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(chunk), endStream: false))), promise: nil)
        }
        channel.flush()
    }

    func close() async {
        try? await channel.close()
    }

    func statuses() -> [Int: String] { recorder.statuses.withLock { $0 } }

    func reset(stream: Int) async throws {
        try await channel.writeAndFlush(HTTP2Frame(streamID: HTTP2StreamID(stream), payload: .rstStream(.cancel))).get()
    }

    func status(of stream: Int) -> String? { recorder.statuses.withLock { $0[stream] } }
}

extension APIServerTests {
    @Suite("HTTP/2 streams served as frames", .watchdog, .serialized)
    struct HTTP2StreamTests {
        func watchers(_ server: ServerHarness) async throws -> Int {
            let metrics = try await server.request("/metrics").body
            return Int(metrics.split(separator: "\n").first { $0.hasPrefix("cox_apiserver_watchers ") }?.split(separator: " ").last ?? "") ?? -1
        }

        /// A client that resets one stream (its watch) and keeps the connection: the server lets
        /// that watch go at once and goes on serving the connection's other streams.
        @Test(.timeLimit(.minutes(5))) func aResetStreamEndsItsWatchAndTheConnectionGoesOn() async throws {
            let server = try await ServerHarness()
            let client = try await RawHTTP2(port: server.port, pki: server.pki)
            try await client.get("/api/v1/namespaces/default/pods?watch=true&resourceVersion=0", stream: 1)
            var open = -1
            for _ in 0..<100 where open != 1 {  // bounded: 100 × 50 ms
                open = try await watchers(server)
                if open != 1 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(open == 1, "the watch never opened")
            #expect(client.status(of: 1) == "200")
            try await client.reset(stream: 1)
            for _ in 0..<100 where open != 0 {
                open = try await watchers(server)
                if open != 0 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(open == 0, "the reset stream's watch must end")
            #expect(client.channel.isActive, "the connection stays open")
            try await client.get("/api/v1/namespaces/default/pods", stream: 3)
            for _ in 0..<100 where client.status(of: 3) == nil { try await Task.sleep(for: .milliseconds(50)) }
            #expect(client.status(of: 3) == "200")
            try await client.channel.close()
            await server.stop()
        }
    }
}
