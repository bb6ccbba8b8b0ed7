import API
import ArgumentParser
import Client
import Foundation

/// `kind/name` or `kind name`: the kind and name a change command acts on, and what follows.
func targetAndRest(_ arguments: [String], verb: String) throws -> (type: any APIObject.Type, name: String, rest: [String]) {
    guard let first = arguments.first else { throw ValidationError("name what to \(verb): KIND NAME or KIND/NAME") }
    if let slash = first.firstIndex(of: "/") {
        let name = String(first[first.index(after: slash)...])
        guard !name.isEmpty else { throw ValidationError("\"\(first)\" names no object: use KIND/NAME") }
        return (try kind(named: String(first[..<slash])), name, Array(arguments.dropFirst()))
    }
    guard arguments.count > 1 else { throw ValidationError("name the \(first) to \(verb): `cox \(verb) \(first) NAME`") }
    return (try kind(named: first), arguments[1], Array(arguments.dropFirst(2)))
}

/// A change the cluster's state refuses (not a mistake in the command line: no usage after it).
struct Refused: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `cox patch KIND NAME -p PATCH [--type strategic|merge|json]`, as kubectl sends it.
struct PatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "patch", abstract: "Change fields of an object with a strategic merge, JSON merge (RFC 7386) or JSON (RFC 6902) patch.")

    enum PatchType: String, ExpressibleByArgument, CaseIterable { case strategic, merge, json }

    @Argument(help: "KIND NAME or KIND/NAME.") var target: [String]
    @Option(name: .shortAndLong, help: "The patch, as JSON or YAML.") var patch: String?
    @Option(name: .customLong("patch-file"), help: "Read the patch from this file.") var patchFile: String?
    @Option(help: "strategic (default), merge or json.") var type: PatchType = .strategic
    @Option(help: "Patch this subresource instead (status or scale).") var subresource: String?
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @Flag(help: "Ask the server what it would store, storing nothing; print it.") var dryRun = false
    @OptionGroup var client: ClientOptions

    static let contentTypes: [PatchType: String] = [
        .strategic: "application/strategic-merge-patch+json", .merge: "application/merge-patch+json", .json: "application/json-patch+json",
    ]

    func run() async throws {
        let (type, name, rest) = try targetAndRest(target, verb: "patch")
        guard rest.isEmpty else { throw ValidationError("unexpected arguments: \(rest.joined(separator: " "))") }
        guard (patch == nil) != (patchFile == nil) else { throw ValidationError("give the patch with -p PATCH or --patch-file FILE (one of them)") }
        let text: String
        if let patchFile {
            guard let data = FileManager.default.contents(atPath: patchFile) else { throw ValidationError("cannot read \(patchFile)") }
            text = String(decoding: data, as: UTF8.self)
        } else {
            text = patch!
        }
        // YAML is accepted too (kubectl converts it); the server gets JSON.
        let body: JSONValue
        do {
            let start = text.first { !$0.isWhitespace }
            body = start == "[" || start == "{" ? try JSONParser.parse(text) : try Manifests.singleDocument(text)
        } catch {
            throw ValidationError("the patch is neither JSON nor YAML: \(error)")
        }
        if let subresource, !["status", "scale"].contains(subresource) {
            throw ValidationError("--subresource must be status or scale, not \"\(subresource)\"")
        }
        let failed = try await withClient(client) { client in
            do {
                let message = try await send(type, name: name, body: JSONWriter.bytes(body), client: client)
                print(message)
                return false
            } catch {
                printError("error: \(error)")
                return true
            }
        }
        if failed { throw ExitCode.failure }
    }

    func send<T: APIObject>(_ type: T.Type, name: String, body: [UInt8], client: APIClient) async throws -> String {
        let namespace = T.kindInfo.namespaced ? self.namespace : ""
        let before = try await client.get(T.self, namespace: namespace, name: name)
        var query: [String] = []
        if dryRun { query.append("dryRun=All") }
        let reference = "\(T.kindInfo.singular)/\(name)"
        if let subresource {
            let answer = try await client.patchSubresource(T.self, namespace: namespace, name: name, subresource: subresource, body: body,
                                                           contentType: Self.contentTypes[self.type]!, query: query.joined(separator: "&"))
            if subresource == "status", dryRun, let object = try? client.decode(T.self, answer) { return YAMLWriter.render(object.jsonValue()) }
            return "\(reference) patched\(dryRun ? " (dry run)" : "")"
        }
        let after = try await client.patch(T.self, namespace: namespace, name: name, body: body, contentType: Self.contentTypes[self.type]!,
                                           query: query.joined(separator: "&"))
        if dryRun { return YAMLWriter.render(after.jsonValue()) }
        return after.metadata.resourceVersion == before.metadata.resourceVersion ? "\(reference) patched (no change)" : "\(reference) patched"
    }
}

/// `cox label` and `cox annotate`: `key=value` sets, `key-` removes, as kubectl's verbs do.
struct MetadataChange {
    let field: String  // "labels" or "annotations"
    let past: String   // "labeled" or "annotated"

    /// The patch for `changes` against what `current` holds; refuses to change a value without
    /// `overwrite` (kubectl's rule), and notes keys to remove that are not there. With a
    /// `resourceVersion`, the patch holds only if the object is still at that version.
    func patch(_ changes: [String], current: [String: String], overwrite: Bool,
               resourceVersion: String? = nil) throws -> (patch: JSONValue, notes: [String]) {
        var members: [JSONMember] = []
        var notes: [String] = []
        guard !changes.isEmpty else { throw ValidationError("give at least one change: KEY=VALUE to set, KEY- to remove") }
        for change in changes {
            if change.hasSuffix("-") && !change.contains("=") {
                let key = String(change.dropLast())
                if current[key] == nil { notes.append("\(field == "labels" ? "label" : "annotation") \"\(key)\" not found.") }
                members.append(JSONMember(key, .null))
                continue
            }
            guard let equals = change.firstIndex(of: "=") else {
                throw ValidationError("\"\(change)\" is neither KEY=VALUE nor KEY-")
            }
            let key = String(change[..<equals])
            let value = String(change[change.index(after: equals)...])
            guard !key.isEmpty else { throw ValidationError("\"\(change)\" has no key") }
            if let existing = current[key], existing != value, !overwrite {
                throw Refused("'\(key)' already has a value (\(existing)), and --overwrite is false")
            }
            members.append(JSONMember(key, .string(value)))
        }
        var metadata = [JSONMember(field, .object(members))]
        if let resourceVersion { metadata.append(JSONMember("resourceVersion", .string(resourceVersion))) }
        return (.object([JSONMember("metadata", .object(metadata))]), notes)
    }

    func run(_ arguments: [String], namespace: String, overwrite: Bool, client options: ClientOptions) async throws {
        let (type, name, changes) = try targetAndRest(arguments, verb: field == "labels" ? "label" : "annotate")
        try await withClient(options) { client in
            try await apply(type, name: name, changes: changes, namespace: namespace, overwrite: overwrite, client: client)
        }
    }

    func apply<T: APIObject>(_ type: T.Type, name: String, changes: [String], namespace: String, overwrite: Bool, client: APIClient) async throws {
        let namespace = T.kindInfo.namespaced ? namespace : ""
        let current = try await client.get(T.self, namespace: namespace, name: name)
        // Guarded by the version read, so the --overwrite check holds at the write (as kubectl's
        // --resource-version does): another writer in between is a conflict, not a lost change.
        let (patch, notes) = try self.patch(changes, current: field == "labels" ? current.metadata.labels : current.metadata.annotations,
                                            overwrite: overwrite, resourceVersion: current.metadata.resourceVersion)
        for note in notes { print(note) }
        _ = try await client.patch(T.self, namespace: namespace, name: name, body: JSONWriter.bytes(patch), contentType: "application/merge-patch+json")
        print("\(T.kindInfo.singular)/\(name) \(past)")
    }
}

struct LabelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "label", abstract: "Set (KEY=VALUE) or remove (KEY-) labels of an object.")
    @Argument(help: "KIND NAME or KIND/NAME, then KEY=VALUE or KEY- changes.") var arguments: [String]
    @Flag(help: "Allow changing a label that already has a value.") var overwrite = false
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await MetadataChange(field: "labels", past: "labeled").run(arguments, namespace: namespace, overwrite: overwrite, client: client)
    }
}

struct AnnotateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "annotate", abstract: "Set (KEY=VALUE) or remove (KEY-) annotations of an object.")
    @Argument(help: "KIND NAME or KIND/NAME, then KEY=VALUE or KEY- changes.") var arguments: [String]
    @Flag(help: "Allow changing an annotation that already has a value.") var overwrite = false
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await MetadataChange(field: "annotations", past: "annotated").run(arguments, namespace: namespace, overwrite: overwrite, client: client)
    }
}

/// Everything but the bookkeeping a user does not write, for showing an object to compare or edit.
func editable(_ object: some APIObject) -> JSONValue {
    guard case .object(var members) = object.jsonValue() else { return object.jsonValue() }
    if let index = members.firstIndex(where: { $0.key == "metadata" }), case .object(var metadata) = members[index].value {
        metadata.removeAll { $0.key == "managedFields" }
        members[index].value = .object(metadata)
    }
    return .object(members)
}

/// `cox diff -f FILE`: what `cox apply -f FILE` would change, as a unified diff of the live
/// objects against what the server would store (asked with a dry run, so defaults and admission
/// show). Exit status as kubectl's: 0 no differences, 1 differences, more than 1 an error.
struct DiffCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "diff", abstract: "Show what applying manifests would change (exit 1 when something would).")
    @Option(name: .shortAndLong, help: "A file, a directory, or - for standard input (repeatable).") var filename: [String]
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let objects = try filename.flatMap { try Manifests.load(path: $0) }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cox-diff-\(UUID().uuidString.prefix(8))")
        let live = root.appendingPathComponent("LIVE"), merged = root.appendingPathComponent("MERGED")
        defer { try? FileManager.default.removeItem(at: root) }
        do {
            for directory in [live, merged] { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
            try await withClient(client) { client in
                for item in objects {
                    let (before, after) = try await Self.states(item.object, client: client)
                    let file = "\(type(of: item.object).kindInfo.kind).\(item.object.metadata.namespace.isEmpty ? "" : item.object.metadata.namespace + ".")\(item.object.metadata.name)"
                    try Data(before.utf8).write(to: live.appendingPathComponent(file))
                    try Data(after.utf8).write(to: merged.appendingPathComponent(file))
                }
            }
        } catch {
            printError("error: \(error)")
            throw ExitCode(2)
        }
        guard let diff = ["/usr/bin/diff", "/bin/diff"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            printError("error: cox diff needs the diff program (diffutils)")
            throw ExitCode(2)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: diff)
        process.arguments = ["-u", "-N", live.path, merged.path]
        try process.run()
        process.waitUntilExit()
        if process.terminationStatus != 0 { throw ExitCode(process.terminationStatus) }
    }

    /// The live object (empty when there is none) and what an apply would leave, as YAML.
    static func states<T: APIObject>(_ desired: T, client: APIClient) async throws -> (String, String) {
        do {
            let existing = try await client.get(T.self, namespace: desired.metadata.namespace, name: desired.metadata.name)
            let result = try await client.update(APIClient.merge(desired, into: existing), dryRun: true)
            return (YAMLWriter.render(editable(existing)), YAMLWriter.render(editable(result)))
        } catch let error as ClientError where error.code == 404 {
            return ("", YAMLWriter.render(editable(try await client.create(desired, dryRun: true))))
        }
    }
}

/// `cox edit KIND NAME`: the object as YAML in `$KUBE_EDITOR`, `$EDITOR` or vi; what is saved is
/// written back as an update guarded by the object's resourceVersion, so a change made meanwhile
/// is a conflict, not lost. A failed edit is kept in a file named in the error.
struct EditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "edit", abstract: "Edit an object in your editor and write it back.")
    @Argument(help: "KIND NAME or KIND/NAME.") var target: [String]
    @Option(name: .shortAndLong, help: "Namespace.") var namespace = "default"
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let (type, name, rest) = try targetAndRest(target, verb: "edit")
        guard rest.isEmpty else { throw ValidationError("unexpected arguments: \(rest.joined(separator: " "))") }
        try await withClient(client) { client in try await edit(type, name: name, client: client) }
    }

    func edit<T: APIObject>(_ type: T.Type, name: String, client: APIClient) async throws {
        let namespace = T.kindInfo.namespaced ? self.namespace : ""
        let current = try await client.get(T.self, namespace: namespace, name: name)
        let header = """
            # Edit the object below. Lines beginning with '#' are ignored; an empty file cancels
            # the edit. If an error occurs while saving, this file is kept with your changes.
            #

            """
        let original = header + YAMLWriter.render(editable(current))
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("cox-edit-\(UUID().uuidString.prefix(8)).yaml")
        try Data(original.utf8).write(to: file)
        let environment = ProcessInfo.processInfo.environment
        let editor = [environment["KUBE_EDITOR"], environment["EDITOR"]].compactMap { $0 }.first { !$0.isEmpty } ?? "vi"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "\(editor) \"$1\"", "editor", file.path]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            try? FileManager.default.removeItem(at: file)
            throw Refused("the editor (\(editor)) exited with status \(process.terminationStatus); nothing was changed")
        }
        let edited = String(decoding: (try? Data(contentsOf: file)) ?? Data(), as: UTF8.self)
        let uncommented = edited.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("#") }.joined(separator: "\n")
        if edited == original || uncommented.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            try? FileManager.default.removeItem(at: file)
            print("Edit cancelled, no changes made.")
            return
        }
        do {
            let objects = try Manifests.decode(uncommented, source: file.path)
            guard objects.count == 1, var object = objects[0].object as? T, object.metadata.name == name,
                  object.metadata.namespace == current.metadata.namespace else {
                throw ValidationError("the edited file must hold the same \(T.kindInfo.kind) \"\(name)\": its apiVersion, kind, name and namespace cannot change")
            }
            if object.metadata.resourceVersion.isEmpty { object.metadata.resourceVersion = current.metadata.resourceVersion }
            _ = try await client.update(object)
            try? FileManager.default.removeItem(at: file)
            print("\(T.kindInfo.singular)/\(name) edited")
        } catch {
            printError("error: \(T.kindInfo.singular)/\(name): \(error)")
            printError("A copy of your changes has been stored to \"\(file.path)\"")
            throw ExitCode.failure
        }
    }
}
