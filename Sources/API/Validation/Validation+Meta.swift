/// Limits from Kubernetes' apimachinery validation.
public enum ValidationLimits {
    /// Total size of all annotations of one object.
    public static let totalAnnotationBytes = 256 * 1024
    /// Longest string accepted in any single spec field we check (commands, env values).
    public static let maxFieldBytes = 1024 * 1024
}

func validateObjectMeta(_ meta: ObjectMeta, namespaced: Bool, nameRule: (String) -> String? = NameSyntax.subdomainProblem) -> [FieldError] {
    var errors: [FieldError] = []
    if meta.name.isEmpty {
        if meta.generateName.isEmpty { errors.append(.required("metadata.name", "name or generateName is required")) }
    } else if let problem = nameRule(meta.name) {
        errors.append(.invalid("metadata.name", meta.name, problem))
    }
    if namespaced {
        if meta.namespace.isEmpty {
            errors.append(.required("metadata.namespace"))
        } else if let problem = NameSyntax.labelProblem(meta.namespace) {
            errors.append(.invalid("metadata.namespace", meta.namespace, problem))
        }
    } else if !meta.namespace.isEmpty {
        errors.append(.init(.forbidden, "metadata.namespace", detail: "not allowed on this type"))
    }
    for key in meta.labels.keys.sorted() {
        if let problem = LabelSyntax.keyProblem(key) { errors.append(.invalid("metadata.labels", key, problem)) }
        if let problem = LabelSyntax.valueProblem(meta.labels[key]!) { errors.append(.invalid("metadata.labels", meta.labels[key]!, problem)) }
    }
    var annotationBytes = 0
    for key in meta.annotations.keys.sorted() {
        if let problem = LabelSyntax.keyProblem(key) { errors.append(.invalid("metadata.annotations", key, problem)) }
        annotationBytes += key.utf8.count + meta.annotations[key]!.utf8.count
    }
    if annotationBytes > ValidationLimits.totalAnnotationBytes {
        errors.append(.init(.tooLong, "metadata.annotations", detail: "may not be more than \(ValidationLimits.totalAnnotationBytes) bytes"))
    }
    for (i, owner) in meta.ownerReferences.enumerated() {
        let path = "metadata.ownerReferences[\(i)]"
        if owner.apiVersion.isEmpty { errors.append(.required(path + ".apiVersion")) }
        if owner.kind.isEmpty { errors.append(.required(path + ".kind")) }
        if owner.name.isEmpty { errors.append(.required(path + ".name")) }
        if owner.uid.isEmpty { errors.append(.required(path + ".uid")) }
    }
    if meta.ownerReferences.filter({ $0.hasController && $0.controller }).count > 1 {
        errors.append(.invalid("metadata.ownerReferences", "", "only one reference can have Controller set to true"))
    }
    return errors
}

func validateQuantities(_ map: [String: String], path: String) -> [FieldError] {
    var errors: [FieldError] = []
    for key in map.keys.sorted() {
        let text = map[key]!
        do {
            let q = try Quantity(parsing: text)
            if q.value < 0 { errors.append(.invalid("\(path)[\(key)]", text, "must be greater than or equal to 0")) }
        } catch {
            errors.append(.invalid("\(path)[\(key)]", text, "\(error)"))
        }
        if let problem = LabelSyntax.keyProblem(key) { errors.append(.invalid(path, key, "resource name \(problem)")) }
    }
    return errors
}

func validateSelector(_ selector: LabelSelector, path: String) -> [FieldError] {
    do {
        _ = try Selector(selector)
        return []
    } catch {
        return [.invalid(path, "", "\(error)")]
    }
}
