import API

/// A request path split the Kubernetes way:
///
///     /api/v1/namespaces/default/pods/web/status    group "", kind Pod, namespace default, name web, status
///     /apis/apps/v1/deployments                     every Deployment in every namespace
///     /api/v1/nodes/n1                              a cluster-scoped object
struct ResourcePath {
    let kind: any APIObject.Type
    /// nil: all namespaces (or a cluster-scoped kind).
    let namespace: String?
    let name: String?
    let subresource: String?
    /// The custom resource when `kind` is `CustomObject` (its handling runs with it as
    /// `CustomResources.current`).
    var custom: CustomResource? = nil

    /// nil when the path names no resource (discovery, unknown paths). Custom resources are
    /// looked up in `registry`.
    static func parse(_ segments: [String], registry: CustomResourceRegistry? = nil) throws -> ResourcePath? {
        let group: String, version: String
        var rest: ArraySlice<String>
        if segments.count >= 2, segments[0] == "api" {
            (group, version, rest) = ("", segments[1], segments[2...])
        } else if segments.count >= 3, segments[0] == "apis" {
            (group, version, rest) = (segments[1], segments[2], segments[3...])
        } else {
            return nil
        }
        guard !rest.isEmpty else { return nil }
        var namespace: String?
        if rest.first == "namespaces", rest.count >= 3, rest[rest.startIndex + 2] != "status" {
            namespace = rest[rest.startIndex + 1]
            rest = rest.dropFirst(2)
        }
        let resource = rest.removeFirst()
        if let custom = registry?.resource(group: group, version: version, plural: resource) {
            if namespace != nil && !custom.info.namespaced {
                throw APIError.notFound("\(resource) are not namespaced")
            }
            let name = rest.popFirst()
            let subresource = rest.popFirst()
            guard rest.isEmpty, subresource == nil || subresource == "status" && custom.statusSubresource || subresource == "scale" && custom.scale != nil else {
                throw APIError.notFound("the server could not find the requested resource (subresource \(subresource ?? ""))")
            }
            return ResourcePath(kind: CustomObject.self, namespace: namespace, name: name, subresource: subresource, custom: custom)
        }
        guard let kind = Kinds.all.first(where: { $0.kindInfo.group == group && $0.kindInfo.resource == resource }) else {
            throw APIError.notFound("the server could not find the requested resource (\(group.isEmpty ? "" : group + "/")\(version) \(resource))")
        }
        guard kind.kindInfo.version == version else {
            throw APIError.notFound("the server could not find the requested resource: \(resource) is served as \(kind.kindInfo.apiVersion), not \(group.isEmpty ? version : group + "/" + version)")
        }
        if namespace != nil && !kind.kindInfo.namespaced {
            throw APIError.notFound("\(resource) are not namespaced")
        }
        let name = rest.popFirst()
        let subresource = rest.popFirst()
        let podSubresources: Set<String?> = ["binding", "log", "eviction", "exec", "attach", "portforward"]
        guard rest.isEmpty, subresource == nil || subresource == "status" || kind == Pod.self && podSubresources.contains(subresource)
                || subresource == "scale" && (kind == Deployment.self || kind == ReplicaSet.self) else {
            throw APIError.notFound("the server could not find the requested resource (subresource \(subresource ?? ""))")
        }
        return ResourcePath(kind: kind, namespace: namespace, name: name, subresource: subresource)
    }
}
