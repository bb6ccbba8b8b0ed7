import API
import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import NIOHTTP1
import Store

extension APIResponder {
    /// What pods do differently: graceful deletion, binding to a node, and logs from the node's agent.
    /// nil: the generic handler answers.
    func handlePod(_ path: ResourcePath, name: String, _ request: inout Request, query: QueryParameters, format: WireFormat) async throws -> Response? {
        let namespace = path.namespace ?? ""
        switch (request.method, path.subresource) {
        case (.delete, nil):
            return encode(try await deletePod(namespace: namespace, name: name, query: query), format)
        case (.post, "binding"):
            let body = try await self.body(&request)
            let binding = Self.requestFormat(request) == .protobuf ? try Binding(protobuf: body) : try Binding(jsonBytes: body)
            try await bind(namespace: namespace, name: name, to: binding.target.name)
            return Self.created(format)
        case (.get, "log"):
            return try await podLog(namespace: namespace, name: name, query: query)
        case (.post, "eviction"):
            // policy/v1 Eviction: with no disruption budgets here, an eviction is the pod's
            // graceful deletion, with the Eviction's deleteOptions (kubectl drain uses it).
            let body = try await self.body(&request)
            var options = query
            if !body.isEmpty {
                let eviction: JSONValue
                do { eviction = try JSONParser.parse(bytes: body) } catch { throw APIError.badRequest("the body of an eviction must be a JSON policy/v1 Eviction: \(error)") }
                if case .string(let evicted)? = eviction["metadata"]?["name"], evicted != name {
                    throw APIError.badRequest("name in URL does not match name in Eviction object")
                }
                if let deleteOptions = eviction["deleteOptions"] {
                    try Self.readDeleteOptions(JSONWriter.bytes(deleteOptions), into: &options)
                }
            }
            _ = try await deletePod(namespace: namespace, name: name, query: options)
            return Self.created(format)
        case (_, "exec"), (_, "attach"), (_, "portforward"):
            // An upgrade request is taken off the connection before it gets here (see
            // APIResponder+Streams.swift); this one asked for none (or came over HTTP/2).
            throw APIError.badRequest("Upgrade request required")
        case (_, "binding"), (_, "log"), (_, "eviction"):
            throw APIError.methodNotAllowed(request.method.rawValue)
        default:
            return nil
        }
    }

    /// 201 with a Status of Success: what a binding or an eviction answers.
    static func created(_ format: WireFormat) -> Response {
        var status = Status()
        status.apiVersion = "v1"
        status.kind = "Status"
        status.status = "Success"
        status.code = 201
        return Response(status: .created, headers: [.contentType: format.rawValue],
                        body: .init(byteBuffer: ByteBuffer(bytes: format == .protobuf ? status.protoBytes() : status.jsonBytes())))
    }

    /// A pod on a node is deleted gracefully: it gets a deletionTimestamp and grace period, its
    /// agent stops its containers and then deletes it with grace 0. A pod on no node, in a
    /// terminal phase, or deleted with `gracePeriodSeconds=0` goes at once.
    /// With `?dryRun=All`: decided and checked the same way, answered, not written (see `deleteObject`).
    func deletePod(namespace: String, name: String, query: QueryParameters) async throws -> Pod {
        let dryRun = try Self.dryRun(query)
        let precondition = query["resourceVersion"].flatMap { Int64($0) }
        var requested: Int64?
        if let text = query["gracePeriodSeconds"] {
            guard let value = Int64(text), value >= 0 else { throw APIError.badRequest("gracePeriodSeconds must be a non-negative integer, not \"\(text)\"") }
            requested = value
        }
        for _ in 0..<5 {
            var pod = try await store.get(Pod.self, namespace: namespace, name: name)
            try Self.checkUIDPrecondition(query[Self.uidPrecondition], pod)
            let grace = requested ?? (pod.metadata.hasDeletionGracePeriodSeconds ? pod.metadata.deletionGracePeriodSeconds
                                                                                  : (pod.spec.hasTerminationGracePeriodSeconds ? pod.spec.terminationGracePeriodSeconds : 30))
            let terminal = pod.status.phase == "Succeeded" || pod.status.phase == "Failed"
            if pod.spec.nodeName.isEmpty || terminal || grace == 0 {
                if dryRun {
                    if let precondition, String(precondition) != pod.metadata.resourceVersion { throw StoreError.modified(Pod.kindInfo, name) }
                    return pod
                }
                // (With a uid precondition, only the incarnation just read.)
                let asRead = query[Self.uidPrecondition] == nil ? precondition : precondition ?? Int64(pod.metadata.resourceVersion)
                return try await store.delete(Pod.self, namespace: namespace, name: name, resourceVersion: asRead)
            }
            if pod.metadata.hasDeletionTimestamp && pod.metadata.deletionGracePeriodSeconds <= grace {
                return pod  // already terminating, at least as soon
            }
            if let precondition, String(precondition) != pod.metadata.resourceVersion { throw StoreError.modified(Pod.kindInfo, name) }
            pod.metadata.deletionTimestamp = Timestamp(seconds: Int64(Date().timeIntervalSince1970) + grace, nanos: 0)
            pod.metadata.deletionGracePeriodSeconds = grace
            if dryRun { return pod }
            do {
                return try await store.update(pod)
            } catch let error as StoreError where error.code == .conflict {
                continue  // changed meanwhile (a status write): decide again on the new state
            }
        }
        throw APIError(409, "Conflict", "pod \"\(name)\" kept changing while being deleted; try again")
    }

    /// Sets `spec.nodeName` of an unbound pod; a pod already on a node answers 409.
    func bind(namespace: String, name: String, to node: String) async throws {
        guard !node.isEmpty else { throw APIError(422, "Invalid", "Binding.target.name: Required value: the node to bind to") }
        // Decided and written inside the store's writer: no other write comes between, so two
        // schedulers racing on one pod get one binding and one 409, with no read before.
        let now = Timestamp(date: Date())
        _ = try await store.update(Pod.self, namespace: namespace, name: name) { pod in
            guard pod.spec.nodeName.isEmpty else {
                throw APIError(409, "Conflict", "Operation cannot be fulfilled on pods/binding \"\(name)\": pod \(name) is already assigned to node \"\(pod.spec.nodeName)\"")
            }
            guard !pod.metadata.hasDeletionTimestamp else {
                throw APIError(409, "Conflict", "pod \(name) is being deleted, cannot be assigned to a host")
            }
            pod.spec.nodeName = node
            // As Kubernetes' binding does: the pod is now scheduled.
            var scheduled = PodCondition()
            scheduled.type = "PodScheduled"
            scheduled.status = "True"
            scheduled.lastTransitionTime = now
            pod.status.conditions.removeAll { $0.type == "PodScheduled" }
            pod.status.conditions.append(scheduled)
        }
    }

    /// The container a request names (logs, exec, attach), or the pod's only one; 400 in
    /// Kubernetes' words otherwise.
    static func container(of pod: Pod, named requested: String?) throws -> String {
        let name = pod.metadata.name
        guard let requested, !requested.isEmpty else {
            guard pod.spec.containers.count == 1 else {
                let initNames = pod.spec.initContainers.isEmpty ? "" : " or one of the init containers: [\(pod.spec.initContainers.map(\.name).joined(separator: " "))]"
                throw APIError.badRequest("a container name must be specified for pod \(name), choose one of: [\(pod.spec.containers.map(\.name).joined(separator: " "))]\(initNames)")
            }
            return pod.spec.containers[0].name
        }
        guard pod.spec.allContainers.contains(where: { $0.name == requested }) else {
            throw APIError.badRequest("container \(requested) is not valid for pod \(name)")
        }
        return requested
    }

    /// `pods/NAME/log`: streamed from the agent of the pod's node, which the server reaches over TLS
    /// with its own client certificate.
    func podLog(namespace: String, name: String, query: QueryParameters) async throws -> Response {
        let pod = try await store.get(Pod.self, namespace: namespace, name: name)
        let container = try Self.container(of: pod, named: query["container"])
        guard !pod.spec.nodeName.isEmpty else {
            throw APIError.badRequest("pod \(name) has not been scheduled to a node: no logs yet")
        }
        let node = try await store.get(Node.self, namespace: "", name: pod.spec.nodeName)
        let port = node.status.daemonEndpoints.kubeletEndpoint.port
        let address = node.status.addresses.first { $0.type == "InternalIP" }?.address ?? node.status.addresses.first?.address ?? ""
        guard port > 0, !address.isEmpty, let agents else {
            throw APIError(503, "ServiceUnavailable", "the agent of node \(pod.spec.nodeName) has not reported where it serves logs")
        }
        var parameters: [String] = ["podUID=\(pod.metadata.uid)"]
        for key in ["follow", "previous", "tailLines", "timestamps", "sinceSeconds", "sinceTime", "limitBytes"] {
            if let value = query[key] {
                let safe = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~:"))
                parameters.append("\(key)=\(value.addingPercentEncoding(withAllowedCharacters: safe) ?? value)")
            }
        }
        let host = address.contains(":") ? "[\(address)]" : address
        var forward = HTTPClientRequest(url: "https://\(host):\(port)/containerLogs/\(namespace)/\(name)/\(container)?" + parameters.joined(separator: "&"))
        forward.method = .GET
        let follow = query["follow"] == "true" || query["follow"] == "1"
        let upstream: HTTPClientResponse
        do {
            upstream = try await agents.execute(forward, timeout: follow ? .hours(24) : .seconds(30))
        } catch {
            throw APIError(503, "ServiceUnavailable", "cannot reach the agent of node \(pod.spec.nodeName) at \(host):\(port): \(error)")
        }
        guard upstream.status == .ok else {
            var buffer = try await upstream.body.collect(upTo: 64 * 1024)
            let text = buffer.readString(length: buffer.readableBytes) ?? ""
            throw APIError(Int(upstream.status.code) == 404 ? 404 : 502, Int(upstream.status.code) == 404 ? "NotFound" : "BadGateway",
                           text.isEmpty ? "the agent answered HTTP \(upstream.status.code)" : text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return Response(status: .ok, headers: [.contentType: "text/plain"], body: ResponseBody { writer in
            for try await chunk in upstream.body { try await writer.write(chunk) }
            try await writer.finish(nil)
        })
    }
}
