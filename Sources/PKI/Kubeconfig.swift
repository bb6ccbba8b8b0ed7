import Foundation
import Yams

/// The parts of a kubeconfig file Coxswain uses: one cluster (server URL and CA) and one user
/// (client certificate and key, or a bearer token), chosen by the current context. Reads and
/// writes the format kubectl uses.
public struct Kubeconfig: Sendable, Equatable {
    /// The API server (the first of `servers`).
    public var server: String {
        get { servers[0] }
        set { servers = Self.serverList(newValue) }
    }
    /// Every API server of the cluster, for clients that fail over between them (Coxswain's own,
    /// from the cluster's `cox.io/servers` extension; kubectl reads `server` alone).
    public var servers: [String]
    public var caPEM: String
    public var user: String
    public var clientCertificatePEM: String?
    public var clientKeyPEM: String?
    public var token: String?

    public init(server: String, caPEM: String, user: String, clientCertificatePEM: String? = nil, clientKeyPEM: String? = nil, token: String? = nil) {
        self.servers = Self.serverList(server)
        self.caPEM = caPEM
        self.user = user
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.token = token
    }

    public func yaml() -> String {
        func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
        var userLines = ""
        if let clientCertificatePEM { userLines += "    client-certificate-data: \(b64(clientCertificatePEM))\n" }
        if let clientKeyPEM { userLines += "    client-key-data: \(b64(clientKeyPEM))\n" }
        if let token { userLines += "    token: \(token)\n" }
        var extensionLines = ""
        if servers.count > 1 {
            extensionLines = "    extensions:\n    - name: \(Self.serversExtension)\n      extension:\n        servers:\n"
                + servers.map { "        - \($0)\n" }.joined()
        }
        return """
            apiVersion: v1
            kind: Config
            clusters:
            - name: \(ClusterPKI.clusterName)
              cluster:
                server: \(server)
                certificate-authority-data: \(b64(caPEM))
            \(extensionLines)users:
            - name: \(user)
              user:
            \(userLines)contexts:
            - name: \(user)@\(ClusterPKI.clusterName)
              context:
                cluster: \(ClusterPKI.clusterName)
                user: \(user)
            current-context: \(user)@\(ClusterPKI.clusterName)

            """
    }

    /// Reads a kubeconfig file: the current context's cluster and user. File references
    /// (`certificate-authority`, `client-certificate`, `client-key`) are read relative to the file.
    public static func load(path: String) throws -> Kubeconfig {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw PKIError(message: "cannot read kubeconfig \(path)")
        }
        let root: [String: Any]
        do {
            guard let parsed = try Yams.load(yaml: text) as? [String: Any] else { throw PKIError(message: "not a mapping") }
            root = parsed
        } catch {
            throw PKIError(message: "kubeconfig \(path) is not valid YAML: \(error)")
        }
        let base = (path as NSString).deletingLastPathComponent
        func named(_ list: String, _ name: String) throws -> [String: Any] {
            let entries = root[list] as? [[String: Any]] ?? []
            guard let entry = entries.first(where: { $0["name"] as? String == name }) else {
                throw PKIError(message: "kubeconfig \(path) has no \(list.dropLast()) named \"\(name)\"")
            }
            return entry
        }
        guard let current = root["current-context"] as? String, !current.isEmpty else {
            throw PKIError(message: "kubeconfig \(path) has no current-context")
        }
        let context = try named("contexts", current)["context"] as? [String: Any] ?? [:]
        let clusterName = context["cluster"] as? String ?? ""
        let userName = context["user"] as? String ?? ""
        let cluster = try named("clusters", clusterName)["cluster"] as? [String: Any] ?? [:]
        let user = try named("users", userName)["user"] as? [String: Any] ?? [:]

        func material(_ fields: [String: Any], data: String, file: String) throws -> String? {
            if let encoded = fields[data] as? String {
                guard let decoded = Data(base64Encoded: encoded), let text = String(data: decoded, encoding: .utf8) else {
                    throw PKIError(message: "kubeconfig \(path): \(data) is not base64-encoded PEM")
                }
                return text
            }
            if let file = fields[file] as? String {
                let full = file.hasPrefix("/") ? file : (base as NSString).appendingPathComponent(file)
                return try ClusterPKI.read(full)
            }
            return nil
        }
        guard let server = cluster["server"] as? String, !server.isEmpty else {
            throw PKIError(message: "kubeconfig \(path): cluster \"\(clusterName)\" has no server URL")
        }
        guard let ca = try material(cluster, data: "certificate-authority-data", file: "certificate-authority") else {
            throw PKIError(message: "kubeconfig \(path): cluster \"\(clusterName)\" has no certificate authority; Coxswain only talks TLS with a known CA")
        }
        var config = Kubeconfig(server: server, caPEM: ca, user: userName,
                                clientCertificatePEM: try material(user, data: "client-certificate-data", file: "client-certificate"),
                                clientKeyPEM: try material(user, data: "client-key-data", file: "client-key"),
                                token: user["token"] as? String)
        config.servers = [server]
        // Coxswain's extension: the cluster's other servers, after `server`.
        for entry in cluster["extensions"] as? [[String: Any]] ?? [] where entry["name"] as? String == serversExtension {
            guard let listed = (entry["extension"] as? [String: Any])?["servers"] as? [String] else {
                throw PKIError(message: "kubeconfig \(path): extension \(serversExtension) must hold `servers`, a list of https:// URLs")
            }
            for other in listed where !config.servers.contains(other) { config.servers.append(other) }
        }
        return config
    }

    /// `https://a:6443,https://b:6443` as its URLs.
    public static func serverList(_ text: String) -> [String] {
        let list = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return list.isEmpty ? [text] : list
    }

    /// The name of the cluster extension that lists every API server.
    public static let serversExtension = "cox.io/servers"
}
