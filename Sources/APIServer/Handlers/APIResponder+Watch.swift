import API
import Hummingbird
import NIOCore
import Store

extension APIResponder {
    /// `?watch=true`: every change after `resourceVersion` (or, without one, the current objects
    /// as ADDED and then every change), as JSON lines or length-prefixed protobuf WatchEvents,
    /// with a BOOKMARK when idle for clients that ask (`allowWatchBookmarks=true`).
    /// Each event is encoded once per format, whatever the number of watchers.
    func watch<T: APIObject>(_ type: T.Type, _ path: ResourcePath, query: QueryParameters, format: WireFormat,
                             table: IncludeObject? = nil) async throws -> Response {
        try Self.validateListOptions(query, watch: true)
        let (options, fields) = try selectors(path, query: query)
        let requested = try await requestedRevision(query)
        // The objects first, as ADDED: always without a resourceVersion (or with "0"), and with
        // one when asked by `sendInitialEvents=true` (the watch-list newer clients use: state not
        // older than that version, then a BOOKMARK marking the end of the initial events).
        let watchList = Self.flag(query["sendInitialEvents"])
        let sendsInitial = watchList ?? (requested == nil)
        var initial: [T] = []
        let start: Int64
        if sendsInitial {
            var listOptions = options
            listOptions.limit = 0
            let listed = try await store.list(T.self, options: listOptions)
            initial = listed.items
            start = listed.revision
        } else {
            start = requested ?? store.currentRevision
        }
        var timeout = limits.maxWatchSeconds
        if let text = query["timeoutSeconds"] {
            guard let seconds = Int(text), seconds > 0 else { throw APIError.badRequest("timeoutSeconds must be a positive integer") }
            timeout = min(seconds, limits.maxWatchSeconds)
        }
        let watch: StoreWatch
        do {
            let nodeName = T.self == Pod.self ? fields?.nodeName : nil
            watch = try store.watch(from: start, options: WatchOptions(
                resource: T.kindInfo.groupResource, namespace: options.namespace, labelSelector: options.labelSelector,
                predicate: options.predicate, nodeName: nodeName))
        } catch let error as StoreError where error.code == .compacted {
            throw APIError(410, "Expired", "too old resource version: \(start) (\(error.message))")
        }
        guard let drainID = drain.register(watch) else {
            watch.cancel()
            throw APIError(503, "ServiceUnavailable", "the server is shutting down; watch again from resourceVersion \(start)")
        }
        // A client that goes away (Ctrl-C, a dropped connection) frees its watch at once, not at
        // the next bookmark: an HTTP/2 stream closes; an HTTP/1.1 connection only reports the
        // peer's FIN (half-closure is allowed), which an observer in front of TLS catches.
        // (A connection's parent is the listening socket; an HTTP/2 stream's is its connection.
        // The observer, removed when the watch ends, also sees the connection close; a callback
        // on a keep-alive connection's close would pile up with every watch it carries.)
        let observer = PeerGoneObserver { watch.cancel() }
        let connection = Self.requestChannel.flatMap { $0.parent?.parent == nil ? $0 : nil }
        if let connection {
            connection.pipeline.addHandler(observer, position: .first).whenFailure { _ in watch.cancel() }
        } else {
            Self.requestChannel?.closeFuture.whenComplete { _ in watch.cancel() }
        }
        let drain = self.drain
        let encodedFormat = format
        let initialObjects = initial
        let watchSeconds = timeout
        let bookmarkInterval = limits.bookmarkInterval
        // Only to clients that ask, as Kubernetes does: one that does not (kubectl get -w) would
        // take a BOOKMARK for an object (kubectl printed "pod/<unknown>" every 5 s). A vanished
        // client is noticed by its connection closing either way.
        let bookmarksAllowed = Self.flag(query["allowWatchBookmarks"]) ?? false
        let marksInitialEnd = watchList == true && bookmarksAllowed
        return Response(status: .ok, headers: [.contentType: format.rawValue, .cacheControl: "no-cache"], body: ResponseBody { [custom = CustomResources.current] writer in
            // The body is written outside the request's task: a custom resource's kind goes along.
            try await CustomResources.$current.withValue(custom) {
            let timer = Task {
                try? await Task.sleep(for: .seconds(watchSeconds))
                watch.cancel()
            }
            let bookmarks = Task {
                while bookmarksAllowed && !Task.isCancelled {
                    try? await Task.sleep(for: bookmarkInterval)
                    watch.tick()
                }
            }
            defer {
                connection?.pipeline.removeHandler(observer, promise: nil)
                drain.unregister(drainID)
                timer.cancel()
                bookmarks.cancel()
                watch.cancel()
            }
            // As a Table (kubectl get -w): each event's object is a one-row Table, the first with
            // the column definitions. Encoded for this watcher alone.
            var columnsSent = false
            let encodingKey = custom.map { encodedFormat.rawValue + ";" + $0.info.apiVersion } ?? encodedFormat.rawValue
            func tableFrame(_ type: String, _ object: T, revision: Int64) -> [UInt8] {
                var w = JSONWriter()
                w.beginObject()
                w.key("type"); w.string(type)
                w.key("object")
                Self.writeTable([object], revision: revision, continueToken: nil, include: table ?? .metadata, columns: !columnsSent, to: &w)
                w.endObject()
                columnsSent = true
                return w.bytes + [0x0A]
            }
            if !initialObjects.isEmpty {
                var buffer = ByteBuffer()
                for object in initialObjects {
                    buffer.writeBytes(table == nil ? Self.frame(type: "ADDED", object: object, format: encodedFormat)
                                                   : tableFrame("ADDED", object, revision: Int64(object.metadata.resourceVersion) ?? 0))
                }
                try await writer.write(buffer)
            }
            if marksInitialEnd {
                try await writer.write(ByteBuffer(bytes: Self.bookmark(T.self, revision: start, format: encodedFormat,
                                                                       annotations: ["k8s.io/initial-events-end": "true"])))
            }
            do {
                while let batch = try await watch.nextOrTick() {
                    if batch.isEmpty {
                        try await writer.write(ByteBuffer(bytes: Self.bookmark(T.self, revision: watch.revision, format: encodedFormat)))
                        continue
                    }
                    var buffer = ByteBuffer()
                    for event in batch {
                        if table != nil, let object = event.object as? T {
                            buffer.writeBytes(tableFrame(event.type.name, object, revision: event.revision))
                        } else {
                            // (A custom object's encoding names the version watched.)
                            buffer.writeBytes(event.encoded(encodingKey) { Self.frame(event: $0, format: encodedFormat) })
                        }
                    }
                    try await writer.write(buffer)
                }
            } catch let error as StoreError {
                // The watch cannot go on (too slow, history compacted): say so, as Kubernetes does, and end.
                let status = APIError(410, "Expired", error.message).status
                try await writer.write(ByteBuffer(bytes: Self.errorFrame(status, format: encodedFormat)))
            }
            try await writer.finish(nil)
            }
        })
    }

    static func frame(event: StoreEvent, format: WireFormat) -> [UInt8] {
        frame(type: event.type.name, object: event.object, protobuf: { event.protobufBytes }, format: format)
    }

    static func frame(type: String, object: some JSONCodable & ProtoCodable, format: WireFormat) -> [UInt8] {
        frame(type: type, object: object, protobuf: { object.protoBytes() }, format: format)
    }

    /// One watch event: a JSON line `{"type":…,"object":…}` or a length-prefixed protobuf WatchEvent.
    static func frame(type: String, object: any JSONCodable, protobuf: () -> [UInt8], format: WireFormat) -> [UInt8] {
        switch format {
        case .json:
            var w = JSONWriter()
            w.beginObject()
            w.key("type"); w.string(type)
            w.key("object"); object.writeJSON(to: &w)
            w.endObject()
            return w.bytes + [0x0A]
        case .protobuf:
            return lengthPrefixed(type: type, object: protobuf())
        }
    }

    /// A BOOKMARK: an object of the watched kind carrying only the revision the watch has reached.
    /// The one that ends a watch-list's initial events carries the annotation
    /// `k8s.io/initial-events-end: "true"`.
    static func bookmark<T: APIObject>(_ type: T.Type, revision: Int64, format: WireFormat,
                                       annotations: [String: String] = [:]) -> [UInt8] {
        var marker = T()
        marker.setTypeMeta()
        marker.metadata.resourceVersion = String(revision)
        marker.metadata.annotations = annotations
        return frame(type: "BOOKMARK", object: marker, format: format)
    }

    static func errorFrame(_ status: Status, format: WireFormat) -> [UInt8] {
        frame(type: "ERROR", object: status, format: format)
    }

    /// A WatchEvent message behind its length as 4 big-endian bytes.
    static func lengthPrefixed(type: String, object: [UInt8]) -> [UInt8] {
        var event = WatchEvent()
        event.type = type
        event.object = Data(object)
        let body = event.protoBytes()
        let n = UInt32(body.count)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + body
    }
}

import Foundation

/// Tells when the TCP peer has closed its side (or the connection is gone).
final class PeerGoneObserver: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny
    let onGone: @Sendable () -> Void

    init(onGone: @escaping @Sendable () -> Void) { self.onGone = onGone }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { onGone() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        onGone()
        context.fireChannelInactive()
    }
}
