/// RFC 6902 JSON patch: a list of operations (add, remove, replace, move, copy, test) on JSON
/// pointers (RFC 6901), applied in order; one that fails fails the whole patch.
public enum JSONPatch {
    public static func apply(_ patch: JSONValue, to document: JSONValue) throws -> JSONValue {
        guard let operations = patch.elements else {
            throw PatchError(.invalid, "a JSON patch is an array of operations, not a \(patch.typeName)")
        }
        var document = document
        for (index, operation) in operations.enumerated() {
            guard operation.members != nil else { throw PatchError(.invalid, "operation \(index): an operation is an object, not a \(operation.typeName)") }
            guard case .string(let op)? = operation["op"] else { throw PatchError(.invalid, "operation \(index): \"op\" is required (a string)") }
            guard case .string(let path)? = operation["path"] else { throw PatchError(.invalid, "operation \(index) (\(op)): \"path\" is required (a string)") }
            let target = try pointer(path, operation: index)
            func value() throws -> JSONValue {
                guard let value = operation["value"] else { throw PatchError(.invalid, "operation \(index) (\(op) \(path)): \"value\" is required") }
                return value
            }
            func from() throws -> (String, [String]) {
                guard case .string(let from)? = operation["from"] else { throw PatchError(.invalid, "operation \(index) (\(op) \(path)): \"from\" is required (a string)") }
                return (from, try pointer(from, operation: index))
            }
            switch op {
            case "add":
                document = try add(try value(), at: target[...], in: document, path: path)
            case "remove":
                document = try remove(at: target[...], in: document, path: path).document
            case "replace":
                _ = try get(target[...], in: document, path: path)
                document = try add(try value(), at: target[...], in: try remove(at: target[...], in: document, path: path).document, path: path)
            case "move":
                let (fromPath, source) = try from()
                if target.count > source.count && Array(target.prefix(source.count)) == source {
                    throw PatchError(.invalid, "operation \(index) (move \(fromPath) to \(path)): a value cannot move into itself")
                }
                let (rest, moved) = try remove(at: source[...], in: document, path: fromPath)
                document = try add(moved, at: target[...], in: rest, path: path)
            case "copy":
                let (fromPath, source) = try from()
                document = try add(try get(source[...], in: document, path: fromPath), at: target[...], in: document, path: path)
            case "test":
                let expected = try value()
                let actual = try get(target[...], in: document, path: path)
                guard actual.sameJSON(as: expected) else {
                    throw PatchError(.failed, "test of \(path) failed: it is \(String(decoding: JSONWriter.bytes(actual), as: UTF8.self)), not \(String(decoding: JSONWriter.bytes(expected), as: UTF8.self))")
                }
            default:
                throw PatchError(.invalid, "operation \(index): unknown op \"\(op)\" (add, remove, replace, move, copy and test are)")
            }
        }
        return document
    }

    /// A JSON pointer's reference tokens ("" is the whole document).
    static func pointer(_ path: String, operation: Int) throws -> [String] {
        if path.isEmpty { return [] }
        guard path.hasPrefix("/") else { throw PatchError(.invalid, "operation \(operation): the path \"\(path)\" is not a JSON pointer (it starts with \"/\")") }
        return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    static func index(_ token: String, count: Int, path: String, allowEnd: Bool) throws -> Int {
        if allowEnd && token == "-" { return count }
        guard let index = Int(token), index >= 0, String(index) == token, index < count + (allowEnd ? 1 : 0) else {
            throw PatchError(.failed, "\(path): no element \(token) in an array of \(count)")
        }
        return index
    }

    static func get(_ tokens: ArraySlice<String>, in value: JSONValue, path: String) throws -> JSONValue {
        guard let token = tokens.first else { return value }
        switch value {
        case .object(let members):
            guard let member = members.first(where: { $0.key == token }) else { throw PatchError(.failed, "\(path): no member \"\(token)\"") }
            return try get(tokens.dropFirst(), in: member.value, path: path)
        case .array(let items):
            return try get(tokens.dropFirst(), in: items[try index(token, count: items.count, path: path, allowEnd: false)], path: path)
        default:
            throw PatchError(.failed, "\(path): \"\(token)\" is looked up in a \(value.typeName)")
        }
    }

    static func add(_ new: JSONValue, at tokens: ArraySlice<String>, in value: JSONValue, path: String) throws -> JSONValue {
        guard let token = tokens.first else { return new }
        let last = tokens.count == 1
        switch value {
        case .object(var members):
            let found = members.firstIndex { $0.key == token }
            if last {
                if let found { members[found].value = new } else { members.append(JSONMember(token, new)) }
            } else {
                guard let found else { throw PatchError(.failed, "\(path): no member \"\(token)\"") }
                members[found].value = try add(new, at: tokens.dropFirst(), in: members[found].value, path: path)
            }
            return .object(members)
        case .array(var items):
            let at = try index(token, count: items.count, path: path, allowEnd: last)
            if last { items.insert(new, at: at) } else { items[at] = try add(new, at: tokens.dropFirst(), in: items[at], path: path) }
            return .array(items)
        default:
            throw PatchError(.failed, "\(path): \"\(token)\" is set in a \(value.typeName)")
        }
    }

    static func remove(at tokens: ArraySlice<String>, in value: JSONValue, path: String) throws -> (document: JSONValue, removed: JSONValue) {
        guard let token = tokens.first else { throw PatchError(.failed, "the whole document cannot be removed") }
        let last = tokens.count == 1
        switch value {
        case .object(var members):
            guard let found = members.firstIndex(where: { $0.key == token }) else { throw PatchError(.failed, "\(path): no member \"\(token)\"") }
            if last {
                let removed = members.remove(at: found).value
                return (.object(members), removed)
            }
            let (inner, removed) = try remove(at: tokens.dropFirst(), in: members[found].value, path: path)
            members[found].value = inner
            return (.object(members), removed)
        case .array(var items):
            let at = try index(token, count: items.count, path: path, allowEnd: false)
            if last {
                let removed = items.remove(at: at)
                return (.array(items), removed)
            }
            let (inner, removed) = try remove(at: tokens.dropFirst(), in: items[at], path: path)
            items[at] = inner
            return (.array(items), removed)
        default:
            throw PatchError(.failed, "\(path): \"\(token)\" is removed from a \(value.typeName)")
        }
    }
}

extension JSONValue {
    /// Equality as JSON has it: members in any order, 1 and 1.0 the same number.
    public func sameJSON(as other: JSONValue) -> Bool {
        switch (self, other) {
        case (.object(let a), .object(let b)):
            guard a.count == b.count else { return false }
            return a.allSatisfy { member in b.first { $0.key == member.key }.map { $0.value.sameJSON(as: member.value) } ?? false }
        case (.array(let a), .array(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.sameJSON(as: $1) }
        case (.int(let a), .double(let b)), (.double(let b), .int(let a)):
            return Double(a) == b
        default:
            return self == other
        }
    }
}

extension JSONWriter {
    /// Compact JSON of a value.
    public static func bytes(_ value: JSONValue) -> [UInt8] {
        var writer = JSONWriter()
        writer.value(value)
        return writer.bytes
    }
}
