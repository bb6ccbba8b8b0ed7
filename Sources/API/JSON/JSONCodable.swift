import SwiftProtobuf

/// A type with Kubernetes-compatible JSON: field names as Kubernetes spells them, empty fields
/// omitted, unknown fields refused with their path. Conformances are generated from `Protos/`
/// by `scripts/gen-protos.sh`.
public protocol JSONCodable {
    init(json: JSONValue) throws
    func writeJSON(to writer: inout JSONWriter)
}

extension JSONCodable {
    /// Compact JSON bytes.
    public func jsonBytes() -> [UInt8] {
        var writer = JSONWriter()
        writeJSON(to: &writer)
        return writer.bytes
    }

    public func jsonString() -> String { String(decoding: jsonBytes(), as: UTF8.self) }

    /// This value as a JSON tree (for printing as YAML or indented JSON).
    public func jsonValue() -> JSONValue {
        // The writer's output is always valid JSON, so parsing it back cannot fail.
        (try? JSONParser.parse(bytes: jsonBytes())) ?? .null
    }

    public init<Bytes: Collection<UInt8>>(jsonBytes: Bytes) throws {
        try self.init(json: try JSONParser.parse(bytes: jsonBytes))
    }

    public init(jsonString: String) throws {
        try self.init(json: try JSONParser.parse(jsonString))
    }
}

// MARK: - Decoding helpers used by generated code

extension JSONValue {
    @inlinable public func decodeString() throws -> String {
        guard case .string(let s) = self else { throw JSONDecodeError(.typeMismatch(expected: "string", got: typeName)) }
        return s
    }

    /// Quantities are strings, but YAML turns `cpu: 2` into a number; Kubernetes accepts both.
    public func decodeQuantityString() throws -> String {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        default: throw JSONDecodeError(.typeMismatch(expected: "quantity (string or number)", got: typeName))
        }
    }

    /// A JSON object kept as its compact text (FieldsV1).
    public func decodeRawObject() throws -> String {
        guard case .object = self else { throw JSONDecodeError(.typeMismatch(expected: "object", got: typeName)) }
        return String(decoding: JSONWriter.bytes(self), as: UTF8.self)
    }

    @inlinable public func decodeBool() throws -> Bool {
        guard case .bool(let b) = self else { throw JSONDecodeError(.typeMismatch(expected: "boolean", got: typeName)) }
        return b
    }

    @inlinable public func decodeInt64() throws -> Int64 {
        switch self {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 9.0e15: return Int64(d)
        default: throw JSONDecodeError(.typeMismatch(expected: "integer", got: typeName == "number" ? "fractional number" : typeName))
        }
    }

    @inlinable public func decodeInt32() throws -> Int32 {
        let value = try decodeInt64()
        guard let narrowed = Int32(exactly: value) else { throw JSONDecodeError(.invalidValue("\(value) does not fit in a 32-bit integer")) }
        return narrowed
    }

    @inlinable public func decodeDouble() throws -> Double {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: throw JSONDecodeError(.typeMismatch(expected: "number", got: typeName))
        }
    }

    public func decodeBytes() throws -> Data {
        let string = try decodeString()
        guard let data = Data(base64Encoded: string) else { throw JSONDecodeError(.invalidValue("not valid base64")) }
        return data
    }

    @inlinable public func decodeArray<T>(_ element: (JSONValue) throws -> T) throws -> [T] {
        guard case .array(let elements) = self else { throw JSONDecodeError(.typeMismatch(expected: "array", got: typeName)) }
        var result: [T] = []
        result.reserveCapacity(elements.count)
        for (i, value) in elements.enumerated() {
            result.append(try JSONDecodeError.at("[\(i)]") { try element(value) })
        }
        return result
    }

    @inlinable public func decodeMap<T>(_ element: (JSONValue) throws -> T) throws -> [String: T] {
        guard case .object(let members) = self else { throw JSONDecodeError(.typeMismatch(expected: "object", got: typeName)) }
        var result: [String: T] = [:]
        result.reserveCapacity(members.count)
        for member in members {
            result[member.key] = try JSONDecodeError.at("[\(member.key)]") { try element(member.value) }
        }
        return result
    }

    @inlinable public func objectMembers() throws -> [JSONMember] {
        guard case .object(let members) = self else { throw JSONDecodeError(.typeMismatch(expected: "object", got: typeName)) }
        return members
    }

    @inlinable public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension JSONWriter {
    public mutating func stringMap(_ map: [String: String]) {
        beginObject()
        for key in map.keys.sorted() {
            self.key(key)
            string(map[key]!)
        }
        endObject()
    }

    public mutating func stringArray(_ array: [String]) {
        beginArray()
        for element in array { string(element) }
        endArray()
    }

    public mutating func array<T: JSONCodable>(_ array: [T]) {
        beginArray()
        for element in array { element.writeJSON(to: &self) }
        endArray()
    }
}

import Foundation
