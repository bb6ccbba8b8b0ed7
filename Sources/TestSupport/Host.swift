import Foundation
import NodeAgent

/// Facts about this host that tests need: free ports, processes by command line.
public enum TestHost {
    /// A loopback port nothing listens on right now (bound, read, closed).
    public static func freePort() throws -> Int {
        let (fd, port) = try bindLoopback(listening: false)
        close(fd)
        return port
    }

    /// A loopback socket that listens but never accepts: connections complete (the kernel's
    /// backlog) and then nothing ever answers. Close the descriptor when done.
    public static func silentListener() throws -> (fd: Int32, port: Int) {
        try bindLoopback(listening: true)
    }

    private static func bindLoopback(listening: Bool) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && (!listening || listen(fd, 8) == 0) && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// PIDs (other than this process) whose command line contains `text`.
    public static func processes(containing text: String) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), pid != getpid(),
                  let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            return String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).contains(text) ? pid : nil
        }
    }

    /// Mount points at or below `path` (this process's mount namespace: the host's, for tests).
    public static func mountPoints(under path: String) -> [String] { MountTable.points(under: path) }
}
