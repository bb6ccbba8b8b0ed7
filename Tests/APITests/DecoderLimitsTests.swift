@testable import API
import Foundation
import Testing
import TestSupport

/// Decoders stay linear in their input: a stranger's body with a huge object cannot cost time in
/// the square of its size.
@Suite("Decoder limits", .watchdog)
struct DecoderLimitsTests {
    /// 200,000 distinct keys in one object: with a pairwise duplicate check that is 2·10¹⁰ key
    /// comparisons (hours in a debug build); linear, it is under a second. The time limit is only a
    /// guard against the quadratic check coming back, far above what the linear one takes (5 minutes:
    /// a full run's load once held this second-long test past one).
    @Test(.timeLimit(.minutes(5))) func aHugeObjectIsCheckedForDuplicatesInLinearTime() throws {
        let count = 200_000
        var text = "{"
        for i in 0..<count { text += (i == 0 ? "" : ",") + "\"k\(i)\":\(i)" }
        let parsed = try JSONParser.parse(text + "}")
        #expect(try parsed.objectMembers().count == count)
        #expect(throws: (any Error).self) { try JSONParser.parse(text + ",\"k\(count / 2)\":0}") }
        do {
            _ = try JSONParser.parse(text + ",\"k7\":0}")
            Issue.record("a duplicate key was accepted")
        } catch {
            #expect("\(error)".contains("duplicate key \"k7\""), "\(error)")
        }
    }

    /// The manifest reader (YAML) refuses duplicates the same way, also past the first few keys.
    @Test(.timeLimit(.minutes(5))) func manifestsRefuseDuplicateKeysAtAnySize() throws {
        var labels = ""
        for i in 0..<20 { labels += "    l\(i): v\n" }
        let manifest = """
            apiVersion: v1
            kind: Pod
            metadata:
              name: p
              labels:
            \(labels)    l15: again
            spec:
              containers:
              - name: c
                command: ["sleep", "1"]
            """
        do {
            _ = try Manifests.decode(manifest, source: "m.yaml")
            Issue.record("a duplicate key was accepted")
        } catch {
            #expect("\(error)".contains("l15") && "\(error)".lowercased().contains("duplicate"), "\(error)")
        }
        #expect(try Manifests.decode(manifest.replacingOccurrences(of: "    l15: again\n", with: ""), source: "m.yaml").count == 1)
        // A mapping of 50,000 keys is read (and checked) in linear time too.
        var big = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n"
        for i in 0..<50_000 { big += "    k\(i): v\n" }
        big += "spec:\n  containers:\n  - name: c\n    command: [\"sleep\", \"1\"]\n"
        #expect(try Manifests.decode(big, source: "big.yaml").count == 1)
    }

    /// The fuzzer's corpus (seeds and what fuzzing kept) goes through every decoder without a
    /// crash; a crash the fuzzer finds is added here once fixed, and stays fixed.
    @Test func theFuzzCorpusReplaysWithoutACrash() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz/corpus")
        let files = try FileManager.default.contentsOfDirectory(atPath: corpus.path).sorted()
        #expect(files.count >= 7, "\(files)")
        for file in files {
            DecoderFuzzing.decodeEverything(Array(try Data(contentsOf: corpus.appendingPathComponent(file))))
        }
        // The seeds decode as what they are.
        #expect(try Pod.decode(Array(try Data(contentsOf: corpus.appendingPathComponent("pod.pb"))), as: .protobuf) == Samples.pod())
    }
}
