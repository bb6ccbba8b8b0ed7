import API
import AsyncHTTPClient
import Foundation
import Synchronization
import NIOCore
import NIOHTTP1
import NIOSSL
import PKI

/// A failed call: the server's Status when it answered, or what went wrong on the way.
public struct ClientError: Error, Sendable, CustomStringConvertible {
    public let code: Int
    public let reason: String
    public let message: String
    public var description: String { message }

    public init(code: Int, reason: String, message: String) {
        self.code = code
        self.reason = reason
        self.message = message
    }
}

/// Typed calls to a Coxswain (or Kubernetes-shaped) API server over TLS, authenticated by the
/// kubeconfig's client certificate. Protobuf by default, JSON on request. Every call has a deadline.
public final class APIClient: Sendable {
    public static let defaultTimeout: TimeAmount = .seconds(30)

    /// One API server of the cluster and this client's connections to it.
    struct Endpoint: Sendable {
        let url: String
        /// Unary calls, over this client's own connections: HTTP/2 (one connection, each call a
        /// stream handled as frames), or HTTP/1.1 keep-alive with `http2: false` (up to `maxConnections`).
        let keepAlive: KeepAlive
        /// Long-lived streams (watches, followed logs) over HTTP/2: streams of connections of their
        /// own (a new one for each 100 open streams), so they never hold the unary connection's
        /// concurrent streams. Each is paced by its consumer through its flow-control window.
        let streamKeepAlive: KeepAlive?
    }
    /// The cluster's API servers (the kubeconfig's, or `--server a,b,c`): calls go to one; a
    /// connection that fails or a 503/504 moves them to the next, and the call's retries (and a
    /// watch's resumption from its last version) go there.
    let endpoints: [Endpoint]
    let currentEndpoint = Atomic<Int>(0)
    /// The same over HTTP/1.1 (with `http2: false`), one connection each.
    let streams: HTTPClient
    /// The server calls go to now.
    public var server: String { endpoint.index.url }
    var endpoint: (index: Endpoint, position: Int) {
        let position = currentEndpoint.load(ordering: .relaxed) % endpoints.count
        return (endpoints[position], position)
    }

    /// After a failure at `position`: the next server takes the calls (unless another call moved
    /// them already).
    func failOver(from position: Int) {
        guard endpoints.count > 1 else { return }
        _ = currentEndpoint.compareExchange(expected: position, desired: (position + 1) % endpoints.count, ordering: .relaxed)
    }
    let format: WireFormat
    let timeout: TimeAmount
    let connectTimeout: TimeAmount
    /// Attempts per call, the first included (retries need the deadline to allow them too).
    let maxAttempts: Int
    /// Attempts that failed transiently and were retried (or would have been, but for the
    /// deadline or the attempt limit), over the client's life: for metrics and tests.
    public var transientFailures: Int { failures.load(ordering: .relaxed) }
    let failures = Atomic<Int>(0)
    /// Acts as another user (and groups) through `Impersonate-User`/`Impersonate-Group`, which
    /// the server allows only to identities that may `impersonate` them.
    public let impersonation: (user: String, groups: [String])?
    /// What every request carries besides its own headers, made once: `Authorization: Bearer`
    /// when the kubeconfig has a token instead of a client certificate, and the impersonation headers.
    let credentialHeaders: [(name: String, value: String)]
    /// The TLS every connection to the server uses (exec opens its own with it).
    public let tlsConfiguration: TLSConfiguration

    /// A client from a kubeconfig file (what a controller plugin is given), as the admin's or a
    /// service account's.
    public convenience init(kubeconfigPath: String, userAgent: String = "cox") throws {
        try self.init(kubeconfig: try Kubeconfig.load(path: kubeconfigPath), userAgent: userAgent)
    }

    public init(kubeconfig: Kubeconfig, format: WireFormat = .protobuf, timeout: TimeAmount = APIClient.defaultTimeout,
                maxConnections: Int = 8, maxAttempts: Int = 6, connectTimeout: TimeAmount = .seconds(5), http2: Bool = true,
                impersonate: (user: String, groups: [String])? = nil, retryConnecting: Bool = true, userAgent: String = "cox") throws {
        impersonation = impersonate
        // The server names a writer's field manager after the User-Agent's first word, as Kubernetes does.
        var credentials: [(name: String, value: String)] = [("User-Agent", "\(userAgent)/\(CoxVersion.version) (linux)")]
        if let token = kubeconfig.token { credentials.append(("Authorization", "Bearer \(token)")) }
        if let impersonate {
            credentials.append(("Impersonate-User", impersonate.user))
            for group in impersonate.groups { credentials.append(("Impersonate-Group", group)) }
        }
        credentialHeaders = credentials
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(kubeconfig.caPEM.utf8)))
        tls.minimumTLSVersion = .tlsv12
        if let certificate = kubeconfig.clientCertificatePEM, let key = kubeconfig.clientKeyPEM {
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem))
        }
        tlsConfiguration = tls
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        // The pool keeps trying to connect until this passes; our own retries (with jitter) take over then.
        // Without `retryConnecting`, a failed connection fails the call at once (and our retries decide).
        configuration.timeout.connect = connectTimeout
        configuration.connectionPool.retryConnectionEstablishment = retryConnecting
        // No tracer: with the default (the global no-op one) every call still opened a span and
        // set its attributes, 5 % of the scheduler's CPU under `cox bench sched`.
        configuration.tracing.tracer = nil
        var streaming = configuration
        streaming.httpVersion = .http1Only
        // A stream the client gave up on is closed while the server is still writing to it, so
        // the server's close_notify may never come: do not wait NIOSSL's default 5 s for it.
        var streamingTLS = tls
        streamingTLS.shutdownTimeout = .milliseconds(200)
        streaming.tlsConfiguration = streamingTLS
        streaming.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 4096
        self.streams = HTTPClient(eventLoopGroupProvider: .singleton, configuration: streaming)
        var endpoints: [Endpoint] = []
        for given in kubeconfig.servers {
            let server = given.hasSuffix("/") ? String(given.dropLast()) : given
            guard let url = URL(string: server), url.scheme == "https", let host = url.host else {
                throw ClientError(code: 0, reason: "BadConfig", message: "the kubeconfig's server \(server) is not an https:// URL")
            }
            let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            // HTTP/2: one connection multiplexes every call. HTTP/1.1 keeps up to `maxConnections`
            // alive (for servers that do not speak HTTP/2 well; ours serves both as cheaply).
            endpoints.append(Endpoint(
                url: server,
                keepAlive: try KeepAlive(http2 ? .http2 : .http1, host: bare, port: url.port ?? 443, tls: tls,
                                         connections: http2 ? 1 : maxConnections, connectTimeout: connectTimeout),
                streamKeepAlive: http2 ? try KeepAlive(.http2, host: bare, port: url.port ?? 443, tls: tls, connections: 1, connectTimeout: connectTimeout,
                                                       window: Self.streamWindow, growBeyond: 100) : nil))
        }
        guard !endpoints.isEmpty else { throw ClientError(code: 0, reason: "BadConfig", message: "the kubeconfig names no server") }
        self.endpoints = endpoints
        self.format = format
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.maxAttempts = max(1, maxAttempts)
    }

    /// Streams one watch request: the raw body chunks of `?watch=true` from `resourceVersion` (JSON
    /// lines or length-prefixed protobuf frames, per the client's format). Ends when the server ends
    /// it; `watch(_:_:)` is the resuming, decoding form.
    public func watchChunks<T: APIObject>(_ type: T.Type, namespace: String?, resourceVersion: String, timeoutSeconds: Int,
                                          fieldSelector: String? = nil) async throws -> ResponseBody {
        var request = WatchRequest(namespace: namespace, resourceVersion: resourceVersion)
        request.timeoutSeconds = timeoutSeconds
        request.fieldSelector = fieldSelector
        return try await watchBody(T.self, request, resourceVersion: resourceVersion)
    }

    public func shutdown() async throws {
        guard !shutDown.exchange(true, ordering: .relaxed) else { return }
        for endpoint in endpoints {
            await endpoint.keepAlive.shutdown()
            await endpoint.streamKeepAlive?.shutdown()
        }
        try await streams.shutdown()
    }

    /// Whether `shutdown()` was called.
    let shutDown = Atomic<Bool>(false)

    /// A client dropped without `shutdown()` (a caller that threw on its way out) lets its
    /// connections go on its own. AsyncHTTPClient stops a debug build's whole process for a client
    /// deinitialized while running: in the tests, one test's early exit froze every other test
    /// (the crash report alone took 30 s) and then ended the run.
    deinit {
        guard !shutDown.load(ordering: .relaxed) else { return }
        _ = streams.shutdown()
        let endpoints = self.endpoints
        Task {
            for endpoint in endpoints {
                await endpoint.keepAlive.shutdown()
                await endpoint.streamKeepAlive?.shutdown()
            }
        }
    }

    /// `/api/v1/namespaces/NS/pods[/NAME]` and the like.
    public static func path(_ info: KindInfo, namespace: String?, name: String? = nil) -> String {
        var path = info.group.isEmpty ? "/api/\(info.version)" : "/apis/\(info.group)/\(info.version)"
        if info.namespaced, let namespace, !namespace.isEmpty { path += "/namespaces/\(namespace)" }
        path += "/\(info.resource)"
        if let name { path += "/\(name)" }
        return path
    }

    /// One call with the client's deadline covering every attempt. Transient failures are retried
    /// with capped exponential backoff and jitter: a refused connection for any call (nothing was
    /// sent), and for idempotent calls (GET, PUT, DELETE) also a reset connection, 429 (after its
    /// Retry-After), 503 and 504. A create is never resent once it may have reached the server.
    func call(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, contentType: String? = nil) async throws -> [UInt8] {
        let deadline = NIODeadline.now() + timeout
        // A JSON patch may append ("add" to "/-"): not resent once it may have arrived.
        let idempotent = method != .POST && !(method == .PATCH && contentType == "application/json-patch+json")
        var backoff = Backoff(base: .milliseconds(100), cap: .seconds(5))
        var attempt = 0
        var previous: ClientError?
        while true {
            attempt += 1
            let failure: ClientError
            var wait: Duration?
            do {
                return try await attemptCall(method, path, body: body, contentType: contentType, deadline: deadline)
            } catch let error as ClientError where error.reason == "Timeout" && error.code == 0 && previous != nil {
                // The deadline passed on a retry: what the server said before is the news.
                let said = previous!
                throw ClientError(code: said.code, reason: said.reason,
                                  message: said.message + " (gave up after \(attempt) attempts: the deadline of \(Self.seconds(timeout)) passed)")
            } catch let error as Transient {
                failures.add(1, ordering: .relaxed)
                failure = error.error
                if failure.code != 0 { previous = failure }
                wait = error.retryAfter
                guard error.sent == false || idempotent else { throw failure }
            }
            let pause = wait ?? backoff.next()
            let remaining = deadline - NIODeadline.now()
            guard attempt < maxAttempts, remaining > TimeAmount.nanoseconds(Int64(pause.components.seconds) * 1_000_000_000 + pause.components.attoseconds / 1_000_000_000) else {
                throw attempt > 1 ? ClientError(code: failure.code, reason: failure.reason, message: failure.message + " (gave up after \(attempt) attempts)") : failure
            }
            try await Task.sleep(for: pause)
        }
    }

    /// A failure worth another attempt; `sent` says whether the request may have reached the server.
    struct Transient: Error {
        let error: ClientError
        let sent: Bool
        var retryAfter: Duration?
    }

    /// One attempt over the client's own connections: a refused connection (nothing sent) and a
    /// broken one (maybe sent) are transient, as are 429, 503 and 504; a TLS failure is not.
    /// With several servers, a connection failure or 503/504 moves the calls to the next one.
    func attemptCall(_ method: HTTPMethod, _ path: String, body: [UInt8]?, contentType: String? = nil, deadline: NIODeadline) async throws -> [UInt8] {
        let (endpoint, position) = self.endpoint
        let (keepAlive, server) = (endpoint.keepAlive, endpoint.url)
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: keepAlive.hostHeader)
        headers.add(name: "Accept", value: format.rawValue)
        headers.add(contentsOf: credentialHeaders)
        if let body {
            headers.add(name: "Content-Type", value: contentType ?? format.rawValue)
            headers.add(name: "Content-Length", value: String(body.count))
        } else if method == .POST || method == .PUT {
            headers.add(name: "Content-Length", value: "0")
        }
        let response: KeepAlive.Response
        do {
            response = try await keepAlive.execute(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers),
                                                   body: body.map { ByteBuffer(bytes: $0) }, deadline: deadline)
        } catch let failure as KeepAlive.Failure {
            if NIODeadline.now() >= deadline {
                throw ClientError(code: 0, reason: "Timeout", message: "\(method) \(server)\(path): no answer within the deadline of \(Self.seconds(timeout))")
            }
            let unreachable = ClientError(code: 0, reason: "Unreachable", message: "cannot reach the API server at \(server): \(Self.explain(failure))")
            if case .shutDown = failure {} else { failOver(from: position) }
            switch failure {
            case .notSent(let error):
                // A certificate the other side refuses stays refused: say so at once. (A connection
                // cut during the handshake is just a cut connection: try again.)
                if Self.refusedCertificate(error) { throw unreachable }
                throw Transient(error: unreachable, sent: false)
            case .lost:
                throw Transient(error: unreachable, sent: true)
            case .shutDown:
                throw ClientError(code: 0, reason: "Unreachable", message: "\(method) \(server)\(path): the client has been shut down")
            }
        }
        var buffer = response.body
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        guard (200..<300).contains(response.status) else {
            let failure = Self.failure(status: response.status, contentType: response.headers.first(name: "Content-Type"), bytes: bytes,
                                       method: method.rawValue, path: path)
            if response.status == 503 || response.status == 504 { failOver(from: position) }
            if response.status == 429 || response.status == 503 || response.status == 504 {
                let retryAfter = response.headers.first(name: "Retry-After").flatMap(Int.init).map { Duration.seconds(min($0, 30)) }
                throw Transient(error: failure, sent: true, retryAfter: retryAfter)
            }
            throw failure
        }
        return bytes
    }

    /// The server's Status for a failed response, as a ClientError.
    static func failure(_ response: HTTPClientResponse, method: String, path: String) async throws -> ClientError {
        var buffer = (try? await response.body.collect(upTo: 1024 * 1024)) ?? ByteBuffer()
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        return failure(status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type"), bytes: bytes, method: method, path: path)
    }

    static func failure(status code: Int, contentType: String?, bytes: [UInt8], method: String, path: String) -> ClientError {
        let isProtobuf = contentType?.hasPrefix(WireFormat.protobuf.rawValue) == true
        if let status = isProtobuf ? try? Status(protobuf: bytes) : try? Status(jsonBytes: bytes), !status.message.isEmpty {
            return ClientError(code: Int(status.code), reason: status.reason, message: status.message)
        }
        return ClientError(code: code, reason: "HTTP\(code)", message: "\(method) \(path): HTTP \(code)")
    }

    static func seconds(_ amount: TimeAmount) -> String {
        let milliseconds = amount.nanoseconds / 1_000_000
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
    }

    /// Whether a TLS handshake failed over a certificate (ours refused, or the server's not
    /// trusted) rather than the connection: such a failure does not pass by trying again.
    static func refusedCertificate(_ error: any Error) -> Bool {
        let text = "\(error)".lowercased()
        if cutDuringHandshake(text) || text.contains("connection reset") { return false }
        return text.contains("certificate") || text.contains("alert") || text.contains("unknown_ca") || text.contains("verify")
    }

    /// Whether an error's text (lowercased) says the connection closed during the TLS handshake.
    static func cutDuringHandshake(_ text: String) -> Bool {
        text.contains("eof during handshake") || text.contains("uncleanshutdown")
    }

    /// Turns TLS and socket errors into one sentence.
    static func explain(_ error: any Error) -> String {
        let text = "\(error)"
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused (is the server running?)" }
        if cutDuringHandshake(text.lowercased()) {
            return "the connection was closed during the TLS handshake (\(text))"
        }
        if refusedCertificate(error) || text.contains("handshake") || text.contains("SSL") {
            return "the TLS handshake failed; the server's certificate is not signed by the CA in your kubeconfig, or the server refused your client certificate (\(text))"
        }
        return text
    }

    public func decode<T: APIObject>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        format == .protobuf ? try T(protobuf: bytes) : try T(jsonBytes: bytes)
    }

    public func get<T: APIObject>(_ type: T.Type, namespace: String, name: String) async throws -> T {
        try decode(T.self, try await call(.GET, Self.path(T.kindInfo, namespace: namespace, name: name)))
    }

    /// With `dryRun`, the server checks the create as a real one (validation, admission, a name
    /// already taken) and answers what it would store, storing nothing (`?dryRun=All`).
    public func create<T: APIObject>(_ object: T, dryRun: Bool = false) async throws -> T {
        let path = Self.path(T.kindInfo, namespace: object.metadata.namespace) + (dryRun ? "?dryRun=All" : "")
        return try decode(T.self, try await call(.POST, path, body: object.encode(as: format)))
    }

    /// PATCH with a body of `contentType` (application/merge-patch+json,
    /// application/json-patch+json, application/strategic-merge-patch+json, or
    /// application/apply-patch+yaml with a `fieldManager` in `query`).
    public func patch<T: APIObject>(_ type: T.Type, namespace: String, name: String, body: [UInt8], contentType: String,
                                    query: String = "") async throws -> T {
        let path = Self.path(T.kindInfo, namespace: namespace, name: name) + (query.isEmpty ? "" : "?" + query)
        return try decode(T.self, try await call(.PATCH, path, body: body, contentType: contentType))
    }

    /// PATCH of a subresource (`status`, `scale`); the answer as the server sent it, in the client's format.
    public func patchSubresource<T: APIObject>(_ type: T.Type, namespace: String, name: String, subresource: String, body: [UInt8],
                                               contentType: String, query: String = "") async throws -> [UInt8] {
        let path = Self.path(T.kindInfo, namespace: namespace, name: name) + "/" + subresource + (query.isEmpty ? "" : "?" + query)
        return try await call(.PATCH, path, body: body, contentType: contentType)
    }

    /// With `dryRun`, the server checks and answers the update as it would store it, storing nothing.
    public func update<T: APIObject>(_ object: T, dryRun: Bool = false) async throws -> T {
        let path = Self.path(T.kindInfo, namespace: object.metadata.namespace, name: object.metadata.name) + (dryRun ? "?dryRun=All" : "")
        return try decode(T.self, try await call(.PUT, path, body: object.encode(as: format)))
    }

    /// Read, change, write — again on a conflict (someone, often a controller, wrote the object
    /// in between), up to `attempts` times. Returns what was written.
    @discardableResult
    public func modify<T: APIObject>(_ type: T.Type, namespace: String, name: String, attempts: Int = 5,
                                     _ change: (inout T) throws -> Void) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            var object = try await get(T.self, namespace: namespace, name: name)
            try change(&object)
            do {
                return try await update(object)
            } catch let error as ClientError where error.code == 409 && attempt < attempts {
                continue
            }
        }
    }

    /// Writes only the status (the `/status` subresource); the rest of the object is ignored.
    public func updateStatus<T: APIObject>(_ object: T) async throws -> T {
        let path = Self.path(T.kindInfo, namespace: object.metadata.namespace, name: object.metadata.name) + "/status"
        return try decode(T.self, try await call(.PUT, path, body: object.encode(as: format)))
    }

    /// Deletes; a pod on a node is only marked (deletionTimestamp) until its agent has stopped it,
    /// unless `gracePeriodSeconds` is 0. Returns the object as the server left it.
    /// `propagationPolicy` is `Background` (the default: dependents go after the owner),
    /// `Foreground` (the owner waits for its dependents) or `Orphan` (dependents stay, unowned).
    /// With `preconditionUID`, only that incarnation of the name is deleted (DeleteOptions'
    /// `preconditions.uid`; another is a 409).
    public func delete<T: APIObject>(_ type: T.Type, namespace: String, name: String, gracePeriodSeconds: Int64? = nil,
                                     propagationPolicy: String? = nil, preconditionUID: String? = nil) async throws -> T {
        var query: [String] = []
        if let gracePeriodSeconds { query.append("gracePeriodSeconds=\(gracePeriodSeconds)") }
        if let propagationPolicy { query.append("propagationPolicy=\(propagationPolicy)") }
        let path = Self.path(T.kindInfo, namespace: namespace, name: name) + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        guard let preconditionUID else { return try decode(T.self, try await call(.DELETE, path)) }
        var w = JSONWriter()
        w.beginObject()
        w.key("apiVersion"); w.string("v1")
        w.key("kind"); w.string("DeleteOptions")
        w.key("preconditions"); w.beginObject(); w.key("uid"); w.string(preconditionUID); w.endObject()
        w.endObject()
        return try decode(T.self, try await call(.DELETE, path, body: w.bytes, contentType: "application/json"))
    }

    /// The kubeconfig's bearer token (when it has one) and the impersonation headers.
    func addCredentials(_ request: inout HTTPClientRequest) {
        request.headers.add(contentsOf: credentialHeaders)
    }

    /// Asks whether this client's identity (or the one it impersonates) may do something:
    /// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
    public func accessReview(_ attributes: ResourceAttributes) async throws -> SubjectAccessReviewStatus {
        var review = SelfSubjectAccessReview()
        review.apiVersion = "authorization.k8s.io/v1"
        review.kind = "SelfSubjectAccessReview"
        review.spec.resourceAttributes = attributes
        let body = format == .protobuf ? review.protoBytes() : review.jsonBytes()
        let bytes = try await call(.POST, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body: body)
        let answer = format == .protobuf ? try SelfSubjectAccessReview(protobuf: bytes) : try SelfSubjectAccessReview(jsonBytes: bytes)
        return answer.status
    }

    /// A path that names no resource (`/metrics`, `/version`), as text.
    public func getText(_ path: String) async throws -> String {
        String(decoding: try await call(.GET, path), as: UTF8.self)
    }

    /// One figure from the server's `/metrics` (a series without labels), nil when absent.
    public func metric(_ name: String) async throws -> Double? {
        let text = try await getText("/metrics")
        return text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    /// Who the server takes this client for: `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`.
    public func whoAmI() async throws -> (user: String, groups: [String]) {
        let bytes = try await call(.POST, "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                   body: Array(#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#.utf8))
        let info = try JSONParser.parse(bytes: bytes)["status"]?["userInfo"]
        guard case .string(let user)? = info?["username"] else {
            throw ClientError(code: 0, reason: "BadResponse", message: "the server's SelfSubjectReview has no status.userInfo.username")
        }
        var groups: [String] = []
        if case .array(let values)? = info?["groups"] { for case .string(let group) in values { groups.append(group) } }
        return (user, groups)
    }

    /// Asks the server to sign a certificate request (PEM) with `signerName`; returns the
    /// certificate (PEM), or throws the server's refusal.
    public func requestCertificate(_ requestPEM: String, signerName: String, usages: [String], expirationSeconds: Int32? = nil) async throws -> String {
        var csr = CertificateSigningRequest()
        csr.apiVersion = "certificates.k8s.io/v1"
        csr.kind = "CertificateSigningRequest"
        csr.metadata.generateName = "csr-"
        csr.spec.request = Data(requestPEM.utf8)
        csr.spec.signerName = signerName
        csr.spec.usages = usages
        if let expirationSeconds { csr.spec.expirationSeconds = expirationSeconds }
        let body = format == .protobuf ? csr.protoBytes() : csr.jsonBytes()
        let bytes = try await call(.POST, "/apis/certificates.k8s.io/v1/certificatesigningrequests", body: body)
        let answer = format == .protobuf ? try CertificateSigningRequest(protobuf: bytes) : try CertificateSigningRequest(jsonBytes: bytes)
        guard answer.status.conditions.contains(where: { $0.type == "Approved" && $0.status == "True" }), !answer.status.certificate.isEmpty else {
            throw ClientError(code: 0, reason: "NotIssued", message: "the server answered certificate request \(answer.metadata.name) without a certificate")
        }
        return String(decoding: answer.status.certificate, as: UTF8.self)
    }

    /// Assigns an unbound pod to a node (`pods/NAME/binding`); 409 when it is already on one.
    public func bind(namespace: String, pod: String, node: String) async throws {
        var binding = Binding()
        binding.apiVersion = "v1"
        binding.kind = "Binding"
        binding.metadata.name = pod
        binding.metadata.namespace = namespace
        binding.target.kind = "Node"
        binding.target.name = node
        let body = format == .protobuf ? binding.protoBytes() : binding.jsonBytes()
        _ = try await call(.POST, Self.path(Pod.kindInfo, namespace: namespace, name: pod) + "/binding", body: body)
    }

    /// A pod's log: the whole of it, or its last `tailLines`; `previous` reads the last run's.
    public func logs(namespace: String, pod: String, container: String?, tailLines: Int? = nil, previous: Bool = false) async throws -> [UInt8] {
        try await call(.GET, Self.path(Pod.kindInfo, namespace: namespace, name: pod) + "/log?" + Self.logQuery(container, tailLines, previous, follow: false))
    }

    /// Follows a pod's log: chunks as the container writes them, until the container ends or the caller stops.
    public func followLogs(namespace: String, pod: String, container: String?, tailLines: Int? = nil) async throws -> ResponseBody {
        let path = Self.path(Pod.kindInfo, namespace: namespace, name: pod) + "/log?" + Self.logQuery(container, tailLines, false, follow: true)
        return try await stream(path, lasting: .hours(24))
    }

    /// Each streamed response's receive window: what the server may send ahead of its consumer
    /// (besides `ResponseStream.highWater` read but not yet consumed).
    static let streamWindow = 1024 * 1024

    /// A GET whose 200 response streams until the server ends it (or the consumer stops reading):
    /// a stream of this client's stream connections over HTTP/2, else an HTTP/1.1 connection of
    /// its own that may last `lasting`. The head must come within the client's timeout.
    func stream(_ path: String, lasting: TimeAmount) async throws -> ResponseBody {
        let (endpoint, position) = self.endpoint
        let server = endpoint.url
        guard let streamKeepAlive = endpoint.streamKeepAlive else {
            var request = HTTPClientRequest(url: server + path)
            request.headers.add(name: "Accept", value: format.rawValue)
            addCredentials(&request)
            let response: HTTPClientResponse
            do {
                response = try await streams.execute(request, timeout: lasting)
            } catch {
                failOver(from: position)
                throw ClientError(code: 0, reason: "Unreachable", message: "cannot reach the API server at \(server): \(Self.explain(error))")
            }
            guard response.status.code == 200 else { throw try await Self.failure(response, method: "GET", path: path) }
            return ResponseBody(.http1(response.body))
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: streamKeepAlive.hostHeader)
        headers.add(name: "Accept", value: format.rawValue)
        headers.add(contentsOf: credentialHeaders)
        let response: KeepAlive.Response
        let body: ResponseStream
        do {
            (response, body) = try await streamKeepAlive.stream(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers),
                                                                deadline: .now() + timeout)
        } catch {
            if Task.isCancelled { throw CancellationError() }
            failOver(from: position)
            if error is CancellationError {
                throw ClientError(code: 0, reason: "Timeout", message: "GET \(server)\(path): no answer within the deadline of \(Self.seconds(timeout))")
            }
            throw ClientError(code: 0, reason: "Unreachable", message: "cannot reach the API server at \(server): \(Self.explain(error))")
        }
        guard response.status == 200 else {
            if response.status == 503 || response.status == 504 { failOver(from: position) }
            var buffer = response.body
            throw Self.failure(status: response.status, contentType: response.headers.first(name: "Content-Type"),
                               bytes: buffer.readBytes(length: buffer.readableBytes) ?? [], method: "GET", path: path)
        }
        return ResponseBody(.http2(body))
    }

    static func logQuery(_ container: String?, _ tailLines: Int?, _ previous: Bool, follow: Bool) -> String {
        var query: [String] = []
        if let container, !container.isEmpty { query.append("container=\(escape(container))") }
        if let tailLines { query.append("tailLines=\(tailLines)") }
        if previous { query.append("previous=true") }
        if follow { query.append("follow=true") }
        return query.joined(separator: "&")
    }

    /// Lists objects (all pages), with an optional label selector; nil namespace lists all namespaces.
    public func list<T: APIObject>(_ type: T.Type, namespace: String?, labelSelector: String? = nil,
                                      fieldSelector: String? = nil) async throws -> (items: [T], resourceVersion: String) {
        var items: [T] = []
        var token = ""
        var revision = ""
        repeat {
            var query: [String] = ["limit=500"]
            if let labelSelector, !labelSelector.isEmpty { query.append("labelSelector=\(Self.escape(labelSelector))") }
            if let fieldSelector, !fieldSelector.isEmpty { query.append("fieldSelector=\(Self.escape(fieldSelector))") }
            if !token.isEmpty { query.append("continue=\(Self.escape(token))") }
            let bytes = try await call(.GET, Self.path(T.kindInfo, namespace: namespace) + "?" + query.joined(separator: "&"))
            let page = try decodeList(T.self, bytes)
            items += page.items
            token = page.meta.continue
            if revision.isEmpty { revision = page.meta.resourceVersion }
        } while !token.isEmpty
        return (items, revision)
    }

    static func escape(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? value
    }

    /// Every List kind is {apiVersion, kind, metadata, items}: decoded generically.
    func decodeList<T: APIObject>(_ type: T.Type, _ bytes: [UInt8]) throws -> (items: [T], meta: ListMeta) {
        var items: [T] = []
        var meta = ListMeta()
        switch format {
        case .protobuf:
            try bytes.withUnsafeBytes { buffer in
                var reader = ProtoReader(buffer)
                while let field = try reader.nextField() {
                    switch field {
                    case 3: meta = try reader.message(ListMeta.self)
                    case 4: items.append(try reader.message(T.self))
                    default: try reader.skip()
                    }
                }
            }
        case .json:
            let json = try JSONParser.parse(bytes: bytes)
            if let metadata = json["metadata"] { meta = try ListMeta(json: metadata) }
            if case .array(let elements)? = json["items"] { items = try elements.map { try T(json: $0) } }
        }
        return (items, meta)
    }
}
