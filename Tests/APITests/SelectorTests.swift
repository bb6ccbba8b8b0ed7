import Testing
import TestSupport
@testable import API

@Suite("Label selectors", .watchdog)
struct SelectorTests {
    @Test func equalityAndSetBased() throws {
        let s = try Selector(parsing: "app=web, tier in (a,b),!canary,env!=prod,region notin (eu),zone")
        #expect(s.requirements.count == 6)
        #expect(s.matches(["app": "web", "tier": "a", "zone": "1"]))
        #expect(!s.matches(["app": "web", "tier": "c", "zone": "1"]))
        #expect(!s.matches(["app": "web", "tier": "a", "zone": "1", "canary": "true"]))
        #expect(!s.matches(["app": "web", "tier": "a", "zone": "1", "env": "prod"]))
        #expect(!s.matches(["app": "web", "tier": "a", "zone": "1", "region": "eu"]))
        #expect(!s.matches(["app": "web", "tier": "a"]))
        #expect(try Selector(parsing: "app==web").matches(["app": "web"]))
        #expect(try Selector(parsing: "").isEverything)
        #expect(try Selector(parsing: "app=").matches(["app": ""]), "an empty value is a valid label value")
        #expect(try Selector(parsing: "example.com/team=payments").matches(["example.com/team": "payments"]))
    }

    @Test func parseErrorsSayWhereAndWhy() {
        let cases: [(String, String)] = [
            ("app=-x", "invalid label value"),
            ("app in (a,b", "expected ','"),
            ("app in ()", "needs at least one value"),
            ("app ~ x", "expected one of"),
            ("-bad=x", "invalid label key"),
            ("a=b,,c", "expected a label key"),
        ]
        for (text, expected) in cases {
            #expect(throws: SelectorParseError.self, "\(text)") { _ = try Selector(parsing: text) }
            do {
                _ = try Selector(parsing: text)
            } catch {
                #expect("\(error)".contains(expected), "\(text): \(error)")
                #expect("\(error)".contains("position"))
            }
        }
    }

    @Test func labelSelectorObjects() throws {
        var ls = LabelSelector()
        ls.matchLabels = ["app": "web"]
        var r = LabelSelectorRequirement()
        r.key = "track"
        r.operator = "NotIn"
        r.values = ["canary"]
        ls.matchExpressions = [r]
        let s = try Selector(ls)
        #expect(s.matches(["app": "web", "track": "stable"]))
        #expect(!s.matches(["app": "web", "track": "canary"]))
        r.operator = "Maybe"
        ls.matchExpressions = [r]
        #expect(throws: SelectorParseError.self) { _ = try Selector(ls) }
    }
}
