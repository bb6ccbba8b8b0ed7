import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Encryption at rest for Secrets, as Kubernetes' EncryptionConfiguration with the aesgcm
/// provider does it: each stored value of a Secret is AES-256-GCM with a fresh nonce, behind a
/// prefix naming the scheme and key (`cox:enc:aesgcm:v1:key1:`), so a value written before
/// encryption was turned on (no prefix) is still read. The key is 32 random bytes in
/// `<data dir>/secrets.key` (0600), made at the first start; it never leaves the server (no
/// response, log line or audit entry holds it). Lose it and the Secrets are lost.
public struct SecretsKey: @unchecked Sendable {  // SymmetricKey: immutable bytes
    public static let fileName = "secrets.key"
    static let prefix = Array("cox:enc:aesgcm:v1:key1:".utf8)
    /// The resources whose values are encrypted.
    public static let resources: Set<String> = ["secrets"]

    let key: SymmetricKey

    public init(_ key: SymmetricKey) { self.key = key }

    /// The data directory's key, made on first use.
    public static func loadOrCreate(dataDirectory: String) throws -> SecretsKey {
        let path = (dataDirectory as NSString).appendingPathComponent(fileName)
        if let existing = try load(path: path) { return existing }
        let key = SymmetricKey(size: .bits256)
        let text = key.withUnsafeBytes { Data($0).base64EncodedString() } + "\n"
        let fd = Glibc.open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, DataFiles.fileMode)
        guard fd >= 0 else { throw POSIXError.fromErrno(path: path) }
        defer { Glibc.close(fd) }
        let bytes = Array(text.utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else { throw POSIXError.fromErrno(path: path) }
        return SecretsKey(key)
    }

    /// The key in `path`, nil when there is no such file.
    public static func load(path: String) throws -> SecretsKey? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        try DataFiles.chmodIfPresent(path, DataFiles.fileMode)
        let text = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let data = Data(base64Encoded: text), data.count == 32 else {
            throw StoreError(.storage, "\(path) does not hold a 32-byte base64 key; without it the stored Secrets cannot be read")
        }
        return SecretsKey(SymmetricKey(data: data))
    }

    func seal(_ bytes: [UInt8]) throws -> [UInt8] {
        guard let combined = try AES.GCM.seal(bytes, using: key).combined else {
            throw StoreError(.storage, "AES-GCM sealing failed")
        }
        return Self.prefix + Array(combined)
    }

    /// The plain value: decrypted when it carries the prefix, as it is otherwise.
    func open(_ bytes: [UInt8]) throws -> [UInt8] {
        guard bytes.starts(with: Self.prefix) else { return bytes }
        let box = try AES.GCM.SealedBox(combined: bytes.dropFirst(Self.prefix.count))
        return Array(try AES.GCM.open(box, using: key))
    }
}

/// How the store turns a value into what it writes to disk and back (Secrets encrypted).
struct ValueCodec: Sendable {
    let secrets: SecretsKey?

    func stored(_ resource: String, _ bytes: [UInt8]) throws -> [UInt8] {
        guard let secrets, SecretsKey.resources.contains(resource) else { return bytes }
        return try secrets.seal(bytes)
    }

    func plain(_ resource: String, _ bytes: [UInt8]) throws -> [UInt8] {
        guard SecretsKey.resources.contains(resource), bytes.starts(with: SecretsKey.prefix) else { return bytes }
        guard let secrets else {
            throw StoreError(.storage, "a stored \(resource) value is encrypted and the store was opened without its key (\(SecretsKey.fileName))")
        }
        do {
            return try secrets.open(bytes)
        } catch {
            throw StoreError(.storage, "a stored \(resource) value cannot be decrypted with this key (\(SecretsKey.fileName)): \(error)")
        }
    }
}
