/// How pods choose nodes, shared by the scheduler and the controllers that decide where pods
/// belong (DaemonSets).
extension NodeSelectorRequirement {
    /// Whether a node's labels (or fields) satisfy the requirement: In, NotIn, Exists,
    /// DoesNotExist, Gt, Lt (integers).
    public func matches(_ values: [String: String]) -> Bool {
        let value = values[key]
        switch `operator` {
        case "In": return value.map { self.values.contains($0) } ?? false
        case "NotIn": return value.map { !self.values.contains($0) } ?? true
        case "Exists": return value != nil
        case "DoesNotExist": return value == nil
        case "Gt", "Lt":
            guard let value, let number = Int64(value), let bound = self.values.first.flatMap({ Int64($0) }) else { return false }
            return `operator` == "Gt" ? number > bound : number < bound
        default: return false
        }
    }
}

extension NodeSelectorTerm {
    /// Every expression holds for the node's labels and every field requirement for its name.
    public func matches(labels: [String: String], nodeName: String) -> Bool {
        matchExpressions.allSatisfy { $0.matches(labels) }
            && (matchFields.isEmpty || matchFields.allSatisfy { $0.matches(["metadata.name": nodeName]) })
    }
}

extension Toleration {
    /// Kubernetes' matching: an empty key with Exists tolerates everything; Equal (the default)
    /// needs the value; an empty effect matches every effect.
    public func tolerates(_ taint: Taint) -> Bool {
        guard effect.isEmpty || effect == taint.effect else { return false }
        if key.isEmpty { return `operator` == "Exists" }
        guard key == taint.key else { return false }
        return `operator` == "Exists" || value == taint.value
    }
}
