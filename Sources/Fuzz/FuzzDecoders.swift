import API
import Foundation

// Built two ways (see scripts/fuzz.sh):
// - with `-DFUZZING -sanitize=fuzzer`: libFuzzer's entry point, driven by libFuzzer's own main;
// - plainly: `cox-fuzz DIR|FILE…` replays inputs (a corpus, a crash file) through the same
//   decoders, and `cox-fuzz --seed DIR` writes the seed inputs.

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    DecoderFuzzing.decodeEverything(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
@main
struct ReplayCorpus {
    static func main() throws {
        var arguments = CommandLine.arguments.dropFirst()
        if arguments.first == "--seed", let directory = arguments.dropFirst().first {
            for seed in DecoderFuzzing.seeds() {
                try Data(seed.bytes).write(to: URL(fileURLWithPath: directory).appendingPathComponent(seed.name))
            }
            return
        }
        var count = 0
        while let path = arguments.popFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CocoaError(.fileNoSuchFile) }
            let files = isDirectory.boolValue
                ? try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { (path as NSString).appendingPathComponent($0) }
                : [path]
            for file in files {
                DecoderFuzzing.decodeEverything(Array(try Data(contentsOf: URL(fileURLWithPath: file))))
                count += 1
            }
        }
        print("replayed \(count) inputs without a crash")
    }
}
#endif
