import Foundation

/// The values a container's environment takes from elsewhere (`valueFrom`, `envFrom`), resolved
/// by the node agent when it starts the container, as the kubelet does.
public enum EnvSources {
    public static let fieldPaths = ["metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels['<KEY>']",
                                    "metadata.annotations['<KEY>']", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.podIP"]
    public static let resources = ["limits.cpu", "limits.memory", "requests.cpu", "requests.memory"]

    public static func fieldPathSupported(_ path: String) -> Bool {
        fieldPaths.contains(path) || mapKey(path, "metadata.labels") != nil || mapKey(path, "metadata.annotations") != nil
    }

    /// `KEY` of `metadata.labels['KEY']`.
    static func mapKey(_ path: String, _ field: String) -> String? {
        guard path.hasPrefix(field + "['"), path.hasSuffix("']") else { return nil }
        return String(path.dropFirst(field.count + 2).dropLast(2))
    }

    /// Why a container cannot start with the environment it asks for: Kubernetes' reason
    /// (`CreateContainerConfigError`) and message.
    public struct ConfigError: Error, CustomStringConvertible, Sendable {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// A pod field's value.
    public static func field(_ path: String, of pod: Pod) throws -> String {
        if let key = mapKey(path, "metadata.labels") { return pod.metadata.labels[key] ?? "" }
        if let key = mapKey(path, "metadata.annotations") { return pod.metadata.annotations[key] ?? "" }
        switch path {
        case "metadata.name": return pod.metadata.name
        case "metadata.namespace": return pod.metadata.namespace
        case "metadata.uid": return pod.metadata.uid
        case "spec.nodeName": return pod.spec.nodeName
        case "spec.serviceAccountName": return pod.spec.serviceAccountName
        case "status.hostIP": return pod.status.hostIp
        case "status.podIP": return pod.status.podIp
        default: throw ConfigError("unsupported fieldPath: \(path)")
        }
    }

    /// A container resource's value in units of `divisor` (rounded up, at least 1 for a set
    /// cpu; the node's allocatable is not known here, so an unset limit is 0).
    public static func resource(_ selector: ResourceFieldSelector, of container: Container) throws -> String {
        let parts = selector.resource.split(separator: ".")
        guard parts.count == 2 else { throw ConfigError("unsupported resource: \(selector.resource)") }
        let values = parts[0] == "limits" ? container.resources.limits : container.resources.requests
        let divisor = try selector.divisor.isEmpty ? Decimal(1) : Quantity(parsing: selector.divisor).value
        guard divisor > 0 else { throw ConfigError("divisor must be greater than 0") }
        guard let text = values[String(parts[1])] else { return "0" }
        let amount = try Quantity(parsing: text).value / divisor
        var rounded = Decimal()
        var exact = amount
        NSDecimalRound(&rounded, &exact, 0, .up)
        return "\(rounded)"
    }
}
