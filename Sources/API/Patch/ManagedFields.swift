import Foundation
import SwiftProtobuf

/// Field ownership for server-side apply, as Kubernetes keeps it in `metadata.managedFields`:
/// every write records which fields its manager set (an `Update` entry, or for an apply the
/// `Apply` entry with exactly the fields applied), and an apply that would change a field
/// another manager owns is a conflict unless forced.
public enum ManagedFields {
    public static let apply = "Apply"
    public static let update = "Update"

    /// A field an apply would take from another manager with a different value.
    public struct Conflict: Sendable, Equatable {
        public let manager: String
        public let apiVersion: String
        public let path: [String]
        public var field: String { FieldSet.describe(path) }
    }

    public struct Conflicts: Error, Sendable, CustomStringConvertible {
        public let conflicts: [Conflict]
        /// Kubernetes' wording: `Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas`.
        public var description: String {
            let count = conflicts.count == 1 ? "1 conflict" : "\(conflicts.count) conflicts"
            let listed = conflicts.map { "conflict with \"\($0.manager)\" using \($0.apiVersion): \($0.field)" }
            return "Apply failed with \(count): " + listed.joined(separator: "\n")
        }
    }

    static func entry(_ manager: String, _ operation: String, apiVersion: String, fields: FieldSet, subresource: String, time: Date) -> ManagedFieldsEntry {
        var entry = ManagedFieldsEntry()
        entry.manager = manager
        entry.operation = operation
        entry.apiVersion = apiVersion
        entry.time = Google_Protobuf_Timestamp(date: Date(timeIntervalSince1970: time.timeIntervalSince1970.rounded(.down)))
        entry.fieldsType = "FieldsV1"
        entry.fieldsV1 = fields.text
        entry.subresource = subresource
        return entry
    }

    /// The entries after a write that is not an apply (create, update, patch): the fields it
    /// changed are `manager`'s (its Update entry), no longer anyone else's; fields gone from the
    /// object are nobody's.
    public static func afterUpdate(old: JSONValue?, new: JSONValue, entries: [ManagedFieldsEntry], manager: String, apiVersion: String,
                                   schema: MessageSchema?, subresource: String, time: Date = Date()) -> [ManagedFieldsEntry] {
        let written = FieldSet.of(new, schema: schema, status: subresource == "status")
        // A create: everything written is the creator's.
        guard let old, !entries.isEmpty else {
            return written.isEmpty ? [] : [entry(manager, update, apiVersion: apiVersion, fields: written, subresource: subresource, time: time)]
        }
        let changed = written.changed(from: old, to: new)
        var out: [ManagedFieldsEntry] = []
        var mine = FieldSet()
        var pruned = false
        for entry in entries {
            let fields = FieldSet(text: entry.fieldsV1).pruned(to: new, removing: changed)
            let text = fields.text
            if text != entry.fieldsV1 { pruned = true }
            if entry.manager == manager && entry.operation == update && entry.subresource == subresource {
                mine = fields
                continue
            }
            if fields.isEmpty { continue }
            var kept = entry
            kept.fieldsV1 = text
            out.append(kept)
        }
        // A write that changes no field leaves the entries (and their times) as they were, so
        // the object is unchanged and the store writes nothing, as in Kubernetes.
        if changed == nil && !pruned { return entries }
        if let changed { mine = mine.union(changed) }
        if !mine.isEmpty { out.append(entry(manager, update, apiVersion: apiVersion, fields: mine, subresource: subresource, time: time)) }
        return out
    }

    /// A server-side apply of `applied` by `manager` to `live` (nil: the object does not exist):
    /// the object to store and its entries. Fields the manager applied before and no longer
    /// does are removed unless another manager owns them; conflicts throw `Conflicts` unless
    /// `force` (which takes the fields over).
    public static func apply(_ applied: JSONValue, to live: JSONValue?, entries: [ManagedFieldsEntry], manager: String, force: Bool,
                             apiVersion: String, schema: MessageSchema?, subresource: String = "", time: Date = Date()) throws -> (object: JSONValue, entries: [ManagedFieldsEntry]) {
        let wanted = FieldSet.of(applied, schema: schema, status: subresource == "status")
        // A manager's apply to the object and its apply to /status are separate entries, as in Kubernetes.
        let mine = { (entry: ManagedFieldsEntry) in entry.manager == manager && entry.operation == apply && entry.subresource == subresource }
        var others = entries.filter { !mine($0) }
        let previous = entries.first(where: mine).map { FieldSet(text: $0.fieldsV1) } ?? FieldSet()
        var current = live ?? .object([])
        if let live {
            var conflicts: [Conflict] = []
            for path in wanted.leaves where path.last != "." {
                guard let mine = FieldSet.value(at: path, in: applied), let theirs = FieldSet.value(at: path, in: live), !mine.sameJSON(as: theirs) else { continue }
                for (index, entry) in others.enumerated() {
                    var fields = FieldSet(text: entry.fieldsV1)
                    guard fields.contains(path) else { continue }
                    if force {
                        fields.remove(path)
                        others[index].fieldsV1 = fields.text
                    } else {
                        conflicts.append(Conflict(manager: entry.manager, apiVersion: entry.apiVersion, path: path))
                    }
                }
            }
            if !conflicts.isEmpty { throw Conflicts(conflicts: conflicts) }
            // What this manager applied before and no longer does goes, unless someone else owns it.
            let owned = others.map { FieldSet(text: $0.fieldsV1) }
            for path in previous.leaves where !wanted.contains(path) {
                let item = path.last == "." ? Array(path.dropLast()) : path
                if owned.contains(where: { $0.contains(item) }) { continue }
                current = FieldSet.removing(path, from: current)
            }
        }
        var body = applied
        if case .object(var members) = body, let index = members.firstIndex(where: { $0.key == "metadata" }), case .object(var metadata) = members[index].value {
            metadata.removeAll { $0.key == "managedFields" }
            members[index].value = .object(metadata)
            body = .object(members)
        }
        let merged = try StrategicMergePatch.apply(body, to: current, schema: schema)
        var result = others.filter { !FieldSet(text: $0.fieldsV1).isEmpty }
        if !wanted.isEmpty { result.append(entry(manager, apply, apiVersion: apiVersion, fields: wanted, subresource: subresource, time: time)) }
        return (merged, result)
    }
}
