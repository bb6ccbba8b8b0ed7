import API
import Synchronization

/// One committed change. Immutable, shared by every watcher; each wire encoding of it is made
/// at most once (`encoded(_:using:)`) and the same bytes are handed to every watcher.
public final class StoreEvent: Sendable {
    public enum EventType: Int64, Sendable {
        case added = 0
        case modified = 1
        case deleted = 2

        public var name: String {
            switch self {
            case .added: "ADDED"
            case .modified: "MODIFIED"
            case .deleted: "DELETED"
            }
        }
    }

    public let revision: Int64
    public let type: EventType
    public let key: ObjectKey
    /// The object after the change; for deletions its last state (resourceVersion = this revision).
    public let object: any APIObject
    /// The object's protobuf encoding as stored: without resourceVersion (see `protobufBytes`).
    public let bytes: [UInt8]
    /// For a pod, its `spec.nodeName` ("" while unbound); nil for other kinds. Taken once here
    /// for the hub's node index and node watches' filtering.
    public let nodeName: String?
    /// For a modification, the object before it and its stored encoding: a watch with a selector
    /// needs it to tell an object entering or leaving its selection from one changing inside it.
    public let previous: (object: any APIObject, bytes: [UInt8])?
    /// The previous object's `spec.nodeName`, for a pod (indexed too: a node watch sees its pods leave).
    public let previousNodeName: String?
    private let encodings = Mutex<[String: [UInt8]]>([:])
    /// The event as watches that see the object enter or leave their selection get it; made once.
    private let seenAs = Mutex<(entering: StoreEvent?, leaving: StoreEvent?)>((nil, nil))

    /// How many wire encodings have been made, process-wide (for `/metrics` and tests).
    public static let encodeCount = Atomic<Int>(0)

    init(revision: Int64, type: EventType, key: ObjectKey, object: any APIObject, bytes: [UInt8],
         previous: (object: any APIObject, bytes: [UInt8])? = nil) {
        self.revision = revision
        self.type = type
        self.key = key
        self.object = object
        self.bytes = bytes
        self.previous = previous
        let isPod = key.resource == "pods"
        self.nodeName = isPod ? (object as? Pod)?.spec.nodeName : nil
        self.previousNodeName = isPod ? previous.flatMap { ($0.object as? Pod)?.spec.nodeName } : nil
    }

    /// This modification as a watch sees it whose selection the object has just entered: ADDED,
    /// as Kubernetes sends it.
    var entering: StoreEvent {
        seen(\.entering) { StoreEvent(revision: revision, type: .added, key: key, object: object, bytes: bytes) }
    }

    /// This modification as a watch sees it whose selection the object has just left: DELETED,
    /// with the object as it was (the last state that watch matched) at this event's revision, as
    /// Kubernetes sends it. Only for events with a `previous`.
    var leaving: StoreEvent {
        seen(\.leaving) {
            var object = previous!.object
            object.metadata.resourceVersion = String(revision)
            return StoreEvent(revision: revision, type: .deleted, key: key, object: object, bytes: previous!.bytes)
        }
    }

    /// The event seen another way, made once and shared by every watch that sees it so.
    private func seen(_ slot: WritableKeyPath<(entering: StoreEvent?, leaving: StoreEvent?), StoreEvent?>,
                      _ make: () -> StoreEvent) -> StoreEvent {
        if let made = seenAs.withLock({ $0[keyPath: slot] }) { return made }
        let made = make()
        return seenAs.withLock { seen in
            if let raced = seen[keyPath: slot] { return raced }
            seen[keyPath: slot] = made
            return made
        }
    }

    /// The object's protobuf encoding with its resourceVersion, made without re-encoding.
    public var protobufBytes: [UInt8] { ResourceVersionSuffix.appending(revision, to: bytes) }

    /// The event encoded for the wire as `format`, made by `encode` the first time it is asked for.
    public func encoded(_ format: String, using encode: (StoreEvent) -> [UInt8]) -> [UInt8] {
        if let cached = encodings.withLock({ $0[format] }) { return cached }
        let made = encode(self)
        return encodings.withLock { cache in
            if let raced = cache[format] { return raced }
            cache[format] = made
            StoreEvent.encodeCount.add(1, ordering: .relaxed)
            return made
        }
    }
}
