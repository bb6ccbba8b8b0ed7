@testable import API
import Testing
import TestSupport

/// The three patch types on JSON, as the server applies them to stored objects.
@Suite("Patches", .watchdog)
struct PatchTests {
    static func json(_ text: String) throws -> JSONValue { try JSONParser.parse(text) }
    static func text(_ value: JSONValue) -> String { String(decoding: JSONWriter.bytes(value), as: UTF8.self) }

    static let pod = """
    {"metadata":{"name":"p","labels":{"a":"1","b":"2"},"finalizers":["x/one","x/two"]},
     "spec":{"containers":[{"name":"app","image":"app:1","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],
                            "ports":[{"containerPort":80,"protocol":"TCP"}]},
                           {"name":"side","image":"side:1"}],
             "tolerations":[{"key":"k","operator":"Exists"}]},
     "status":{"conditions":[{"type":"Ready","status":"False"},{"type":"PodScheduled","status":"True"}]}}
    """

    @Test func mergePatchFollowsRFC7386() throws {
        // RFC 7386's own example.
        let target = try Self.json(#"{"title":"Goodbye!","author":{"givenName":"John","familyName":"Doe"},"tags":["example","sample"],"content":"This will be unchanged"}"#)
        let patch = try Self.json(#"{"title":"Hello!","phoneNumber":"+01-123-456-7890","author":{"familyName":null},"tags":["example"]}"#)
        let result = MergePatch.apply(patch, to: target)
        #expect(result.sameJSON(as: try Self.json(#"{"title":"Hello!","author":{"givenName":"John"},"tags":["example"],"content":"This will be unchanged","phoneNumber":"+01-123-456-7890"}"#)),
                "\(Self.text(result))")
    }

    @Test func jsonPatchOperations() throws {
        let document = try Self.json(#"{"a":{"b":[1,2,3]},"c":"x"}"#)
        let patch = try Self.json("""
        [{"op":"test","path":"/c","value":"x"},
         {"op":"add","path":"/a/b/1","value":9},
         {"op":"add","path":"/a/b/-","value":4},
         {"op":"remove","path":"/a/b/0"},
         {"op":"replace","path":"/c","value":"y"},
         {"op":"copy","from":"/c","path":"/d"},
         {"op":"move","from":"/d","path":"/a/e~1f"}]
        """)
        let result = try JSONPatch.apply(patch, to: document)
        #expect(result.sameJSON(as: try Self.json(#"{"a":{"b":[9,2,3,4],"e/f":"y"},"c":"y"}"#)), "\(Self.text(result))")
        // A failed test fails the whole patch, naming the path and both values.
        #expect(throws: PatchError(.failed, #"test of /c failed: it is "x", not "z""#)) {
            try JSONPatch.apply(try Self.json(#"[{"op":"add","path":"/c","value":"x"},{"op":"test","path":"/c","value":"z"}]"#), to: document)
        }
        #expect(throws: PatchError(.failed, #"/nope/x: no member "nope""#)) {
            try JSONPatch.apply(try Self.json(#"[{"op":"replace","path":"/nope/x","value":1}]"#), to: document)
        }
        #expect(throws: PatchError(.failed, "/a/b/7: no element 7 in an array of 3")) {
            try JSONPatch.apply(try Self.json(#"[{"op":"add","path":"/a/b/7","value":1}]"#), to: document)
        }
        #expect(throws: PatchError(.invalid, #"operation 0: unknown op "frobnicate" (add, remove, replace, move, copy and test are)"#)) {
            try JSONPatch.apply(try Self.json(#"[{"op":"frobnicate","path":"/c"}]"#), to: document)
        }
        #expect(throws: PatchError(.invalid, "a JSON patch is an array of operations, not a object")) {
            try JSONPatch.apply(try Self.json(#"{"op":"add"}"#), to: document)
        }
    }

    static func strategic(_ patch: String) throws -> JSONValue {
        try StrategicMergePatch.apply(try Self.json(patch), to: try Self.json(Self.pod), schema: Schema.message("Pod"))
    }

    @Test func strategicPatchMergesListsByTheirKeys() throws {
        // Containers by name, env by name, ports by containerPort; labels merged, one removed.
        let result = try Self.strategic("""
        {"metadata":{"labels":{"a":null,"c":"3"}},
         "spec":{"containers":[{"name":"app","image":"app:2","env":[{"name":"B","value":"two"},{"name":"C","value":"3"}],
                                "ports":[{"containerPort":443}]}]}}
        """)
        #expect(result["metadata"]?["labels"]?.sameJSON(as: try Self.json(#"{"b":"2","c":"3"}"#)) == true)
        let containers = try #require(result["spec"]?["containers"]?.elements)
        #expect(containers.count == 2, "the sidecar the patch does not name stays")
        #expect(containers[0]["image"] == .string("app:2") && containers[1]["image"] == .string("side:1"))
        #expect(containers[0]["env"]?.sameJSON(as: try Self.json(#"[{"name":"A","value":"1"},{"name":"B","value":"two"},{"name":"C","value":"3"}]"#)) == true)
        #expect(containers[0]["ports"]?.elements?.count == 2)
        // Conditions merge by type.
        let status = try Self.strategic(#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#)
        #expect(status["status"]?["conditions"]?.sameJSON(as: try Self.json(#"[{"type":"Ready","status":"True"},{"type":"PodScheduled","status":"True"}]"#)) == true)
        // An atomic list (tolerations) is replaced, as a merge patch would.
        let tolerations = try Self.strategic(#"{"spec":{"tolerations":[{"key":"other","operator":"Exists"}]}}"#)
        #expect(tolerations["spec"]?["tolerations"]?.elements?.count == 1)
    }

    @Test func strategicPatchDirectives() throws {
        // $patch: delete on an item, $patch: replace on a list, on a map.
        let deleted = try Self.strategic(#"{"spec":{"containers":[{"name":"side","$patch":"delete"}]}}"#)
        #expect(deleted["spec"]?["containers"]?.elements?.map { $0["name"] } == [.string("app")])
        let replaced = try Self.strategic(#"{"spec":{"containers":[{"name":"only","image":"o:1"},{"$patch":"replace"}]}}"#)
        #expect(Self.text(replaced["spec"]!["containers"]!) == #"[{"name":"only","image":"o:1"}]"#)
        let labels = try Self.strategic(#"{"metadata":{"labels":{"z":"9","$patch":"replace"}}}"#)
        #expect(Self.text(labels["metadata"]!["labels"]!) == #"{"z":"9"}"#)
        // Finalizers merge as a set; $deleteFromPrimitiveList removes from it.
        let finalizers = try Self.strategic(#"{"metadata":{"finalizers":["x/two","x/three"],"$deleteFromPrimitiveList/finalizers":["x/one"]}}"#)
        #expect(Self.text(finalizers["metadata"]!["finalizers"]!) == #"["x/two","x/three"]"#)
        // $setElementOrder: the merged list in the patch's order, what it does not name after.
        let ordered = try Self.strategic(#"{"spec":{"$setElementOrder/containers":[{"name":"side"},{"name":"app"}],"containers":[{"name":"app","image":"app:3"}]}}"#)
        #expect(ordered["spec"]?["containers"]?.elements?.map { $0["name"] } == [.string("side"), .string("app")])
        // $retainKeys: keys of the original it does not list are dropped.
        let retained = try Self.strategic(#"{"metadata":{"labels":{"$retainKeys":["b"],"b":"2"}}}"#)
        #expect(Self.text(retained["metadata"]!["labels"]!) == #"{"b":"2"}"#)
        // Errors name the path.
        #expect(throws: PatchError(.invalid, #"/spec/containers/0: the item does not contain the list's merge key "name""#)) {
            try Self.strategic(#"{"spec":{"containers":[{"image":"x"}]}}"#)
        }
        #expect(throws: PatchError(.invalid, #"/metadata: unknown $patch directive "shred" (replace, delete and merge are)"#)) {
            try Self.strategic(#"{"metadata":{"$patch":"shred"}}"#)
        }
    }
}
