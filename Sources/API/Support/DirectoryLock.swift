import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One process per data directory: an exclusive `flock` on `DIR/.lock`, held while the process
/// uses the directory. Two servers on one SQLite file would each believe they own the revision
/// counter; two process runtimes on one state directory would each adopt the other's containers.
/// The kernel drops the lock when the process ends however it ends (SIGKILL included), so a
/// crash never leaves a stale lock behind; the file keeps the last holder's pid for the message.
public final class DirectoryLock: Sendable {
    public let directory: String
    private let descriptor: Mutex<Int32>

    public struct InUse: Error, CustomStringConvertible {
        public let directory: String
        public let pid: Int32?
        public let command: String?
        public var description: String {
            let holder = pid.map { pid in "pid \(pid)" + (command.map { " (\($0))" } ?? "") } ?? "another process"
            return "the data directory \(directory) is in use by \(holder): one process per data directory "
                + "(stop that process, or give this one another --data-dir)"
        }
    }

    /// Takes the lock, creating the directory if needed; throws `InUse` naming the holder when
    /// another process (or another open of this one) holds it.
    public init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = (directory as NSString).appendingPathComponent(".lock")
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO, userInfo: [NSFilePathErrorKey: path])
        }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            let failure = errno
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = pread(fd, &buffer, buffer.count, 0)
            close(fd)
            guard failure == EWOULDBLOCK else {
                throw POSIXError(POSIXErrorCode(rawValue: failure) ?? .EIO, userInfo: [NSFilePathErrorKey: path])
            }
            let pid = count > 0 ? Int32(String(decoding: buffer[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) : nil
            throw InUse(directory: directory, pid: pid, command: pid.flatMap(Self.command(of:)))
        }
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, text, text.count, 0)
        self.directory = directory
        self.descriptor = Mutex(fd)
    }

    /// Gives the lock up (also done when this is dropped).
    public func release() {
        descriptor.withLock { fd in
            guard fd >= 0 else { return }
            // Unlocked first: a child being spawned by another thread holds a copy of the
            // descriptor until its exec, and the flock lasts while any copy is open (a store
            // closed and opened again in one process was refused, now and then, in a full run).
            _ = flock(fd, LOCK_UN)
            close(fd)
            fd = -1
        }
    }

    deinit { release() }

    /// The lock file's descriptor (tests copy it, as a child being spawned does).
    var descriptorForTesting: Int32 { descriptor.withLock { $0 } }

    /// "cox server" for a pid whose command line is `/path/cox server --data-dir …` (the program
    /// and up to two words before the first flag).
    static func command(of pid: Int32) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else { return nil }
        let words = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let first = words.first else { return nil }
        let name = (first as NSString).lastPathComponent
        return ([name] + words.dropFirst().prefix { !$0.hasPrefix("-") }.prefix(2)).joined(separator: " ")
    }
}
