import Foundation

/// A set of fields of an object, as server-side apply tracks ownership: Kubernetes' FieldsV1 form,
/// a tree whose keys are `f:<field>`, `k:<key fields as JSON>` (an item of a keyed list),
/// `v:<value as JSON>` (an item of a set) and `.` (the list item itself); a node without children
/// is a field owned whole.
public struct FieldSet: Sendable, Equatable {
    public var children: [String: FieldSet] = [:]

    public init() {}

    public var isEmpty: Bool { children.isEmpty }

    /// Fields that are not the user's to own: identity, bookkeeping, status (its own subresource).
    static let excluded: Set<String> = ["f:apiVersion", "f:kind", "f:status"]
    static let excludedMetadata: Set<String> = ["f:name", "f:namespace", "f:uid", "f:resourceVersion", "f:generation",
                                                "f:creationTimestamp", "f:deletionTimestamp", "f:deletionGracePeriodSeconds", "f:managedFields"]

    /// The fields `value` (an object of the kind `schema` describes) sets; with `status`, only its status.
    public static func of(_ value: JSONValue, schema: MessageSchema?, status: Bool = false) -> FieldSet {
        var set = build(value, type: schema.map { .message($0.name) }, field: nil)
        if status {
            set.children = set.children.filter { $0.key == "f:status" }
        } else {
            for key in excluded { set.children[key] = nil }
            if var metadata = set.children["f:metadata"] {
                for key in excludedMetadata { metadata.children[key] = nil }
                set.children["f:metadata"] = metadata.isEmpty ? nil : metadata
            }
        }
        return set
    }

    static func build(_ value: JSONValue, type: SchemaType?, field: FieldSchema?) -> FieldSet {
        var set = FieldSet()
        switch value {
        case .object(let members):
            if case .freeform? = type { return set }
            for member in members {
                let (childType, childField) = StrategicMergePatch.field(member.key, of: type)
                set.children["f:" + member.key] = build(member.value, type: childType, field: childField)
            }
        case .array(let items):
            guard case .array(let element)? = type else { return set }
            let keys = mergeKeys(field)
            if case .message = element, !keys.isEmpty {
                for item in items {
                    guard let key = itemKey(item, keys) else { continue }
                    var child = build(item, type: element, field: nil)
                    child.children["."] = FieldSet()
                    set.children[key] = child
                }
            } else if isSet(field, element: element) {
                for item in items { set.children["v:" + compact(item)] = FieldSet() }
            }
        default:
            break
        }
        return set
    }

    /// The fields identifying an item of a keyed list (`listMapKeys`, else the patch merge key).
    static func mergeKeys(_ field: FieldSchema?) -> [String] {
        guard let field else { return [] }
        if field.listType == .map && !field.listMapKeys.isEmpty { return field.listMapKeys }
        if field.patchStrategy.contains("merge") && !field.patchMergeKey.isEmpty { return [field.patchMergeKey] }
        return []
    }

    static func isSet(_ field: FieldSchema?, element: SchemaType) -> Bool {
        if case .message = element { return false }
        return field?.listType == .set || field?.patchStrategy.contains("merge") == true
    }

    static func compact(_ value: JSONValue) -> String { String(decoding: JSONWriter.bytes(value), as: UTF8.self) }

    /// `k:{"name":"app"}` for an item (its key fields in key order; nil when it has none of them).
    static func itemKey(_ item: JSONValue, _ keys: [String]) -> String? {
        let present = keys.compactMap { key in item[key].map { JSONMember(key, $0) } }
        return present.isEmpty ? nil : "k:" + compact(.object(present.sorted { $0.key < $1.key }))
    }

    /// Every path to a field owned whole.
    public var leaves: [[String]] {
        var out: [[String]] = []
        func walk(_ set: FieldSet, _ path: [String]) {
            if set.children.isEmpty { if !path.isEmpty { out.append(path) }; return }
            for (key, child) in set.children.sorted(by: { $0.key < $1.key }) { walk(child, path + [key]) }
        }
        walk(self, [])
        return out
    }

    public func contains(_ path: [String]) -> Bool {
        var node = self
        for element in path {
            guard let next = node.children[element] else { return false }
            node = next
        }
        return true
    }

    public mutating func insert(_ path: [String]) {
        guard let first = path.first else { return }
        var child = children[first] ?? FieldSet()
        child.insert(Array(path.dropFirst()))
        children[first] = child
    }

    /// Removes a path and the branches it leaves empty.
    public mutating func remove(_ path: [String]) {
        guard let first = path.first, var child = children[first] else { return }
        if path.count == 1 { children[first] = nil; return }
        child.remove(Array(path.dropFirst()))
        children[first] = child.isEmpty ? nil : child
    }

    public func union(_ other: FieldSet) -> FieldSet {
        var result = self
        for path in other.leaves { result.insert(path) }
        return result
    }

    // MARK: Walking a set and values together (one lookup per node, not per leaf)

    /// The value under one key of a set, in `value` (`.` is the item itself).
    static func child(_ key: String, of value: JSONValue?) -> JSONValue? {
        guard let value else { return nil }
        if key == "." { return value }
        if key.hasPrefix("f:") { return value[String(key.dropFirst(2))] }
        return itemIndex(key, in: value).map { value.elements![$0] }
    }

    /// The part of this set whose values differ between `old` and `new` (absent in `old`
    /// counts as different); nil when nothing does.
    public func changed(from old: JSONValue?, to new: JSONValue?) -> FieldSet? {
        if children.isEmpty {
            guard let new else { return nil }
            if let old, old.sameJSON(as: new) { return nil }
            return FieldSet()
        }
        var out = FieldSet()
        for (key, child) in children {
            if let changed = child.changed(from: Self.child(key, of: old), to: Self.child(key, of: new)) { out.children[key] = changed }
        }
        return out.isEmpty ? nil : out
    }

    /// This set without the fields `value` no longer has, and without `other`'s leaves.
    public func pruned(to value: JSONValue?, removing other: FieldSet?) -> FieldSet {
        var out = FieldSet()
        for (key, child) in children {
            let otherChild = other?.children[key]
            if let otherChild, otherChild.isEmpty { continue }  // taken whole
            guard let inner = Self.child(key, of: value) else { continue }
            if child.isEmpty { out.children[key] = FieldSet(); continue }
            let kept = child.pruned(to: inner, removing: otherChild)
            if !kept.isEmpty { out.children[key] = kept }
        }
        return out
    }

    // MARK: FieldsV1

    public var json: JSONValue {
        .object(children.sorted { $0.key < $1.key }.map { JSONMember($0.key, $0.value.json) })
    }

    public init(json: JSONValue) {
        for member in json.members ?? [] { children[member.key] = FieldSet(json: member.value) }
    }

    public init(text: String) {
        self.init(json: (try? JSONParser.parse(text)) ?? .object([]))
    }

    public var text: String { Self.compact(json) }

    // MARK: Values at paths

    /// The value at a path of `object`, nil when there is none (`.` is the item itself).
    public static func value(at path: [String], in object: JSONValue) -> JSONValue? {
        var current = object
        for element in path {
            if element == "." { continue }
            if element.hasPrefix("f:") {
                guard let next = current[String(element.dropFirst(2))] else { return nil }
                current = next
            } else if let index = itemIndex(element, in: current) {
                current = current.elements![index]
            } else {
                return nil
            }
        }
        return current
    }

    static func itemIndex(_ element: String, in list: JSONValue) -> Int? {
        guard let items = list.elements else { return nil }
        if element.hasPrefix("k:"), let key = try? JSONParser.parse(String(element.dropFirst(2))), let keys = key.members {
            return items.firstIndex { item in keys.allSatisfy { item[$0.key]?.sameJSON(as: $0.value) == true } }
        }
        if element.hasPrefix("v:"), let value = try? JSONParser.parse(String(element.dropFirst(2))) {
            return items.firstIndex { $0.sameJSON(as: value) }
        }
        return nil
    }

    /// `object` without the field at `path` (a path ending in `.` removes the list item).
    public static func removing(_ path: [String], from object: JSONValue) -> JSONValue {
        var path = path
        if path.last == "." { path.removeLast() }
        guard let first = path.first else { return object }
        if path.count == 1 {
            if first.hasPrefix("f:"), case .object(var members) = object {
                members.removeAll { $0.key == String(first.dropFirst(2)) }
                return .object(members)
            }
            if let index = itemIndex(first, in: object), case .array(var items) = object {
                items.remove(at: index)
                return .array(items)
            }
            return object
        }
        let rest = Array(path.dropFirst())
        if first.hasPrefix("f:"), case .object(var members) = object, let index = members.firstIndex(where: { $0.key == String(first.dropFirst(2)) }) {
            members[index].value = removing(rest, from: members[index].value)
            return .object(members)
        }
        if let index = itemIndex(first, in: object), case .array(var items) = object {
            items[index] = removing(rest, from: items[index])
            return .array(items)
        }
        return object
    }

    /// A path as Kubernetes prints it in a conflict: `.spec.containers[name="app"].image`.
    public static func describe(_ path: [String]) -> String {
        var out = ""
        for element in path where element != "." {
            if element.hasPrefix("f:") {
                out += "." + element.dropFirst(2)
            } else if element.hasPrefix("k:"), let key = try? JSONParser.parse(String(element.dropFirst(2))) {
                out += "[" + (key.members ?? []).map { "\($0.key)=\(compact($0.value))" }.joined(separator: ",") + "]"
            } else if element.hasPrefix("v:") {
                out += "[=" + element.dropFirst(2) + "]"
            }
        }
        return out
    }
}
