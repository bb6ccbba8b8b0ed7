/// Name and label syntax as Kubernetes defines it (apimachinery validation).
public enum NameSyntax {
    public static let dns1123LabelMaxLength = 63
    public static let dns1123SubdomainMaxLength = 253

    /// A DNS-1123 subdomain: lower-case alphanumerics, '-' and '.', starting and ending alphanumeric.
    public static func subdomainProblem(_ name: String) -> String? {
        subdomainProblem(Substring(name))
    }

    static func subdomainProblem(_ name: Substring) -> String? {
        if name.isEmpty { return "must not be empty" }
        if name.utf8.count > dns1123SubdomainMaxLength { return "must be no more than \(dns1123SubdomainMaxLength) characters" }
        if !isSubdomain(name.utf8) {
            return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"
        }
        return nil
    }

    /// Dot-separated labels, in one pass over the bytes (this runs for every name and every
    /// prefixed label or annotation key of every write).
    static func isSubdomain(_ bytes: Substring.UTF8View) -> Bool {
        var length = 0
        var previous: UInt8 = 0
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                guard length > 0, isAlnum(previous) else { return false }
                length = 0
                continue
            }
            guard isAlnum(byte) || (byte == UInt8(ascii: "-") && length > 0) else { return false }
            length += 1
            guard length <= dns1123LabelMaxLength else { return false }
            previous = byte
        }
        return length > 0 && isAlnum(previous)
    }

    @inline(__always) static func isAlnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) }

    /// A DNS-1123 label: at most 63 lower-case alphanumerics or '-', starting and ending alphanumeric.
    public static func labelProblem(_ name: String) -> String? {
        if name.isEmpty { return "must not be empty" }
        if name.utf8.count > dns1123LabelMaxLength { return "must be no more than \(dns1123LabelMaxLength) characters" }
        if !isLabel(Substring(name)) {
            return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name')"
        }
        return nil
    }

    /// A DNS-1035 label: a DNS-1123 label that starts with a letter (resource and version names).
    public static func dns1035Problem(_ name: String) -> String? {
        if name.isEmpty { return "must not be empty" }
        if name.utf8.count > dns1123LabelMaxLength { return "must be no more than \(dns1123LabelMaxLength) characters" }
        guard isLabel(Substring(name)), let first = name.utf8.first, first >= 0x61 && first <= 0x7A else {
            return "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        }
        return nil
    }

    static func isLabel(_ s: Substring) -> Bool {
        s.utf8.count <= dns1123LabelMaxLength && !s.utf8.contains(UInt8(ascii: ".")) && isSubdomain(s.utf8)
    }
}

public enum LabelSyntax {
    public static let maxNameLength = 63

    static func isQualifiedNamePart(_ s: Substring) -> Bool {
        let bytes = s.utf8
        guard let first = bytes.first, let last = bytes.last, bytes.count <= maxNameLength else { return false }
        func alnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39) }
        guard alnum(first), alnum(last) else { return false }
        return bytes.allSatisfy { alnum($0) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E }
    }

    /// A label or annotation key: `[prefix/]name`, prefix a DNS subdomain, name ≤ 63 characters.
    public static func keyProblem(_ key: String) -> String? {
        let key = Substring(key)
        let name: Substring
        switch key.utf8.firstIndex(of: UInt8(ascii: "/")) {
        case nil: name = key
        case let slash? where !key[key.index(after: slash)...].utf8.contains(UInt8(ascii: "/")):
            let prefix = key[..<slash]
            if prefix.isEmpty { return "prefix part must be non-empty" }
            if let problem = NameSyntax.subdomainProblem(prefix) { return "prefix part \(problem)" }
            name = key[key.index(after: slash)...]
        default:
            return "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        }
        if name.isEmpty { return "name part must be non-empty" }
        if name.utf8.count > maxNameLength { return "name part must be no more than \(maxNameLength) characters" }
        if !isQualifiedNamePart(name) {
            return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName', 'my.name', or '123-abc')"
        }
        return nil
    }

    /// A label value: empty, or ≤ 63 alphanumerics, '-', '_', '.', starting and ending alphanumeric.
    public static func valueProblem(_ value: String) -> String? {
        if value.isEmpty { return nil }
        if value.utf8.count > maxNameLength { return "must be no more than \(maxNameLength) characters" }
        if !isQualifiedNamePart(Substring(value)) {
            return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')"
        }
        return nil
    }
}
