import Foundation

/// The cluster's certificates in a data directory, created on first start and reused after:
///
///     DATA/pki/ca.crt, ca.key                 the cluster CA (key 0600)
///     DATA/pki/node-serving-ca.crt, .key      signs joined nodes' serving certificates
///     DATA/pki/apiserver.crt, apiserver.key   the serving certificate, re-issued each start so new names are covered
///     DATA/pki/admin.crt, admin.key           the admin identity (CN=admin, O=system:masters)
///     DATA/admin.kubeconfig                   the admin identity in kubectl's format (0600)
public struct ClusterPKI: Sendable {
    public static let adminUser = "admin"
    public static let adminGroup = "system:masters"
    public static let clusterName = "cox"

    public let directory: String
    public let authority: CertificateAuthority
    /// Signs the serving certificates of nodes that joined by request. Kept apart from the
    /// cluster CA so that a node's serving certificate can never pass for the API server's.
    public let nodeServing: CertificateAuthority
    public let serving: KeyPair
    public let admin: KeyPair

    public var caPath: String { path("ca.crt") }
    public var servingCertificatePath: String { path("apiserver.crt") }
    public var servingKeyPath: String { path("apiserver.key") }

    func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    /// Loads the CA from `dataDirectory/pki` or creates it, issues a serving certificate for
    /// localhost, 127.0.0.1, ::1, this host's name and `extraNames` (names or addresses), and makes
    /// sure the admin identity exists.
    public static func bootstrap(dataDirectory: String, extraNames: [String] = []) throws -> ClusterPKI {
        let directory = (dataDirectory as NSString).appendingPathComponent("pki")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let authority = try loadOrCreateAuthority(directory: directory, file: "ca", commonName: "cox-cluster-ca")
        let nodeServing = try loadOrCreateAuthority(directory: directory, file: "node-serving-ca", commonName: "cox-node-serving-ca")

        var dnsNames = ["localhost"]
        var ipAddresses = ["127.0.0.1", "::1"]
        let host = ProcessInfo.processInfo.hostName
        if !host.isEmpty && host != "localhost" { dnsNames.append(host) }
        for name in extraNames where !name.isEmpty {
            if CertificateAuthority.ipAddressBytes(name) != nil {
                if !ipAddresses.contains(name) { ipAddresses.append(name) }
            } else if !dnsNames.contains(name) {
                dnsNames.append(name)
            }
        }
        let serving = try authority.issue(commonName: "cox-apiserver", usage: .server(dnsNames: dnsNames, ipAddresses: ipAddresses))
        try write(serving.privateKeyPEM, to: (directory as NSString).appendingPathComponent("apiserver.key"), mode: 0o600)
        try write(serving.certificatePEM, to: (directory as NSString).appendingPathComponent("apiserver.crt"), mode: 0o644)

        let adminCert = (directory as NSString).appendingPathComponent("admin.crt")
        let adminKey = (directory as NSString).appendingPathComponent("admin.key")
        let admin: KeyPair
        if FileManager.default.fileExists(atPath: adminCert) {
            admin = KeyPair(certificatePEM: try read(adminCert), privateKeyPEM: try read(adminKey))
        } else {
            admin = try authority.issue(commonName: adminUser, organizations: [adminGroup], usage: .client)
            try write(admin.privateKeyPEM, to: adminKey, mode: 0o600)
            try write(admin.certificatePEM, to: adminCert, mode: 0o644)
        }
        return ClusterPKI(directory: directory, authority: authority, nodeServing: nodeServing, serving: serving, admin: admin)
    }

    static func loadOrCreateAuthority(directory: String, file: String, commonName: String) throws -> CertificateAuthority {
        let certificatePath = (directory as NSString).appendingPathComponent("\(file).crt")
        let keyPath = (directory as NSString).appendingPathComponent("\(file).key")
        if FileManager.default.fileExists(atPath: certificatePath) {
            return try CertificateAuthority.load(certificatePEM: try read(certificatePath), privateKeyPEM: try read(keyPath))
        }
        let authority = try CertificateAuthority.create(commonName: commonName)
        try write(authority.privateKeyPEM, to: keyPath, mode: 0o600)
        try write(authority.certificatePEM, to: certificatePath, mode: 0o644)
        return authority
    }

    /// The cluster CA from a PKI directory (`DATA/pki`), for components that issue certificates
    /// (the node agent's serving certificate, until nodes join by certificate request).
    public static func loadAuthority(directory: String) throws -> CertificateAuthority {
        let caCert = (directory as NSString).appendingPathComponent("ca.crt")
        let caKey = (directory as NSString).appendingPathComponent("ca.key")
        guard FileManager.default.fileExists(atPath: caCert), FileManager.default.fileExists(atPath: caKey) else {
            throw PKIError(message: "no cluster CA in \(directory) (ca.crt and ca.key); start the server first or pass --pki")
        }
        return try CertificateAuthority.load(certificatePEM: try read(caCert), privateKeyPEM: try read(caKey))
    }

    /// Writes the admin kubeconfig for a server at `serverURL` (mode 0600: it holds a private key).
    @discardableResult
    public func writeAdminKubeconfig(to path: String, serverURL: String) throws -> Kubeconfig {
        let config = Kubeconfig(server: serverURL, caPEM: authority.certificatePEM, user: Self.adminUser,
                                clientCertificatePEM: admin.certificatePEM, clientKeyPEM: admin.privateKeyPEM)
        try Self.write(config.yaml(), to: path, mode: 0o600)
        return config
    }

    static func read(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw PKIError(message: "cannot read \(path)")
        }
        return text
    }

    /// Writes `text` atomically with `mode` from the first byte (the file never exists with looser permissions).
    static func write(_ text: String, to path: String, mode: Int) throws {
        let temporary = path + ".tmp-\(getpid())"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL, mode_t(mode))
        guard fd >= 0 else { throw PKIError(message: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw PKIError(message: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
