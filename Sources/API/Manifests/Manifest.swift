import Foundation
import Yams

/// One object read from a manifest file, with where it came from for error messages.
public struct ManifestObject: Sendable {
    public let source: String
    /// 1-based line of the document's first line.
    public let line: Int
    public let object: any APIObject
    /// The document as written (before defaults): what a server-side apply sends, so it claims
    /// only the fields the manifest sets.
    public let document: JSONValue
}

/// A manifest that cannot become objects: names the file and line (and field path when the
/// document parsed but did not fit the schema).
public struct ManifestError: Error, Sendable, CustomStringConvertible {
    public let source: String
    public let line: Int?
    public let message: String
    public var description: String {
        line.map { "\(source):\($0): \(message)" } ?? "\(source): \(message)"
    }
}

public enum Manifests {
    /// Where a namespaced object without `metadata.namespace` goes.
    public static let defaultNamespace = "default"

    /// Reads YAML (multi-document) or JSON text into objects, defaulted and validated.
    public static func decode(_ text: String, source: String) throws -> [ManifestObject] {
        var out: [ManifestObject] = []
        for (json, line) in try documents(text, source: source) {
            if case .object(let members) = json, members.isEmpty { continue }
            if case .null = json { continue }
            do {
                out.append(ManifestObject(source: source, line: line, object: try decodeObject(json), document: json))
            } catch let error as ManifestError {
                throw error
            } catch {
                throw ManifestError(source: source, line: line, message: "\(error)")
            }
        }
        return out
    }

    /// One YAML or JSON document as JSON (a server-side apply body).
    public static func singleDocument(_ text: String) throws -> JSONValue {
        let documents = try documents(text, source: "the request body").filter { if case .null = $0.0 { false } else { true } }
        guard documents.count == 1 else {
            throw ManifestError(source: "the request body", line: nil, message: "expected one YAML or JSON document, found \(documents.count)")
        }
        return documents[0].0
    }

    /// Reads a file, a directory (its .yaml, .yml and .json files, sorted) or "-" for standard input.
    public static func load(path: String) throws -> [ManifestObject] {
        if path == "-" {
            let data = FileHandle.standardInput.readDataToEndOfFile()
            return try decode(String(decoding: data, as: UTF8.self), source: "<stdin>")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ManifestError(source: path, line: nil, message: "no such file or directory")
        }
        if isDirectory.boolValue {
            let entries = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
            return try entries.filter { [".yaml", ".yml", ".json"].contains(where: $0.hasSuffix) }
                .flatMap { try load(path: (path as NSString).appendingPathComponent($0)) }
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ManifestError(source: path, line: nil, message: "cannot read file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ManifestError(source: path, line: nil, message: "not UTF-8 text")
        }
        return try decode(text, source: path)
    }

    /// Decodes one object from its JSON form: finds the kind, decodes strictly, defaults, validates.
    public static func decodeObject(_ json: JSONValue) throws -> any APIObject {
        guard case .string(let apiVersion)? = json["apiVersion"], !apiVersion.isEmpty else {
            throw JSONDecodeError(.invalidValue("Required value: every object needs apiVersion"), path: ["apiVersion"])
        }
        guard case .string(let kind)? = json["kind"], !kind.isEmpty else {
            throw JSONDecodeError(.invalidValue("Required value: every object needs kind"), path: ["kind"])
        }
        guard let type = Kinds.lookup(apiVersion: apiVersion, kind: kind) else {
            let known = Kinds.all.map { "\($0.kindInfo.apiVersion)/\($0.kindInfo.kind)" }.joined(separator: ", ")
            throw ManifestUnknownKind(apiVersion: apiVersion, kind: kind, known: known)
        }
        return try decodeTyped(type, json)
    }

    static func decodeTyped<T: APIObject>(_ type: T.Type, _ json: JSONValue) throws -> T {
        var object = try T(json: json)
        // A namespaced object that names no namespace goes to "default", as kubectl sends it.
        if T.kindInfo.namespaced && object.metadata.namespace.isEmpty { object.metadata.namespace = defaultNamespace }
        object.applyDefaults()
        return try object.validated()
    }

    /// Splits text into JSON documents with their first line. JSON text (starting with `{` or `[`)
    /// is parsed as JSON; a JSON array or a List kind becomes its items.
    static func documents(_ text: String, source: String) throws -> [(JSONValue, Int)] {
        let trimmed = text.drop(while: { $0.isWhitespace })
        if trimmed.first == "{" || trimmed.first == "[" {
            do {
                let json = try JSONParser.parse(text)
                return flattenLists(json).map { ($0, 1) }
            } catch let error as JSONSyntaxError {
                throw ManifestError(source: source, line: error.line, message: "\(error)")
            }
        }
        var out: [(JSONValue, Int)] = []
        do {
            var nodes = try Yams.compose_all(yaml: text)
            while let node = nodes.next() {
                let line = (node.mark?.line ?? 1)
                for json in flattenLists(try yamlToJSON(node, source: source)) { out.append((json, line)) }
            }
            // The sequence stops at a syntax error and keeps it rather than throwing.
            if let error = nodes.error { throw error }
        } catch let error as ManifestError {
            throw error
        } catch let error as YamlError {
            throw ManifestError(source: source, line: yamlErrorLine(error), message: "YAML error: \(error)")
        }
        return out
    }

    static func flattenLists(_ json: JSONValue) -> [JSONValue] {
        if case .array(let elements) = json { return elements }
        if case .string(let kind)? = json["kind"], kind.hasSuffix("List"), case .array(let items)? = json["items"] { return items }
        return [json]
    }

    static func yamlErrorLine(_ error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return nil
        }
    }

    static func yamlToJSON(_ node: Yams.Node, source: String) throws -> JSONValue {
        switch node {
        case .scalar(let scalar):
            if scalar.style != .plain && scalar.style != .any { return .string(scalar.string) }
            switch node.tag.description {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return node.bool.map(JSONValue.bool) ?? .string(scalar.string)
            case Tag.Name.int.rawValue: return node.int.map { .int(Int64($0)) } ?? .string(scalar.string)
            case Tag.Name.float.rawValue: return node.float.map(JSONValue.double) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .sequence(let sequence):
            return .array(try sequence.map { try yamlToJSON($0, source: source) })
        case .mapping(let mapping):
            var members: [JSONMember] = []
            var keys = DuplicateKeyCheck()
            for (key, value) in mapping {
                guard let name = key.string else {
                    throw ManifestError(source: source, line: key.mark?.line, message: "mapping keys must be strings")
                }
                if !keys.isNew(name, among: members) {
                    throw ManifestError(source: source, line: key.mark?.line, message: "duplicate key \"\(name)\"")
                }
                members.append(JSONMember(name, try yamlToJSON(value, source: source)))
            }
            return .object(members)
        case .alias:
            throw ManifestError(source: source, line: node.mark?.line, message: "YAML aliases are not supported in manifests")
        }
    }
}

/// A manifest names a kind this server does not serve.
public struct ManifestUnknownKind: Error, Sendable, CustomStringConvertible {
    public let apiVersion: String
    public let kind: String
    public let known: String
    public var description: String {
        "no kind \"\(kind)\" is registered for version \"\(apiVersion)\"; known kinds: \(known)"
    }
}
