import Crypto
import Foundation

/// Tokens: `ID.SECRET`, six and sixteen characters of `[a-z0-9]` (Kubernetes' bootstrap token
/// shape). The object is named by the ID; it stores a hash of the whole token, never the secret.
public enum TokenFormat {
    public static let bootstrap = "Bootstrap"
    public static let authentication = "Authentication"
    /// Who a bootstrap token acts as: `system:bootstrap:ID` in this group.
    public static let bootstrappersGroup = "system:bootstrappers"
    static let alphabet = Set("abcdefghijklmnopqrstuvwxyz0123456789")

    public static func isID(_ text: some StringProtocol) -> Bool { text.count == 6 && text.allSatisfy(alphabet.contains) }
    public static func isSecret(_ text: some StringProtocol) -> Bool { text.count == 16 && text.allSatisfy(alphabet.contains) }

    /// Splits `ID.SECRET`; nil when the text is not a token.
    public static func parse(_ token: String) -> (id: String, secret: String)? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, isID(parts[0]), isSecret(parts[1]) else { return nil }
        return (String(parts[0]), String(parts[1]))
    }

    /// A new random token.
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        let letters = Array(alphabet).sorted()
        func random(_ count: Int) -> String { String((0..<count).map { _ in letters[Int(generator.next() % UInt64(letters.count))] }) }
        return random(6) + "." + random(16)
    }
}

extension Token {
    public mutating func applyDefaults() { setTypeMeta() }

    public func validate() -> [FieldError] {
        var errors = validateObjectMeta(metadata, namespaced: false, nameRule: { TokenFormat.isID($0) ? nil : "must be 6 characters of [a-z0-9] (the token's ID)" })
        let hash = spec.secretHash
        let hex = hash.dropFirst("sha256:".count)
        if !hash.hasPrefix("sha256:") || hex.count != 64 || !hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) {
            errors.append(.invalid("spec.secretHash", hash, "must be sha256: followed by 64 lower-case hex digits"))
        }
        switch spec.usage {
        case TokenFormat.bootstrap:
            if !spec.user.isEmpty { errors.append(.invalid("spec.user", spec.user, "a bootstrap token acts as system:bootstrap:ID; it takes no user")) }
            if !spec.groups.isEmpty { errors.append(.invalid("spec.groups", spec.groups.joined(separator: ","), "a bootstrap token takes no groups")) }
            if !spec.hasExpires { errors.append(.required("spec.expires", "bootstrap tokens must expire")) }
        case TokenFormat.authentication:
            if spec.user.isEmpty { errors.append(.required("spec.user")) }
            if spec.user.hasPrefix("system:") || spec.groups.contains(where: { $0.hasPrefix("system:") }) {
                // Built-in identities come from certificates; a leaked token must not become one.
                errors.append(.invalid(spec.user.hasPrefix("system:") ? "spec.user" : "spec.groups", spec.user.hasPrefix("system:") ? spec.user : spec.groups.joined(separator: ","),
                                       "tokens may not act as system: identities"))
            }
        default:
            errors.append(.notSupported("spec.usage", spec.usage, [TokenFormat.bootstrap, TokenFormat.authentication]))
        }
        return errors
    }

    /// How a token is stored: `sha256:<hex>` of the whole `ID.SECRET`.
    public static func hash(_ token: String) -> String {
        "sha256:" + SHA256.hash(data: Array(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `token` (the whole `ID.SECRET`) is this one's, compared in constant time.
    public func matches(_ token: String) -> Bool {
        let wanted = Array(Self.hash(token).utf8)
        let stored = Array(spec.secretHash.utf8)
        guard wanted.count == stored.count else { return false }
        return zip(wanted, stored).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// How nodes are named as users: `cox:node:NAME` in the group `cox:nodes` (Kubernetes'
/// `system:node:NAME` in `system:nodes`).
public enum NodeIdentity {
    public static let group = "cox:nodes"
    public static let userPrefix = "cox:node:"
    public static func user(_ nodeName: String) -> String { userPrefix + nodeName }
    /// The node a user name stands for (`cox:node:NAME` → NAME); nil for any other user.
    public static func nodeName(ofUser user: String) -> String? {
        guard user.hasPrefix(userPrefix), user.count > userPrefix.count else { return nil }
        return String(user.dropFirst(userPrefix.count))
    }
    /// The signers (Kubernetes' names) of a node's client and serving certificates.
    public static let clientSigner = "kubernetes.io/kube-apiserver-client-kubelet"
    public static let servingSigner = "kubernetes.io/kubelet-serving"
}
