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
///
/// When a line cannot be written (disk full, the file gone, a failed rotation), the failure is
/// logged with the entry itself (so the server log keeps what the audit log could not), counted
/// (`cox_audit_errors_total`), and the log turns *failing*: from then on every change must first
/// get a line on record before it is carried out (`admitChange`), and is refused with 503 while
/// that fails. The first line that is written again ends the failing state. So at most the
/// changes already under way when the disk failed are missing from the file — and those are in
/// the server log.
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
    struct State {
        var handle: FileHandle?
        var size: Int
        /// The last write failed: changes need a line on record first.
        var failing = false
    }
    let state: Mutex<State>
    /// Lines that could not be written, and rotations that did not go as planned.
    let errors = Atomic<Int>(0)

    /// Lines that could not be written since the start (for `/metrics`).
    public var errorCount: Int { errors.load(ordering: .relaxed) }
    /// Whether the last attempt to write failed (changes are refused until a line goes through).
    public var isFailing: Bool { state.withLock { $0.failing } }

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
        if let failure = write(line) {
            logger.error("cannot write the audit log; the entry follows here instead", metadata: [
                "path": "\(path)", "error": "\(failure)", "entry": "\(String(decoding: line.dropLast(), as: UTF8.self))"])
        }
    }

    /// For a change about to be carried out while the log is failing: writes a line saying the
    /// request was received, and answers whether it went on record (false: refuse the change).
    /// While the log is healthy it writes nothing and answers true at once.
    public func admitChange(requestID: String, user: String, method: String, path requestPath: String) -> Bool {
        guard isFailing else { return true }
        var w = JSONWriter(capacity: 200)
        w.beginObject()
        w.key("time"); w.string(Timestamp(date: Date()).format(microseconds: true))
        w.key("requestID"); w.string(requestID)
        w.key("stage"); w.string("RequestReceived")
        w.key("user"); w.string(user)
        w.key("verb"); w.string(method.lowercased())
        w.key("path"); w.string(requestPath)
        w.endObject()
        var line = w.bytes
        line.append(0x0A)
        if let failure = write(line) {
            logger.warning("the audit log is still not writable; refusing a change", metadata: ["path": "\(path)", "error": "\(failure)", "user": "\(user)"])
            return false
        }
        logger.notice("the audit log is writable again", metadata: ["path": "\(path)"])
        return true
    }

    /// Writes one line (rotating first when it would pass `maxBytes`, reopening when the file is
    /// not open); nil when written, else what went wrong, counted and the log marked failing.
    func write(_ line: [UInt8]) -> String? {
        state.withLock { state in
            if state.size + line.count > maxBytes { rotate(&state) }
            if state.handle == nil {
                do {
                    let (handle, size) = try Self.open(path)
                    state.handle = handle
                    state.size = size
                } catch {
                    return fail(&state, "cannot open: \(error)")
                }
            }
            guard let handle = state.handle else { return fail(&state, "not open") }
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
                // Closed, so the next line reopens the file (it may have been removed or replaced).
                try? handle.close()  // the descriptor is being given up after a failed write; nothing to save
                state.handle = nil
                return fail(&state, String(cString: strerror(error)))
            }
            state.size += line.count
            state.failing = false
            return nil
        }
    }

    private func fail(_ state: inout State, _ reason: String) -> String {
        state.failing = true
        errors.add(1, ordering: .relaxed)
        return reason
    }

    /// Moves the files along (`audit.log.N` is dropped, each other one moves up) and leaves the
    /// log closed, to be reopened fresh by the write that follows. A step that fails is logged and
    /// counted; the log goes on (at worst into the file it could not move).
    func rotate(_ state: inout State) {
        do {
            try state.handle?.close()
        } catch {
            logger.warning("closing the audit log before rotating it failed", metadata: ["path": "\(path)", "error": "\(error)"])
        }
        state.handle = nil
        state.size = 0
        let files = FileManager.default
        var moves: [(String, String?)] = [("\(path).\(keep)", nil)]
        if keep > 1 {
            for i in stride(from: keep - 1, through: 1, by: -1) { moves.append(("\(path).\(i)", "\(path).\(i + 1)")) }
        }
        moves.append((path, "\(path).1"))
        for (from, to) in moves where files.fileExists(atPath: from) {
            do {
                if let to { try files.moveItem(atPath: from, toPath: to) } else { try files.removeItem(atPath: from) }
            } catch {
                errors.add(1, ordering: .relaxed)
                logger.error("cannot rotate the audit log", metadata: ["from": "\(from)", "to": "\(to ?? "(removed)")", "error": "\(error)"])
            }
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
