import API
import ArgumentParser

/// Checks manifests locally, the way the server will: strict decoding, defaults, validation.
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check manifests (YAML or JSON) without a server: unknown fields, types, names, values.")

    @Option(name: .shortAndLong, help: "A file, a directory of .yaml/.yml/.json files, or - for standard input.")
    var filename: [String]

    @Flag(name: .shortAndLong, help: "Print each object as the server would store it (defaults applied), in JSON.")
    var output = false

    func run() throws {
        var failed = false
        for path in filename {
            do {
                for item in try Manifests.load(path: path) {
                    let info = type(of: item.object).kindInfo
                    print("\(info.singular)/\(item.object.metadata.name) valid (\(item.source):\(item.line))")
                    if output { print(item.object.jsonString()) }
                }
            } catch {
                failed = true
                printError("error: \(error)")
            }
        }
        if failed { throw ExitCode.failure }
    }
}
