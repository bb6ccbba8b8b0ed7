/// Renders a JSON value as block-style YAML (what `-o yaml` prints). Strings that YAML could read
/// as something else (numbers, booleans, null, text with indicators) are double-quoted with
/// JSON escapes, which YAML reads back identically; everything else is plain.
public enum YAMLWriter {
    public static func render(_ value: JSONValue) -> String {
        var out = ""
        switch value {
        case .object(let members) where !members.isEmpty: writeMembers(members, indent: 0, into: &out)
        case .array(let items) where !items.isEmpty: writeItems(items, indent: 0, into: &out)
        default: out = scalar(value) + "\n"
        }
        return out
    }

    static func writeMembers(_ members: [JSONMember], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for member in members {
            out += pad + key(member.key) + ":"
            writeNested(member.value, indent: indent, into: &out)
        }
    }

    static func writeItems(_ items: [JSONValue], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for item in items {
            switch item {
            case .object(let members) where !members.isEmpty:
                // The first key shares the dash's line; the rest align under it.
                var first = ""
                writeMembers(members, indent: indent + 2, into: &first)
                out += pad + "- " + first.dropFirst(indent + 2)
            case .array(let inner) where !inner.isEmpty:
                out += pad + "-\n"
                writeItems(inner, indent: indent + 2, into: &out)
            default:
                out += pad + "- " + scalar(item) + "\n"
            }
        }
    }

    /// After `key:` — a nested block on the next lines, or a scalar on the same line.
    static func writeNested(_ value: JSONValue, indent: Int, into out: inout String) {
        switch value {
        case .object(let members) where !members.isEmpty:
            out += "\n"
            writeMembers(members, indent: indent + 2, into: &out)
        case .array(let items) where !items.isEmpty:
            out += "\n"
            writeItems(items, indent: indent, into: &out)
        default:
            out += " " + scalar(value) + "\n"
        }
    }

    static func scalar(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return needsQuotes(s) ? quoted(s) : s
        case .array: return "[]"
        case .object: return "{}"
        }
    }

    static func key(_ text: String) -> String { needsQuotes(text) ? quoted(text) : text }

    static let reserved: Set<String> = ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"]

    static func needsQuotes(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first else { return true }
        if reserved.contains(s.lowercased()) { return true }
        if Double(s) != nil || s.hasPrefix("0x") || s.hasPrefix("0o") || s.hasPrefix(".") { return true }
        if "-?:,[]{}#&*!|>'\"%@`".unicodeScalars.contains(first) || first == " " { return true }
        if s.hasSuffix(" ") || s.hasSuffix(":") || s.contains(": ") || s.contains(" #") { return true }
        return s.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }

    static func quoted(_ s: String) -> String {
        var writer = JSONWriter()
        writer.string(s)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}
