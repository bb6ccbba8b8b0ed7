import Foundation

/// Keys of ConfigMaps and Secrets, as Kubernetes checks them: letters, digits, '-', '_' and '.',
/// at most 253 characters, not "." or "..".
enum ConfigKeySyntax {
    static func problem(_ key: String) -> String? {
        if key.isEmpty { return "a valid config key must consist of alphanumeric characters, '-', '_' or '.'" }
        if key.utf8.count > 253 { return "must be no more than 253 characters" }
        if key == "." || key == ".." { return "must not be '.' or '..'" }
        let allowed = key.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2D || byte == 0x5F || byte == 0x2E
        }
        return allowed ? nil : "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
    }

    /// The most data a ConfigMap or Secret holds (Kubernetes' limit).
    static let maxTotalBytes = 1_048_576
}

extension ConfigMap {
    public mutating func applyDefaults() { setTypeMeta() }

    public func validate() -> [FieldError] {
        var errors = validateObjectMeta(metadata, namespaced: true)
        var total = 0
        for (key, value) in data.sorted(by: { $0.key < $1.key }) {
            if let problem = ConfigKeySyntax.problem(key) { errors.append(.invalid("data", key, problem)) }
            total += value.utf8.count
        }
        for (key, value) in binaryData.sorted(by: { $0.key < $1.key }) {
            if let problem = ConfigKeySyntax.problem(key) { errors.append(.invalid("binaryData", key, problem)) }
            if data[key] != nil { errors.append(.invalid("binaryData", key, "duplicate of key present in data")) }
            if let bytes = Data(base64Encoded: value) { total += bytes.count } else {
                errors.append(.invalid("binaryData[\(key)]", "<value omitted>", "illegal base64 data"))
            }
        }
        if total > ConfigKeySyntax.maxTotalBytes {
            errors.append(FieldError(.tooLong, "", detail: "must have at most \(ConfigKeySyntax.maxTotalBytes) bytes"))
        }
        return errors
    }

    /// What an update of an immutable ConfigMap may not change.
    public func immutabilityErrors(updating current: ConfigMap) -> [FieldError] {
        guard current.immutable else { return [] }
        var errors: [FieldError] = []
        if !immutable { errors.append(FieldError(.forbidden, "immutable", detail: "field is immutable when `immutable` is set")) }
        if data != current.data { errors.append(FieldError(.forbidden, "data", detail: "field is immutable when `immutable` is set")) }
        if binaryData != current.binaryData { errors.append(FieldError(.forbidden, "binaryData", detail: "field is immutable when `immutable` is set")) }
        return errors
    }
}

extension Secret {
    /// `type` Opaque when unset; `stringData` merged into `data` (it wins) and cleared: it is
    /// write-only, as in Kubernetes.
    public mutating func applyDefaults() {
        setTypeMeta()
        if type.isEmpty { type = "Opaque" }
        for (key, value) in stringData { data[key] = Data(value.utf8).base64EncodedString() }
        stringData = [:]
    }

    public func validate() -> [FieldError] {
        var errors = validateObjectMeta(metadata, namespaced: true)
        var total = 0
        for (key, value) in data.sorted(by: { $0.key < $1.key }) {
            if let problem = ConfigKeySyntax.problem(key) { errors.append(.invalid("data[\(key)]", key, problem)) }
            if let bytes = Data(base64Encoded: value) { total += bytes.count } else {
                errors.append(.invalid("data[\(key)]", "<secret contents redacted>", "illegal base64 data"))
            }
        }
        for key in stringData.keys.sorted() {
            if let problem = ConfigKeySyntax.problem(key) { errors.append(.invalid("stringData[\(key)]", key, problem)) }
        }
        if total > ConfigKeySyntax.maxTotalBytes {
            errors.append(FieldError(.tooLong, "data", detail: "must have at most \(ConfigKeySyntax.maxTotalBytes) bytes"))
        }
        return errors
    }

    /// What an update may not change: the type ever, the data once immutable.
    public func immutabilityErrors(updating current: Secret) -> [FieldError] {
        var errors: [FieldError] = []
        if type != current.type { errors.append(.invalid("type", type, "field is immutable")) }
        guard current.immutable else { return errors }
        if !immutable { errors.append(FieldError(.forbidden, "immutable", detail: "field is immutable when `immutable` is set")) }
        if data != current.data { errors.append(FieldError(.forbidden, "data", detail: "field is immutable when `immutable` is set")) }
        return errors
    }
}

extension ServiceAccount {
    public mutating func applyDefaults() { setTypeMeta() }
    public func validate() -> [FieldError] { validateObjectMeta(metadata, namespaced: true) }
}
