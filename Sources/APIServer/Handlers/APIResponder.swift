import API
import Foundation
import AsyncHTTPClient
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOSSL
import Store
import Synchronization

/// Serves the Kubernetes-shaped REST API over one store: authenticates the TLS peer, enforces the
/// body and in-flight caps, routes by path, and answers errors as `Status` objects.
/// Query parameters; the first value wins when a key repeats.
typealias QueryParameters = [String: String]

struct APIResponder: HTTPResponder {
    typealias Context = APIRequestContext

    let store: any ObjectStore
    let limits: APIServer.Limits
    let inflight: InflightCounter
    let metrics: RequestMetrics
    let drain: WatchDrain
    /// Client for node agents (logs), authenticated with the server's own client certificate.
    let agents: HTTPClient?
    let logger: Logger
    /// RBAC: who may do what.
    let authorizer: Authorizer
    /// Where changes and denials are put on record (nil: nowhere).
    let audit: AuditLog?
    /// Signs nodes' certificate requests (nil: none are).
    var signer: CertificateSigner? = nil
    /// Which namespaces exist (creating in one that does not is 404, in one being deleted 403).
    var namespaces = Namespaces()
    /// TLS for exec, attach and port-forward connections to agents (nil: not proxied, 503).
    var agentStreams: NIOSSLContext? = nil
    /// The custom resources served (CustomResourceDefinitions, from the store).
    var customResources = CustomResourceRegistry()
    /// Request bodies held across the server (HTTP/2 streams count their bodies against it).
    var bodyBudget = BodyBudget(limit: 256 * 1024 * 1024)

    /// Who a request turned out to be, for the audit log (set by `answer`).
    final class Caller: @unchecked Sendable {
        var identity: ClientIdentity?
        var impersonatedBy: String?
        /// What the request asked to do, as authorized.
        var attributes: RequestAttributes?
        /// The request's id (`Audit-Id`).
        let requestID = RequestID.next()
        /// Warnings for the client (each becomes a `Warning: 299 - "…"` header).
        let warnings = Mutex<[String]>([])
    }

    /// The caller of the request this task serves.
    @TaskLocal static var caller: Caller?

    func respond(to request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        let query = request.uri.queryParameters
        let isWatch = query["watch"].map { $0 == "true" || $0 == "1" } ?? false
        let isStream = isWatch || query["follow"].map { $0 == "true" || $0 == "1" } ?? false
        let caller = Caller()
        var response = try await Self.$caller.withValue(caller) {
            try await answer(request, context: context, isStream: isStream, caller: caller)
        }
        for warning in caller.warnings.withLock({ $0 }) {
            response.headers.append(HTTPField(name: Self.warningField, value: Self.warningHeader(warning)))
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let (verb, resource) = RequestMetrics.classify(method: request.method.rawValue, path: request.uri.path, isWatch: isWatch)
        metrics.record(verb: verb, resource: resource, code: response.status.code, seconds: seconds)
        if let audit {
            let id = caller.requestID
            response.headers[Self.auditID] = id
            let identity = caller.identity ?? ClientIdentity(user: "system:anonymous", groups: ["system:unauthenticated"])
            var attributes = caller.attributes
            if attributes == nil && (response.status.code == 401 || response.status.code == 403) {
                // Refused before it was authorized (no certificate, impersonation denied): say what it asked.
                let segments = Self.segments(request.uri.path)
                attributes = Self.attributes(request, path: try? ResourcePath.parse(segments), identity: identity)
            }
            audit.record(AuditLog.Entry(requestID: id, user: identity.user, groups: identity.groups, impersonatedBy: caller.impersonatedBy,
                                        sourceIP: context.channel.remoteAddress?.ipAddress ?? "", attributes: attributes,
                                        method: request.method.rawValue, path: request.uri.path, code: response.status.code, latencySeconds: seconds))
        }
        return response
    }

    /// `/readyz`: 200 "ok" when the store serves; else 500 with the failed check, as
    /// kube-apiserver words it (the reason only to a caller with a cluster certificate: it names
    /// the store's members).
    func readiness(context: Context) async -> Response {
        guard let reason = await store.unreadyReason() else {
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok")))
        }
        let known = ((try? await ClientIdentity.of(channel: context.channel)) ?? nil) != nil
        let body = "[+]ping ok\n[-]etcd failed: \(known ? reason : "reason withheld")\nreadyz check failed\n"
        return Response(status: .internalServerError, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    func answer(_ request: Request, context: Context, isStream: Bool, caller audited: Caller) async throws -> Response {
        let path = request.uri.path
        if path == "/livez" {
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok")))
        }
        if path == "/readyz" {
            return await readiness(context: context)
        }
        let format = Self.responseFormat(request)
        guard inflight.enter(limit: limits.maxInflightRequests) else {
            var error = APIError(429, "TooManyRequests", "too many requests in flight (limit \(limits.maxInflightRequests)); retry after 1 second")
            error.retryAfterSeconds = 1
            var response = errorResponse(error, format)
            response.headers[.retryAfter] = "1"
            return response
        }
        defer { inflight.leave() }
        do {
            // A client certificate from the cluster CA, else a bearer token, else nobody (401).
            var certified = try await ClientIdentity.of(channel: context.channel)
            if certified == nil { certified = try await authenticateBearer(request) }
            guard let caller = certified else {
                return unauthorized(format, context: context)
            }
            audited.identity = caller
            let identity = try effectiveIdentity(request, caller)
            if identity != caller {
                audited.identity = identity
                audited.impersonatedBy = caller.user
            }
            if let audit, Self.changes(request.method),
               !audit.admitChange(requestID: audited.requestID, user: identity.user, method: request.method.rawValue, path: path) {
                var error = APIError(503, "ServiceUnavailable", "the audit log cannot be written, so no change is carried out until it can; see the server's log")
                error.retryAfterSeconds = 5
                var response = errorResponse(error, format)
                response.headers[.retryAfter] = "5"
                return response
            }
            // Kubernetes' own protobuf is read for the objects kubectl ≥ 1.32 sends in it (creates
            // and updates of the kinds its `create` commands make); anything else gets 415.
            if request.headers[.contentType]?.hasPrefix(KubernetesProtobuf.mediaType) == true && !Self.readsKubernetesProtobuf(request) {
                return errorResponse(APIError(415, "UnsupportedMediaType",
                                              "the body of the request was in an unknown format - accepted media types include: application/json, \(WireFormat.protobuf.rawValue)"), format)
            }
            if isStream && !context.cancelledWithStream {
                var request = request
                // A stream ends when its connection (or HTTP/2 stream) closes, not at its next write.
                return try await Self.$requestChannel.withValue(context.channel) {
                    try await route(&request, identity: identity, format: format, audited: audited)
                }
            }
            // Everything but a watch answers within the request deadline or gets 504.
            return try await Deadline.run(within: limits.requestTimeout) { [self] in
                var request = request
                return try await route(&request, identity: identity, format: format, audited: audited)
            }
        } catch is Deadline.Exceeded {
            return errorResponse(APIError(504, "Timeout", "the request did not complete within the server's deadline of \(limits.requestTimeout); it may still take effect"), format)
        } catch {
            let mapped = APIError.from(error)
            if mapped.code == 500 { logger.error("request failed", metadata: ["path": "\(path)", "error": "\(error)"]) }
            return errorResponse(mapped, format)
        }
    }

    /// The path's segments, percent-decoded (clients escape what a name may hold: the Python
    /// client sends `system:discovery` as `system%3Adiscovery`).
    static func segments(_ path: String) -> [String] {
        path.split(separator: "/").map { segment in
            let text = String(segment)
            return text.contains("%") ? (text.removingPercentEncoding ?? text) : text
        }
    }

    /// Whether a request of this method changes state.
    static func changes(_ method: HTTPRequest.Method) -> Bool {
        method == .post || method == .put || method == .patch || method == .delete
    }

    /// The connection (HTTP/1.1) or stream (HTTP/2) a streaming request arrived on.
    @TaskLocal static var requestChannel: (any Channel)?

    static func responseFormat(_ request: Request) -> WireFormat {
        request.headers[.accept].map { Self.has($0, WireFormat.protobuf.rawValue) } == true ? .protobuf : .json
    }

    static func requestFormat(_ request: Request) -> WireFormat {
        request.headers[.contentType]?.hasPrefix(WireFormat.protobuf.rawValue) == true ? .protobuf : .json
    }

    /// 401. Over HTTP/1.1 the connection then closes: the rest of a stranger's body is not read
    /// (Hummingbird would read and drop it, for as long as the stranger kept sending). Over
    /// HTTP/2 the stream handler never reads such a body in the first place.
    func unauthorized(_ format: WireFormat, context: Context) -> Response {
        var response = errorResponse(.unauthorized, format)
        guard !context.cancelledWithStream else { return response }
        let error = APIError.unauthorized
        let bytes = ByteBuffer(bytes: format == .protobuf ? error.status.protoBytes() : error.status.jsonBytes())
        let channel = context.channel
        response.headers[.connection] = "close"
        response.body = ResponseBody(contentLength: bytes.readableBytes) { writer in
            try await writer.write(bytes)
            try await writer.finish(nil)
            // Once the answer is out (written and flushed by now), the connection goes.
            channel.close(promise: nil)
        }
        return response
    }

    func errorResponse(_ error: APIError, _ format: WireFormat) -> Response {
        let status = error.status
        let body = format == .protobuf ? status.protoBytes() : status.jsonBytes()
        return Response(status: HTTPResponse.Status(code: error.code), headers: [.contentType: format.rawValue],
                        body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// An OpenAPI document, with its ETag (304 when the client has it); a URL with the
    /// document's hash may be cached for good.
    static func document(_ document: OpenAPI.Document, contentType: String, _ request: Request, immutable: Bool = false) -> Response {
        let etag = "\"\(document.hash)\""
        var headers: HTTPFields = [.eTag: etag, .contentType: contentType]
        headers[.cacheControl] = immutable ? "public, immutable" : "no-cache, private"
        if request.headers[.ifNoneMatch]?.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == etag }) == true {
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: document.bytes)))
    }

    static func json(_ value: JSONValue) -> Response {
        var writer = JSONWriter()
        writer.value(value)
        return Response(status: .ok, headers: [.contentType: WireFormat.json.rawValue], body: .init(byteBuffer: ByteBuffer(bytes: writer.bytes)))
    }

    func route(_ request: inout Request, identity: ClientIdentity, format: WireFormat, audited: Caller) async throws -> Response {
        let segments = Self.segments(request.uri.path)
        if segments == ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] {
            return try await accessReview(&request, identity: identity, format: format)
        }
        if segments == ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"] {
            return try selfReview(request, identity: identity)
        }
        if segments == CertificateSigner.path {
            var attributes = RequestAttributes(user: identity.user, groups: identity.groups, verb: request.method == .post ? "create" : request.method.rawValue.lowercased())
            attributes.apiGroup = CertificateSigner.group
            attributes.resource = CertificateSigner.resource
            audited.attributes = attributes
            try authorize(attributes)
            if try Self.dryRun(Self.query(request)) {
                throw APIError.badRequest("dryRun=All is not supported for certificate signing requests; no certificate was signed")
            }
            return try await signingRequest(&request, identity: identity, format: format, audited: audited)
        }
        let resourcePath = try ResourcePath.parse(segments, registry: customResources)
        // Everything done for a custom resource's request sees its kind and schema (bound here
        // whatever the task had: a server started inside another binding inherits it).
        return try await CustomResources.$current.withValue(resourcePath?.custom) {
            try await route(&request, segments: segments, resourcePath: resourcePath, identity: identity, format: format, audited: audited)
        }
    }

    func route(_ request: inout Request, segments: [String], resourcePath: ResourcePath?, identity: ClientIdentity, format: WireFormat,
               audited: Caller) async throws -> Response {
        let attributes = Self.attributes(request, path: resourcePath, identity: identity)
        audited.attributes = attributes
        try authorize(attributes)
        let node = NodeRestriction.nodeName(identity)
        if let node { try await restrictNode(node, attributes, query: Self.query(request)) }
        switch segments {
        case ["metrics"]: return metricsResponse()
        case ["version"]: return Self.json(Discovery.version())
        case ["api"], ["apis"]:
            if let version = Discovery.aggregatedVersion(request.headers[.accept]) {
                var response = Self.json(Discovery.aggregated(core: segments == ["api"], version: version, custom: customResources.all))
                response.headers[.contentType] = Discovery.aggregatedContentType(version)
                response.headers[.vary] = "Accept"
                return response
            }
            return Self.json(segments == ["api"] ? Discovery.coreVersions() : Discovery.groupList(custom: customResources.all))
        case ["openapi", "v2"]:
            let protobuf = request.headers[.accept].map { Self.has($0, "proto-openapi.spec.v2") } == true
            let custom = customResources.openAPI()
            return Self.document(protobuf ? custom?.v2Protobuf ?? OpenAPI.v2Protobuf : custom?.v2JSON ?? OpenAPI.v2JSON,
                                 contentType: protobuf ? OpenAPI.protobufV2MediaType : WireFormat.json.rawValue, request)
        case ["openapi", "v3"]:
            return Self.document(customResources.openAPI()?.v3Index ?? OpenAPI.v3Index, contentType: WireFormat.json.rawValue, request)
        default: break
        }
        if segments.count > 2 && segments[0] == "openapi" && segments[1] == "v3" {
            let documents = customResources.openAPI()?.v3Documents ?? OpenAPI.v3Documents
            guard let document = documents[segments.dropFirst(2).joined(separator: "/")] else {
                throw APIError.notFound("the server could not find the requested resource")
            }
            return Self.document(document, contentType: WireFormat.json.rawValue, request, immutable: Self.query(request)["hash"] == document.hash)
        }
        if segments.count == 2 && segments[0] == "api" || segments.count == 3 && segments[0] == "apis" {
            let group = segments[0] == "api" ? "" : segments[1]
            guard let list = Discovery.resourceList(group: group, version: segments.last!, custom: customResources.all) else {
                throw APIError.notFound("the server could not find the requested resource")
            }
            return Self.json(list)
        }
        guard let path = resourcePath else {
            throw APIError.notFound("the server could not find the requested resource")
        }
        return try await handle(path.kind, path, &request, format: format, admit: node.map { node in
            { object in try NodeRestriction.admitCreate(object, node: node, attributes: attributes) }
        })
    }

    static func query(_ request: Request) -> QueryParameters {
        Dictionary(request.uri.queryParameters.map { (String($0.key), String($0.value)) }, uniquingKeysWith: { first, _ in first })
    }

    func body(_ request: inout Request) async throws -> [UInt8] {
        do {
            let buffer = try await request.collectBody(upTo: limits.maxBodyBytes)
            return Array(buffer.readableBytesView)
        } catch {
            throw APIError(413, "RequestEntityTooLarge", "the request body is larger than the limit of \(limits.maxBodyBytes) bytes")
        }
    }

    /// `admit` sees every object about to be created (node restriction) and may refuse it.
    func handle<T: APIObject>(_ type: T.Type, _ path: ResourcePath, _ request: inout Request, format: WireFormat,
                              admit: ((any APIObject) throws -> Void)? = nil) async throws -> Response {
        var query = Self.query(request)
        if request.method == .delete { try await Self.readDeleteOptions(try await body(&request), into: &query) }
        let info = T.kindInfo
        let dryRun = try Self.dryRun(query)
        let dryRunnable = switch (request.method, path.name, path.subresource) {
        case (.post, nil, nil), (.delete, _?, nil), (.delete, nil, nil), (.put, _?, nil), (.put, _?, "status"), (.patch, _?, nil), (.patch, _?, "status"),
             (.put, _?, "scale"), (.patch, _?, "scale"), (.post, _?, "eviction"): true
        default: false
        }
        if dryRun && request.method != .get && !dryRunnable {
            // Never carried out as if it were real: a client asking for a dry run must not change anything.
            throw APIError.badRequest("dryRun=All is supported only for create, update and patch (and their status), and delete here; this \(request.method.rawValue) was not carried out")
        }
        if T.self == Pod.self, let name = path.name, let response = try await handlePod(path, name: name, &request, query: query, format: format) {
            return response
        }
        switch (request.method, path.name, path.subresource) {
        case (_, let name?, "scale"):
            return try await scaleSubresource(T.self, path, name: name, &request, format: format, dryRun: dryRun)
        case (.get, nil, _):
            if query["watch"].map({ $0 == "true" || $0 == "1" }) == true {
                return try await watch(T.self, path, query: query, format: Self.wantsTable(request) ? .json : format,
                                       table: Self.wantsTable(request) ? try Self.includeObject(query) : nil)
            }
            if Self.wantsTable(request) {
                let result = try await store.list(T.self, options: try listOptions(path, query: query))
                return Self.table(result.items, revision: result.revision, continueToken: result.continueToken, include: try Self.includeObject(query))
            }
            return try await list(T.self, path, query: query, format: format)
        case (.get, let name?, nil):
            let object = try await store.get(T.self, namespace: path.namespace ?? "", name: name)
            if Self.wantsTable(request) {
                return Self.table([object], revision: Int64(object.metadata.resourceVersion) ?? 0, continueToken: nil, include: try Self.includeObject(query))
            }
            return encode(object, format)
        case (.get, let name?, _):
            let object = try await store.get(T.self, namespace: path.namespace ?? "", name: name)
            return encode(object, format)
        case (.post, nil, nil):
            var object = try await decodeBody(T.self, &request)
            if info.namespaced {
                let namespace = path.namespace ?? ""
                if object.metadata.namespace.isEmpty { object.metadata.namespace = namespace }
                guard !namespace.isEmpty, object.metadata.namespace == namespace else {
                    throw APIError.badRequest("the namespace of the provided object does not match the namespace sent on the request")
                }
            }
            if object.metadata.name.isEmpty && !object.metadata.generateName.isEmpty {
                object.metadata.name = object.metadata.generateName + Self.randomSuffix()
            }
            object.applyDefaults()
            object.metadata.resourceVersion = ""
            Self.admitServiceAccount(&object)
            try admit?(object)
            if info.namespaced { try await admitIntoNamespace(object) }
            Self.recordManager(&object, old: nil, manager: try Self.fieldManager(request, query), subresource: nil)
            return encode(try await create(object, dryRun: dryRun), format, status: .created)
        case (.put, let name?, let subresource):
            var object = try await decodeBody(T.self, &request)
            if object.metadata.namespace.isEmpty, let namespace = path.namespace { object.metadata.namespace = namespace }
            guard object.metadata.name == name, object.metadata.namespace == (path.namespace ?? object.metadata.namespace) else {
                throw APIError.badRequest("the name and namespace of the object (\(object.metadata.namespace)/\(object.metadata.name)) must match the request path")
            }
            if object.metadata.resourceVersion.isEmpty && !dryRun {
                // An unconditional write (the agent's status reports are): what it keeps of the
                // stored object (a status write keeps everything but the status) is read inside
                // the store's writer, where no other write comes between. Read before it, a change
                // made meanwhile (a label applied) was overwritten with the older copy.
                let (sent, manager) = (object, try Self.fieldManager(request, query))
                let updated = try await store.update(T.self, namespace: path.namespace ?? "", name: name) { current in
                    var prepared = try Self.prepareUpdate(sent, of: current, subresource: subresource)
                    Self.recordManager(&prepared, old: current, manager: manager, subresource: subresource)
                    current = prepared
                }
                return encode(try await finishUpdate(updated), format)
            }
            let current = try await store.get(T.self, namespace: path.namespace ?? "", name: name)
            var prepared = try Self.prepareUpdate(object, of: current, subresource: subresource)
            Self.recordManager(&prepared, old: current, manager: try Self.fieldManager(request, query), subresource: subresource)
            // (A dry run answers the update even where the real one would then delete the object:
            // the last finalizer of an object being deleted removed.)
            if dryRun { return encode(try Self.dryRunUpdate(prepared, of: current), format) }
            return encode(try await finishUpdate(try await store.update(prepared)), format)
        case (.patch, let name?, let subresource) where subresource == nil || subresource == "status":
            if try Self.patchType(request) == .apply {
                let (object, created) = try await serverSideApply(T.self, path, name: name, subresource: subresource, &request, dryRun: dryRun)
                return encode(object, format, status: created ? .created : .ok)
            }
            return encode(try await patch(T.self, path, name: name, subresource: subresource, &request, dryRun: dryRun), format)
        case (.delete, nil, nil):
            return try await deleteCollection(T.self, path, query: query, format: format)
        case (.delete, let name?, nil):
            return encode(try await deleteObject(T.self, namespace: path.namespace ?? "", name: name, query: query), format)
        default:
            throw APIError.methodNotAllowed(request.method.rawValue)
        }
    }

    /// Prometheus text format: watches, in-flight requests, store revision and commits, batch sizes,
    /// request counts by verb/resource/code and latency by verb/resource.
    func metricsResponse() -> Response {
        var lines = [
            "# HELP cox_apiserver_watchers Watches being served.",
            "# TYPE cox_apiserver_watchers gauge",
            "cox_apiserver_watchers \(drain.count)",
            "# HELP cox_apiserver_inflight_requests Requests being served (watch streams excluded).",
            "# TYPE cox_apiserver_inflight_requests gauge",
            "cox_apiserver_inflight_requests \(inflight.current)",
            "# HELP cox_apiserver_request_body_bytes Bytes of request bodies held (buffered or being served).",
            "# TYPE cox_apiserver_request_body_bytes gauge",
            "cox_apiserver_request_body_bytes \(bodyBudget.current)",
            "# HELP cox_watch_event_encodes_total Wire encodings of watch events (one per event and format, whatever the number of watchers).",
            "# TYPE cox_watch_event_encodes_total counter",
            "cox_watch_event_encodes_total \(StoreEvent.encodeCount.load(ordering: .relaxed))",
            "# HELP cox_audit_errors_total Audit lines that could not be written, and failed rotation steps.",
            "# TYPE cox_audit_errors_total counter",
            "cox_audit_errors_total \(audit?.errorCount ?? 0)",
            "# HELP cox_audit_failing 1 while the audit log cannot be written (changes are refused).",
            "# TYPE cox_audit_failing gauge",
            "cox_audit_failing \(audit?.isFailing == true ? 1 : 0)",
        ]
        store.renderMetrics(into: &lines)
        metrics.render(into: &lines)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                        body: .init(byteBuffer: ByteBuffer(string: lines.joined(separator: "\n") + "\n")))
    }

    /// A pod's spec is fixed once created, as in Kubernetes: only container images (init containers'
    /// too) and tolerations
    /// may change (its agent would not apply anything else), and its node is set by a binding.
    static func checkPodUpdate(_ new: Pod, _ current: Pod) throws {
        if !current.spec.nodeName.isEmpty && new.spec.nodeName != current.spec.nodeName {
            throw APIError(422, "Invalid", "Pod \"\(new.metadata.name)\" is invalid: spec.nodeName: Forbidden: may not be changed once set (it is \"\(current.spec.nodeName)\")")
        }
        var comparable = new
        comparable.spec.nodeName = current.spec.nodeName
        comparable.spec.tolerations = current.spec.tolerations
        for index in comparable.spec.containers.indices where index < current.spec.containers.count {
            comparable.spec.containers[index].image = current.spec.containers[index].image
        }
        for index in comparable.spec.initContainers.indices where index < current.spec.initContainers.count {
            comparable.spec.initContainers[index].image = current.spec.initContainers[index].image
        }
        comparable.applyDefaults()
        var baseline = current
        baseline.applyDefaults()
        if comparable.spec.jsonBytes() != baseline.spec.jsonBytes() {
            throw APIError(422, "Invalid", "Pod \"\(new.metadata.name)\" is invalid: spec: Forbidden: pod updates may not change fields other than spec.containers[*].image, spec.initContainers[*].image and spec.tolerations; delete and re-create the pod (or use a Deployment)")
        }
    }

    /// kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` so the server chooses the columns.
    static func wantsTable(_ request: Request) -> Bool {
        request.headers[.accept].map { Self.has($0, "as=Table") } == true
    }

    /// Whether `text` contains `part`, compared as bytes (Foundation's `contains` goes through
    /// NSString: 0.6 % of the server's CPU when every request asked it of its Accept header).
    static func has(_ text: String, _ part: String) -> Bool {
        text.utf8.firstRange(of: part.utf8) != nil
    }

    /// What a table row carries besides its cells (`?includeObject=`, as Kubernetes has it).
    enum IncludeObject: String, CaseIterable {
        case none = "None"
        /// The default: the object's metadata as a `PartialObjectMetadata`.
        case metadata = "Metadata"
        case object = "Object"
    }

    static func includeObject(_ query: QueryParameters) throws -> IncludeObject {
        try choice(query, "includeObject", default: .metadata)
    }

    /// A query parameter with a closed set of values, `fallback` when absent or empty; any other
    /// value is 400 with Kubernetes' wording (`x: Unsupported value: "y": supported values: …`).
    static func choice<E: RawRepresentable & CaseIterable>(_ query: QueryParameters, _ name: String, default fallback: E) throws -> E
        where E.RawValue == String {
        guard let value = query[name], !value.isEmpty else { return fallback }
        guard let chosen = E(rawValue: value) else {
            let supported = E.allCases.map { "\"\($0.rawValue)\"" }.sorted().joined(separator: ", ")
            throw APIError.badRequest("\(name): Unsupported value: \"\(value)\": supported values: \(supported)")
        }
        return chosen
    }

    /// A column's name as Kubernetes writes it: words capitalised ("Up-to-date", "Last Seen"),
    /// short acronyms kept ("IP").
    static func columnName(_ header: String) -> String {
        header.split(separator: " ").map { word in
            word.count <= 2 ? String(word) : word.prefix(1) + word.dropFirst().lowercased()
        }.joined(separator: " ")
    }

    /// A `meta.k8s.io/v1` Table: the same columns as `cox get` (those only `-o wide` shows have
    /// priority 1), each row with its object as `include` asks.
    static func table<T: APIObject>(_ objects: [T], revision: Int64, continueToken: String?, include: IncludeObject = .metadata) -> Response {
        var w = JSONWriter()
        writeTable(objects, revision: revision, continueToken: continueToken, include: include, columns: true, to: &w)
        return Response(status: .ok, headers: [.contentType: WireFormat.json.rawValue], body: .init(byteBuffer: ByteBuffer(bytes: w.bytes)))
    }

    /// A Table's JSON; without `columns`, its column definitions are left out (the events of a
    /// watch after the first, as Kubernetes sends them).
    static func writeTable<T: APIObject>(_ objects: [T], revision: Int64, continueToken: String?, include: IncludeObject,
                                         columns: Bool, to w: inout JSONWriter) {
        let (header, rows, wideFrom) = Table.columns(objects)
        w.beginObject()
        w.key("kind"); w.string("Table")
        w.key("apiVersion"); w.string("meta.k8s.io/v1")
        w.key("metadata")
        w.beginObject()
        w.key("resourceVersion"); w.string(String(revision))
        if let continueToken { w.key("continue"); w.string(continueToken) }
        w.endObject()
        w.key("columnDefinitions")
        w.beginArray()
        for (index, name) in header.enumerated() where columns {
            w.beginObject()
            w.key("name"); w.string(Self.columnName(name))
            w.key("type"); w.string("string")
            w.key("format"); w.string(index == 0 ? "name" : "")
            w.key("description"); w.string("")
            w.key("priority"); w.int(index >= wideFrom ? 1 : 0)
            w.endObject()
        }
        w.endArray()
        w.key("rows")
        w.beginArray()
        for (object, cells) in zip(objects, rows) {
            w.beginObject()
            w.key("cells")
            w.beginArray()
            for cell in cells { w.string(cell) }
            w.endArray()
            switch include {
            case .none:
                break
            case .metadata:
                w.key("object")
                w.beginObject()
                w.key("kind"); w.string("PartialObjectMetadata")
                w.key("apiVersion"); w.string("meta.k8s.io/v1")
                w.key("metadata"); object.metadata.writeJSON(to: &w)
                w.endObject()
            case .object:
                w.key("object"); object.writeJSON(to: &w)
            }
            w.endObject()
        }
        w.endArray()
        w.endObject()
    }

    /// `?dryRun=All` (Kubernetes' only value; the parameter may repeat): the request is checked
    /// as a real one would be, and nothing is stored. Any other value is refused, never ignored.
    static func dryRun(_ query: QueryParameters) throws -> Bool {
        guard let value = query["dryRun"], !value.isEmpty else { return false }
        guard value == "All" else { throw APIError.badRequest("dryRun: Unsupported value: \"\(value)\": supported values: \"All\"") }
        return true
    }

    /// Kubernetes' NamespaceLifecycle admission: no new object in a namespace that does not exist
    /// (404, as Kubernetes says it) or is being deleted (403).
    func admitIntoNamespace<T: APIObject>(_ object: T) async throws {
        let name = object.metadata.namespace
        switch try await namespaces.state(of: name, in: store) {
        case .active:
            return
        case .missing:
            var error = APIError.notFound("namespaces \"\(name)\" not found")
            error.kind = "namespaces"
            error.name = name
            throw error
        case .terminating:
            var error = APIError(403, "Forbidden", "\(T.kindInfo.resource) \"\(object.metadata.name)\" is forbidden: unable to create new content in namespace \(name) because it is being terminated")
            error.kind = T.kindInfo.resource
            error.name = object.metadata.name
            throw error
        }
    }

    /// What `store.create` would answer for a valid object, without storing it: AlreadyExists
    /// when the name is taken; otherwise the object with the fields the store sets, but no
    /// resourceVersion (nothing was written), as Kubernetes answers a dry-run create.
    func dryRunCreate<T: APIObject>(_ object: T) async throws -> T {
        if (try? await store.get(T.self, namespace: object.metadata.namespace, name: object.metadata.name)) != nil {
            throw APIError(409, "AlreadyExists", "\(T.kindInfo.resource) \"\(object.metadata.name)\" already exists")
        }
        return object.asCreated()
    }

    /// The object an update stores, from what the client sent and what is stored: a status write
    /// keeps everything but the status; any other keeps the status, and the deletion only a
    /// DELETE starts; a pod's spec changes only where Kubernetes lets it. Defaulted and validated.
    static func prepareUpdate<T: APIObject>(_ sent: T, of current: T, subresource: String?) throws -> T {
        if subresource == "status" {
            var updated = current
            updated.copyStatus(from: sent)
            updated.metadata.resourceVersion = sent.metadata.resourceVersion
            return updated
        }
        var object = sent
        if var pod = object as? Pod, let existing = current as? Pod {
            // The service account admission gave the pod at its create is kept by an update that
            // names none (it could not change anyway).
            if pod.spec.serviceAccountName.isEmpty { pod.spec.serviceAccountName = existing.spec.serviceAccountName }
            try Self.checkPodUpdate(pod, existing)
            object = pod as! T
        }
        object.copyStatus(from: current)
        // Only a DELETE starts (and the agent ends) a graceful deletion.
        object.metadata.deletionTimestamp = current.metadata.deletionTimestamp
        if current.metadata.hasDeletionGracePeriodSeconds {
            object.metadata.deletionGracePeriodSeconds = current.metadata.deletionGracePeriodSeconds
        } else {
            object.metadata.clearDeletionGracePeriodSeconds()
        }
        if !current.metadata.hasDeletionTimestamp { object.metadata.clearDeletionTimestamp() }
        object.applyDefaults()
        var immutable: [FieldError] = []
        if let map = object as? ConfigMap, let old = current as? ConfigMap { immutable = map.immutabilityErrors(updating: old) }
        if let secret = object as? Secret, let old = current as? Secret { immutable = secret.immutabilityErrors(updating: old) }
        if let node = object as? Node, let old = current as? Node { immutable = node.immutabilityErrors(updating: old) }
        if let job = object as? Job, let old = current as? Job { immutable = job.immutabilityErrors(updating: old) }
        if let set = object as? DaemonSet, let old = current as? DaemonSet { immutable = set.immutabilityErrors(updating: old) }
        if !immutable.isEmpty { throw ValidationError(kind: T.kindInfo.kind, group: T.kindInfo.group, name: object.metadata.name, errors: immutable) }
        return try object.validated()
    }

    /// ServiceAccount admission: a pod that names no service account runs as `default`.
    static func admitServiceAccount<T: APIObject>(_ object: inout T) {
        if var pod = object as? Pod, pod.spec.serviceAccountName.isEmpty {
            pod.spec.serviceAccountName = "default"
            object = pod as! T
        }
    }

    /// Stores an admitted object (validated first), or with `dryRun` answers what would be stored;
    /// a new namespace gets its default service account.
    func create<T: APIObject>(_ object: T, dryRun: Bool) async throws -> T {
        var object = object
        if T.self == CustomObject.self, CustomResources.current?.definition.metadata.hasDeletionTimestamp == true {
            throw APIError(405, "MethodNotAllowed", "create not allowed while custom resource definition is terminating")
        }
        if var definition = object as? CustomResourceDefinition {
            // A kind another definition of the group already serves is not accepted (nor served),
            // as Kubernetes marks it.
            customResources.markConflicts(&definition)
            object = definition as! T
        }
        if dryRun { return try await dryRunCreate(try object.validated()) }
        let created = try await store.create(try object.validated())
        if let definition = created as? CustomResourceDefinition { customResources.note(definition) }
        if T.self == Namespace.self {
            try await Namespaces.ensureDefaultServiceAccount(created.metadata.name, in: store, logger: logger)
        }
        return created
    }

    /// Who a write is by, for managedFields: `?fieldManager=` (at most 128 characters), else the
    /// client's User-Agent up to its first "/" (as Kubernetes derives it).
    static func fieldManager(_ request: Request, _ query: QueryParameters) throws -> String {
        if let manager = query["fieldManager"], !manager.isEmpty {
            guard manager.count <= 128 else {
                throw APIError(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes")
            }
            return manager
        }
        let agent = request.headers[.userAgent] ?? ""
        let prefix = agent.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        return prefix.isEmpty ? "unknown" : String(prefix.prefix(128))
    }

    /// Records in the object's managedFields what a write that is not an apply changed, as its
    /// manager's (see `ManagedFields.afterUpdate`).
    static func recordManager<T: APIObject>(_ object: inout T, old: T?, manager: String, subresource: String?) {
        object.metadata.managedFields = ManagedFields.afterUpdate(
            old: old?.jsonValue(), new: object.jsonValue(), entries: old?.metadata.managedFields ?? [], manager: manager,
            apiVersion: T.kindInfo.apiVersion, schema: Schema.of(T.self), subresource: subresource ?? "")
    }

    /// After an update: when the last finalizer of an object being deleted is gone, it goes now.
    func finishUpdate<T: APIObject>(_ updated: T) async throws -> T {
        if let definition = updated as? CustomResourceDefinition { customResources.note(definition) }
        guard updated.metadata.hasDeletionTimestamp && Self.pendingFinalizers(updated).isEmpty else { return updated }
        return try await store.delete(T.self, namespace: updated.metadata.namespace, name: updated.metadata.name,
                                      resourceVersion: Int64(updated.metadata.resourceVersion))
    }

    /// What `store.update` would answer, without writing: a resourceVersion, when given, must be
    /// the current one (409 otherwise, as the store says it).
    static func dryRunUpdate<T: APIObject>(_ object: T, of current: T) throws -> T {
        if let expected = try object.expectedRevision(), String(expected) != current.metadata.resourceVersion {
            throw StoreError.modified(T.kindInfo, object.metadata.name)
        }
        return object.asUpdate(of: current)
    }

    static func randomSuffix() -> String {
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        return String((0..<5).map { _ in alphabet.randomElement()! })
    }

    static let warningField = HTTPField.Name("Warning")!

    /// A `Warning` header's value as Kubernetes writes it: code 299, no agent, the text quoted.
    static func warningHeader(_ text: String) -> String {
        "299 - \"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// What to do with fields the kind does not have (`?fieldValidation=`, as Kubernetes has it).
    enum FieldValidation: String, CaseIterable {
        case ignore = "Ignore"
        /// The default: dropped, each named in a Warning.
        case warn = "Warn"
        case strict = "Strict"
    }

    static func fieldValidation(_ query: QueryParameters) throws -> FieldValidation {
        try choice(query, "fieldValidation", default: .warn)
    }

    /// A JSON object of kind `T` as `validation` asks: unknown fields fail it (Strict, all of them
    /// named), or are dropped (Warn names each in `caller`'s warnings; Ignore says nothing).
    static func decodeJSON<T: APIObject>(_ type: T.Type, _ json: JSONValue, validation: FieldValidation, caller: Caller?) throws -> T {
        if T.self == CustomObject.self, let custom = CustomResources.current {
            // Fields the definition's schema does not name: warned about (then pruned by the
            // defaulting), or refused when strict, as Kubernetes does.
            try reportUnknown(CustomResourceSchema.unknownFields(json, schema: custom.schema, root: true), validation: validation, caller: caller,
                              kind: custom.info.kind, version: custom.info.version)
            return try T(json: json)
        }
        return try decodeJSON(T.self, json, validation: validation, caller: caller, kind: T.kindInfo.kind, version: T.kindInfo.version)
    }

    static func decodeJSON<T: JSONCodable>(_ type: T.Type, _ json: JSONValue, validation: FieldValidation, caller: Caller?,
                                           kind: String, version: String) throws -> T {
        let schemaType = SchemaType.message(String(describing: T.self))
        let unknown = Schema.unknownFields(json, as: schemaType)
        guard !unknown.isEmpty else { return try T(json: json) }
        try reportUnknown(unknown, validation: validation, caller: caller, kind: kind, version: version)
        return try T(json: Schema.pruned(json, as: schemaType))
    }

    /// Fields a kind does not have, as `validation` asks: all named in a refusal (Strict), each in
    /// a warning (Warn), or nothing (Ignore); the caller then drops them.
    static func reportUnknown(_ unknown: [String], validation: FieldValidation, caller: Caller?, kind: String, version: String) throws {
        guard !unknown.isEmpty else { return }
        let named = unknown.map { "unknown field \"\($0)\"" }
        switch validation {
        case .strict:
            throw APIError.badRequest("\(kind) in version \"\(version)\" cannot be handled as a \(kind): strict decoding error: \(named.joined(separator: ", "))")
        case .warn:
            caller?.warnings.withLock { $0 += named }
        case .ignore:
            break
        }
    }

    /// Whether a request in Kubernetes' protobuf is one this server reads: a create or update of
    /// a resource (the kind's fields are checked when the body is read).
    static func readsKubernetesProtobuf(_ request: Request) -> Bool {
        guard request.method == .post || request.method == .put else { return false }
        let segments = Self.segments(request.uri.path)
        if segments == ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] { return true }
        guard let path = try? ResourcePath.parse(segments) else { return false }
        return path.subresource == nil
    }

    func decodeBody<T: APIObject>(_ type: T.Type, _ request: inout Request) async throws -> T {
        let bytes = try await body(&request)
        if request.headers[.contentType]?.hasPrefix(KubernetesProtobuf.mediaType) == true {
            let json: JSONValue
            do {
                json = try KubernetesProtobuf.json(bytes, kind: String(describing: T.self))
            } catch let error as KubernetesProtobuf.Unsupported {
                throw APIError(415, "UnsupportedMediaType", "\(error.description)")
            } catch {
                throw APIError.badRequest("error decoding the Kubernetes protobuf body: \(error)")
            }
            let object = try Self.decodeJSON(T.self, json, validation: try Self.fieldValidation(Self.query(request)), caller: Self.caller)
            let info = T.kindInfo
            if !object.kind.isEmpty && (object.kind != info.kind || object.apiVersion != info.apiVersion) {
                throw APIError.badRequest("the body is a \(object.apiVersion)/\(object.kind), but the request is for \(info.apiVersion)/\(info.kind)")
            }
            return object
        }
        let format = Self.requestFormat(request)
        let object = format == .json
            ? try Self.decodeJSON(T.self, try JSONParser.parse(bytes: bytes), validation: try Self.fieldValidation(Self.query(request)), caller: Self.caller)
            : try T.decode(bytes, as: format)
        let info = T.kindInfo
        if !object.kind.isEmpty && (object.kind != info.kind || object.apiVersion != info.apiVersion) {
            throw APIError.badRequest("the body is a \(object.apiVersion)/\(object.kind), but the request is for \(info.apiVersion)/\(info.kind)")
        }
        return object
    }

    func encode<T: APIObject>(_ object: T, _ format: WireFormat, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: format.rawValue], body: .init(byteBuffer: ByteBuffer(bytes: object.encode(as: format))))
    }

    // MARK: - Lists

    func listOptions(_ path: ResourcePath, query: QueryParameters) throws -> ListOptions {
        try selectors(path, query: query).options
    }

    /// The list options of a request, and its field selector as parsed (a watch also asks it for
    /// the node it names).
    func selectors(_ path: ResourcePath, query: QueryParameters) throws -> (options: ListOptions, fields: FieldSelector?) {
        var options = ListOptions(namespace: path.namespace)
        if let selector = query["labelSelector"], !selector.isEmpty { options.labelSelector = try Selector(parsing: String(selector)) }
        var fieldSelector: FieldSelector?
        if let fields = query["fieldSelector"], !fields.isEmpty {
            fieldSelector = try FieldSelector(parsing: String(fields))
            options.predicate = fieldSelector?.matches
        }
        if let limit = query["limit"] {
            guard let value = Int(limit), value >= 0 else { throw APIError.badRequest("limit must be a non-negative integer, not \"\(limit)\"") }
            options.limit = value
        }
        if let token = query["continue"], !token.isEmpty { options.continueToken = String(token) }
        return (options, fieldSelector)
    }

    func list<T: APIObject>(_ type: T.Type, _ path: ResourcePath, query: QueryParameters, format: WireFormat) async throws -> Response {
        try Self.validateListOptions(query, watch: false)
        var options = try listOptions(path, query: query)
        // Newest data is never older than a resourceVersion given; Exact reads that revision.
        if let revision = try await requestedRevision(query), query["resourceVersionMatch"] == "Exact" { options.revision = revision }
        let result = try await store.list(T.self, options: options)
        return listResponse(result.items, revision: result.revision, continueToken: result.continueToken, format: format)
    }

    /// DELETE of a collection (`deletecollection`): every object the label and field selectors
    /// pick is deleted as a DELETE of it would be (grace, propagation, dry run alike); the
    /// answer is the list of what was deleted, as Kubernetes gives it. One already gone is skipped.
    func deleteCollection<T: APIObject>(_ type: T.Type, _ path: ResourcePath, query: QueryParameters, format: WireFormat) async throws -> Response {
        var selection = query
        selection["limit"] = nil
        selection["continue"] = nil
        let picked = try await store.list(T.self, options: try listOptions(path, query: selection))
        var options = query
        for key in ["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch"] { options[key] = nil }
        var deleted: [T] = []
        for item in picked.items {
            do {
                deleted.append(try await deleteObject(T.self, namespace: item.metadata.namespace, name: item.metadata.name, query: options))
            } catch let error as StoreError where error.code == .notFound {
                continue
            }
        }
        return listResponse(deleted, revision: store.currentRevision, continueToken: nil, format: format)
    }

    func listResponse<T: APIObject>(_ items: [T], revision: Int64, continueToken: String?, format: WireFormat) -> Response {
        var meta = ListMeta()
        meta.resourceVersion = String(revision)
        if let token = continueToken { meta.continue = token }
        let info = T.kindInfo
        let bytes: [UInt8]
        switch format {
        case .protobuf:
            // Every List kind is {apiVersion=1, kind=2, metadata=3, items=4}.
            var w = ProtoWriter()
            w.string(1, info.apiVersion)
            w.string(2, info.kind + "List")
            w.message(3, meta)
            for item in items { w.message(4, item) }
            bytes = w.bytes
        case .json:
            var w = JSONWriter()
            w.beginObject()
            w.key("apiVersion"); w.string(info.apiVersion)
            w.key("kind"); w.string(info.kind + "List")
            w.key("metadata"); meta.writeJSON(to: &w)
            w.key("items")
            w.beginArray()
            for item in items { item.writeJSON(to: &w) }
            w.endArray()
            w.endObject()
            bytes = w.bytes
        }
        return Response(status: .ok, headers: [.contentType: format.rawValue], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// Counts requests being served, to refuse work past a cap instead of queueing without bound.
final class InflightCounter: Sendable {
    private let count = Atomic<Int>(0)

    func enter(limit: Int) -> Bool {
        let now = count.add(1, ordering: .relaxed).newValue
        if now > limit {
            count.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func leave() { count.subtract(1, ordering: .relaxed) }

    var current: Int { count.load(ordering: .relaxed) }
}
