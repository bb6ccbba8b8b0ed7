import Client
import NIOCore
import NIOEmbedded
import NIOPosix
import NIOSSL
import PKI
import Testing

/// The pieces exec, attach and port-forward are proxied with: the first request's head read off
/// the connection (and every byte after it kept), the upstream's answer read before the join.
@Suite("HTTP upgrade proxying")
struct HTTPUpgradeTests {
    /// The API server dials an agent at its node's address with the cluster's trust: the
    /// agent's certificate must name that address (a node's certificate names its own), and the
    /// dial fails during the handshake, saying so, when it does not — even though the chain is
    /// good. A DNS name is checked as a name.
    @Test func aStreamPeerMustNameTheAddressDialled() async throws {
        let authority = try CertificateAuthority.create(commonName: "test-ca")
        var client = TLSConfiguration.makeClientConfiguration()
        client.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(authority.certificatePEM.utf8)))
        let clientContext = try NIOSSLContext(configuration: client)
        let group = MultiThreadedEventLoopGroup.singleton
        func serve(dnsNames: [String], ipAddresses: [String]) async throws -> any Channel {
            let pair = try authority.issue(commonName: "agent", usage: .server(dnsNames: dnsNames, ipAddresses: ipAddresses))
            let server = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(pair.certificatePEM.utf8)).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(pair.privateKeyPEM.utf8), format: .pem)))
            let context = try NIOSSLContext(configuration: server)
            return try await ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context)) }
                }
                .bind(host: "127.0.0.1", port: 0).get()
        }
        let other = try await serve(dnsNames: ["other-node"], ipAddresses: ["127.0.0.2"])
        defer { other.close(promise: nil) }
        let port = try #require(other.localAddress?.port)
        // A generous limit: the handshake must end on its own, by refusal or success, not by
        // running out of time (a loaded machine can take seconds to schedule it).
        let limit = TimeAmount.seconds(60)
        let refusal = await #expect(throws: (any Error).self, "a certificate for another address is refused") {
            let channel = try await StreamDialer.connect(host: "127.0.0.1", port: port, tls: clientContext, on: group.next(), timeout: limit)
            try? await channel.close()
        }
        #expect(refusal is NIOSSLExtraError || refusal is NIOSSLError, "refused by verification, not by a timeout: \(String(describing: refusal))")
        let right = try await serve(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        defer { right.close(promise: nil) }
        let rightPort = try #require(right.localAddress?.port)
        for host in ["127.0.0.1", "localhost"] {
            let channel = try await StreamDialer.connect(host: host, port: rightPort, tls: clientContext, on: group.next(), timeout: limit)
            #expect(channel.isActive, "\(host) is named by the certificate")
            try await channel.close()
        }
        let nameRefusal = await #expect(throws: (any Error).self, "a name the certificate does not hold is refused") {
            let channel = try await StreamDialer.connect(host: "localhost", port: port, tls: clientContext, on: group.next(), timeout: limit)
            try? await channel.close()
        }
        #expect(nameRefusal is NIOSSLExtraError || nameRefusal is NIOSSLError, "refused by verification, not by a timeout: \(String(describing: nameRefusal))")
    }

    static let kubectlHead = "GET /api/v1/namespaces/default/pods/web/exec?command=sh&command=-c&command=echo+a%26b&container=c&stdin=true HTTP/1.1\r\n"
        + "Host: 127.0.0.1:6443\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"

    @Test func aHeadIsParsedAsGoReadsItsQuery() throws {
        let head = try #require(RawRequestHead.parse(Array(Self.kubectlHead.utf8).dropLast(4)))
        #expect(head.method == "GET" && head.path == "/api/v1/namespaces/default/pods/web/exec" && head.isUpgrade)
        #expect(head.query.filter { $0.key == "command" }.map(\.value) == ["sh", "-c", "echo a&b"])
        #expect(head.header("sec-websocket-protocol") == "v5.channel.k8s.io")
        #expect(RawRequestHead.parse(Array("NOT A REQUEST\r\n".utf8)) == nil)
        let plain = try #require(RawRequestHead.parse(Array("GET /api HTTP/1.1\r\nConnection: keep-alive\r\n".utf8)))
        #expect(!plain.isUpgrade)
    }

    @Test func anUpgradeKeepsWhatFollowsItsHeadAndAnOrdinaryRequestIsHandedOn() throws {
        // An upgrade split across reads, with bytes after its head.
        let channel = EmbeddedChannel()
        let sniffer = UpgradeSniffer(eventLoop: channel.eventLoop) { $0.path.hasSuffix("/exec") }
        try channel.pipeline.syncOperations.addHandler(sniffer)
        let bytes = Array((Self.kubectlHead + "EARLY").utf8)
        try channel.writeInbound(ByteBuffer(bytes: bytes[0..<40]))
        var decided: UpgradeSniffer.Sniffed?
        sniffer.sniffed.whenSuccess { decided = $0 }
        #expect(decided == nil, "no decision before the head is whole")
        try channel.writeInbound(ByteBuffer(bytes: bytes[40...]))
        guard case .upgrade(let head)? = decided else {
            Issue.record("taken as an upgrade")
            return
        }
        #expect(head.query.first { $0.key == "container" }?.value == "c")
        try channel.writeInbound(ByteBuffer(string: "LATER"))
        #expect(sniffer.takeRest().map { String(buffer: $0) } == "EARLYLATER")
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil, "nothing went past the sniffer")

        // Anything else goes on, every byte, once the owner has its handlers in place.
        let other = EmbeddedChannel()
        let second = UpgradeSniffer(eventLoop: other.eventLoop) { $0.path.hasSuffix("/exec") }
        try other.pipeline.syncOperations.addHandler(second)
        second.sniffed.whenSuccess { if case .ordinary = $0 { second.handOn() } }
        let request = "GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\n"
        try other.writeInbound(ByteBuffer(string: request))
        #expect(try other.readInbound(as: ByteBuffer.self).map { String(buffer: $0) } == request)
        try other.writeInbound(ByteBuffer(string: "more"))
        #expect(try other.readInbound(as: ByteBuffer.self).map { String(buffer: $0) } == "more", "the sniffer left the pipeline")
    }

    @Test func anUpstreamAnswerIsReadBeforeTheJoin() throws {
        // A refusal without a length (containerd's for a protocol it does not speak) ends with the connection.
        let refusing = EmbeddedChannel()
        let reader = ResponseHeadReader(eventLoop: refusing.eventLoop)
        try refusing.pipeline.syncOperations.addHandler(reader)
        var answer: ResponseHeadReader.Answer?
        reader.answer.whenSuccess { answer = $0 }
        try refusing.writeInbound(ByteBuffer(string: "HTTP/1.1 403 Forbidden\r\n\r\nno such protocol"))
        #expect(answer == nil)
        refusing.pipeline.fireChannelInactive()
        #expect(answer?.code == 403 && answer?.body == "no such protocol")

        // A 101: every byte read (head and the first frames) goes to the client at the join.
        let accepting = EmbeddedChannel()
        let upgraded = ResponseHeadReader(eventLoop: accepting.eventLoop)
        try accepting.pipeline.syncOperations.addHandler(upgraded)
        var switched: ResponseHeadReader.Answer?
        upgraded.answer.whenSuccess { switched = $0 }
        let wire = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\n\r\nFRAMES"
        try accepting.writeInbound(ByteBuffer(string: wire))
        #expect(switched?.code == 101)
        #expect(upgraded.takeAll().map { String(buffer: $0) } == wire)
    }
}
