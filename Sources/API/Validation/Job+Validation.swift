/// Kubernetes' defaults and names for Jobs.
public enum JobDefaults {
    public static let backoffLimit: Int32 = 6
    public static let completionMode = "NonIndexed"
    public static let restartPolicies = ["OnFailure", "Never"]
    /// The labels a Job's pods carry; its generated selector matches the first.
    public static let controllerUIDLabel = "batch.kubernetes.io/controller-uid"
    public static let jobNameLabel = "batch.kubernetes.io/job-name"
    /// The same, by their names before Kubernetes 1.27 (still written, as Kubernetes does).
    public static let legacyControllerUIDLabel = "controller-uid"
    public static let legacyJobNameLabel = "job-name"
}

extension Job {
    public mutating func applyDefaults() {
        setTypeMeta()
        if metadata.namespace.isEmpty { metadata.namespace = "default" }
        // Neither given: one pod must succeed, one at a time. Parallelism alone: a work queue
        // (done once a pod succeeds and none runs).
        if !spec.hasCompletions && !spec.hasParallelism { spec.completions = 1 }
        if !spec.hasParallelism { spec.parallelism = 1 }
        if !spec.hasBackoffLimit { spec.backoffLimit = JobDefaults.backoffLimit }
        if spec.completionMode.isEmpty { spec.completionMode = JobDefaults.completionMode }
        if !spec.hasSuspend { spec.suspend = false }
        if spec.hasTemplate { spec.template.spec.applyDefaults() }
    }

    /// A selector as a create generates it: the Job's uid under the controller-uid label, alone.
    var hasGeneratedSelector: Bool {
        spec.selector.matchExpressions.isEmpty && spec.selector.matchLabels.count == 1
            && !(spec.selector.matchLabels[JobDefaults.controllerUIDLabel] ?? "").isEmpty
    }

    /// The selector and pod labels of a Job whose selector is not the user's: from its uid.
    public mutating func uidAssigned() {
        guard !spec.manualSelector else { return }
        let uid = metadata.uid
        spec.template.metadata.labels[JobDefaults.controllerUIDLabel] = uid
        spec.template.metadata.labels[JobDefaults.legacyControllerUIDLabel] = uid
        spec.template.metadata.labels[JobDefaults.jobNameLabel] = metadata.name
        spec.template.metadata.labels[JobDefaults.legacyJobNameLabel] = metadata.name
        spec.selector = LabelSelector()
        spec.selector.matchLabels = [JobDefaults.controllerUIDLabel: uid]
    }

    public func validate() -> [FieldError] {
        var errors = validateObjectMeta(metadata, namespaced: true)
        let selectorSet = !spec.selector.matchLabels.isEmpty || !spec.selector.matchExpressions.isEmpty
        if spec.manualSelector || selectorSet && hasGeneratedSelector {
            // The user's selector, or one generated at the create: it must select the template.
            errors += validateWorkload(selector: spec.selector, hasSelector: spec.hasSelector, template: spec.template,
                                       hasTemplate: spec.hasTemplate, replicas: 0)
        } else {
            if selectorSet {
                errors.append(.invalid("spec.selector", spec.selector.matchLabels.keys.sorted().map { "\($0)=\(spec.selector.matchLabels[$0]!)" }.joined(separator: ","),
                                       "`selector` not auto-generated"))
            }
            if !spec.hasTemplate {
                errors.append(.required("spec.template"))
            } else {
                errors += spec.template.spec.validate(path: "spec.template.spec")
            }
        }
        if spec.hasTemplate && !JobDefaults.restartPolicies.contains(spec.template.spec.restartPolicy) {
            errors.append(.notSupported("spec.template.spec.restartPolicy", spec.template.spec.restartPolicy, JobDefaults.restartPolicies))
        }
        for (field, value, set) in [("parallelism", Int64(spec.parallelism), spec.hasParallelism), ("completions", Int64(spec.completions), spec.hasCompletions),
                                    ("backoffLimit", Int64(spec.backoffLimit), spec.hasBackoffLimit),
                                    ("activeDeadlineSeconds", spec.activeDeadlineSeconds, spec.hasActiveDeadlineSeconds),
                                    ("ttlSecondsAfterFinished", Int64(spec.ttlSecondsAfterFinished), spec.hasTtlSecondsAfterFinished)] where set && value < 0 {
            errors.append(.invalid("spec.\(field)", json: .int(value), "must be greater than or equal to 0"))
        }
        if spec.hasActiveDeadlineSeconds && spec.activeDeadlineSeconds == 0 {
            errors.append(.invalid("spec.activeDeadlineSeconds", json: .int(0), "must be greater than 0"))
        }
        if spec.completionMode != JobDefaults.completionMode {
            errors.append(.notSupported("spec.completionMode", spec.completionMode, [JobDefaults.completionMode]))
        }
        return errors
    }

    /// What an update may not change (as in Kubernetes): the selector, the pod template, the
    /// completions and the completion mode.
    public func immutabilityErrors(updating current: Job) -> [FieldError] {
        var errors: [FieldError] = []
        if spec.selector != current.spec.selector { errors.append(.invalid("spec.selector", "", "field is immutable")) }
        var template = spec.template, currentTemplate = current.spec.template
        template.spec.applyDefaults()
        currentTemplate.spec.applyDefaults()
        if template.jsonBytes() != currentTemplate.jsonBytes() { errors.append(.invalid("spec.template", "", "field is immutable")) }
        if spec.hasCompletions != current.spec.hasCompletions || spec.completions != current.spec.completions {
            errors.append(.invalid("spec.completions", json: spec.hasCompletions ? .int(Int64(spec.completions)) : .null, "field is immutable"))
        }
        if spec.completionMode != current.spec.completionMode { errors.append(.invalid("spec.completionMode", spec.completionMode, "field is immutable")) }
        return errors
    }
}
