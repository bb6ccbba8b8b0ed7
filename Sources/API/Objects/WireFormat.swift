import SwiftProtobuf

/// The two encodings of every object: Kubernetes JSON for people and foreign clients, protobuf
/// for components.
public enum WireFormat: String, Sendable, CaseIterable {
    case json = "application/json"
    case protobuf = "application/vnd.cox.protobuf"
}

/// A protobuf body that is not a valid encoding of the expected kind.
public struct ProtobufDecodeError: Error, Sendable, CustomStringConvertible {
    public let kind: String
    public let reason: String
    public var description: String { "malformed protobuf for \(kind): \(reason)" }
}

extension APIObject {
    /// Decodes an object from a request body. Errors name what is wrong: the JSON position, the
    /// unknown field's path, or the protobuf problem.
    public static func decode(_ bytes: [UInt8], as format: WireFormat) throws -> Self {
        switch format {
        case .json:
            return try Self(jsonBytes: bytes)
        case .protobuf:
            do {
                return try Self(protobuf: bytes)
            } catch let error as ProtoDecodingError {
                throw ProtobufDecodeError(kind: kindInfo.kind, reason: "\(error)")
            }
        }
    }

    public func encode(as format: WireFormat) -> [UInt8] {
        switch format {
        case .json: jsonBytes()
        case .protobuf: protobufBytes()
        }
    }
}
