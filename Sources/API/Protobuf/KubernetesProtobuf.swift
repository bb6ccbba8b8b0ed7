import Foundation

/// Kubernetes' own protobuf (`application/vnd.kubernetes.protobuf`): the `k8s\0` envelope around a
/// `runtime.Unknown`, whose `raw` is the object in Kubernetes' generated.proto field numbers.
/// kubectl ≥ 1.32 sends its `create configmap|secret|deployment|job|…` objects so. This reads the
/// fields those commands send, for the kinds they make, into the object's JSON (the same
/// decoding, defaulting and validation as a JSON body follows); a field it does not know fails
/// the request with its number and message unless it holds its zero value (Go writes those too).
public enum KubernetesProtobuf {
    public static let mediaType = "application/vnd.kubernetes.protobuf"
    static let magic: [UInt8] = [0x6B, 0x38, 0x73, 0x00]

    public struct Unsupported: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    indirect enum Field {
        case string, bool, int32, int64, bytes
        case message(String)
        case repeatedString
        case repeatedMessage(String)
        case stringMap, bytesMap, quantityMap
        case time, intOrString
        /// Known and not kept (selfLink, managedFields: the server sets those itself).
        case ignored
    }

    /// Field numbers of the messages read, from Kubernetes' generated.proto files.
    static let messages: [String: [Int: (String, Field)]] = [
        "ObjectMeta": [1: ("name", .string), 2: ("generateName", .string), 3: ("namespace", .string), 4: ("selfLink", .ignored),
                       5: ("uid", .string), 6: ("resourceVersion", .string), 7: ("generation", .int64), 8: ("creationTimestamp", .time),
                       9: ("deletionTimestamp", .ignored), 10: ("deletionGracePeriodSeconds", .ignored),
                       11: ("labels", .stringMap), 12: ("annotations", .stringMap), 13: ("ownerReferences", .repeatedMessage("OwnerReference")),
                       14: ("finalizers", .repeatedString), 17: ("managedFields", .ignored)],
        "SelfSubjectAccessReview": [1: ("metadata", .message("ObjectMeta")), 2: ("spec", .message("SelfSubjectAccessReviewSpec")), 3: ("status", .ignored)],
        "SelfSubjectAccessReviewSpec": [1: ("resourceAttributes", .message("ResourceAttributes")), 2: ("nonResourceAttributes", .message("NonResourceAttributes"))],
        "ResourceAttributes": [1: ("namespace", .string), 2: ("verb", .string), 3: ("group", .string), 4: ("version", .string),
                               5: ("resource", .string), 6: ("subresource", .string), 7: ("name", .string),
                               8: ("fieldSelector", .ignored), 9: ("labelSelector", .ignored)],
        "NonResourceAttributes": [1: ("path", .string), 2: ("verb", .string)],
        "OwnerReference": [1: ("kind", .string), 3: ("name", .string), 4: ("uid", .string), 5: ("apiVersion", .string),
                           6: ("controller", .bool), 7: ("blockOwnerDeletion", .bool)],
        "ConfigMap": [1: ("metadata", .message("ObjectMeta")), 2: ("data", .stringMap), 3: ("binaryData", .bytesMap), 4: ("immutable", .bool)],
        "Secret": [1: ("metadata", .message("ObjectMeta")), 2: ("data", .bytesMap), 3: ("type", .string), 4: ("stringData", .stringMap),
                   5: ("immutable", .bool)],
        "ServiceAccount": [1: ("metadata", .message("ObjectMeta")), 2: ("secrets", .repeatedMessage("ObjectReference")),
                           3: ("imagePullSecrets", .repeatedMessage("LocalObjectReference")), 4: ("automountServiceAccountToken", .bool)],
        "ObjectReference": [1: ("kind", .string), 2: ("namespace", .string), 3: ("name", .string), 4: ("uid", .string),
                            5: ("apiVersion", .string), 6: ("resourceVersion", .string), 7: ("fieldPath", .string)],
        "LocalObjectReference": [1: ("name", .string)],
        "Namespace": [1: ("metadata", .message("ObjectMeta")), 2: ("spec", .message("NamespaceSpec")), 3: ("status", .message("NamespaceStatus"))],
        "NamespaceSpec": [1: ("finalizers", .repeatedString)],
        "NamespaceStatus": [1: ("phase", .string)],
        "Role": [1: ("metadata", .message("ObjectMeta")), 2: ("rules", .repeatedMessage("PolicyRule"))],
        "ClusterRole": [1: ("metadata", .message("ObjectMeta")), 2: ("rules", .repeatedMessage("PolicyRule"))],
        "PolicyRule": [1: ("verbs", .repeatedString), 2: ("apiGroups", .repeatedString), 3: ("resources", .repeatedString),
                       4: ("resourceNames", .repeatedString), 5: ("nonResourceURLs", .repeatedString)],
        "RoleBinding": [1: ("metadata", .message("ObjectMeta")), 2: ("subjects", .repeatedMessage("Subject")), 3: ("roleRef", .message("RoleRef"))],
        "ClusterRoleBinding": [1: ("metadata", .message("ObjectMeta")), 2: ("subjects", .repeatedMessage("Subject")), 3: ("roleRef", .message("RoleRef"))],
        "Subject": [1: ("kind", .string), 2: ("apiGroup", .string), 3: ("name", .string), 4: ("namespace", .string)],
        "RoleRef": [1: ("apiGroup", .string), 2: ("kind", .string), 3: ("name", .string)],
        "Deployment": [1: ("metadata", .message("ObjectMeta")), 2: ("spec", .message("DeploymentSpec")), 3: ("status", .message("Empty"))],
        "DeploymentSpec": [1: ("replicas", .int32), 2: ("selector", .message("LabelSelector")), 3: ("template", .message("PodTemplateSpec")),
                           4: ("strategy", .message("DeploymentStrategy")), 5: ("minReadySeconds", .int32), 6: ("revisionHistoryLimit", .int32),
                           7: ("paused", .bool), 9: ("progressDeadlineSeconds", .int32)],
        "DeploymentStrategy": [1: ("type", .string)],
        "Job": [1: ("metadata", .message("ObjectMeta")), 2: ("spec", .message("JobSpec")), 3: ("status", .message("Empty"))],
        "JobSpec": [1: ("parallelism", .int32), 2: ("completions", .int32), 3: ("activeDeadlineSeconds", .int64), 4: ("selector", .message("LabelSelector")),
                    5: ("manualSelector", .bool), 6: ("template", .message("PodTemplateSpec")), 7: ("backoffLimit", .int32),
                    8: ("ttlSecondsAfterFinished", .int32), 9: ("completionMode", .string), 10: ("suspend", .bool)],
        "LabelSelector": [1: ("matchLabels", .stringMap), 2: ("matchExpressions", .repeatedMessage("LabelSelectorRequirement"))],
        "LabelSelectorRequirement": [1: ("key", .string), 2: ("operator", .string), 3: ("values", .repeatedString)],
        "PodTemplateSpec": [1: ("metadata", .message("ObjectMeta")), 2: ("spec", .message("PodSpec"))],
        "PodSpec": [2: ("containers", .repeatedMessage("Container")), 3: ("restartPolicy", .string), 4: ("terminationGracePeriodSeconds", .int64),
                    5: ("activeDeadlineSeconds", .int64), 7: ("nodeSelector", .stringMap), 8: ("serviceAccountName", .string),
                    10: ("nodeName", .string), 11: ("hostNetwork", .bool), 19: ("schedulerName", .string),
                    20: ("initContainers", .repeatedMessage("Container"))],
        "Container": [1: ("name", .string), 2: ("image", .string), 3: ("command", .repeatedString), 4: ("args", .repeatedString),
                      5: ("workingDir", .string), 6: ("ports", .repeatedMessage("ContainerPort")), 7: ("env", .repeatedMessage("EnvVar")),
                      8: ("resources", .message("ResourceRequirements")), 14: ("imagePullPolicy", .string),
                      24: ("restartPolicy", .string)],
        "ContainerPort": [1: ("name", .string), 2: ("hostPort", .int32), 3: ("containerPort", .int32), 4: ("protocol", .string), 5: ("hostIP", .string)],
        "EnvVar": [1: ("name", .string), 2: ("value", .string)],
        "ResourceRequirements": [1: ("limits", .quantityMap), 2: ("requests", .quantityMap)],
        // Written by some clients as an empty message (a status nobody sets).
        "Empty": [:],
    ]

    /// Whether a body is in Kubernetes' protobuf envelope.
    public static func isEnvelope(_ bytes: [UInt8]) -> Bool { bytes.starts(with: magic) }

    /// The object in `bytes` as JSON, for a kind named `kind`.
    public static func json(_ bytes: [UInt8], kind: String) throws -> JSONValue {
        guard isEnvelope(bytes) else { throw Unsupported(description: "the body is not in Kubernetes' protobuf envelope (it starts with \"k8s\\0\")") }
        guard messages[kind] != nil else {
            throw Unsupported(description: "\(kind) is not read in Kubernetes' protobuf here: send it as application/json")
        }
        return try Array(bytes.dropFirst(magic.count)).withUnsafeBytes { buffer in
            var reader = ProtoReader(buffer)
            var apiVersion = "", sentKind = "", raw: UnsafeRawBufferPointer?
            while let field = try reader.nextField() {
                switch field {
                case 1:
                    var meta = try reader.nested()
                    while let f = try meta.nextField() {
                        switch f {
                        case 1: apiVersion = try meta.string()
                        case 2: sentKind = try meta.string()
                        default: try meta.skip()
                        }
                    }
                case 2: raw = try reader.lengthDelimited()
                case 3, 4:
                    let value = try reader.string()
                    if !value.isEmpty && field == 3 { throw Unsupported(description: "content encoding \"\(value)\" is not supported") }
                default: try reader.skip()
                }
            }
            guard let raw else { throw Unsupported(description: "the envelope holds no object") }
            if !sentKind.isEmpty && sentKind != kind {
                throw Unsupported(description: "the body is a \(sentKind), but the request is for a \(kind)")
            }
            var object = ProtoReader(raw)
            var members = try read(&object, kind, path: kind)
            if !apiVersion.isEmpty { members.insert(JSONMember("apiVersion", .string(apiVersion)), at: 0) }
            if !sentKind.isEmpty { members.insert(JSONMember("kind", .string(sentKind)), at: min(1, members.count)) }
            return .object(members)
        }
    }

    static func read(_ reader: inout ProtoReader, _ message: String, path: String) throws -> [JSONMember] {
        guard let fields = messages[message] else { throw Unsupported(description: "\(path): \(message) is not read here") }
        var members: [JSONMember] = []
        func set(_ name: String, _ value: JSONValue) {
            if let index = members.firstIndex(where: { $0.key == name }) { members[index].value = value } else { members.append(JSONMember(name, value)) }
        }
        func append(_ name: String, _ value: JSONValue) {
            if let index = members.firstIndex(where: { $0.key == name }), case .array(var items) = members[index].value {
                items.append(value)
                members[index].value = .array(items)
            } else {
                members.append(JSONMember(name, .array([value])))
            }
        }
        func mapEntry(_ name: String, _ key: String, _ value: JSONValue) {
            if let index = members.firstIndex(where: { $0.key == name }), case .object(var entries) = members[index].value {
                entries.append(JSONMember(key, value))
                members[index].value = .object(entries)
            } else {
                members.append(JSONMember(name, .object([JSONMember(key, value)])))
            }
        }
        while let number = try reader.nextField() {
            guard let (name, field) = fields[number] else {
                // Go writes every non-pointer field, set or not: a field not read here is fine
                // while it holds its zero value (false, 0, "", {}); anything else is refused.
                let zero: Bool
                switch reader.wireType {
                case 0: zero = try reader.varint() == 0
                case 2: zero = try reader.lengthDelimited().isEmpty
                default: zero = false
                }
                if zero { continue }
                throw Unsupported(description: "\(path): field \(number) of \(message) is not read in Kubernetes' protobuf here: send it as application/json")
            }
            switch field {
            case .ignored: try reader.skip()
            case .string:
                // Go writes every string, empty or not: an empty one is an unset one.
                let value = try reader.string()
                if !value.isEmpty { set(name, .string(value)) }
            case .bool: set(name, .bool(try reader.bool()))
            case .int32: set(name, .int(Int64(try reader.int32())))
            case .int64: set(name, .int(try reader.int64()))
            case .bytes: set(name, .string(Data(try reader.bytes()).base64EncodedString()))
            case .message(let type):
                var nested = try reader.nested()
                set(name, .object(try read(&nested, type, path: path + "." + name)))
            case .repeatedString: append(name, .string(try reader.string()))
            case .repeatedMessage(let type):
                var nested = try reader.nested()
                append(name, .object(try read(&nested, type, path: path + "." + name)))
            case .stringMap, .bytesMap, .quantityMap:
                var entry = try reader.nested()
                var key = "", value: JSONValue = .string("")
                while let f = try entry.nextField() {
                    switch (f, field) {
                    case (1, _): key = try entry.string()
                    case (2, .bytesMap): value = .string(Data(try entry.bytes()).base64EncodedString())
                    case (2, .quantityMap):
                        // resource.Quantity: {string = 1}.
                        var quantity = try entry.nested()
                        while let q = try quantity.nextField() { if q == 1 { value = .string(try quantity.string()) } else { try quantity.skip() } }
                    case (2, _): value = .string(try entry.string())
                    default: try entry.skip()
                    }
                }
                mapEntry(name, key, value)
            case .time:
                // metav1.Time: {seconds = 1, nanos = 2}.
                var time = try reader.nested()
                var seconds: Int64 = 0
                while let f = try time.nextField() { if f == 1 { seconds = try time.int64() } else { try time.skip() } }
                if seconds == 0 { continue }  // the zero time: unset
                let formatter = ISO8601DateFormatter()
                set(name, .string(formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))))
            case .intOrString:
                throw Unsupported(description: "\(path).\(name): int-or-string is not read in Kubernetes' protobuf here")
            }
        }
        return members
    }
}
