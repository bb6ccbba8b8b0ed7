extension Namespace {
    public mutating func applyDefaults() {
        setTypeMeta()
        if !hasStatus || status.phase.isEmpty { status.phase = "Active" }
    }

    public func validate() -> [FieldError] {
        validateObjectMeta(metadata, namespaced: false, nameRule: NameSyntax.labelProblem)
    }
}

extension Node {
    public mutating func applyDefaults() {
        setTypeMeta()
        // podCIDR is podCIDRs' first entry, whichever of the two a client wrote.
        if spec.podCidrs.isEmpty, !spec.podCidr.isEmpty { spec.podCidrs = [spec.podCidr] }
        if spec.podCidr.isEmpty, let first = spec.podCidrs.first { spec.podCidr = first }
    }

    public func validate() -> [FieldError] {
        var errors = validateObjectMeta(metadata, namespaced: false)
        if spec.podCidrs.first != nil, spec.podCidr != spec.podCidrs.first {
            errors.append(.invalid("spec.podCIDR", spec.podCidr, "must match the first entry of spec.podCIDRs"))
        }
        for (i, cidr) in spec.podCidrs.enumerated() where CIDR(cidr) == nil {
            errors.append(.invalid("spec.podCIDRs[\(i)]", cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
        }
        if spec.podCidrs.count > 1 {
            errors.append(FieldError(.tooMany, "spec.podCIDRs", detail: "must have at most 1 item (one IPv4 range)"))
        }
        for (i, taint) in spec.taints.enumerated() {
            let path = "spec.taints[\(i)]"
            if let problem = LabelSyntax.keyProblem(taint.key) { errors.append(.invalid("\(path).key", taint.key, problem)) }
            if let problem = LabelSyntax.valueProblem(taint.value) { errors.append(.invalid("\(path).value", taint.value, problem)) }
            if !PodValues.taintEffects.contains(taint.effect) { errors.append(.notSupported("\(path).effect", taint.effect, PodValues.taintEffects)) }
        }
        errors += validateQuantities(status.capacity, path: "status.capacity")
        errors += validateQuantities(status.allocatable, path: "status.allocatable")
        return errors
    }

    /// A node's pod ranges are set once: an update may fill them in, never change them.
    public func immutabilityErrors(updating current: Node) -> [FieldError] {
        guard !current.spec.podCidrs.isEmpty, spec.podCidrs != current.spec.podCidrs else { return [] }
        return [FieldError(.forbidden, "spec.podCIDRs", detail: "node updates may not change podCIDR except from \"\" to valid")]
    }
}

/// An IPv4 address range in CIDR notation (`10.244.3.0/24`): its network address and prefix.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public let network: UInt32
    public let prefix: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let prefix = Int(parts[1]), (0...32).contains(prefix), parts[1].allSatisfy(\.isNumber) else { return nil }
        let octets = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var address: UInt32 = 0
        for octet in octets {
            guard !octet.isEmpty, octet.count <= 3, octet.allSatisfy(\.isNumber), let value = UInt32(octet), value <= 255 else { return nil }
            address = address << 8 | value
        }
        self.init(network: address, prefix: prefix)
    }

    public init(network: UInt32, prefix: Int) {
        self.prefix = prefix
        self.network = prefix == 0 ? 0 : network & (UInt32.max << (32 - prefix))
    }

    public var description: String {
        "\(network >> 24).\(network >> 16 & 255).\(network >> 8 & 255).\(network & 255)/\(prefix)"
    }

    /// The `index`th range of `prefix` bits inside this one (nil past the last).
    public func subnet(_ index: Int, prefix: Int) -> CIDR? {
        guard prefix >= self.prefix, prefix <= 32, index >= 0, index < subnetCount(prefix: prefix) else { return nil }
        return CIDR(network: network | UInt32(index) << (32 - prefix), prefix: prefix)
    }

    /// How many ranges of `prefix` bits this one holds.
    public func subnetCount(prefix: Int) -> Int { prefix < self.prefix ? 0 : 1 << (prefix - self.prefix) }

    /// Which of this range's `prefix`-bit ranges `other` is (nil when it is not one).
    public func index(of other: CIDR, prefix: Int) -> Int? {
        guard other.prefix == prefix, prefix >= self.prefix, CIDR(network: other.network, prefix: self.prefix).network == network else { return nil }
        return Int((other.network - network) >> (32 - prefix))
    }
}

extension Event {
    public mutating func applyDefaults() {
        setTypeMeta()
        if metadata.namespace.isEmpty { metadata.namespace = "default" }
        if type.isEmpty { type = "Normal" }
    }

    public func validate() -> [FieldError] {
        var errors = validateObjectMeta(metadata, namespaced: true)
        if !["Normal", "Warning"].contains(type) { errors.append(.notSupported("type", type, ["Normal", "Warning"])) }
        if involvedObject.kind.isEmpty { errors.append(.required("involvedObject.kind")) }
        return errors
    }
}

extension Lease {
    public mutating func applyDefaults() {
        setTypeMeta()
        if metadata.namespace.isEmpty { metadata.namespace = "default" }
    }

    public func validate() -> [FieldError] {
        var errors = validateObjectMeta(metadata, namespaced: true)
        if spec.hasLeaseDurationSeconds && spec.leaseDurationSeconds <= 0 {
            errors.append(.invalid("spec.leaseDurationSeconds", String(spec.leaseDurationSeconds), "must be greater than 0"))
        }
        return errors
    }
}

/// Checks shared by the workload kinds: a selector that selects the template's labels.
func validateWorkload(selector: LabelSelector, hasSelector: Bool, template: PodTemplateSpec, hasTemplate: Bool, replicas: Int32) -> [FieldError] {
    var errors: [FieldError] = []
    if replicas < 0 { errors.append(.invalid("spec.replicas", String(replicas), "must be greater than or equal to 0")) }
    if !hasSelector || (selector.matchLabels.isEmpty && selector.matchExpressions.isEmpty) {
        errors.append(.required("spec.selector"))
    } else {
        errors += validateSelector(selector, path: "spec.selector")
    }
    if !hasTemplate {
        errors.append(.required("spec.template"))
    } else {
        if let parsed = try? Selector(selector), !parsed.isEverything, !parsed.matches(template.metadata.labels) {
            errors.append(.invalid("spec.template.metadata.labels", template.metadata.labels.keys.sorted().map { "\($0)=\(template.metadata.labels[$0]!)" }.joined(separator: ","),
                                   "`selector` does not match template `labels`"))
        }
        for key in template.metadata.labels.keys.sorted() {
            if let problem = LabelSyntax.keyProblem(key) { errors.append(.invalid("spec.template.metadata.labels", key, problem)) }
        }
        errors += template.spec.validate(path: "spec.template.spec")
    }
    return errors
}

extension ReplicaSet {
    public mutating func applyDefaults() {
        setTypeMeta()
        if metadata.namespace.isEmpty { metadata.namespace = "default" }
        if !spec.hasReplicas { spec.replicas = 1 }
        if spec.hasTemplate { spec.template.spec.applyDefaults() }
    }

    public func validate() -> [FieldError] {
        validateObjectMeta(metadata, namespaced: true)
            + validateWorkload(selector: spec.selector, hasSelector: spec.hasSelector, template: spec.template,
                               hasTemplate: spec.hasTemplate, replicas: spec.replicas)
    }
}

public enum DeploymentDefaults {
    public static let maxSurge = "25%"
    public static let maxUnavailable = "25%"
    public static let revisionHistoryLimit: Int32 = 10
    public static let progressDeadlineSeconds: Int32 = 600
}

extension Deployment {
    public mutating func applyDefaults() {
        setTypeMeta()
        if metadata.namespace.isEmpty { metadata.namespace = "default" }
        if !spec.hasReplicas { spec.replicas = 1 }
        if spec.strategy.type.isEmpty { spec.strategy.type = "RollingUpdate" }
        if spec.strategy.type == "RollingUpdate" {
            if !spec.strategy.rollingUpdate.hasMaxSurge { spec.strategy.rollingUpdate.maxSurge = IntOrString(string: DeploymentDefaults.maxSurge) }
            if !spec.strategy.rollingUpdate.hasMaxUnavailable { spec.strategy.rollingUpdate.maxUnavailable = IntOrString(string: DeploymentDefaults.maxUnavailable) }
        }
        if !spec.hasRevisionHistoryLimit { spec.revisionHistoryLimit = DeploymentDefaults.revisionHistoryLimit }
        if !spec.hasProgressDeadlineSeconds { spec.progressDeadlineSeconds = DeploymentDefaults.progressDeadlineSeconds }
        if spec.hasTemplate { spec.template.spec.applyDefaults() }
    }

    public func validate() -> [FieldError] {
        var errors = validateObjectMeta(metadata, namespaced: true)
            + validateWorkload(selector: spec.selector, hasSelector: spec.hasSelector, template: spec.template,
                               hasTemplate: spec.hasTemplate, replicas: spec.replicas)
        let strategies = ["RollingUpdate", "Recreate"]
        if !strategies.contains(spec.strategy.type) {
            errors.append(.notSupported("spec.strategy.type", spec.strategy.type, strategies))
        } else if spec.strategy.type == "Recreate" && spec.strategy.hasRollingUpdate {
            errors.append(.init(.forbidden, "spec.strategy.rollingUpdate", detail: "may not be specified when strategy `type` is 'Recreate'"))
        } else if spec.strategy.type == "RollingUpdate" {
            let ru = spec.strategy.rollingUpdate
            errors += validateIntOrPercent(ru.maxSurge, path: "spec.strategy.rollingUpdate.maxSurge")
            errors += validateIntOrPercent(ru.maxUnavailable, path: "spec.strategy.rollingUpdate.maxUnavailable")
            if isZero(ru.maxSurge) && isZero(ru.maxUnavailable) {
                errors.append(.invalid("spec.strategy.rollingUpdate.maxUnavailable", ru.maxUnavailable.displayString, "may not be 0 when `maxSurge` is 0"))
            }
        }
        if spec.hasRevisionHistoryLimit && spec.revisionHistoryLimit < 0 {
            errors.append(.invalid("spec.revisionHistoryLimit", String(spec.revisionHistoryLimit), "must be greater than or equal to 0"))
        }
        return errors
    }
}

/// Whether an int-or-percent is zero (0 or 0%).
func isZero(_ v: IntOrString) -> Bool {
    switch v.value {
    case .intVal(0), .strVal("0%"): true
    default: false
    }
}

/// A count or a percentage, neither negative (a maxUnavailable at most 100%).
func validateIntOrPercent(_ v: IntOrString, path: String) -> [FieldError] {
    switch v.value {
    case .intVal(let i) where i < 0:
        return [.invalid(path, String(i), "must be greater than or equal to 0")]
    case .strVal(let s):
        guard s.hasSuffix("%"), let percent = Int(s.dropLast()), percent >= 0 else {
            return [.invalid(path, s, "must be an integer or percentage (e.g '5%')")]
        }
        return percent > 100 && path.hasSuffix("maxUnavailable") ? [.invalid(path, s, "must not be greater than 100%")] : []
    default:
        return []
    }
}
