@testable import API
import Foundation
import Testing
import TestSupport

/// Field ownership and server-side apply on JSON, as the server applies them.
@Suite("Managed fields and server-side apply", .watchdog)
struct ManagedFieldsTests {
    static func json(_ text: String) throws -> JSONValue { try JSONParser.parse(text) }
    static let deployment = Schema.message("Deployment")

    static func applied(replicas: Int, label: String? = "web", image: String = "app:1") throws -> JSONValue {
        let labels = label.map { #","labels":{"tier":"\#($0)"}"# } ?? ""
        return try json("""
        {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"\(labels)},
         "spec":{"replicas":\(replicas),"selector":{"matchLabels":{"app":"web"}},
                 "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"app","image":"\(image)"}]}}}}
        """)
    }

    @Test func fieldSetsNameListItemsByTheirKeys() throws {
        let set = FieldSet.of(try Self.applied(replicas: 2), schema: Self.deployment)
        let text = set.text
        #expect(text.contains(#""f:replicas":{}"#) && text.contains(#""k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{}}"#), "\(text)")
        #expect(!text.contains("f:apiVersion") && !text.contains(#""f:name":{},"f:labels""#))
        #expect(FieldSet.describe(["f:spec", "f:template", "f:spec", "f:containers", #"k:{"name":"app"}"#, "f:image"])
                == #".spec.template.spec.containers[name="app"].image"#)
        #expect(FieldSet(text: text) == set)
    }

    @Test func applyOwnsWhatItSetsAndRemovesWhatItDropped() throws {
        let first = try ManagedFields.apply(try Self.applied(replicas: 2), to: nil, entries: [], manager: "me", force: false,
                                            apiVersion: "apps/v1", schema: Self.deployment)
        #expect(first.entries.map(\.manager) == ["me"] && first.entries[0].operation == "Apply")
        // The label is no longer in the manager's intent, so it goes; the replicas change.
        let second = try ManagedFields.apply(try Self.applied(replicas: 3, label: nil), to: first.object, entries: first.entries, manager: "me",
                                             force: false, apiVersion: "apps/v1", schema: Self.deployment)
        #expect(second.object["metadata"]?["labels"]?["tier"] == nil && second.object["spec"]?["replicas"] == .int(3))
        #expect(!second.entries[0].fieldsV1.contains("f:tier"))
    }

    @Test func anotherManagersFieldIsAConflictUnlessForcedOrEqual() throws {
        let mine = try ManagedFields.apply(try Self.applied(replicas: 2), to: nil, entries: [], manager: "me", force: false,
                                           apiVersion: "apps/v1", schema: Self.deployment)
        #expect(throws: ManagedFields.Conflicts.self) {
            try ManagedFields.apply(try Self.applied(replicas: 5), to: mine.object, entries: mine.entries, manager: "you", force: false,
                                    apiVersion: "apps/v1", schema: Self.deployment)
        }
        do {
            _ = try ManagedFields.apply(try Self.applied(replicas: 5, image: "app:2"), to: mine.object, entries: mine.entries, manager: "you", force: false,
                                        apiVersion: "apps/v1", schema: Self.deployment)
        } catch let error as ManagedFields.Conflicts {
            #expect(error.description == """
                Apply failed with 2 conflicts: conflict with "me" using apps/v1: .spec.replicas
                conflict with "me" using apps/v1: .spec.template.spec.containers[name="app"].image
                """)
        }
        // The same values: shared, no conflict; both own the replicas.
        let shared = try ManagedFields.apply(try Self.applied(replicas: 2), to: mine.object, entries: mine.entries, manager: "you", force: false,
                                             apiVersion: "apps/v1", schema: Self.deployment)
        #expect(shared.entries.filter { $0.fieldsV1.contains("f:replicas") }.count == 2)
        // Forced: the field is taken over.
        let forced = try ManagedFields.apply(try Self.applied(replicas: 5), to: mine.object, entries: mine.entries, manager: "you", force: true,
                                             apiVersion: "apps/v1", schema: Self.deployment)
        #expect(forced.object["spec"]?["replicas"] == .int(5))
        #expect(forced.entries.first { $0.manager == "me" }.map { !$0.fieldsV1.contains("f:replicas") } == true)
    }

    @Test func anUpdateTakesTheFieldsItChanges() throws {
        let applied = try ManagedFields.apply(try Self.applied(replicas: 2), to: nil, entries: [], manager: "me", force: false,
                                              apiVersion: "apps/v1", schema: Self.deployment)
        let scaled = MergePatch.apply(try Self.json(#"{"spec":{"replicas":4}}"#), to: applied.object)
        let entries = ManagedFields.afterUpdate(old: applied.object, new: scaled, entries: applied.entries, manager: "kubectl-scale",
                                                apiVersion: "apps/v1", schema: Self.deployment, subresource: "")
        #expect(entries.map(\.manager) == ["me", "kubectl-scale"])
        #expect(entries[1].operation == "Update" && entries[1].fieldsV1 == #"{"f:spec":{"f:replicas":{}}}"#)
        #expect(!entries[0].fieldsV1.contains("f:replicas"))
        // The same write again, a minute later, changes nothing: not even the entry's time (or
        // every repeated `kubectl patch` of an unchanged value would be a new revision).
        let again = ManagedFields.afterUpdate(old: scaled, new: scaled, entries: entries, manager: "kubectl-scale",
                                              apiVersion: "apps/v1", schema: Self.deployment, subresource: "", time: Date().addingTimeInterval(60))
        #expect(again == entries)
    }

    @Test func anApplyToStatusIsItsOwnEntry() throws {
        let object = try ManagedFields.apply(try Self.applied(replicas: 2), to: nil, entries: [], manager: "me", force: false,
                                             apiVersion: "apps/v1", schema: Self.deployment)
        let status = try Self.json(#"{"apiVersion":"apps/v1","kind":"Deployment","status":{"replicas":2}}"#)
        let both = try ManagedFields.apply(status, to: object.object, entries: object.entries, manager: "me", force: false,
                                           apiVersion: "apps/v1", schema: Self.deployment, subresource: "status")
        #expect(both.entries.map(\.subresource) == ["", "status"])
        #expect(both.entries[1].fieldsV1 == #"{"f:status":{"f:replicas":{}}}"#, "\(both.entries)")
        #expect(both.entries[0].fieldsV1.contains("f:spec"), "the object's apply entry stays")
    }
}
