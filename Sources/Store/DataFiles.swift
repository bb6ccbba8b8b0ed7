import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// File modes in a data directory: directories 0700, files 0600, whatever the umask. A data
/// directory holds keys, tokens' hashes and every object; nobody but its owner reads it.
public enum DataFiles {
    public static let directoryMode: mode_t = 0o700
    public static let fileMode: mode_t = 0o600

    /// Makes `directory` (0700) if needed, creates `creating` (0600) if it does not exist, and
    /// sets every one of `files` that exists, and the directory, to the private modes (a data
    /// directory made by an older version had 0644 files).
    public static func restrict(directory: String, files: [String], creating: String? = nil) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: Int(directoryMode)])
        try chmodIfPresent(directory, directoryMode)
        if let creating {
            let fd = open(creating, O_CREAT | O_RDWR | O_CLOEXEC, fileMode)
            guard fd >= 0 else { throw POSIXError.fromErrno(path: creating) }
            close(fd)
        }
        for file in files { try chmodIfPresent(file, fileMode) }
    }

    /// Sets the mode of `path` unless it does not exist.
    public static func chmodIfPresent(_ path: String, _ mode: mode_t) throws {
        if chmod(path, mode) != 0 && errno != ENOENT { throw POSIXError.fromErrno(path: path) }
    }
}

extension POSIXError {
    /// The error `errno` names, with the path in its description.
    static func fromErrno(path: String) -> Error {
        let code = errno
        return NSError(domain: NSPOSIXErrorDomain, code: Int(code),
                       userInfo: [NSLocalizedDescriptionKey: "\(path): \(String(cString: strerror(code)))"])
    }
}
