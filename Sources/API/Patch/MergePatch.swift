/// Why a patch could not be applied: `invalid` for a patch that is not what its type requires
/// (HTTP 400), `failed` for one that does not apply to the object it was sent for (422); the
/// message names the path.
public struct PatchError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable { case invalid, failed }
    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
}

/// RFC 7386 JSON merge patch: objects merge member by member, `null` removes a member, anything
/// else (arrays included) replaces what was there.
public enum MergePatch {
    public static func apply(_ patch: JSONValue, to target: JSONValue) -> JSONValue {
        guard case .object(let changes) = patch else { return patch }
        var members: [JSONMember]
        if case .object(let existing) = target { members = existing } else { members = [] }
        for change in changes {
            let index = members.firstIndex { $0.key == change.key }
            if change.value.isNull {
                if let index { members.remove(at: index) }
            } else if let index {
                members[index].value = apply(change.value, to: members[index].value)
            } else {
                members.append(JSONMember(change.key, apply(change.value, to: .null)))
            }
        }
        return .object(members)
    }
}

extension JSONValue {
    /// The members of an object, or nil.
    public var members: [JSONMember]? {
        if case .object(let members) = self { return members }
        return nil
    }

    public var elements: [JSONValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }
}
