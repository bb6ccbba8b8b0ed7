import Synchronization
import API
import AsyncHTTPClient
import Foundation
import NIOCore

/// One change seen by a watch, decoded. `relisted` carries the full current set after a (re-)list:
/// the consumer replaces what it knows (the informer's resync); `bookmark` only advances the revision.
public enum ObjectEvent<T: APIObject>: Sendable {
    case added(T)
    case modified(T)
    case deleted(T)
    case bookmark(revision: String)
    case relisted([T], revision: String)
}

/// Splits a watch body into frames: JSON lines, or WatchEvents behind a 4-byte big-endian length.
public struct WatchFrameSplitter: Sendable {
    public let format: WireFormat
    var pending: [UInt8] = []

    public init(format: WireFormat) { self.format = format }

    public mutating func append(_ bytes: some Sequence<UInt8>) { pending.append(contentsOf: bytes) }

    /// The complete frames received so far (each without its delimiter or length prefix).
    public mutating func frames() -> [ArraySlice<UInt8>] {
        var frames: [ArraySlice<UInt8>] = []
        var start = 0
        switch format {
        case .json:
            while let newline = pending[start...].firstIndex(of: 0x0A) {
                if newline > start { frames.append(pending[start..<newline]) }
                start = newline + 1
            }
        case .protobuf:
            while pending.count - start >= 4 {
                let length = Int(pending[start]) << 24 | Int(pending[start + 1]) << 16 | Int(pending[start + 2]) << 8 | Int(pending[start + 3])
                guard pending.count - start - 4 >= length else { break }
                frames.append(pending[(start + 4)..<(start + 4 + length)])
                start += 4 + length
            }
        }
        // The frames share `pending`'s storage: removing from its front would copy all of it
        // (copy-on-write); start a new buffer with just the incomplete rest instead.
        if start == pending.count {
            pending = []
        } else if start > 0 {
            pending = Array(pending[start...])
        }
        return frames
    }

    /// (type, object bytes in this format) of one frame; ERROR frames carry a Status.
    public func decode<T: APIObject>(_ frame: ArraySlice<UInt8>, as type: T.Type) throws -> (type: String, object: T?, status: Status?) {
        let eventType: String
        switch format {
        case .json:
            let json = try JSONParser.parse(bytes: frame)
            guard case .string(let kind)? = json["type"], let object = json["object"] else {
                throw ClientError(code: 0, reason: "BadWatchFrame", message: "a watch frame without type or object")
            }
            eventType = kind
            if kind == "ERROR" { return (kind, nil, try Status(json: object)) }
            return (kind, try T(json: object), nil)
        case .protobuf:
            let event = try WatchEvent(protobuf: Array(frame))
            eventType = event.type
            if eventType == "ERROR" { return (eventType, nil, try Status(protobuf: Array(event.object))) }
            return (eventType, try T(protobuf: Array(event.object)), nil)
        }
    }
}

/// Where a resumable watch stands and what it asks for.
public struct WatchRequest: Sendable {
    public var namespace: String?
    public var labelSelector: String?
    public var fieldSelector: String?
    /// Start after this revision; empty lists first (and reports `relisted`).
    public var resourceVersion: String = ""
    /// Each watch request's server-side length; the stream re-watches when one ends.
    public var timeoutSeconds = 300
    /// A watch connection silent this long (no event, no bookmark) is taken for dead and replaced.
    public var idleTimeout: Duration = .seconds(20)

    public init(namespace: String? = nil, labelSelector: String? = nil, fieldSelector: String? = nil, resourceVersion: String = "") {
        self.namespace = namespace
        self.labelSelector = labelSelector
        self.fieldSelector = fieldSelector
        self.resourceVersion = resourceVersion
    }
}

extension APIClient {
    /// A watch that does not end when a connection does: it resumes from the last revision it saw
    /// (events and bookmarks both advance it), backing off while the server is unreachable, and
    /// re-lists when the server says that revision is gone (410), reporting the fresh set as
    /// `relisted`. Ends only when the consumer stops iterating (or the task is cancelled).
    public func watch<T: APIObject>(_ type: T.Type, _ request: WatchRequest) -> AsyncThrowingStream<ObjectEvent<T>, any Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                let progress = WatchProgress(revision: request.resourceVersion)
                var backoff = Backoff(base: .milliseconds(200), cap: .seconds(10))
                while !Task.isCancelled {
                    do {
                        if progress.revision.isEmpty {
                            let listed = try await self.list(T.self, namespace: request.namespace, labelSelector: request.labelSelector, fieldSelector: request.fieldSelector)
                            progress.revision = listed.resourceVersion
                            continuation.yield(.relisted(listed.items, revision: listed.resourceVersion))
                        }
                        // The stream is read next to a watchdog: the server sends at least a
                        // bookmark every few seconds, so a connection that stays silent longer
                        // than `idleTimeout` is dead (a partition drops packets without a word)
                        // and is abandoned for a new one, from the last revision.
                        progress.touch()
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            group.addTask {
                                let body = try await self.watchBody(T.self, request, resourceVersion: progress.revision)
                                var splitter = WatchFrameSplitter(format: self.format)
                                for try await chunk in body {
                                    progress.touch()
                                    splitter.append(chunk.readableBytesView)
                                    for frame in splitter.frames() {
                                        let (kind, object, status) = try splitter.decode(frame, as: T.self)
                                        if let status {
                                            if status.code == 410 { progress.revision = "" }  // gone: list again
                                            throw ClientError(code: Int(status.code), reason: status.reason, message: status.message)
                                        }
                                        guard let object else { continue }
                                        if !object.metadata.resourceVersion.isEmpty { progress.revision = object.metadata.resourceVersion }
                                        switch kind {
                                        case "ADDED": continuation.yield(.added(object))
                                        case "MODIFIED": continuation.yield(.modified(object))
                                        case "DELETED": continuation.yield(.deleted(object))
                                        case "BOOKMARK": continuation.yield(.bookmark(revision: progress.revision))
                                        default: break
                                        }
                                    }
                                }
                            }
                            group.addTask {
                                // Wakes when the timeout could first have passed, not on a tick.
                                while true {
                                    let silence = progress.silence
                                    if silence >= request.idleTimeout { throw WatchStalled(seconds: request.idleTimeout) }
                                    try await Task.sleep(for: request.idleTimeout - silence)
                                }
                            }
                            try await group.next()
                            group.cancelAll()
                        }
                        backoff.reset()
                        // The server ended the stream (timeout, shutdown): watch again at once.
                    } catch let error as ClientError where error.code == 410 {
                        progress.revision = ""
                    } catch is CancellationError {
                        break
                    } catch {
                        if Task.isCancelled { break }
                        try? await Task.sleep(for: backoff.next())
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// One watch request's body (200), or the server's error.
    func watchBody<T: APIObject>(_ type: T.Type, _ request: WatchRequest, resourceVersion: String) async throws -> ResponseBody {
        var query = ["watch=true", "resourceVersion=\(resourceVersion)", "timeoutSeconds=\(request.timeoutSeconds)", "allowWatchBookmarks=true"]
        if let selector = request.labelSelector, !selector.isEmpty { query.append("labelSelector=\(Self.escape(selector))") }
        if let selector = request.fieldSelector, !selector.isEmpty { query.append("fieldSelector=\(Self.escape(selector))") }
        return try await stream(Self.path(T.kindInfo, namespace: request.namespace) + "?" + query.joined(separator: "&"),
                                lasting: .seconds(Int64(request.timeoutSeconds) + 30))
    }
}

/// Where a resuming watch is: its revision, and when it last heard from the server.
final class WatchProgress: Sendable {
    private let state: Mutex<(revision: String, heard: ContinuousClock.Instant)>

    init(revision: String) { state = Mutex((revision, .now)) }

    var revision: String {
        get { state.withLock { $0.revision } }
        set { state.withLock { $0.revision = newValue } }
    }

    func touch() { state.withLock { $0.heard = .now } }

    var silence: Duration { state.withLock { .now - $0.heard } }
}

/// A watch connection that went silent past its idle timeout.
struct WatchStalled: Error, CustomStringConvertible {
    let seconds: Duration
    var description: String { "the watch heard nothing for \(seconds); reconnecting" }
}
