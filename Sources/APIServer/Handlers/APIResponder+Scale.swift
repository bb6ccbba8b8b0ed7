import API
import Hummingbird
import NIOCore
import Store

/// `/scale` (autoscaling/v1 Scale) of Deployments and ReplicaSets: read, replaced or patched,
/// it reads and sets `spec.replicas` of its object (what `kubectl scale` and autoscalers use).
extension APIResponder {
    static func scale<T: APIObject>(of object: T) -> Scale? {
        var scale = Scale()
        scale.apiVersion = "autoscaling/v1"
        scale.kind = "Scale"
        let selector: LabelSelector
        switch object {
        case let deployment as Deployment:
            scale.spec.replicas = deployment.spec.replicas
            scale.status.replicas = deployment.status.replicas
            selector = deployment.spec.selector
        case let set as ReplicaSet:
            scale.spec.replicas = set.spec.replicas
            scale.status.replicas = set.status.replicas
            selector = set.spec.selector
        case let custom as CustomObject:
            // Where the definition's scale subresource says the counts and the selector are.
            guard let paths = CustomResources.current?.scale else { return nil }
            let json = custom.json
            func number(_ path: String) -> Int32 {
                if let steps = JSONPathLite(path), case .int(let value)? = steps.evaluate(json) { return Int32(clamping: value) }
                return 0
            }
            scale.spec.replicas = number(paths.specReplicasPath)
            scale.status.replicas = number(paths.statusReplicasPath)
            if let steps = JSONPathLite(paths.labelSelectorPath), case .string(let text)? = steps.evaluate(json) { scale.status.selector = text }
            selector = LabelSelector()
        default:
            return nil
        }
        scale.metadata.name = object.metadata.name
        scale.metadata.namespace = object.metadata.namespace
        scale.metadata.uid = object.metadata.uid
        scale.metadata.resourceVersion = object.metadata.resourceVersion
        scale.metadata.creationTimestamp = object.metadata.creationTimestamp
        if !(object is CustomObject) { scale.status.selector = Self.selectorString(selector) }
        return scale
    }

    /// A label selector in its string form (`app=web,tier in (a,b)`), as a Scale's status has it.
    static func selectorString(_ selector: LabelSelector) -> String {
        var parts = selector.matchLabels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        for expression in selector.matchExpressions {
            switch expression.operator {
            case "In": parts.append("\(expression.key) in (\(expression.values.joined(separator: ",")))")
            case "NotIn": parts.append("\(expression.key) notin (\(expression.values.joined(separator: ",")))")
            case "Exists": parts.append(expression.key)
            case "DoesNotExist": parts.append("!" + expression.key)
            default: break
            }
        }
        return parts.joined(separator: ",")
    }

    static func setReplicas<T: APIObject>(_ object: inout T, to replicas: Int32) {
        if var deployment = object as? Deployment {
            deployment.spec.replicas = replicas
            object = deployment as! T
        } else if var set = object as? ReplicaSet {
            set.spec.replicas = replicas
            object = set as! T
        } else if var custom = object as? CustomObject, let path = CustomResources.current?.scale.flatMap({ JSONPathLite($0.specReplicasPath) }) {
            custom.set(path, to: .int(Int64(replicas)))
            object = custom as! T
        }
    }

    func scaleSubresource<T: APIObject>(_ type: T.Type, _ path: ResourcePath, name: String, _ request: inout Request,
                                        format: WireFormat, dryRun: Bool) async throws -> Response {
        let namespace = path.namespace ?? ""
        func answer(_ object: T) throws -> Response {
            guard let scale = Self.scale(of: object) else { throw APIError.notFound("the server could not find the requested resource") }
            let bytes = format == .json ? scale.jsonBytes() : scale.protoBytes()
            return Response(status: .ok, headers: [.contentType: format.rawValue], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        let wanted: @Sendable (T) throws -> Scale
        switch request.method {
        case .get:
            return try answer(try await store.get(T.self, namespace: namespace, name: name))
        case .put:
            let bytes = try await body(&request)
            let sent = Self.requestFormat(request) == .json
                ? try Self.decodeJSON(Scale.self, try JSONParser.parse(bytes: bytes), validation: try Self.fieldValidation(Self.query(request)),
                                     caller: Self.caller, kind: "Scale", version: "v1")
                : try Scale(protobuf: bytes)
            wanted = { _ in sent }
        case .patch:
            let kind = try Self.patchType(request)
            guard kind != .apply else { throw APIError(415, "UnsupportedMediaType", "server-side apply is not served for /scale yet") }
            let patch = try JSONParser.parse(bytes: try await body(&request))
            let validation = try Self.fieldValidation(Self.query(request))
            let caller = Self.caller
            wanted = { current in
                guard let scale = Self.scale(of: current) else { throw APIError.notFound("the server could not find the requested resource") }
                let patched = try Self.patched(scale.jsonValue(), with: patch, kind, schema: Schema.message("Scale"), target: "the scale of \"\(name)\"")
                return try Self.decodeJSON(Scale.self, patched, validation: validation, caller: caller, kind: "Scale", version: "v1")
            }
        default:
            throw APIError.methodNotAllowed(request.method.rawValue)
        }
        let change: @Sendable (T) throws -> T = { current in
            let scale = try wanted(current)
            if !scale.metadata.resourceVersion.isEmpty && scale.metadata.resourceVersion != current.metadata.resourceVersion {
                throw StoreError.modified(T.kindInfo, name)
            }
            if scale.spec.replicas < 0 {
                throw APIError(422, "Invalid", "Scale.autoscaling \"\(name)\" is invalid: spec.replicas: Invalid value: \(scale.spec.replicas): must be greater than or equal to 0")
            }
            var object = current
            Self.setReplicas(&object, to: scale.spec.replicas)
            return try object.validated()
        }
        if dryRun {
            let current = try await store.get(T.self, namespace: namespace, name: name)
            return try answer(try Self.dryRunUpdate(try change(current), of: current))
        }
        return try answer(try await store.update(T.self, namespace: namespace, name: name) { object in object = try change(object) })
    }
}
