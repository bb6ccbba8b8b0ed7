/// Why a JSON document could not become an object, and where: `path` is the field path a user
/// would write (`spec.containers[1].name`).
public struct JSONDecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        case unknownField
        case typeMismatch(expected: String, got: String)
        case invalidValue(String)
    }

    /// Path elements, outermost first: field names and `[i]` / `[key]` subscripts.
    public var pathElements: [String]
    public var reason: Reason

    public init(_ reason: Reason, path: [String] = []) {
        self.reason = reason
        self.pathElements = path
    }

    public var path: String {
        var out = ""
        for element in pathElements {
            if element.hasPrefix("[") {
                out += element
            } else {
                if !out.isEmpty { out += "." }
                out += element
            }
        }
        return out
    }

    public var description: String {
        switch reason {
        case .unknownField: "unknown field \"\(path)\""
        case .typeMismatch(let expected, let got): "\(path): expected \(expected), got \(got)"
        case .invalidValue(let why): "\(path): \(why)"
        }
    }

    public func prefixed(_ element: String) -> JSONDecodeError {
        var copy = self
        copy.pathElements.insert(element, at: 0)
        return copy
    }

    /// Runs `body`, adding `element` in front of the path of any decode error it throws.
    @inlinable
    public static func at<T>(_ element: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as JSONDecodeError {
            throw error.prefixed(element)
        }
    }
}
