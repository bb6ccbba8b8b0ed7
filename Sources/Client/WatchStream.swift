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
    /// Events decoded ahead of the consumer at most. A consumer further behind holds up the watch's
    /// connection (HTTP/2 flow control stops the server's writes to it); one that stays behind
    /// long enough is cut off by the server and re-lists. Memory stays bounded however slow it is.
    public var maxBuffered = 1_000

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
    public func watch<T: APIObject>(_ type: T.Type, _ request: WatchRequest) -> WatchEvents<T> {
        let window = EventWindow(capacity: max(1, request.maxBuffered))
        let events = AsyncThrowingStream<ObjectEvent<T>, any Error> { continuation in
            let task = Task {
                let progress = WatchProgress(revision: request.resourceVersion)
                /// Hands one event over once the consumer has room for it (not idle meanwhile:
                /// the server is not silent, the consumer is behind).
                @Sendable func deliver(_ event: ObjectEvent<T>) async throws {
                    progress.paused = true
                    defer { progress.paused = false }
                    try await window.reserve()
                    continuation.yield(event)
                }
                var backoff = Backoff(base: .milliseconds(200), cap: .seconds(10))
                while !Task.isCancelled {
                    do {
                        if progress.revision.isEmpty {
                            let listed = try await self.list(T.self, namespace: request.namespace, labelSelector: request.labelSelector, fieldSelector: request.fieldSelector)
                            try await deliver(.relisted(listed.items, revision: listed.resourceVersion))
                            progress.revision = listed.resourceVersion
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
                                        let revision = object.metadata.resourceVersion
                                        switch kind {
                                        case "ADDED": try await deliver(.added(object))
                                        case "MODIFIED": try await deliver(.modified(object))
                                        case "DELETED": try await deliver(.deleted(object))
                                        case "BOOKMARK": try await deliver(.bookmark(revision: revision.isEmpty ? progress.revision : revision))
                                        default: break
                                        }
                                        // Only once handed over: a watch cut while waiting for
                                        // the consumer resumes with that event, not after it.
                                        if !revision.isEmpty { progress.revision = revision }
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
        return WatchEvents(events: events, window: window)
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

/// A resuming watch's events (`APIClient.watch`), at most `WatchRequest.maxBuffered` of them
/// decoded and waiting for the consumer.
public struct WatchEvents<T: APIObject>: AsyncSequence, Sendable {
    public typealias Element = ObjectEvent<T>
    let events: AsyncThrowingStream<ObjectEvent<T>, any Error>
    let window: EventWindow

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: events.makeAsyncIterator(), window: window) }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<ObjectEvent<T>, any Error>.AsyncIterator
        let window: EventWindow

        public mutating func next() async throws -> ObjectEvent<T>? {
            let event = try await base.next()
            if event != nil { window.taken() }
            return event
        }
    }
}

/// How many events wait for a watch's consumer; the producer waits while `capacity` do.
final class EventWindow: Sendable {
    struct State {
        var waiting = 0
        var producer: CheckedContinuation<Void, Never>?
        /// The producer was cancelled: it must not start waiting (a cancel that came just before
        /// its wait found nobody to wake).
        var cancelled = false
    }
    let capacity: Int
    let state = Mutex(State())

    init(capacity: Int) { self.capacity = capacity }

    var waiting: Int { state.withLock { $0.waiting } }

    /// Counts one more waiting event once there is room (throws if the producer is cancelled).
    func reserve() async throws {
        while true {
            try Task.checkCancellation()
            let reserved = state.withLock { state -> Bool in
                guard state.waiting < capacity else { return false }
                state.waiting += 1
                return true
            }
            if reserved { return }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (producer: CheckedContinuation<Void, Never>) in
                    let goOn = state.withLock { state -> Bool in
                        if state.waiting < capacity || state.cancelled { return true }
                        state.producer = producer
                        return false
                    }
                    if goOn { producer.resume() }
                }
            } onCancel: {
                self.state.withLock { $0.cancelled = true }
                self.wake()
            }
        }
    }

    /// The consumer took an event.
    func taken() {
        state.withLock { $0.waiting -= 1 }
        wake()
    }

    private func wake() {
        state.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state.producer = nil }
            return state.producer
        }?.resume()
    }
}

/// Where a resuming watch is: its revision, and when it last heard from the server (not counting
/// time `paused` waiting for the consumer, when it does not read the connection).
final class WatchProgress: Sendable {
    private let state: Mutex<(revision: String, heard: ContinuousClock.Instant, paused: Bool)>

    init(revision: String) { state = Mutex((revision, .now, false)) }

    var revision: String {
        get { state.withLock { $0.revision } }
        set { state.withLock { $0.revision = newValue } }
    }

    func touch() { state.withLock { $0.heard = .now } }

    var paused: Bool {
        get { state.withLock { $0.paused } }
        set { state.withLock { $0.paused = newValue; $0.heard = .now } }
    }

    var silence: Duration { state.withLock { $0.paused ? .zero : .now - $0.heard } }
}

/// A watch connection that went silent past its idle timeout.
struct WatchStalled: Error, CustomStringConvertible {
    let seconds: Duration
    var description: String { "the watch heard nothing for \(seconds); reconnecting" }
}
