import SwiftProtobuf

/// What the API knows about a kind: its group/version, names, and scope.
public struct KindInfo: Sendable, Hashable, CustomStringConvertible {
    /// API group; "" for the core group.
    public let group: String
    public let version: String
    public let kind: String
    /// Lower-case plural used in URL paths (`pods`).
    public let resource: String
    public let singular: String
    public let shortNames: [String]
    public let namespaced: Bool

    public init(group: String, version: String, kind: String, resource: String, singular: String, shortNames: [String] = [], namespaced: Bool) {
        self.group = group
        self.version = version
        self.kind = kind
        self.resource = resource
        self.singular = singular
        self.shortNames = shortNames
        self.namespaced = namespaced
    }

    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
    /// `pods` or `deployments.apps`: unique across groups, used as the storage key prefix.
    public var groupResource: String { group.isEmpty ? resource : "\(resource).\(group)" }
    public var description: String { groupResource }
}

/// A top-level API object: protobuf message plus Kubernetes JSON, with ObjectMeta.
public protocol APIObject: SwiftProtobuf.Message, JSONCodable, ProtoCodable, Sendable {
    static var kindInfo: KindInfo { get }
    var apiVersion: String { get set }
    var kind: String { get set }
    var metadata: ObjectMeta { get set }
    /// Whether the user-controlled part of the object (what bumps `generation`) differs.
    func specDiffers(from other: Self) -> Bool
    /// Replaces this object's status with `other`'s (spec and status are written separately:
    /// an update keeps the stored status, a status update keeps the stored spec). No-op for
    /// kinds without status.
    mutating func copyStatus(from other: Self)
    /// Sets defaults as Kubernetes would before validation.
    mutating func applyDefaults()
    /// Field errors; empty when valid.
    func validate() -> [FieldError]
    /// Sets what a create derives from the object's new uid (a Job's generated selector and pod
    /// labels), once the store has given it one. Most kinds derive nothing.
    mutating func uidAssigned()
}

extension APIObject {
    public mutating func uidAssigned() {}

    /// Whether two specs differ as a user sees them: by value first (cheap, and the usual
    /// answer), then, only when that says they differ, by their JSON — an always-written field
    /// (`resources: {}`) is the same set or not, as in Kubernetes, where it is a plain struct.
    public static func differs<S: Equatable & JSONCodable>(_ a: S, _ b: S) -> Bool {
        a != b && a.jsonBytes() != b.jsonBytes()
    }

    public var name: String { metadata.name }
    public var namespace: String { metadata.namespace }

    /// Fills `apiVersion` and `kind` when the object was built in code.
    public mutating func setTypeMeta() {
        // A custom object outside its request's scope (the store's writer thread) keeps its own.
        if Self.kindInfo == CustomResources.unscoped { return }
        apiVersion = Self.kindInfo.apiVersion
        kind = Self.kindInfo.kind
    }

    /// The protobuf encoding, by the generated codec.
    public func protobufBytes() -> [UInt8] { protoBytes() }
}

/// A list of objects of one kind.
public protocol APIObjectList: SwiftProtobuf.Message, JSONCodable, ProtoCodable, Sendable {
    associatedtype Item: APIObject
    var apiVersion: String { get set }
    var kind: String { get set }
    var metadata: ListMeta { get set }
    var items: [Item] { get set }
}

/// Every kind the API serves, for lookups by any of the names a user may type.
public enum Kinds {
    public static let all: [any APIObject.Type] = [
        Namespace.self, Pod.self, Node.self, Event.self, Lease.self, ReplicaSet.self, Deployment.self, DaemonSet.self, Job.self,
        Role.self, ClusterRole.self, RoleBinding.self, ClusterRoleBinding.self, Token.self,
        ConfigMap.self, Secret.self, ServiceAccount.self, CustomResourceDefinition.self,
    ]

    /// Finds a kind by kind name, plural, singular or short name, case-insensitively.
    public static func lookup(_ name: String) -> (any APIObject.Type)? {
        let lower = name.lowercased()
        return all.first { type in
            let info = type.kindInfo
            return info.kind.lowercased() == lower || info.resource == lower || info.singular == lower
                || info.shortNames.contains(lower) || info.groupResource == lower
        }
    }

    /// Finds the kind a manifest names with `apiVersion` and `kind`.
    public static func lookup(apiVersion: String, kind: String) -> (any APIObject.Type)? {
        all.first { $0.kindInfo.apiVersion == apiVersion && $0.kindInfo.kind == kind }
    }

    public static func lookup(groupResource: String) -> (any APIObject.Type)? {
        all.first { $0.kindInfo.groupResource == groupResource }
    }
}
