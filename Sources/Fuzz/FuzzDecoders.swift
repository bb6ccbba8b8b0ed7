import API
import Foundation

// Built two ways (see scripts/fuzz.sh):
// - with `-DFUZZING -sanitize=fuzzer`: main hands over to libFuzzer's driver;
// - plainly: `cox-fuzz DIR|FILE…` replays inputs (a corpus, a crash file) through the same
//   decoders, and `cox-fuzz --seed DIR` writes the seed inputs.

/// libFuzzer's driver, for a program with its own main (SwiftPM gives every executable one).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

#if FUZZING
/// The function libFuzzer calls with each input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    DecoderFuzzing.decodeEverything(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}
#endif

@main
struct FuzzDecoders {
    static func main() throws {
        #if FUZZING
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&argc, &argv, fuzzOneInput))
        #else
        try replay(Array(CommandLine.arguments.dropFirst()))
        #endif
    }

    /// `--seed DIR` writes the seeds; otherwise each argument (a file, or a directory of them)
    /// goes through the decoders.
    static func replay(_ arguments: [String]) throws {
        var arguments = arguments[...]
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
