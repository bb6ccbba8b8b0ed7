/// Every decoder a stranger's bytes can reach, in one call: the target of the coverage-guided
/// fuzzer (`scripts/fuzz.sh`, `Sources/Fuzz`) and of the test that replays its corpus. Errors
/// are expected and ignored; a crash, a hang or a trap is a finding.
public enum DecoderFuzzing {
    /// Runs `bytes` through the JSON parser, every kind's JSON and protobuf decoders, and the
    /// YAML manifest reader.
    public static func decodeEverything(_ bytes: [UInt8]) {
        _ = try? JSONParser.parse(bytes: bytes)
        for kind in Kinds.all {
            _ = try? kind.decode(bytes, as: .json)
            _ = try? kind.decode(bytes, as: .protobuf)
        }
        if let text = String(validating: bytes, as: UTF8.self) {
            _ = try? Manifests.decode(text, source: "fuzz")
        }
    }

    /// Seeds for a corpus: realistic objects in both encodings.
    public static func seeds() -> [(name: String, bytes: [UInt8])] {
        let pod = Samples.pod()
        return [("pod.json", Array(Samples.podJSON.utf8)), ("pod.pb", pod.protobufBytes())]
    }
}
