import API
import Client
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOSSL
import Store

/// `pods/exec`, `pods/attach` and `pods/portforward`: the client asks to upgrade its HTTP/1.1
/// connection (WebSocket, as kubectl ≥ 1.30 speaks it, or SPDY, as older ones do). The server
/// authenticates and authorizes the request as any other (`create` on the subresource), puts it
/// on record, then opens a mutually authenticated TLS connection to the agent of the pod's node,
/// sends it the request with its target rewritten to the agent's (`/exec/NS/POD/CONTAINER?…`)
/// and joins the two connections byte for byte: the upgrade answer and everything after it come
/// from the agent, which joins them in turn to the container runtime's streaming server.
extension APIResponder {
    static let streamSubresources: Set<String> = ["exec", "attach", "portforward"]

    /// Whether the first request on an HTTP/1.1 connection is one this file serves.
    @Sendable static func isPodStream(_ head: RawRequestHead) -> Bool {
        guard head.isUpgrade else { return false }
        let segments = segments(head.path)
        return segments.count == 7 && segments[0] == "api" && segments[1] == "v1" && segments[2] == "namespaces"
            && segments[4] == "pods" && streamSubresources.contains(segments[6])
    }

    /// Serves one upgraded stream on `channel` until either end closes it (or the server shuts down).
    func serveStream(_ head: RawRequestHead, sniffer: UpgradeSniffer, channel: any Channel) async {
        let started = ContinuousClock.now
        let caller = Caller()
        let segments = Self.segments(head.path)
        let (namespace, name, subresource) = (segments[3], segments[5], segments[6])
        var code = 101
        do {
            try await proxyStream(head, namespace: namespace, name: name, subresource: subresource, sniffer: sniffer, channel: channel, caller: caller)
        } catch {
            let mapped = APIError.from(error)
            code = mapped.code
            if mapped.code == 500 { logger.error("stream request failed", metadata: ["path": "\(head.path)", "error": "\(error)"]) }
            let body = mapped.status.jsonBytes()
            let reason = HTTPResponse.Status(code: mapped.code).reasonPhrase
            let bytes = RawRequestHead.response(code: mapped.code, reason: reason, contentType: WireFormat.json.rawValue, body: body)
            try? await channel.writeAndFlush(ByteBuffer(bytes: bytes))
            try? await channel.close()
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        metrics.record(verb: "CONNECT", resource: "pods/\(subresource)", code: code, seconds: seconds)
        if let audit {
            let identity = caller.identity ?? ClientIdentity(user: "system:anonymous", groups: ["system:unauthenticated"])
            var attributes = caller.attributes
            if attributes == nil && (code == 401 || code == 403) {
                attributes = Self.streamAttributes(identity, namespace: namespace, name: name, subresource: subresource)
            }
            audit.record(AuditLog.Entry(requestID: caller.requestID, user: identity.user, groups: identity.groups, impersonatedBy: caller.impersonatedBy,
                                        sourceIP: channel.remoteAddress?.ipAddress ?? "", attributes: attributes,
                                        method: head.method, path: head.path, code: code, latencySeconds: seconds))
        }
    }

    /// What a stream request asks to do, for RBAC: `create` on the subresource, whatever the
    /// method (a WebSocket upgrade is a GET), as Kubernetes authorizes it.
    static func streamAttributes(_ identity: ClientIdentity, namespace: String, name: String, subresource: String) -> RequestAttributes {
        var attributes = RequestAttributes(user: identity.user, groups: identity.groups, verb: "create")
        attributes.resource = "pods"
        attributes.subresource = subresource
        attributes.namespace = namespace
        attributes.name = name
        return attributes
    }

    private func proxyStream(_ head: RawRequestHead, namespace: String, name: String, subresource: String,
                             sniffer: UpgradeSniffer, channel: any Channel, caller: Caller) async throws {
        var certified = try await ClientIdentity.of(channel: channel)
        if certified == nil { certified = try await authenticateBearer(authorization: head.header("Authorization")) }
        guard let authenticated = certified else { throw APIError.unauthorized }
        caller.identity = authenticated
        var fields = HTTPFields()
        for (field, value) in head.headers { if let name = HTTPField.Name(field) { fields.append(HTTPField(name: name, value: value)) } }
        let request = Request(head: HTTPRequest(method: .get, scheme: "https", authority: nil, path: head.target, headerFields: fields),
                              body: .init(buffer: ByteBuffer()))
        let identity = try effectiveIdentity(request, authenticated)
        if identity != authenticated {
            caller.identity = identity
            caller.impersonatedBy = authenticated.user
        }
        let attributes = Self.streamAttributes(identity, namespace: namespace, name: name, subresource: subresource)
        caller.attributes = attributes
        try authorize(attributes)
        if let node = NodeRestriction.nodeName(identity) { try await restrictNode(node, attributes, query: [:]) }
        if let audit, !audit.admitChange(requestID: caller.requestID, user: identity.user, method: head.method, path: head.path) {
            throw APIError(503, "ServiceUnavailable", "the audit log cannot be written, so no change is carried out until it can; see the server's log")
        }

        // The pod, its container and where its agent serves.
        let pod = try await store.get(Pod.self, namespace: namespace, name: name)
        var target = "/portForward/\(namespace)/\(name)"
        if subresource != "portforward" {
            let container = try Self.container(of: pod, named: head.query.first { $0.key == "container" }?.value)
            target = "/\(subresource)/\(namespace)/\(name)/\(container)"
        }
        guard !pod.spec.nodeName.isEmpty else {
            throw APIError.badRequest("pod \(name) does not have a host assigned")
        }
        if pod.status.phase == "Succeeded" || pod.status.phase == "Failed" {
            throw APIError.badRequest("cannot \(subresource == "portforward" ? "forward ports to" : subresource) a container in a completed pod; current phase is \(pod.status.phase)")
        }
        let node = try await store.get(Node.self, namespace: "", name: pod.spec.nodeName)
        let port = Int(node.status.daemonEndpoints.kubeletEndpoint.port)
        let address = node.status.addresses.first { $0.type == "InternalIP" }?.address ?? node.status.addresses.first?.address ?? ""
        guard port > 0, !address.isEmpty, let agentStreams else {
            throw APIError(503, "ServiceUnavailable", "the agent of node \(pod.spec.nodeName) has not reported where it serves")
        }
        var forwarded = head
        forwarded.target = target + "?" + (["podUID=\(pod.metadata.uid)"] + (head.rawQuery.isEmpty ? [] : [head.rawQuery])).joined(separator: "&")
        // The caller's credentials stay here; the agent knows the server by its certificate.
        forwarded.headers.removeAll { header in
            let lower = header.name.lowercased()
            return lower == "authorization" || lower.hasPrefix("impersonate-") || lower == "host"
        }
        forwarded.headers.insert(("Host", address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"), at: 0)

        let agent: any Channel
        do {
            agent = try await StreamDialer.connect(host: address, port: port, tls: agentStreams, on: channel.eventLoop)
        } catch {
            throw APIError(503, "ServiceUnavailable", "cannot reach the agent of node \(pod.spec.nodeName) at \(address):\(port): \(error)")
        }
        try await agent.writeAndFlush(ByteBuffer(bytes: forwarded.serialized()))
        logger.debug("stream proxied", metadata: ["pod": "\(namespace)/\(name)", "subresource": "\(subresource)", "user": "\(identity.user)"])
        try await withTaskCancellationHandler {
            try await SpliceHandler.join(channel, agent, sniffer: sniffer).get()
        } onCancel: {
            channel.close(promise: nil)
            agent.close(promise: nil)
        }
    }
}
