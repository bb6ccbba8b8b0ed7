import API
import Logging
import Store
import Synchronization

/// The CustomResourceDefinitions this server serves, in memory: loaded at start, noted at once
/// when this server writes one (a definition is served from the moment its create is answered),
/// and followed by a watch. Lookups by group and plural (URLs) and by group/version and kind.
public final class CustomResourceRegistry: Sendable {
    private let definitions = Mutex<[String: CustomResourceDefinition]>([:])
    /// The OpenAPI documents for the definitions as they were when built (names and revisions).
    private let documents = Mutex<(key: String, documents: OpenAPI.Custom)?>(nil)
    /// What each served version was built into (its schema parsed), by `NAME/VERSION`, for the
    /// definition at the revision it was built from: a request does not parse the schema again.
    private let built = Mutex<[String: CustomResource]>([:])

    public init() {}

    public var all: [CustomResourceDefinition] { definitions.withLock { Array($0.values) }.sorted { $0.metadata.name < $1.metadata.name } }

    /// The definition served at /apis/GROUP/VERSION/RESOURCE, as that version; nil when none is
    /// (or it is not Established). A definition being deleted is still served (its objects are
    /// deleted and their finalizers must be removable) but takes no creates.
    public func resource(group: String, version: String, plural: String) -> CustomResource? {
        guard let definition = definitions.withLock({ $0["\(plural).\(group)"] }), Self.established(definition) else { return nil }
        return served(definition, version: version)
    }

    private func served(_ definition: CustomResourceDefinition, version: String) -> CustomResource? {
        let key = "\(definition.metadata.name)/\(version)"
        if let cached = built.withLock({ $0[key] }), cached.definition.metadata.uid == definition.metadata.uid,
           cached.definition.metadata.resourceVersion == definition.metadata.resourceVersion, !definition.metadata.resourceVersion.isEmpty {
            return cached
        }
        guard let resource = CustomResource(definition, version: version) else { return nil }
        built.withLock { $0[key] = resource }
        return resource
    }

    static func established(_ definition: CustomResourceDefinition) -> Bool {
        definition.status.conditions.contains { $0.type == "Established" && $0.status == "True" }
    }

    /// Marks a new definition whose kind (or list kind) another definition of its group already
    /// serves: NamesAccepted and Established False, as Kubernetes' naming controller does.
    func markConflicts(_ definition: inout CustomResourceDefinition) {
        definition.applyDefaults()
        let names = definition.spec.names
        let taken = definitions.withLock { all in
            all.values.first { other in
                other.metadata.name != definition.metadata.name && other.spec.group == definition.spec.group && Self.established(other)
                    && (other.spec.names.kind == names.kind || other.spec.names.listKind == names.listKind
                        || !Set(other.spec.names.shortNames).isDisjoint(with: names.shortNames))
            }
        }
        guard let taken else { return }
        let reason = taken.spec.names.kind == names.kind || taken.spec.names.listKind == names.listKind ? "KindConflict" : "ShortNamesConflict"
        let what = reason == "KindConflict" ? "\"\(names.kind)\" is already in use" : "\"\(names.shortNames.joined(separator: ","))\" is already in use"
        definition.status.conditions = [
            CustomResourceDefinition.condition("NamesAccepted", "False", reason, what),
            CustomResourceDefinition.condition("Established", "False", "NotAccepted", "not all names are accepted"),
        ]
        definition.status.acceptedNames = CustomResourceDefinitionNames()
    }

    /// The definition whose objects are stored under `groupResource` (plural.group).
    public func definition(groupResource: String) -> CustomResourceDefinition? {
        definitions.withLock { $0[groupResource] }
    }

    /// The served kind `kind` of `apiVersion` (for owner references and manifests).
    public func resource(apiVersion: String, kind: String) -> CustomResource? {
        let parts = apiVersion.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return nil }
        let found = definitions.withLock { $0.values.first { $0.spec.group == parts[0] && $0.spec.names.kind == kind } }
        return found.flatMap { served($0, version: parts[1]) }
    }

    /// The OpenAPI documents with the custom resources in them; nil when there are none.
    func openAPI() -> OpenAPI.Custom? {
        let all = self.all
        guard !all.isEmpty else { return nil }
        let key = all.map { "\($0.metadata.name)@\($0.metadata.resourceVersion)" }.joined(separator: ",")
        if let cached = documents.withLock({ $0 }), cached.key == key { return cached.documents }
        let built = OpenAPI.Custom(all)
        documents.withLock { $0 = (key, built) }
        return built
    }

    func note(_ definition: CustomResourceDefinition) {
        definitions.withLock { $0[definition.metadata.name] = definition }
    }

    func forget(_ name: String) {
        _ = definitions.withLock { $0.removeValue(forKey: name) }
        built.withLock { $0 = $0.filter { !$0.key.hasPrefix(name + "/") } }
    }

    public func reload(from store: any ObjectStore) async throws -> Int64 {
        let result = try await store.list(CustomResourceDefinition.self, options: ListOptions())
        definitions.withLock { $0 = Dictionary(result.items.map { ($0.metadata.name, $0) }, uniquingKeysWith: { _, last in last }) }
        return result.revision
    }

    /// Follows every change until cancelled (a watch that ends is followed by a reload).
    public func follow(_ store: any ObjectStore, from revision: Int64, logger: Logger) async {
        var revision = revision
        while !Task.isCancelled {
            do {
                let watch = try store.watch(from: revision, options: .of(CustomResourceDefinition.self))
                defer { watch.cancel() }
                for try await event in watch {
                    guard let definition = event.object as? CustomResourceDefinition else { continue }
                    if event.type == .deleted { forget(definition.metadata.name) } else { note(definition) }
                    revision = event.revision
                }
            } catch {
                if Task.isCancelled { return }
                logger.info("custom resource definition watch ended; reloading", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(200))
            }
            if Task.isCancelled { return }
            if let reloaded = try? await reload(from: store) { revision = reloaded }
        }
    }
}
