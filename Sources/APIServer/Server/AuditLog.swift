import API
import Foundation
import Glibc
import Logging
import Synchronization

/// One JSON line per request that changes state, and per request denied (401 or 403): when, the
/// request id (also sent back as `Audit-Id`), who (user, groups, and whom they impersonated),
/// from where, what (verb, API group, resource, namespace, name), the answer's code and the
/// latency. Never a body, never a credential. Rotated by size: `audit.log` → `audit.log.1` … up
/// to `keep` files.
public final class AuditLog: Sendable {
    public struct Entry: Sendable {
        public var requestID: String
        public var user: String
        public var groups: [String]
        /// The identity that asked to act as `user`, when impersonating.
        public var impersonatedBy: String?
        public var sourceIP: String
        public var attributes: RequestAttributes?
        public var method: String
        public var path: String
        public var code: Int
        public var latencySeconds: Double

        public init(requestID: String, user: String, groups: [String], impersonatedBy: String?, sourceIP: String, attributes: RequestAttributes?,
                    method: String, path: String, code: Int, latencySeconds: Double) {
            self.requestID = requestID
            self.user = user
            self.groups = groups
            self.impersonatedBy = impersonatedBy
            self.sourceIP = sourceIP
            self.attributes = attributes
            self.method = method
            self.path = path
            self.code = code
            self.latencySeconds = latencySeconds
        }
    }

    static let mutating: Set<String> = ["create", "update", "patch", "delete", "deletecollection"]

    let path: String
    let maxBytes: Int
    let keep: Int
    let logger: Logger
    struct State { var handle: FileHandle?; var size: Int }
    let state: Mutex<State>

    public init(path: String, maxBytes: Int = 100 * 1024 * 1024, keep: Int = 5, logger: Logger) throws {
        self.path = path
        self.maxBytes = maxBytes
        self.keep = keep
        self.logger = logger
        let (handle, size) = try Self.open(path)
        state = Mutex(State(handle: handle, size: size))
    }

    static func open(_ path: String) throws -> (FileHandle, Int) {
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
                throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
            }
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        let size = Int(try handle.seekToEnd())
        return (handle, size)
    }

    /// Whether a request is on record: it changed state (or tried to), or it was denied.
    public static func records(_ entry: Entry) -> Bool {
        if entry.code == 401 || entry.code == 403 { return true }
        guard let attributes = entry.attributes else { return false }
        return attributes.isResourceRequest && mutating.contains(attributes.verb)
    }

    public func record(_ entry: Entry) {
        guard Self.records(entry) else { return }
        var line = Self.line(entry)
        line.append(0x0A)
        state.withLock { state in
            if state.size + line.count > maxBytes { rotate(&state) }
            guard let handle = state.handle else { return }
            // write(2) on the descriptor: FileHandle's write adds closures and a protocol hop per line.
            let error = line.withUnsafeBytes { bytes -> Int32? in
                var offset = 0
                while offset < bytes.count {
                    let written = Glibc.write(handle.fileDescriptor, bytes.baseAddress! + offset, bytes.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        return errno
                    }
                    offset += written
                }
                return nil
            }
            if let error {
                logger.error("cannot write the audit log", metadata: ["path": "\(path)", "error": "\(String(cString: strerror(error)))"])
            } else {
                state.size += line.count
            }
        }
    }

    func rotate(_ state: inout State) {
        try? state.handle?.close()
        let files = FileManager.default
        try? files.removeItem(atPath: "\(path).\(keep)")
        if keep > 1 {
            for i in stride(from: keep - 1, through: 1, by: -1) where files.fileExists(atPath: "\(path).\(i)") {
                try? files.moveItem(atPath: "\(path).\(i)", toPath: "\(path).\(i + 1)")
            }
        }
        try? files.moveItem(atPath: path, toPath: "\(path).1")
        do {
            let (handle, size) = try Self.open(path)
            state = State(handle: handle, size: size)
        } catch {
            logger.error("cannot reopen the audit log after rotating it", metadata: ["path": "\(path)", "error": "\(error)"])
            state = State(handle: nil, size: 0)
        }
    }

    static func line(_ entry: Entry) -> [UInt8] {
        var w = JSONWriter(capacity: 320)
        w.beginObject()
        w.key("time"); w.string(Timestamp(date: Date()).format(microseconds: true))  // RFC 3339, UTC, µs
        w.key("requestID"); w.string(entry.requestID)
        w.key("user"); w.string(entry.user)
        w.key("groups"); w.beginArray(); for group in entry.groups { w.string(group) }; w.endArray()
        if let by = entry.impersonatedBy { w.key("impersonatedBy"); w.string(by) }
        w.key("sourceIP"); w.string(entry.sourceIP)
        if let attributes = entry.attributes, attributes.isResourceRequest {
            w.key("verb"); w.string(attributes.verb)
            w.key("apiGroup"); w.string(attributes.apiGroup)
            w.key("resource"); w.string(attributes.subresource.isEmpty ? attributes.resource : "\(attributes.resource)/\(attributes.subresource)")
            w.key("namespace"); w.string(attributes.namespace)
            w.key("name"); w.string(attributes.name)
        } else {
            w.key("verb"); w.string(entry.attributes?.verb ?? entry.method.lowercased())
            w.key("path"); w.string(entry.path)
        }
        w.key("code"); w.int(entry.code)
        w.key("latencyMs"); w.double((entry.latencySeconds * 1e6).rounded() / 1e3)
        w.endObject()
        return w.bytes
    }
}

/// Request ids (`Audit-Id`), shaped as UUIDs: 64 random bits chosen at start, then a counter, so
/// they are unique within the process and, with all but certainty, across restarts. Foundation's
/// `UUID()` opened, read and closed /dev/urandom for each one.
enum RequestID {
    static let prefix = UInt64.random(in: .min ... .max)
    static let counter = Atomic<UInt64>(0)
    static let digits = Array("0123456789abcdef".utf8)

    static func next() -> String {
        let count = counter.wrappingAdd(1, ordering: .relaxed).newValue
        var text = [UInt8]()
        text.reserveCapacity(36)
        // 8-4-4 hex digits of the prefix, then 4-12 of the counter.
        for nibble in 0..<32 {
            if nibble == 8 || nibble == 12 || nibble == 16 || nibble == 20 { text.append(UInt8(ascii: "-")) }
            let value = nibble < 16 ? prefix : count
            text.append(digits[Int((value >> UInt64(60 - 4 * (nibble % 16))) & 0xF)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
