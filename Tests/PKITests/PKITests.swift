import Foundation
import Testing
import TestSupport
@testable import PKI

@Suite("Cluster PKI", .watchdog)
struct PKITests {
    func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! NSNumber).intValue
    }

    @Test func bootstrapMakesAVerifiableChainAndKeepsKeysPrivate() throws {
        let dir = TemporaryDirectory()
        let pki = try ClusterPKI.bootstrap(dataDirectory: dir.path, extraNames: ["10.1.2.3", "cox.example.com"])
        for key in ["ca.key", "apiserver.key", "admin.key"] {
            #expect(try mode(pki.path(key)) == 0o600, "\(key)")
        }
        let openssl = try #require(Tools.find("openssl"), "openssl is part of the base system")
        let server = try Tools.run(openssl, ["verify", "-purpose", "sslserver", "-CAfile", pki.caPath, pki.servingCertificatePath])
        #expect(server.status == 0, "\(server.output)")
        let client = try Tools.run(openssl, ["verify", "-purpose", "sslclient", "-CAfile", pki.caPath, pki.path("admin.crt")])
        #expect(client.status == 0, "\(client.output)")
        // A serving certificate is not a client identity, and the other way round.
        #expect(try Tools.run(openssl, ["verify", "-purpose", "sslclient", "-CAfile", pki.caPath, pki.servingCertificatePath]).status != 0)

        let text = try Tools.run(openssl, ["x509", "-noout", "-text", "-in", pki.servingCertificatePath]).output
        for name in ["DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "IP Address:10.1.2.3", "DNS:cox.example.com"] {
            #expect(text.contains(name), "serving certificate lacks \(name)")
        }
        let subject = try Tools.run(openssl, ["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", pki.path("admin.crt")]).output
        #expect(subject.contains("CN=admin") && subject.contains("O=system:masters"), "\(subject)")
    }

    @Test func secondStartKeepsTheCAAndTheAdminIdentity() throws {
        let dir = TemporaryDirectory()
        let first = try ClusterPKI.bootstrap(dataDirectory: dir.path)
        let second = try ClusterPKI.bootstrap(dataDirectory: dir.path, extraNames: ["192.0.2.7"])
        #expect(first.authority.certificatePEM == second.authority.certificatePEM)
        #expect(first.admin == second.admin)
        #expect(first.serving != second.serving, "the serving certificate is re-issued to cover new names")
        #expect(first.authority.publicKeyHash == second.authority.publicKeyHash)
        #expect(first.authority.publicKeyHash.hasPrefix("sha256:") && first.authority.publicKeyHash.count == 71)
    }

    @Test func aKeyThatIsNotTheCAsIsRefused() throws {
        let a = try CertificateAuthority.create(commonName: "a")
        let b = try CertificateAuthority.create(commonName: "b")
        #expect(throws: PKIError.self) { _ = try CertificateAuthority.load(certificatePEM: a.certificatePEM, privateKeyPEM: b.privateKeyPEM) }
        #expect(throws: PKIError.self) { _ = try CertificateAuthority.load(certificatePEM: "not pem", privateKeyPEM: b.privateKeyPEM) }
    }

    @Test func kubeconfigRoundTripsAndKubectlReadsIt() throws {
        let dir = TemporaryDirectory()
        let pki = try ClusterPKI.bootstrap(dataDirectory: dir.path)
        let path = (dir.path as NSString).appendingPathComponent("admin.kubeconfig")
        let written = try pki.writeAdminKubeconfig(to: path, serverURL: "https://127.0.0.1:6443")
        #expect(try mode(path) == 0o600)
        #expect(try Kubeconfig.load(path: path) == written)
        guard let kubectl = Tools.peer("kubectl") else { return }
        let server = try Tools.run(kubectl, ["--kubeconfig", path, "config", "view", "-o", "jsonpath={.clusters[0].cluster.server} {.contexts[0].context.user}"])
        #expect(server.status == 0 && server.output == "https://127.0.0.1:6443 admin", "\(server.output)")
        let raw = try Tools.run(kubectl, ["--kubeconfig", path, "config", "view", "--raw", "-o", "jsonpath={.users[0].user.client-certificate-data}"])
        #expect(Data(base64Encoded: raw.output).map { String(decoding: $0, as: UTF8.self) } == pki.admin.certificatePEM)
    }

    /// Several API servers: the first is `server` (what kubectl uses), all of them are in the
    /// `cox.io/servers` extension (what our clients fail over between); kubectl reads the file.
    @Test func aKubeconfigListsSeveralServersInAnExtensionKubectlAccepts() throws {
        let dir = TemporaryDirectory()
        let pki = try ClusterPKI.bootstrap(dataDirectory: dir.path)
        let path = (dir.path as NSString).appendingPathComponent("ha.kubeconfig")
        var config = try pki.writeAdminKubeconfig(to: path, serverURL: "https://10.0.0.1:6443")
        config.server = "https://10.0.0.1:6443, https://10.0.0.2:6443"
        #expect(config.servers == ["https://10.0.0.1:6443", "https://10.0.0.2:6443"] && config.server == "https://10.0.0.1:6443")
        try config.yaml().write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try Kubeconfig.load(path: path) == config)
        guard let kubectl = Tools.peer("kubectl") else { return }
        let read = try Tools.run(kubectl, ["--kubeconfig", path, "config", "view", "-o", "jsonpath={.clusters[0].cluster.server} {.clusters[0].cluster.extensions[0].name}"])
        #expect(read.status == 0 && read.output == "https://10.0.0.1:6443 cox.io/servers", "\(read.output)")
    }

    @Test func kubeconfigErrorsSayWhatIsMissing() throws {
        let dir = TemporaryDirectory()
        let path = (dir.path as NSString).appendingPathComponent("k")
        try "apiVersion: v1\nkind: Config\nclusters: []\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect { try Kubeconfig.load(path: path) } throws: { "\($0)".contains("no current-context") }
        try "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: https://h}}]\nusers: [{name: u, user: {}}]\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect { try Kubeconfig.load(path: path) } throws: { "\($0)".contains("no certificate authority") }
        #expect { try Kubeconfig.load(path: path + "-missing") } throws: { "\($0)".contains("cannot read kubeconfig") }
    }
}
