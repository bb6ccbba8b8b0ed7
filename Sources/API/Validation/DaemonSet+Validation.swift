/// Kubernetes' defaults and names for DaemonSets.
public enum DaemonSetDefaults {
    public static let maxUnavailable: Int32 = 1
    public static let revisionHistoryLimit: Int32 = 10
    public static let strategies = ["RollingUpdate", "OnDelete"]
    /// The label naming the template revision a pod was made from.
    public static let revisionLabel = "controller-revision-hash"
    /// The node field a pod's required node affinity may select (`matchFields`).
    public static let nodeNameField = "metadata.name"
}

extension DaemonSet {
    public mutating func applyDefaults() {
        setTypeMeta()
        if metadata.namespace.isEmpty { metadata.namespace = "default" }
        if spec.updateStrategy.type.isEmpty { spec.updateStrategy.type = "RollingUpdate" }
        if spec.updateStrategy.type == "RollingUpdate" {
            if !spec.updateStrategy.rollingUpdate.hasMaxUnavailable {
                spec.updateStrategy.rollingUpdate.maxUnavailable = IntOrString(int: DaemonSetDefaults.maxUnavailable)
            }
            if !spec.updateStrategy.rollingUpdate.hasMaxSurge { spec.updateStrategy.rollingUpdate.maxSurge = IntOrString(int: 0) }
        }
        if !spec.hasRevisionHistoryLimit { spec.revisionHistoryLimit = DaemonSetDefaults.revisionHistoryLimit }
        if spec.hasTemplate { spec.template.spec.applyDefaults() }
    }

    public func validate() -> [FieldError] {
        var errors = validateObjectMeta(metadata, namespaced: true)
            + validateWorkload(selector: spec.selector, hasSelector: spec.hasSelector, template: spec.template,
                               hasTemplate: spec.hasTemplate, replicas: 0)
        if spec.hasTemplate && spec.template.spec.restartPolicy != "Always" {
            errors.append(.notSupported("spec.template.spec.restartPolicy", spec.template.spec.restartPolicy, ["Always"]))
        }
        if spec.hasTemplate && spec.template.spec.hasActiveDeadlineSeconds {
            errors.append(.init(.forbidden, "spec.template.spec.activeDeadlineSeconds", detail: "activeDeadlineSeconds in DaemonSet is not Supported"))
        }
        let strategy = spec.updateStrategy
        if !DaemonSetDefaults.strategies.contains(strategy.type) {
            errors.append(.notSupported("spec.updateStrategy.type", strategy.type, DaemonSetDefaults.strategies))
        } else if strategy.type == "RollingUpdate" {
            let path = "spec.updateStrategy.rollingUpdate"
            errors += validateIntOrPercent(strategy.rollingUpdate.maxUnavailable, path: "\(path).maxUnavailable")
            if !isZero(strategy.rollingUpdate.maxSurge) {
                errors.append(.invalid("\(path).maxSurge", strategy.rollingUpdate.maxSurge.displayString, "only 0 is supported here: nodes are updated one old pod out, one new pod in"))
            } else if isZero(strategy.rollingUpdate.maxUnavailable) {
                errors.append(.invalid("\(path).maxUnavailable", strategy.rollingUpdate.maxUnavailable.displayString, "cannot be 0 when maxSurge is 0"))
            }
        }
        if spec.minReadySeconds < 0 {
            errors.append(.invalid("spec.minReadySeconds", json: .int(Int64(spec.minReadySeconds)), "must be greater than or equal to 0"))
        }
        if spec.hasRevisionHistoryLimit && spec.revisionHistoryLimit < 0 {
            errors.append(.invalid("spec.revisionHistoryLimit", json: .int(Int64(spec.revisionHistoryLimit)), "must be greater than or equal to 0"))
        }
        return errors
    }

    /// An update may not change the selector.
    public func immutabilityErrors(updating current: DaemonSet) -> [FieldError] {
        spec.selector == current.spec.selector ? [] : [.invalid("spec.selector", "", "field is immutable")]
    }
}
