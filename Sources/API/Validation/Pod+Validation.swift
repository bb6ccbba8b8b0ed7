public enum PodDefaults {
    public static let restartPolicy = "Always"
    public static let terminationGracePeriodSeconds: Int64 = 30
    public static let schedulerName = "default-scheduler"
    public static let probePeriodSeconds: Int32 = 10
    public static let probeTimeoutSeconds: Int32 = 1
    public static let probeSuccessThreshold: Int32 = 1
    public static let probeFailureThreshold: Int32 = 3

    /// Always for `:latest` or no tag, IfNotPresent for another tag or a digest (Kubernetes' rule).
    public static func pullPolicy(image: String) -> String {
        if image.contains("@") { return "IfNotPresent" }
        let last = image.split(separator: "/").last.map(String.init) ?? image
        guard let colon = last.lastIndex(of: ":") else { return "Always" }
        return last[last.index(after: colon)...] == "latest" ? "Always" : "IfNotPresent"
    }
}

public enum PodValues {
    public static let restartPolicies = ["Always", "OnFailure", "Never"]
    public static let protocols = ["TCP", "UDP", "SCTP"]
    public static let tolerationOperators = ["Equal", "Exists"]
    public static let taintEffects = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
    public static let nodeSelectorOperators = ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    public static let phases = ["Pending", "Running", "Succeeded", "Failed", "Unknown"]
}

extension Pod {
    public mutating func applyDefaults() {
        setTypeMeta()
        if metadata.namespace.isEmpty { metadata.namespace = "default" }
        spec.applyDefaults()
    }

    public func validate() -> [FieldError] {
        validateObjectMeta(metadata, namespaced: true) + spec.validate(path: "spec")
    }
}

extension PodSpec {
    /// The init containers, then the pod's own: every container a name may refer to.
    public var allContainers: [Container] { initContainers + containers }

    /// The time a stop gives the pod's containers: terminationGracePeriodSeconds, else 30 s.
    public var terminationGrace: Duration {
        .seconds(hasTerminationGracePeriodSeconds ? terminationGracePeriodSeconds : PodDefaults.terminationGracePeriodSeconds)
    }

    public mutating func applyDefaults() {
        if restartPolicy.isEmpty { restartPolicy = PodDefaults.restartPolicy }
        if !hasTerminationGracePeriodSeconds { terminationGracePeriodSeconds = PodDefaults.terminationGracePeriodSeconds }
        if schedulerName.isEmpty { schedulerName = PodDefaults.schedulerName }
        for i in initContainers.indices { initContainers[i].applyDefaults() }
        for i in containers.indices { containers[i].applyDefaults() }
        for i in tolerations.indices where tolerations[i].operator.isEmpty {
            tolerations[i].operator = "Equal"
        }
        applyVolumeDefaults()
    }

    public func validate(path: String) -> [FieldError] {
        var errors: [FieldError] = []
        if containers.isEmpty { errors.append(.required("\(path).containers")) }
        var names = Set<String>()
        for (i, container) in initContainers.enumerated() {
            let cpath = "\(path).initContainers[\(i)]"
            errors += container.validate(path: cpath, names: &names) + validateVolumeMounts(container, path: cpath)
                + validateLifecycle(container, path: cpath)
            let sidecar = container.restartPolicy == ContainerValues.sidecarRestartPolicy
            if !container.restartPolicy.isEmpty && !sidecar {
                errors.append(.notSupported("\(cpath).restartPolicy", container.restartPolicy, [ContainerValues.sidecarRestartPolicy]))
            }
            if !sidecar {
                for (field, set) in [("lifecycle", container.hasLifecycle), ("livenessProbe", container.hasLivenessProbe),
                                     ("readinessProbe", container.hasReadinessProbe), ("startupProbe", container.hasStartupProbe)] where set {
                    errors.append(.init(.forbidden, "\(cpath).\(field)", detail: "may not be set for init containers without restartPolicy=Always"))
                }
            }
        }
        for (i, container) in containers.enumerated() {
            let cpath = "\(path).containers[\(i)]"
            errors += container.validate(path: cpath, names: &names) + validateVolumeMounts(container, path: cpath)
                + validateLifecycle(container, path: cpath)
            if !container.restartPolicy.isEmpty {
                errors.append(.init(.forbidden, "\(cpath).restartPolicy", detail: "may not be set for non-init containers"))
            }
        }
        errors += validateVolumes(path: path)
        if !PodValues.restartPolicies.contains(restartPolicy) {
            errors.append(.notSupported("\(path).restartPolicy", restartPolicy, PodValues.restartPolicies))
        }
        if hasTerminationGracePeriodSeconds && terminationGracePeriodSeconds < 0 {
            errors.append(.invalid("\(path).terminationGracePeriodSeconds", String(terminationGracePeriodSeconds), "must be greater than or equal to 0"))
        }
        if hasActiveDeadlineSeconds && activeDeadlineSeconds <= 0 {
            errors.append(.invalid("\(path).activeDeadlineSeconds", String(activeDeadlineSeconds), "must be greater than 0"))
        }
        if !nodeName.isEmpty, let problem = NameSyntax.subdomainProblem(nodeName) {
            errors.append(.invalid("\(path).nodeName", nodeName, problem))
        }
        for key in nodeSelector.keys.sorted() {
            if let problem = LabelSyntax.keyProblem(key) { errors.append(.invalid("\(path).nodeSelector", key, problem)) }
            if let problem = LabelSyntax.valueProblem(nodeSelector[key]!) { errors.append(.invalid("\(path).nodeSelector", nodeSelector[key]!, problem)) }
        }
        for (i, toleration) in tolerations.enumerated() {
            let tpath = "\(path).tolerations[\(i)]"
            if !toleration.operator.isEmpty && !PodValues.tolerationOperators.contains(toleration.operator) {
                errors.append(.notSupported("\(tpath).operator", toleration.operator, PodValues.tolerationOperators))
            }
            if toleration.operator == "Exists" && !toleration.value.isEmpty {
                errors.append(.invalid("\(tpath).operator", toleration.operator, "value must be empty when `operator` is 'Exists'"))
            }
            if toleration.key.isEmpty && toleration.operator != "Exists" {
                errors.append(.invalid("\(tpath).operator", toleration.operator, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
            }
            if !toleration.effect.isEmpty && !PodValues.taintEffects.contains(toleration.effect) {
                errors.append(.notSupported("\(tpath).effect", toleration.effect, PodValues.taintEffects))
            }
            if toleration.hasTolerationSeconds && toleration.effect != "NoExecute" {
                errors.append(.invalid("\(tpath).effect", toleration.effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
            }
        }
        if hasAffinity && affinity.hasNodeAffinity && affinity.nodeAffinity.hasRequiredDuringSchedulingIgnoredDuringExecution {
            let terms = affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms
            let apath = "\(path).affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
            if terms.isEmpty { errors.append(.required(apath, "must have at least one node selector term")) }
            for (t, term) in terms.enumerated() {
                for (e, expr) in term.matchExpressions.enumerated() {
                    let epath = "\(apath)[\(t)].matchExpressions[\(e)]"
                    if !PodValues.nodeSelectorOperators.contains(expr.operator) {
                        errors.append(.notSupported("\(epath).operator", expr.operator, PodValues.nodeSelectorOperators))
                    } else if ["In", "NotIn"].contains(expr.operator) && expr.values.isEmpty {
                        errors.append(.required("\(epath).values", "must be specified when `operator` is 'In' or 'NotIn'"))
                    } else if ["Exists", "DoesNotExist"].contains(expr.operator) && !expr.values.isEmpty {
                        errors.append(.init(.forbidden, "\(epath).values", detail: "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
                    }
                    if let problem = LabelSyntax.keyProblem(expr.key) { errors.append(.invalid("\(epath).key", expr.key, problem)) }
                }
                for (f, field) in term.matchFields.enumerated() {
                    let fpath = "\(apath)[\(t)].matchFields[\(f)]"
                    if !["In", "NotIn"].contains(field.operator) {
                        errors.append(.notSupported("\(fpath).operator", field.operator, ["In", "NotIn"]))
                    } else if field.values.count != 1 {
                        errors.append(.required("\(fpath).values", "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"))
                    }
                    if field.key != DaemonSetDefaults.nodeNameField {
                        errors.append(.notSupported("\(fpath).key", field.key, [DaemonSetDefaults.nodeNameField]))
                    }
                }
            }
        }
        return errors
    }
}

extension PodSpec {
    /// A container's hooks: one action each; a sleep within the pod's grace period.
    func validateLifecycle(_ container: Container, path cpath: String) -> [FieldError] {
        guard container.hasLifecycle else { return [] }
        var errors: [FieldError] = []
        for (name, set, handler) in [("postStart", container.lifecycle.hasPostStart, container.lifecycle.postStart),
                                     ("preStop", container.lifecycle.hasPreStop, container.lifecycle.preStop)] where set {
            let hpath = "\(cpath).lifecycle.\(name)"
            let handlers = [handler.hasExec, handler.hasHTTPGet, handler.hasSleep].filter { $0 }.count
            if handlers == 0 { errors.append(.required(hpath, "must specify a handler type")) }
            if handlers > 1 { errors.append(.init(.forbidden, hpath, detail: "may not specify more than 1 handler type")) }
            if handler.hasExec && handler.exec.command.isEmpty { errors.append(.required("\(hpath).exec.command")) }
            if handler.hasHTTPGet {
                errors += Probe().validatePort(handler.httpGet.port, path: "\(hpath).httpGet.port")
                if !handler.httpGet.scheme.isEmpty && !["HTTP", "HTTPS"].contains(handler.httpGet.scheme) {
                    errors.append(.notSupported("\(hpath).httpGet.scheme", handler.httpGet.scheme, ["HTTP", "HTTPS"]))
                }
            }
            let grace = hasTerminationGracePeriodSeconds ? terminationGracePeriodSeconds : PodDefaults.terminationGracePeriodSeconds
            if handler.hasSleep && (handler.sleep.seconds < 0 || handler.sleep.seconds > grace) {
                errors.append(.invalid("\(hpath).sleep.seconds", json: .int(handler.sleep.seconds),
                                       "must be non-negative and less than terminationGracePeriodSeconds (\(grace))"))
            }
        }
        return errors
    }
}

public enum ContainerValues {
    /// The one restartPolicy an init container may have: it makes the container a sidecar.
    public static let sidecarRestartPolicy = "Always"
}

extension Container {
    /// An init container that keeps running beside the pod's containers.
    public var isSidecar: Bool { restartPolicy == ContainerValues.sidecarRestartPolicy }

    public mutating func applyDefaults() {
        // Kubernetes' default: Always for :latest or no tag, IfNotPresent for any other tag or a digest.
        if imagePullPolicy.isEmpty && !image.isEmpty {
            imagePullPolicy = PodDefaults.pullPolicy(image: image)
        }
        for p in ports.indices where ports[p].protocol.isEmpty {
            ports[p].protocol = "TCP"
        }
        if hasLivenessProbe { livenessProbe.applyDefaults() }
        if hasReadinessProbe { readinessProbe.applyDefaults() }
        if hasStartupProbe { startupProbe.applyDefaults() }
        for keyPath in [\Lifecycle.postStart, \Lifecycle.preStop] where hasLifecycle && lifecycle[keyPath: keyPath].hasHTTPGet {
            if lifecycle[keyPath: keyPath].httpGet.path.isEmpty { lifecycle[keyPath: keyPath].httpGet.path = "/" }
            if lifecycle[keyPath: keyPath].httpGet.scheme.isEmpty { lifecycle[keyPath: keyPath].httpGet.scheme = "HTTP" }
        }
    }

    /// The rules every container of a pod follows (init containers and the pod's own); `names`:
    /// the names taken so far in the pod (one name space for both lists).
    func validate(path cpath: String, names: inout Set<String>) -> [FieldError] {
        var errors: [FieldError] = []
        let container = self
        if container.name.isEmpty {
            errors.append(.required("\(cpath).name"))
        } else if let problem = NameSyntax.labelProblem(container.name) {
            errors.append(.invalid("\(cpath).name", container.name, problem))
        } else if !names.insert(container.name).inserted {
            errors.append(.duplicate("\(cpath).name", container.name))
        }
        if !container.imagePullPolicy.isEmpty && !["Always", "IfNotPresent", "Never"].contains(container.imagePullPolicy) {
            errors.append(.notSupported("\(cpath).imagePullPolicy", container.imagePullPolicy, ["Always", "IfNotPresent", "Never"]))
        }
        if container.command.isEmpty && container.image.isEmpty {
            errors.append(.required("\(cpath).command", "a container needs a command (or an image for image runtimes)"))
        }
        var envNames = Set<String>()
        for (e, env) in container.env.enumerated() {
            if env.name.isEmpty { errors.append(.required("\(cpath).env[\(e)].name")) }
            else if env.name.contains("=") { errors.append(.invalid("\(cpath).env[\(e)].name", env.name, "must not contain '='")) }
            else if !envNames.insert(env.name).inserted { errors.append(.duplicate("\(cpath).env[\(e)].name", env.name)) }
            if env.hasValueFrom {
                let source = env.valueFrom
                let epath = "\(cpath).env[\(e)].valueFrom"
                let count = [source.hasFieldRef, source.hasResourceFieldRef, source.hasConfigMapKeyRef, source.hasSecretKeyRef].filter { $0 }.count
                if !env.value.isEmpty { errors.append(.invalid(epath, "", "may not be specified when `value` is not empty")) }
                if count != 1 { errors.append(.invalid(epath, "", "may not have more than one field specified at a time")) }
                if source.hasFieldRef && !EnvSources.fieldPathSupported(source.fieldRef.fieldPath) {
                    errors.append(.notSupported("\(epath).fieldRef.fieldPath", source.fieldRef.fieldPath, EnvSources.fieldPaths))
                }
                if source.hasResourceFieldRef && !EnvSources.resources.contains(source.resourceFieldRef.resource) {
                    errors.append(.notSupported("\(epath).resourceFieldRef.resource", source.resourceFieldRef.resource, EnvSources.resources))
                }
                if source.hasConfigMapKeyRef && source.configMapKeyRef.key.isEmpty { errors.append(.required("\(epath).configMapKeyRef.key")) }
                if source.hasSecretKeyRef && source.secretKeyRef.key.isEmpty { errors.append(.required("\(epath).secretKeyRef.key")) }
            }
        }
        for (e, source) in container.envFrom.enumerated() where source.hasConfigMapRef == source.hasSecretRef {
            errors.append(.invalid("\(cpath).envFrom[\(e)]", "", "must specify one of: `configMapRef` or `secretRef`"))
        }
        var portNames = Set<String>()
        for (p, port) in container.ports.enumerated() {
            let ppath = "\(cpath).ports[\(p)]"
            if !(1...65535).contains(port.containerPort) {
                errors.append(.invalid("\(ppath).containerPort", String(port.containerPort), "must be between 1 and 65535, inclusive"))
            }
            if port.hostPort != 0 && !(1...65535).contains(port.hostPort) {
                errors.append(.invalid("\(ppath).hostPort", String(port.hostPort), "must be between 1 and 65535, inclusive"))
            }
            if !port.name.isEmpty && !portNames.insert(port.name).inserted { errors.append(.duplicate("\(ppath).name", port.name)) }
            if !port.protocol.isEmpty && !PodValues.protocols.contains(port.protocol) {
                errors.append(.notSupported("\(ppath).protocol", port.protocol, PodValues.protocols))
            }
        }
        if container.hasResources {
            errors += validateQuantities(container.resources.limits, path: "\(cpath).resources.limits")
            errors += validateQuantities(container.resources.requests, path: "\(cpath).resources.requests")
            for key in container.resources.requests.keys.sorted() {
                guard let limitText = container.resources.limits[key], let requestText = container.resources.requests[key],
                      let limit = try? Quantity(parsing: limitText), let request = try? Quantity(parsing: requestText) else { continue }
                if request.value > limit.value {
                    errors.append(.invalid("\(cpath).resources.requests[\(key)]", requestText, "must be less than or equal to \(key) limit of \(limitText)"))
                }
            }
        }
        if container.hasLivenessProbe { errors += container.livenessProbe.validate(path: "\(cpath).livenessProbe", isLiveness: true) }
        if container.hasReadinessProbe { errors += container.readinessProbe.validate(path: "\(cpath).readinessProbe", isLiveness: false) }
        if container.hasStartupProbe { errors += container.startupProbe.validate(path: "\(cpath).startupProbe", isLiveness: true) }
        return errors
    }
}

extension Probe {
    public mutating func applyDefaults() {
        if periodSeconds == 0 { periodSeconds = PodDefaults.probePeriodSeconds }
        if timeoutSeconds == 0 { timeoutSeconds = PodDefaults.probeTimeoutSeconds }
        if successThreshold == 0 { successThreshold = PodDefaults.probeSuccessThreshold }
        if failureThreshold == 0 { failureThreshold = PodDefaults.probeFailureThreshold }
        if hasHTTPGet {
            if httpGet.path.isEmpty { httpGet.path = "/" }
            if httpGet.scheme.isEmpty { httpGet.scheme = "HTTP" }
        }
    }

    func validate(path: String, isLiveness: Bool) -> [FieldError] {
        var errors: [FieldError] = []
        let handlers = [hasExec, hasHTTPGet, hasTcpSocket].filter { $0 }.count
        if handlers == 0 { errors.append(.required(path, "must specify a handler type (exec, httpGet or tcpSocket)")) }
        if handlers > 1 { errors.append(.init(.forbidden, path, detail: "may not specify more than 1 handler type")) }
        if hasExec && exec.command.isEmpty { errors.append(.required("\(path).exec.command")) }
        if hasHTTPGet {
            errors += validatePort(httpGet.port, path: "\(path).httpGet.port")
            if !["HTTP", "HTTPS"].contains(httpGet.scheme) { errors.append(.notSupported("\(path).httpGet.scheme", httpGet.scheme, ["HTTP", "HTTPS"])) }
        }
        if hasTcpSocket { errors += validatePort(tcpSocket.port, path: "\(path).tcpSocket.port") }
        for (field, value) in [("initialDelaySeconds", initialDelaySeconds), ("timeoutSeconds", timeoutSeconds), ("periodSeconds", periodSeconds),
                               ("successThreshold", successThreshold), ("failureThreshold", failureThreshold)] where value < 0 {
            errors.append(.invalid("\(path).\(field)", String(value), "must be greater than or equal to 0"))
        }
        if isLiveness && successThreshold != 1 {
            errors.append(.invalid("\(path).successThreshold", String(successThreshold), "must be 1"))
        }
        return errors
    }

    func validatePort(_ port: IntOrString, path: String) -> [FieldError] {
        switch port.value {
        case .intVal(let p) where !(1...65535).contains(p):
            return [.invalid(path, String(p), "must be between 1 and 65535, inclusive")]
        case .strVal(let name) where NameSyntax.labelProblem(name.lowercased()) != nil || name.utf8.count > 15:
            return [.invalid(path, name, "must be a port number or an IANA service name of at most 15 characters")]
        case nil:
            return [.required(path)]
        default:
            return []
        }
    }
}
