import API

/// `?fieldSelector=` on the fields Kubernetes supports for these kinds: `metadata.name`,
/// `metadata.namespace`, `spec.nodeName`, `status.phase`, and an Event's `involvedObject.*`,
/// `reason`, `type`, `source`, `reportingComponent` (what `kubectl describe` asks for the events
/// of an object) (`=`, `==`, `!=`, comma-separated).
struct FieldSelector: Sendable {
    struct Requirement: Sendable {
        let field: String
        let value: String
        let equal: Bool
    }

    static let supported = ["metadata.name", "metadata.namespace", "spec.nodeName", "status.phase",
                            "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                            "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                            "reason", "type", "source", "reportingComponent"]
    let requirements: [Requirement]

    init(parsing text: String) throws {
        var requirements: [Requirement] = []
        for term in text.split(separator: ",") {
            let term = String(term)
            let (field, value, equal): (String, String, Bool)
            if let range = term.range(of: "!=") {
                (field, value, equal) = (String(term[..<range.lowerBound]), String(term[range.upperBound...]), false)
            } else if let range = term.range(of: "==") ?? term.range(of: "=") {
                (field, value, equal) = (String(term[..<range.lowerBound]), String(term[range.upperBound...]), true)
            } else {
                throw APIError.badRequest("invalid field selector \"\(term)\": expected FIELD=VALUE or FIELD!=VALUE")
            }
            let trimmed = field.trimmingCharacters(in: .whitespaces)
            guard Self.supported.contains(trimmed) else {
                throw APIError.badRequest("field label not supported: \(trimmed) (supported: \(Self.supported.joined(separator: ", ")))")
            }
            requirements.append(Requirement(field: trimmed, value: value.trimmingCharacters(in: .whitespaces), equal: equal))
        }
        self.requirements = requirements
    }

    static func value(of field: String, in object: any APIObject) -> String {
        switch field {
        case "metadata.name": return object.metadata.name
        case "metadata.namespace": return object.metadata.namespace
        case "spec.nodeName": return (object as? Pod)?.spec.nodeName ?? ""
        case "status.phase": return (object as? Pod)?.status.phase ?? (object as? Namespace)?.status.phase ?? ""
        default:
            guard let event = object as? Event else { return "" }
            switch field {
            case "involvedObject.kind": return event.involvedObject.kind
            case "involvedObject.namespace": return event.involvedObject.namespace
            case "involvedObject.name": return event.involvedObject.name
            case "involvedObject.uid": return event.involvedObject.uid
            case "involvedObject.apiVersion": return event.involvedObject.apiVersion
            case "involvedObject.resourceVersion": return event.involvedObject.resourceVersion
            case "involvedObject.fieldPath": return event.involvedObject.fieldPath
            case "reason": return event.reason
            case "type": return event.type
            case "source": return event.source.component
            case "reportingComponent": return event.reportingComponent
            default: return ""
            }
        }
    }

    /// The node of an equality requirement on `spec.nodeName`: a watch with one is served from
    /// the store's node index.
    var nodeName: String? { requirements.first { $0.field == "spec.nodeName" && $0.equal }?.value }

    @Sendable func matches(_ object: any APIObject) -> Bool {
        requirements.allSatisfy { ($0.equal) == (Self.value(of: $0.field, in: object) == $0.value) }
    }
}

import Foundation
