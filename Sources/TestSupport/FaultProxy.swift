import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on loopback that puts the network's real behaviour between a client and a server,
/// on command: latency with jitter, a bandwidth cap, connections dropped mid-stream, new
/// connections reset, or a black hole (a partition: connections are accepted and never
/// answered). The jitter comes from a seeded generator, so a run can be repeated. It counts the
/// bytes it carries each way. Stops with `close()` (or when the test process ends).
public final class FaultProxy: Sendable {
    public struct Faults: Sendable, Equatable {
        /// Added to every chunk each way.
        public var latency: Duration = .zero
        /// Up to this much more, drawn per chunk (order is kept).
        public var jitter: Duration = .zero
        /// Each direction of each connection is held to this rate.
        public var bytesPerSecond: Int?
        /// Every Nth new connection is reset (RST) at once; nil: none.
        public var resetEveryNthConnection: Int?
        /// New connections are accepted and never answered, and nothing flows on existing ones.
        public var blackHole = false

        public init(latency: Duration = .zero, jitter: Duration = .zero, bytesPerSecond: Int? = nil,
                    resetEveryNthConnection: Int? = nil, blackHole: Bool = false) {
            self.latency = latency
            self.jitter = jitter
            self.bytesPerSecond = bytesPerSecond
            self.resetEveryNthConnection = resetEveryNthConnection
            self.blackHole = blackHole
        }
    }

    public struct Counters: Sendable, Equatable {
        public var connections = 0
        public var resets = 0
        public var drops = 0
        public var bytesToServer = 0
        public var bytesToClient = 0
    }

    struct State {
        var faults = Faults()
        var counters = Counters()
        var random: SeededGenerator
        var open: [ObjectIdentifier: any Channel] = [:]
    }

    let state: Mutex<State>
    let listener: any Channel
    let targetHost: String
    let targetPort: Int
    public var port: Int { listener.localAddress?.port ?? 0 }

    /// Listens on 127.0.0.1 (a free port) and forwards to `host:port`.
    public init(to host: String = "127.0.0.1", port: Int, seed: UInt64 = 1) async throws {
        targetHost = host
        targetPort = port
        let state = Mutex(State(random: SeededGenerator(seed: seed)))
        self.state = state
        let box = ProxyBox()
        listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try box.proxy?.accept(channel)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        box.proxy = self
    }

    public var faults: Faults {
        get { state.withLock { $0.faults } }
    }

    public func set(_ faults: Faults) { state.withLock { $0.faults = faults } }

    public var counters: Counters { state.withLock { $0.counters } }

    /// Closes every connection it carries now, mid-stream (each side sees its peer go away).
    public func dropConnections() {
        let channels = state.withLock { state -> [any Channel] in
            state.counters.drops += state.open.count
            defer { state.open = [:] }
            return Array(state.open.values)
        }
        for channel in channels { channel.close(promise: nil) }
    }

    public func close() async {
        dropConnections()
        try? await listener.close()
    }

    // MARK: Relaying

    func track(_ channel: any Channel) {
        state.withLock { $0.open[ObjectIdentifier(channel)] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in self?.state.withLock { _ = $0.open.removeValue(forKey: ObjectIdentifier(channel)) } }
    }

    /// A new client connection: reset, black-holed, or connected through to the target.
    func accept(_ inbound: any Channel) throws {
        let (reset, faults) = state.withLock { state -> (Bool, Faults) in
            state.counters.connections += 1
            let every = state.faults.resetEveryNthConnection ?? 0
            let reset = every > 0 && state.counters.connections % every == 0
            if reset { state.counters.resets += 1 }
            return (reset, state.faults)
        }
        if reset {
            // SO_LINGER 0: the close is a TCP RST, as a crashed or overloaded peer would send.
            if let socket = inbound as? any SocketOptionProvider {
                socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in inbound.close(promise: nil) }
            } else {
                inbound.close(promise: nil)
            }
            return
        }
        track(inbound)
        let toServer = Relay(proxy: self, toServer: true)
        try inbound.pipeline.syncOperations.addHandler(toServer)
        if faults.blackHole { return }  // reads are swallowed; nothing is ever sent back
        let loop = inbound.eventLoop
        let toServerBound = NIOLoopBound(toServer, eventLoop: loop)
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(5))
            .channelInitializer { outbound in
                outbound.eventLoop.makeCompletedFuture {
                    try outbound.pipeline.syncOperations.addHandler(Relay(proxy: self, toServer: false, peer: inbound))
                }
            }
            .connect(host: targetHost, port: targetPort)
            .whenComplete { result in
                switch result {
                case .success(let outbound):
                    self.track(outbound)
                    toServerBound.value.connected(to: outbound)
                case .failure:
                    inbound.close(promise: nil)
                }
            }
    }

    func count(_ bytes: Int, toServer: Bool) {
        state.withLock { state in
            if toServer { state.counters.bytesToServer += bytes } else { state.counters.bytesToClient += bytes }
        }
    }

    /// When a chunk of `count` bytes leaves, given the faults: latency, jitter, and the rate cap
    /// (after the previous chunk of this direction); nil in a black hole (the chunk is lost).
    func release(_ count: Int, after previous: NIODeadline) -> NIODeadline? {
        state.withLock { state -> NIODeadline? in
            let faults = state.faults
            if faults.blackHole { return nil }
            var delay = Self.nanoseconds(faults.latency)
            let jitter = Self.nanoseconds(faults.jitter)
            if jitter > 0 { delay += Int64(state.random.next() % UInt64(jitter)) }
            let now = NIODeadline.now()
            var start = max(now, previous)
            if let rate = faults.bytesPerSecond, rate > 0 {
                start = start + .nanoseconds(Int64(count) * 1_000_000_000 / Int64(rate))
            }
            return max(now + .nanoseconds(delay), start)
        }
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}

/// Set once the listener exists, so the accept closure can reach the proxy.
final class ProxyBox: @unchecked Sendable {
    weak var proxy: FaultProxy?
}

/// One direction of one connection: reads from its channel, writes to the peer when the faults
/// say the bytes may leave, in order. Everything happens on the pair's event loop.
final class Relay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let proxy: FaultProxy
    let toServer: Bool
    var peer: (any Channel)?
    var waiting: [ByteBuffer] = []
    var lastRelease = NIODeadline.uptimeNanoseconds(0)
    var inactive = false

    init(proxy: FaultProxy, toServer: Bool, peer: (any Channel)? = nil) {
        self.proxy = proxy
        self.toServer = toServer
        self.peer = peer
    }

    func connected(to peer: any Channel) {
        self.peer = peer
        for buffer in waiting { send(buffer, on: peer.eventLoop) }
        waiting = []
        if inactive { closePeer() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        proxy.count(buffer.readableBytes, toServer: toServer)
        guard peer != nil else {
            waiting.append(buffer)  // not connected yet (or a black hole): kept until it is
            return
        }
        send(buffer, on: context.eventLoop)
    }

    func send(_ buffer: ByteBuffer, on loop: any EventLoop) {
        guard let peer, let when = proxy.release(buffer.readableBytes, after: lastRelease) else { return }
        lastRelease = when
        if when <= .now() {
            peer.writeAndFlush(buffer, promise: nil)
        } else {
            loop.scheduleTask(deadline: when) { peer.writeAndFlush(buffer, promise: nil) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        inactive = true
        closePeer()
        context.fireChannelInactive()
    }

    /// The peer closes after what is already on its way has left.
    func closePeer() {
        guard let peer else { return }
        if lastRelease <= .now() {
            peer.close(promise: nil)
        } else {
            peer.eventLoop.scheduleTask(deadline: lastRelease + .milliseconds(1)) { peer.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// SplitMix64: small, fast, and the same sequence for the same seed (fault jitter, fuzz inputs).
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
