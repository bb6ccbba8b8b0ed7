/// Why a store call failed. A struct with a code (not an enum) so new codes do not break callers.
public struct StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public var description: String { name }
        public static let notFound = Code(name: "NotFound")
        public static let alreadyExists = Code(name: "AlreadyExists")
        /// A `resourceVersion` precondition did not hold.
        public static let conflict = Code(name: "Conflict")
        /// The requested revision is older than the compaction point; re-list.
        public static let compacted = Code(name: "Compacted")
        /// A watcher fell too far behind; resume from `revision`.
        public static let watcherTooSlow = Code(name: "WatcherTooSlow")
        public static let tooLarge = Code(name: "TooLarge")
        public static let invalid = Code(name: "Invalid")
        /// The disk or database failed; the write was not applied.
        public static let storage = Code(name: "Storage")
        public static let closed = Code(name: "Closed")
        /// The backend cannot be reached or cannot commit (etcd without quorum): nothing was
        /// applied that the caller was told of; retry, here or on another server.
        public static let unavailable = Code(name: "Unavailable")
        /// The backend did not answer within the call's deadline: a write may or may not have
        /// been applied (read it back before retrying one that is not idempotent).
        public static let timeout = Code(name: "Timeout")
    }

    public let code: Code
    public let message: String
    /// For `compacted`: the compaction revision. For `watcherTooSlow`: the last revision the
    /// watcher received, to resume from. For `conflict`: the current revision.
    public let revision: Int64?

    public init(_ code: Code, _ message: String, revision: Int64? = nil) {
        self.code = code
        self.message = message
        self.revision = revision
    }

    public var description: String { message }
}
