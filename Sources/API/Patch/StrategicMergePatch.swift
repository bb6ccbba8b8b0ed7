/// Kubernetes' strategic merge patch: a merge patch that knows, from the schema, which lists
/// merge item by item (containers by `name`, ports by `containerPort`, conditions by `type`, …)
/// instead of being replaced, with the directives kubectl sends: `$patch: replace|delete|merge`,
/// `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.
public enum StrategicMergePatch {
    public static func apply(_ patch: JSONValue, to original: JSONValue, schema: MessageSchema?) throws -> JSONValue {
        guard patch.members != nil else { throw PatchError(.invalid, "a strategic merge patch is an object, not a \(patch.typeName)") }
        guard let result = try merge(patch, into: original, type: schema.map { .message($0.name) }, path: "") else {
            throw PatchError(.invalid, "$patch: delete cannot delete the whole object")
        }
        return result
    }

    static let directive = "$patch"
    static let retainKeys = "$retainKeys"
    static let setElementOrder = "$setElementOrder/"
    static let deleteFromPrimitiveList = "$deleteFromPrimitiveList/"

    /// The type of `key`'s value inside a value of `type`: a message's field, a map's values;
    /// nil where the schema does not say (merged as a merge patch would).
    static func field(_ key: String, of type: SchemaType?) -> (type: SchemaType?, schema: FieldSchema?) {
        switch type {
        case .message(let name)?:
            let field = Schema.message(name)?[field: key]
            return (field?.type, field)
        case .map(let values)?:
            return (values, nil)
        default:
            return (nil, nil)
        }
    }

    /// `patch` merged into `original` (an object, or nil where there was none); nil when the
    /// patch deletes it.
    static func merge(_ patch: JSONValue, into original: JSONValue?, type: SchemaType?, path: String) throws -> JSONValue? {
        guard let changes = patch.members else { return patch }
        var members = original?.members ?? []
        switch changes.first(where: { $0.key == directive })?.value {
        case nil, .string("merge")?:
            break
        case .string("replace")?:
            return try strip(patch)
        case .string("delete")?:
            return nil
        case let other?:
            throw PatchError(.invalid, "\(path.isEmpty ? "/" : path): unknown $patch directive \(String(decoding: JSONWriter.bytes(other), as: UTF8.self)) (replace, delete and merge are)")
        }
        if let retained = changes.first(where: { $0.key == retainKeys })?.value {
            guard let keys = retained.elements?.compactMap({ value -> String? in if case .string(let key) = value { return key } else { return nil } }),
                  keys.count == retained.elements?.count else {
                throw PatchError(.invalid, "\(path)/$retainKeys: a list of field names is expected")
            }
            members.removeAll { !keys.contains($0.key) }
        }
        var orders: [String: [JSONValue]] = [:]
        for change in changes where !change.key.hasPrefix("$") || change.key.hasPrefix(deleteFromPrimitiveList) || change.key.hasPrefix(setElementOrder) {
            if change.key.hasPrefix(setElementOrder) {
                guard let order = change.value.elements else { throw PatchError(.invalid, "\(path)/\(change.key): a list is expected") }
                orders[String(change.key.dropFirst(setElementOrder.count))] = order
                continue
            }
            if change.key.hasPrefix(deleteFromPrimitiveList) {
                let key = String(change.key.dropFirst(deleteFromPrimitiveList.count))
                guard let doomed = change.value.elements else { throw PatchError(.invalid, "\(path)/\(change.key): a list is expected") }
                if let index = members.firstIndex(where: { $0.key == key }), let items = members[index].value.elements {
                    members[index].value = .array(items.filter { item in !doomed.contains { $0.sameJSON(as: item) } })
                }
                continue
            }
            let here = path + "/" + change.key
            let index = members.firstIndex { $0.key == change.key }
            if change.value.isNull {
                if let index { members.remove(at: index) }
                continue
            }
            let (fieldType, fieldSchema) = field(change.key, of: type)
            let merged: JSONValue?
            switch change.value {
            case .object:
                let existing = index.map { members[$0].value }
                merged = try merge(change.value, into: existing?.members != nil ? existing : nil, type: fieldType, path: here)
            case .array(let items):
                if fieldSchema?.patchStrategy.split(separator: ",").contains("merge") == true, case .array(let element)? = fieldType {
                    let existing = index.flatMap { members[$0].value.elements } ?? []
                    merged = try mergeList(items, into: existing, element: element, key: fieldSchema?.patchMergeKey ?? "", path: here)
                } else {
                    merged = .array(try items.map { try strip($0) })
                }
            default:
                merged = change.value
            }
            if let index {
                if let merged { members[index].value = merged } else { members.remove(at: index) }
            } else if let merged {
                members.append(JSONMember(change.key, merged))
            }
        }
        for (key, order) in orders {
            guard let index = members.firstIndex(where: { $0.key == key }), let items = members[index].value.elements else { continue }
            let mergeKey = field(key, of: type).schema?.patchMergeKey ?? ""
            members[index].value = .array(reorder(items, by: order, key: mergeKey))
        }
        return .object(members)
    }

    /// Merges a list whose strategy is `merge`: objects by their merge key (an item with `$patch:
    /// delete` removes its match; a `{"$patch": "replace"}` item replaces the whole list with the
    /// rest), scalars as a set.
    static func mergeList(_ patch: [JSONValue], into original: [JSONValue], element: SchemaType, key: String, path: String) throws -> JSONValue {
        if patch.contains(where: { $0.members?.count == 1 && $0[directive] == .string("replace") }) {
            return .array(try patch.filter { !($0.members?.count == 1 && $0[directive] == .string("replace")) }.map { try strip($0) })
        }
        guard case .message = element, !key.isEmpty else {
            // A list of scalars merged as a set: what the patch adds that is not there yet.
            var result = original
            for item in patch where !result.contains(where: { $0.sameJSON(as: item) }) { result.append(item) }
            return .array(result)
        }
        var result = original
        for (position, item) in patch.enumerated() {
            guard item.members != nil else { throw PatchError(.invalid, "\(path)/\(position): an object is expected in a list merged by \(key)") }
            guard let value = item[key] else {
                throw PatchError(.invalid, "\(path)/\(position): the item does not contain the list's merge key \"\(key)\"")
            }
            let match = result.firstIndex { $0[key]?.sameJSON(as: value) == true }
            if item[directive] == .string("delete") {
                result.removeAll { $0[key]?.sameJSON(as: value) == true }
                continue
            }
            let merged = try merge(item, into: match.map { result[$0] }, type: element, path: "\(path)/\(position)")
            switch (match, merged) {
            case (let match?, let merged?): result[match] = merged
            case (let match?, nil): result.remove(at: match)
            case (nil, let merged?): result.append(merged)
            case (nil, nil): break
            }
        }
        return .array(result)
    }

    /// The list in `order`'s order (items matched by merge key, or by value for scalars); items
    /// the order does not name keep their relative order after the named ones.
    static func reorder(_ items: [JSONValue], by order: [JSONValue], key: String) -> [JSONValue] {
        func identity(_ item: JSONValue) -> JSONValue? { key.isEmpty ? item : item[key] }
        func rank(_ item: JSONValue) -> Int? {
            guard let id = identity(item) else { return nil }
            return order.firstIndex { (key.isEmpty ? $0 : $0[key])?.sameJSON(as: id) == true }
        }
        let ranked = items.enumerated().map { (offset: $0.offset, rank: rank($0.element), item: $0.element) }
        return ranked.sorted { a, b in
            switch (a.rank, b.rank) {
            case (let x?, let y?): return x < y
            case (_?, nil): return true
            case (nil, _?): return false
            case (nil, nil): return a.offset < b.offset
            }
        }.map(\.item)
    }

    /// A value with every directive taken out (what a `replace` puts in place).
    static func strip(_ value: JSONValue) throws -> JSONValue {
        switch value {
        case .object(let members):
            return .object(try members.filter { !$0.key.hasPrefix("$") }.map { JSONMember($0.key, try strip($0.value)) })
        case .array(let items):
            return .array(try items.map { try strip($0) })
        default:
            return value
        }
    }
}
