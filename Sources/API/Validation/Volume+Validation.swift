/// Pod volumes and container volume mounts, checked as Kubernetes checks them (same paths and words).
public enum VolumeValues {
    public static let hostPathTypes = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"]
    public static let emptyDirMedia = ["", "Memory"]
    public static let mountPropagations = ["Bidirectional", "HostToContainer", "None"]
    /// Pod fields a downward API volume file may hold.
    public static let fieldPaths = ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"]
    /// A file's mode when neither the item nor the volume says (Kubernetes' 0644).
    public static let defaultMode: Int32 = 0o644

    public static func fieldPathSupported(_ path: String) -> Bool {
        fieldPaths.contains(path) || EnvSources.mapKey(path, "metadata.labels") != nil || EnvSources.mapKey(path, "metadata.annotations") != nil
    }
}

extension Volume {
    /// The sources set, by their JSON names (exactly one is valid).
    public var sourceNames: [String] {
        // In the order Kubernetes looks at them: the second found is the one named as extra.
        [(hasEmptyDir, "emptyDir"), (hasHostPath, "hostPath"), (hasSecret, "secret"), (hasDownwardApi, "downwardAPI"),
         (hasConfigMap, "configMap"), (hasProjected, "projected")].filter(\.0).map(\.1)
    }
}

extension PodSpec {
    /// Kubernetes' defaults, as `kubectl get -o yaml` shows them: file modes 0644 (420), an empty
    /// hostPath type, v1 field references.
    mutating func applyVolumeDefaults() {
        for i in volumes.indices {
            if volumes[i].hasSecret && !volumes[i].secret.hasDefaultMode { volumes[i].secret.defaultMode = VolumeValues.defaultMode }
            if volumes[i].hasConfigMap && !volumes[i].configMap.hasDefaultMode { volumes[i].configMap.defaultMode = VolumeValues.defaultMode }
            if volumes[i].hasDownwardApi {
                if !volumes[i].downwardApi.hasDefaultMode { volumes[i].downwardApi.defaultMode = VolumeValues.defaultMode }
                for k in volumes[i].downwardApi.items.indices where volumes[i].downwardApi.items[k].hasFieldRef && volumes[i].downwardApi.items[k].fieldRef.apiVersion.isEmpty {
                    volumes[i].downwardApi.items[k].fieldRef.apiVersion = "v1"
                }
            }
            if volumes[i].hasProjected {
                if !volumes[i].projected.hasDefaultMode { volumes[i].projected.defaultMode = VolumeValues.defaultMode }
                for s in volumes[i].projected.sources.indices where volumes[i].projected.sources[s].hasDownwardApi {
                    for k in volumes[i].projected.sources[s].downwardApi.items.indices
                    where volumes[i].projected.sources[s].downwardApi.items[k].hasFieldRef && volumes[i].projected.sources[s].downwardApi.items[k].fieldRef.apiVersion.isEmpty {
                        volumes[i].projected.sources[s].downwardApi.items[k].fieldRef.apiVersion = "v1"
                    }
                }
            }
            if volumes[i].hasHostPath && !volumes[i].hostPath.hasType { volumes[i].hostPath.type = "" }
        }
    }

    func validateVolumes(path: String) -> [FieldError] {
        var errors: [FieldError] = []
        var names = Set<String>()
        for (i, volume) in volumes.enumerated() {
            let vpath = "\(path).volumes[\(i)]"
            if volume.name.isEmpty {
                errors.append(.required("\(vpath).name"))
            } else if let problem = NameSyntax.labelProblem(volume.name) {
                errors.append(.invalid("\(vpath).name", volume.name, problem))
            } else if !names.insert(volume.name).inserted {
                errors.append(.duplicate("\(vpath).name", volume.name))
            }
            let sources = volume.sourceNames
            if sources.isEmpty {
                errors.append(.required(vpath, "must specify a volume type"))
                continue
            }
            for extra in sources.dropFirst() {
                errors.append(.init(.forbidden, "\(vpath).\(extra)", detail: "may not specify more than 1 volume type"))
            }
            if volume.hasHostPath {
                let hpath = "\(vpath).hostPath"
                if volume.hostPath.path.isEmpty { errors.append(.required("\(hpath).path")) }
                else if volume.hostPath.path.split(separator: "/").contains("..") {
                    errors.append(.invalid("\(hpath).path", volume.hostPath.path, "must not contain '..'"))
                }
                if volume.hostPath.hasType && !VolumeValues.hostPathTypes.contains(volume.hostPath.type) {
                    errors.append(.notSupported("\(hpath).type", volume.hostPath.type, VolumeValues.hostPathTypes))
                }
            }
            if volume.hasEmptyDir {
                let epath = "\(vpath).emptyDir"
                if !VolumeValues.emptyDirMedia.contains(volume.emptyDir.medium) {
                    errors.append(.notSupported("\(epath).medium", volume.emptyDir.medium, VolumeValues.emptyDirMedia))
                }
                if !volume.emptyDir.sizeLimit.isEmpty {
                    if let limit = try? Quantity(parsing: volume.emptyDir.sizeLimit) {
                        if limit.value < 0 { errors.append(.invalid("\(epath).sizeLimit", volume.emptyDir.sizeLimit, "must be greater than or equal to 0")) }
                    } else {
                        errors.append(.invalid("\(epath).sizeLimit", volume.emptyDir.sizeLimit, "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
                    }
                }
            }
            if volume.hasSecret {
                let spath = "\(vpath).secret"
                if volume.secret.secretName.isEmpty { errors.append(.required("\(spath).secretName")) }
                errors += Self.validateItems(volume.secret.items, path: "\(spath).items")
                errors += Self.validateMode(volume.secret, path: "\(spath).defaultMode")
            }
            if volume.hasConfigMap {
                let cpath = "\(vpath).configMap"
                if volume.configMap.name.isEmpty { errors.append(.required("\(cpath).name")) }
                errors += Self.validateItems(volume.configMap.items, path: "\(cpath).items")
                errors += Self.validateMode(volume.configMap, path: "\(cpath).defaultMode")
            }
            if volume.hasDownwardApi {
                let dpath = "\(vpath).downwardAPI"
                errors += validateDownwardFiles(volume.downwardApi.items, path: "\(dpath).items")
                errors += Self.validateMode(volume.downwardApi, path: "\(dpath).defaultMode")
            }
            if volume.hasProjected {
                let ppath = "\(vpath).projected"
                var seen = Set<String>()
                func claim(_ file: String, _ at: String) {
                    if !seen.insert(file).inserted { errors.append(.invalid(at, file, "conflicting duplicate paths")) }
                }
                for (s, source) in volume.projected.sources.enumerated() {
                    let spath = "\(ppath).sources[\(s)]"
                    let set = [(source.hasSecret, "secret"), (source.hasConfigMap, "configMap"), (source.hasDownwardApi, "downwardAPI"),
                               (source.hasServiceAccountToken, "serviceAccountToken")].filter(\.0).map(\.1)
                    if set.isEmpty { errors.append(.required(spath, "must specify exactly 1 of: secret, configMap, downwardAPI, serviceAccountToken")) }
                    for extra in set.dropFirst() {
                        errors.append(.init(.forbidden, "\(spath).\(extra)", detail: "may not specify more than 1 volume type per source"))
                    }
                    if source.hasSecret {
                        if source.secret.name.isEmpty { errors.append(.required("\(spath).secret.name")) }
                        errors += Self.validateItems(source.secret.items, path: "\(spath).secret.items")
                        for (k, item) in source.secret.items.enumerated() { claim(item.path, "\(spath).secret.items[\(k)].path") }
                    }
                    if source.hasConfigMap {
                        if source.configMap.name.isEmpty { errors.append(.required("\(spath).configMap.name")) }
                        errors += Self.validateItems(source.configMap.items, path: "\(spath).configMap.items")
                        for (k, item) in source.configMap.items.enumerated() { claim(item.path, "\(spath).configMap.items[\(k)].path") }
                    }
                    if source.hasDownwardApi {
                        errors += validateDownwardFiles(source.downwardApi.items, path: "\(spath).downwardAPI.items")
                        for (k, item) in source.downwardApi.items.enumerated() { claim(item.path, "\(spath).downwardAPI.items[\(k)].path") }
                    }
                    if source.hasServiceAccountToken {
                        // Refused rather than mounted empty: this server has no TokenRequest API.
                        errors.append(.init(.forbidden, "\(spath).serviceAccountToken",
                                            detail: "service account token projections are not supported: this server issues no tokens to pods (use a Secret holding a token instead)"))
                    }
                }
                errors += Self.validateMode(volume.projected, path: "\(ppath).defaultMode")
            }
        }
        return errors
    }

    func validateVolumeMounts(_ container: Container, path cpath: String) -> [FieldError] {
        var errors: [FieldError] = []
        let declared = Set(volumes.map(\.name))
        var mountPaths = Set<String>()
        for (m, mount) in container.volumeMounts.enumerated() {
            let mpath = "\(cpath).volumeMounts[\(m)]"
            if mount.name.isEmpty { errors.append(.required("\(mpath).name")) }
            else if !declared.contains(mount.name) { errors.append(.init(.notFound, "\(mpath).name", value: mount.name)) }
            if mount.mountPath.isEmpty {
                errors.append(.required("\(mpath).mountPath"))
            } else if !mountPaths.insert(mount.mountPath).inserted {
                errors.append(.invalid("\(mpath).mountPath", mount.mountPath, "must be unique"))
            } else if !mount.mountPath.hasPrefix("/") {
                // The CRI runtimes mount at absolute paths; a relative one has no meaning here.
                errors.append(.invalid("\(mpath).mountPath", mount.mountPath, "must be an absolute path"))
            }
            if !mount.subPath.isEmpty {
                if let problem = Self.relativePathProblem(mount.subPath) { errors.append(.invalid("\(mpath).subPath", mount.subPath, problem)) }
            }
            if !mount.subPathExpr.isEmpty {
                if !mount.subPath.isEmpty {
                    errors.append(.invalid("\(mpath).subPathExpr", mount.subPathExpr, "subPathExpr and subPath are mutually exclusive"))
                } else if let problem = Self.relativePathProblem(mount.subPathExpr) {
                    errors.append(.invalid("\(mpath).subPathExpr", mount.subPathExpr, problem))
                }
            }
            if !mount.mountPropagation.isEmpty {
                if !VolumeValues.mountPropagations.contains(mount.mountPropagation) {
                    errors.append(.notSupported("\(mpath).mountPropagation", mount.mountPropagation, VolumeValues.mountPropagations))
                } else if mount.mountPropagation == "Bidirectional" {
                    // Kubernetes allows it to privileged containers only; there are none here.
                    errors.append(.init(.forbidden, "\(mpath).mountPropagation", detail: "Bidirectional mount propagation is available only to privileged containers"))
                }
            }
        }
        return errors
    }

    func validateDownwardFiles(_ items: [DownwardAPIVolumeFile], path: String) -> [FieldError] {
        var errors: [FieldError] = []
        for (k, item) in items.enumerated() {
            let ipath = "\(path)[\(k)]"
            if item.path.isEmpty { errors.append(.required("\(ipath).path")) }
            else if let problem = Self.relativePathProblem(item.path) { errors.append(.invalid("\(ipath).path", item.path, problem)) }
            if item.hasMode && !(0...0o777).contains(item.mode) { errors.append(.invalid("\(ipath).mode", String(item.mode), Self.modeProblem)) }
            if item.hasFieldRef == item.hasResourceFieldRef {
                errors.append(.invalid(ipath, "", "fieldRef and resourceFieldRef can not be specified simultaneously"))
                continue
            }
            if item.hasFieldRef && !VolumeValues.fieldPathSupported(item.fieldRef.fieldPath) {
                errors.append(.notSupported("\(ipath).fieldRef.fieldPath", item.fieldRef.fieldPath, VolumeValues.fieldPaths))
            }
            if item.hasResourceFieldRef {
                let rpath = "\(ipath).resourceFieldRef"
                if item.resourceFieldRef.containerName.isEmpty { errors.append(.required("\(rpath).containerName")) }
                else if !allContainers.contains(where: { $0.name == item.resourceFieldRef.containerName }) {
                    errors.append(.notSupported("\(rpath).containerName", item.resourceFieldRef.containerName, allContainers.map(\.name)))
                }
                if !EnvSources.resources.contains(item.resourceFieldRef.resource) {
                    errors.append(.notSupported("\(rpath).resource", item.resourceFieldRef.resource, EnvSources.resources))
                }
            }
        }
        return errors
    }

    static let modeProblem = "must be a number between 0 and 0777 (octal), both inclusive"

    static func validateItems(_ items: [KeyToPath], path: String) -> [FieldError] {
        var errors: [FieldError] = []
        for (k, item) in items.enumerated() {
            let ipath = "\(path)[\(k)]"
            if item.key.isEmpty { errors.append(.required("\(ipath).key")) }
            else if let problem = ConfigKeySyntax.problem(item.key) { errors.append(.invalid("\(ipath).key", item.key, problem)) }
            if item.path.isEmpty { errors.append(.required("\(ipath).path")) }
            else if let problem = relativePathProblem(item.path) { errors.append(.invalid("\(ipath).path", item.path, problem)) }
            if item.hasMode && !(0...0o777).contains(item.mode) { errors.append(.invalid("\(ipath).mode", String(item.mode), modeProblem)) }
        }
        return errors
    }

    static func validateMode(_ source: some VolumeFileModes, path: String) -> [FieldError] {
        guard let mode = source.explicitMode, !(0...0o777).contains(mode) else { return [] }
        return [.invalid(path, String(mode), modeProblem)]
    }

    /// Kubernetes' check of a path inside a volume.
    static func relativePathProblem(_ path: String) -> String? {
        if path.hasPrefix("/") { return "must be a relative path" }
        if path.split(separator: "/", omittingEmptySubsequences: false).contains("..") { return "must not contain '..'" }
        if path.hasPrefix("..") { return "must not start with '..'" }
        return nil
    }
}

/// Volume sources with a `defaultMode`.
public protocol VolumeFileModes {
    var explicitMode: Int32? { get }
}

extension SecretVolumeSource: VolumeFileModes { public var explicitMode: Int32? { hasDefaultMode ? defaultMode : nil } }
extension ConfigMapVolumeSource: VolumeFileModes { public var explicitMode: Int32? { hasDefaultMode ? defaultMode : nil } }
extension DownwardAPIVolumeSource: VolumeFileModes { public var explicitMode: Int32? { hasDefaultMode ? defaultMode : nil } }
extension ProjectedVolumeSource: VolumeFileModes { public var explicitMode: Int32? { hasDefaultMode ? defaultMode : nil } }

extension Pod {
    /// The Secrets (or ConfigMaps) the pod's containers take environment from or mount: what its
    /// node may read, as Kubernetes' node authorizer allows it.
    public func referencedNames(secrets: Bool) -> Set<String> {
        var names = Set<String>()
        for container in spec.allContainers {
            for source in container.envFrom {
                if secrets, source.hasSecretRef { names.insert(source.secretRef.name) }
                if !secrets, source.hasConfigMapRef { names.insert(source.configMapRef.name) }
            }
            for variable in container.env where variable.hasValueFrom {
                if secrets, variable.valueFrom.hasSecretKeyRef { names.insert(variable.valueFrom.secretKeyRef.name) }
                if !secrets, variable.valueFrom.hasConfigMapKeyRef { names.insert(variable.valueFrom.configMapKeyRef.name) }
            }
        }
        for volume in spec.volumes {
            if secrets, volume.hasSecret { names.insert(volume.secret.secretName) }
            if !secrets, volume.hasConfigMap { names.insert(volume.configMap.name) }
            for source in volume.projected.sources {
                if secrets, source.hasSecret { names.insert(source.secret.name) }
                if !secrets, source.hasConfigMap { names.insert(source.configMap.name) }
            }
        }
        return names
    }
}
