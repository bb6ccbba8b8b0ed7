import API
import Client
import PKI
import Foundation
import Synchronization
import Testing
import TestSupport

/// CustomResourceDefinitions as the real kubectl (oldest and newest) applies and reads them: the
/// definition is accepted and Established at once, listed with kubectl's columns, and a bad one
/// is refused with Kubernetes' field paths and words; what this server does not serve (CEL rules,
/// conversion webhooks) is refused, never stored and ignored.
@Suite("CustomResourceDefinitions", .watchdog, .serialized)
struct CustomResourceDefinitionTests {
    static let definition = """
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: crontasks.example.cox.io
    spec:
      group: example.cox.io
      scope: Namespaced
      names:
        plural: crontasks
        kind: CronTask
        shortNames: [ct]
        categories: [all]
      versions:
      - name: v1
        served: true
        storage: true
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                required: [schedule]
                properties:
                  schedule: {type: string, pattern: '^(\\S+ ){4}\\S+$'}
                  historyLimit: {type: integer, minimum: 0, default: 3}
                  template:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
              status:
                type: object
                properties:
                  lastScheduleTime: {type: string, format: date-time}
                  active: {type: array, items: {type: string}, x-kubernetes-list-type: set}
                  activeCount: {type: integer}
        subresources:
          status: {}
          scale: {specReplicasPath: .spec.historyLimit, statusReplicasPath: .status.activeCount}
        additionalPrinterColumns:
        - {name: Schedule, type: string, jsonPath: .spec.schedule}
        - {name: Last, type: date, jsonPath: .status.lastScheduleTime}
    """

    @Test func kubectlAppliesReadsAndDeletesADefinition() async throws {
        let kubectls = Tools.kubectlRange()
        guard !kubectls.isEmpty else { return }
        let server = try await ServerHarness()
        defer { Task { await server.stop() } }
        func write(_ name: String, _ text: String) throws -> String {
            let path = (server.dir.path as NSString).appendingPathComponent(name)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let good = try write("crd.yaml", Self.definition)
        for (version, kubectl) in kubectls {
            func run(_ arguments: String...) async throws -> Tools.Output {
                try await Tools.runDetached(kubectl, ["--kubeconfig", server.kubeconfig] + arguments)
            }
            let applied = try await run("apply", "-f", good)
            #expect(applied.status == 0 && applied.output.contains("customresourcedefinition.apiextensions.k8s.io/crontasks.example.cox.io created"),
                    "kubectl \(version) apply: \(applied.output)")
            let again = try await run("apply", "-f", good)
            #expect(again.status == 0 && again.output.contains("crontasks.example.cox.io unchanged"), "kubectl \(version) re-apply: \(again.output)")
            let listed = try await run("get", "crd")
            #expect(listed.status == 0 && listed.output.contains("CREATED AT") && listed.output.contains("crontasks.example.cox.io"),
                    "kubectl \(version) get crd: \(listed.output)")
            let established = try await run("get", "crd", "crontasks.example.cox.io", "-o",
                                            #"jsonpath={.status.conditions[?(@.type=="Established")].status} {.status.acceptedNames.listKind} {.status.acceptedNames.singular} {.status.storedVersions}"#)
            #expect(established.output == #"True CronTaskList crontask ["v1"]"#, "kubectl \(version): \(established.output)")
            let stored = try await run("get", "crd", "crontasks.example.cox.io", "-o", "json")
            let definition = try CustomResourceDefinition(jsonString: stored.output)
            let schema = try JSONParser.parse(definition.spec.versions[0].schema.openApiV3Schema)
            #expect(schema["properties"]?["spec"]?["properties"]?["historyLimit"]?["default"] == .int(3)
                    && definition.spec.versions[0].subresources.hasStatus, "the schema and subresources come back as sent: \(stored.output)")
            let resources = try await run("api-resources", "--api-group=apiextensions.k8s.io")
            #expect(resources.output.contains("customresourcedefinitions") && resources.output.contains("crd,crds"), "kubectl \(version): \(resources.output)")
            let explained = try await run("explain", "crd.spec.names")
            #expect(explained.status == 0 && explained.output.contains("plural"), "kubectl \(version) explain: \(explained.output)")

            // Refused, with the field and the reason.
            let misnamed = try write("misnamed.yaml", Self.definition.replacingOccurrences(of: "name: crontasks.example.cox.io", with: "name: tasks.example.cox.io"))
            let wrongName = try await run("apply", "-f", misnamed)
            #expect(wrongName.status != 0 && wrongName.output.contains(#"metadata.name: Invalid value: "tasks.example.cox.io": must be spec.names.plural+"."+spec.group"#),
                    "kubectl \(version): \(wrongName.output)")
            let dotless = try write("dotless.yaml", Self.definition
                .replacingOccurrences(of: "crontasks.example.cox.io", with: "crontasks.example")
                .replacingOccurrences(of: "group: example.cox.io", with: "group: example"))
            let noDot = try await run("apply", "-f", dotless)
            #expect(noDot.status != 0 && noDot.output.contains(#"spec.group: Invalid value: "example": should be a domain with at least one dot"#),
                    "kubectl \(version): \(noDot.output)")
            let withRules = try write("cel.yaml", Self.definition
                .replacingOccurrences(of: "crontasks", with: "celtasks").replacingOccurrences(of: "CronTask", with: "CelTask")
                .replacingOccurrences(of: "shortNames: [ct]", with: "shortNames: [cel]")
                .replacingOccurrences(of: "        type: object\n        properties:\n          spec:",
                                      with: "        type: object\n        x-kubernetes-validations: [{rule: \"true\"}]\n        properties:\n          spec:"))
            #expect(try String(contentsOfFile: withRules, encoding: .utf8).contains("x-kubernetes-validations"))
            let cel = try await run("apply", "-f", withRules)
            #expect(cel.status != 0 && cel.output.contains("x-kubernetes-validations: Forbidden: CEL validation rules are not supported by this server"),
                    "kubectl \(version): \(cel.output)")
            let untyped = try write("untyped.yaml", Self.definition
                .replacingOccurrences(of: "crontasks", with: "looses").replacingOccurrences(of: "CronTask", with: "Loose")
                .replacingOccurrences(of: "shortNames: [ct]", with: "shortNames: [lo]")
                .replacingOccurrences(of: "historyLimit: {type: integer, minimum: 0, default: 3}", with: "historyLimit: {minimum: 0}"))
            let noType = try await run("apply", "-f", untyped)
            #expect(noType.status != 0 && noType.output.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[historyLimit].type: Required value: must not be empty for specified object fields"),
                    "kubectl \(version): \(noType.output)")
            let noneStored = try await run("get", "crd", "-o", "name")
            #expect(noneStored.output == "customresourcedefinition.apiextensions.k8s.io/crontasks.example.cox.io\n", "only the good one is stored: \(noneStored.output)")

            // Its objects, served at once: defaults, pruning with a warning, the schema's checks,
            // printer columns, merge and JSON patches, the status subresource.
            let task = try write("task.yaml", """
                apiVersion: example.cox.io/v1
                kind: CronTask
                metadata: {name: nightly, labels: {team: ops}}
                spec:
                  schedule: "0 3 * * *"
                  template: {containers: [{name: main, image: busybox}]}
                  surprise: 1
                """)
            let strict = try await run("apply", "-f", task)
            #expect(strict.status != 0 && strict.output.contains(#"strict decoding error: unknown field "spec.surprise""#),
                    "kubectl \(version) validates strictly by default: \(strict.output)")
            let created = try await run("apply", "--validate=warn", "-f", task)
            #expect(created.status == 0 && created.output.contains("crontask.example.cox.io/nightly created")
                    && created.output.contains(#"unknown field "spec.surprise""#), "kubectl \(version) apply a CronTask: \(created.output)")
            let object = try JSONParser.parse(try await run("get", "crontask", "nightly", "-o", "json").output)
            #expect(object["spec"]?["historyLimit"] == .int(3) && object["spec"]?["surprise"] == nil
                    && object["spec"]?["template"]?["containers"]?.typeName == "array" && object["metadata"]?["uid"] != nil,
                    "defaulted, pruned, kept where the schema keeps unknown fields: \(object)")
            let table = try await run("get", "ct")
            #expect(table.output.contains("NAME") && table.output.contains("SCHEDULE") && table.output.contains("0 3 * * *"), "kubectl \(version) get ct: \(table.output)")
            let missing = try write("bad-task.yaml", "apiVersion: example.cox.io/v1\nkind: CronTask\nmetadata: {name: bad}\nspec: {historyLimit: -1}\n")
            let refused = try await run("apply", "-f", missing)
            #expect(refused.status != 0 && refused.output.contains("spec.schedule: Required value")
                    && refused.output.contains("spec.historyLimit: Invalid value: -1: spec.historyLimit in body should be greater than or equal to 0"),
                    "kubectl \(version): \(refused.output)")
            let mismatched = try await run("patch", "ct", "nightly", "--type=merge", "-p", #"{"spec":{"schedule":"often"}}"#)
            #expect(mismatched.status != 0 && mismatched.output.contains("spec.schedule in body should match"), "kubectl \(version): \(mismatched.output)")
            let merged = try await run("patch", "ct", "nightly", "--type=merge", "-p", #"{"spec":{"historyLimit":5}}"#)
            #expect(merged.status == 0 && merged.output.contains("crontask.example.cox.io/nightly patched"), "kubectl \(version): \(merged.output)")
            let strategic = try await run("patch", "ct", "nightly", "-p", #"{"spec":{"historyLimit":6}}"#)
            #expect(strategic.status != 0 && strategic.output.contains("application/merge-patch+json"), "strategic merge is refused for custom resources: \(strategic.output)")
            let status = try await run("patch", "ct", "nightly", "--subresource=status", "--type=merge", "-p", #"{"status":{"lastScheduleTime":"2026-12-06T03:00:00Z"}}"#)
            let afterStatus = try JSONParser.parse(try await run("get", "ct", "nightly", "-o", "json").output)
            #expect(status.status == 0 && afterStatus["status"]?["lastScheduleTime"] == .string("2026-12-06T03:00:00Z")
                    && afterStatus["spec"]?["historyLimit"] == .int(5), "kubectl \(version) status: \(status.output) \(afterStatus)")
            let statusIgnored = try await run("patch", "ct", "nightly", "--type=merge", "-p", #"{"status":{"lastScheduleTime":"2020-01-01T00:00:00Z"}}"#)
            let kept = try JSONParser.parse(try await run("get", "ct", "nightly", "-o", "json").output)
            #expect(statusIgnored.status == 0 && kept["status"]?["lastScheduleTime"] == .string("2026-12-06T03:00:00Z"),
                    "a write to the object leaves a status subresource's status alone: \(kept)")
            // kubectl explain reads the kind from the OpenAPI documents (v2 for 1.27, v3 for 1.33).
            let explainedTask = try await run("explain", "crontask.spec")
            #expect(explainedTask.status == 0 && explainedTask.output.contains("historyLimit") && explainedTask.output.contains("schedule"),
                    "kubectl \(version) explain crontask.spec: \(explainedTask.output)")
            // kubectl scale through /scale, at the definition's paths.
            let scaled = try await run("scale", "crontask", "nightly", "--replicas=4")
            let afterScale = try JSONParser.parse(try await run("get", "ct", "nightly", "-o", "json").output)
            #expect(scaled.status == 0 && scaled.output.contains("crontask.example.cox.io/nightly scaled") && afterScale["spec"]?["historyLimit"] == .int(4),
                    "kubectl \(version) scale: \(scaled.output) \(afterScale)")
            let byLabel = try await run("get", "crontasks", "-l", "team=ops", "-o", "name")
            #expect(byLabel.output == "crontask.example.cox.io/nightly\n", "kubectl \(version) get -l: \(byLabel.output)")

            // Deleting the definition deletes its objects first, each as a deletion of its own: a
            // finalizer holds one (and the definition, Terminating, taking no creates) until removed.
            let held = try await run("patch", "crontask", "nightly", "--type=merge", "-p", #"{"metadata":{"finalizers":["example.cox.io/hold"]}}"#)
            #expect(held.status == 0, "kubectl \(version) patch finalizers: \(held.output)")
            let deleted = try await run("delete", "crd", "crontasks.example.cox.io", "--wait=false")
            #expect(deleted.status == 0 && deleted.output.contains(#"customresourcedefinition.apiextensions.k8s.io "crontasks.example.cox.io" deleted"#),
                    "kubectl \(version) delete: \(deleted.output)")
            try await waitUntil("the held object is being deleted") {
                try await run("get", "crontask", "nightly", "-o", "jsonpath={.metadata.deletionTimestamp}").output.isEmpty == false
            }
            let terminating = try await run("get", "crd", "crontasks.example.cox.io", "-o", #"jsonpath={.status.conditions[?(@.type=="Terminating")].reason}"#)
            #expect(terminating.output == "InstanceDeletionInProgress", "kubectl \(version): \(terminating.output)")
            let late = try await Tools.runDetached(kubectl, ["--kubeconfig", server.kubeconfig, "create", "-f", "-"],
                                                   input: "apiVersion: example.cox.io/v1\nkind: CronTask\nmetadata: {name: late}\nspec: {schedule: '* * * * *'}\n", timeout: 60)
            #expect(late.status != 0 && late.output.contains("create not allowed while custom resource definition is terminating"),
                    "kubectl \(version) create while terminating: \(late.output)")
            let released = try await run("patch", "crontask", "nightly", "--type=merge", "-p", #"{"metadata":{"finalizers":null}}"#)
            #expect(released.status == 0, "kubectl \(version) patch: \(released.output)")
            let waited = try await run("wait", "--for=delete", "crd/crontasks.example.cox.io", "--timeout=30s")
            #expect(waited.status == 0, "kubectl \(version) wait --for=delete: \(waited.output)")
            let gone = try await run("get", "crontasks")
            // (kubectl may still have the resource in its discovery cache: then the server says it.)
            #expect(gone.status != 0 && (gone.output.contains("the server doesn't have a resource type \"crontasks\"")
                                         || gone.output.contains("the server could not find the requested resource")), "kubectl \(version) after the delete: \(gone.output)")
        }
    }

    /// Custom objects are stored like every object: they outlive a restart of the server, the
    /// definition is served again at once, and a watch from a revision before the restart sees
    /// every change since, in order, the last one made after it.
    @Test func customObjectsSurviveARestartAndTheirWatchResumes() async throws {
        let dir = TemporaryDirectory()
        let server = try await ServerHarness(dir: dir)
        var writer = JSONWriter()
        writer.value(try Manifests.singleDocument(Self.definition))
        let definitionJSON = String(decoding: writer.bytes, as: UTF8.self)
        let created = try await server.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body: definitionJSON)
        #expect(created.code == 201, "\(created.body)")
        let path = "/apis/example.cox.io/v1/namespaces/default/crontasks"
        let first = try await server.request("POST", path, body: #"{"apiVersion":"example.cox.io/v1","kind":"CronTask","metadata":{"name":"a"},"spec":{"schedule":"* * * * *"}}"#)
        #expect(first.code == 201, "\(first.body)")
        let since = try #require(first.json?["metadata"]?["resourceVersion"].flatMap { if case .string(let v) = $0 { return v } else { return nil } })
        let patched = try await server.request("PATCH", path + "/a", body: #"{"spec":{"historyLimit":7}}"#, contentType: "application/merge-patch+json")
        #expect(patched.code == 200, "\(patched.body)")
        await server.stop()

        let restarted = try await ServerHarness(dir: dir)
        defer { Task { await restarted.stop() } }
        let after = try await restarted.request("GET", path + "/a")
        #expect(after.code == 200 && after.json?["spec"]?["historyLimit"] == .int(7) && after.json?["kind"] == .string("CronTask"), "\(after.body)")
        let second = try await restarted.request("POST", path, body: #"{"apiVersion":"example.cox.io/v1","kind":"CronTask","metadata":{"name":"b"},"spec":{"schedule":"0 * * * *"}}"#)
        #expect(second.code == 201, "\(second.body)")
        let watched = try await restarted.request("GET", path + "?watch=true&resourceVersion=\(since)&timeoutSeconds=1")
        let events = watched.body.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
        let seen = events.map { event -> String in
            let type = event["type"].flatMap { if case .string(let t) = $0 { return t } else { return nil } } ?? "?"
            let name = event["object"]?["metadata"]?["name"].flatMap { if case .string(let n) = $0 { return n } else { return nil } } ?? "?"
            return "\(type) \(name)"
        }
        #expect(seen == ["MODIFIED a", "ADDED b"], "the watch from before the restart: \(watched.body)")
    }

    struct CronSpec: Codable, Sendable, Equatable {
        var schedule: String
        var historyLimit: Int?
    }

    struct CronStatus: Codable, Sendable, Equatable {
        var lastScheduleTime: String?
        var active: [String]?
    }

    /// The client library for kinds known only at run time: a dynamic client (JSON objects), an
    /// informer over them, and a typed client for a plugin's own Codable spec and status.
    @Test func dynamicAndTypedClientsAndAnInformerForACustomKind() async throws {
        let server = try await ServerHarness()
        defer { Task { await server.stop() } }
        let client = try APIClient(kubeconfig: try Kubeconfig.load(path: server.kubeconfig), timeout: .seconds(10))
        defer { Task { try? await client.shutdown() } }
        let definition = try CustomResourceDefinition(json: try Manifests.singleDocument(Self.definition))
        _ = try await client.create(definition)

        let tasks = DynamicResource(client: client, group: "example.cox.io", version: "v1", kind: "CronTask", plural: "crontasks", namespaced: true)
        let informer = tasks.informer(WatchRequest(namespace: "default"))
        let seen = Mutex<[String]>([])
        informer.addHandler { event in
            let line: String
            switch event {
            case .added(let object): line = "added \(object.metadata.name)"
            case .updated(_, let object):
                let limit: String = { if case .int(let n)? = object["spec"]?["historyLimit"] { return "\(n)" } else { return "" } }()
                line = "updated \(object.metadata.name) \(limit)"
            case .deleted(let object): line = "deleted \(object.metadata.name)"
            }
            seen.withLock { $0.append(line) }
        }
        let running = Task { await informer.run() }
        defer { running.cancel() }
        await informer.waitForSync()

        // Dynamic: JSON in, the server's defaults and metadata out.
        let made = try await tasks.create(tasks.object(namespace: "default", name: "hourly", content: [
            JSONMember("spec", .object([JSONMember("schedule", .string("0 * * * *"))])),
        ]))
        #expect(made.kind == "CronTask" && made.apiVersion == "example.cox.io/v1" && !made.metadata.uid.isEmpty
                && made["spec"]?["historyLimit"] == .int(3), "\(made.jsonString())")
        _ = try await tasks.mergePatch(namespace: "default", name: "hourly", .object([JSONMember("spec", .object([JSONMember("historyLimit", .int(9))]))]))
        let listed = try await tasks.list(namespace: "default")
        #expect(listed.items.map(\.metadata.name) == ["hourly"] && !listed.resourceVersion.isEmpty)
        do {
            _ = try await tasks.create(tasks.object(namespace: "default", name: "broken", content: [JSONMember("spec", .object([]))]))
            Issue.record("an object without its required schedule was created")
        } catch let error as ClientError {
            #expect(error.code == 422 && error.message.contains("spec.schedule: Required value"), "\(error)")
        }

        // Typed: the plugin's own Codable types.
        let typed = TypedResource<CronSpec, CronStatus>(tasks)
        var meta = ObjectMeta()
        meta.name = "nightly"
        meta.namespace = "default"
        var nightly = try await typed.create(TypedObject<CronSpec, CronStatus>(metadata: meta, spec: CronSpec(schedule: "0 3 * * *")))
        #expect(nightly.spec == CronSpec(schedule: "0 3 * * *", historyLimit: 3) && nightly.status == nil)
        nightly.status = CronStatus(lastScheduleTime: "2026-12-06T03:00:00Z", active: ["nightly-1"])
        let withStatus = try await typed.updateStatus(nightly)
        #expect(withStatus.status == CronStatus(lastScheduleTime: "2026-12-06T03:00:00Z", active: ["nightly-1"]))
        #expect(try await typed.list(namespace: "default").map(\.metadata.name).sorted() == ["hourly", "nightly"])
        try await tasks.delete(namespace: "default", name: "hourly")

        try await waitUntil("the informer saw every change") {
            seen.withLock { $0 }.contains("deleted hourly") && informer.count == 1
        }
        let events = seen.withLock { $0 }
        #expect(events.first == "added hourly" && events.contains("updated hourly 9") && events.contains("added nightly"), "\(events)")
        #expect(informer.get(namespace: "default", name: "nightly")?["status"]?["active"] == .array([.string("nightly-1")]))
    }

    /// A second definition of a kind its group already serves is stored but neither accepted nor
    /// served (Kubernetes' KindConflict); a default that its own schema refuses is refused.
    @Test func aTakenKindIsNotServedAndABadDefaultIsRefused() async throws {
        let server = try await ServerHarness()
        defer { Task { await server.stop() } }
        let client = try APIClient(kubeconfig: try Kubeconfig.load(path: server.kubeconfig), timeout: .seconds(10))
        defer { Task { try? await client.shutdown() } }
        let first = try CustomResourceDefinition(json: try Manifests.singleDocument(Self.definition))
        _ = try await client.create(first)
        var second = first
        second.metadata.name = "crontabs.example.cox.io"
        second.spec.names.plural = "crontabs"
        second.spec.names.shortNames = []
        let stored = try await client.create(second)
        let accepted = stored.status.conditions.first { $0.type == "NamesAccepted" }
        #expect(accepted?.status == "False" && accepted?.reason == "KindConflict" && accepted?.message == #""CronTask" is already in use"#,
                "\(stored.status.jsonString())")
        #expect(stored.status.conditions.first { $0.type == "Established" }?.status == "False")
        let served = try await server.request("GET", "/apis/example.cox.io/v1/namespaces/default/crontabs")
        #expect(served.code == 404, "a definition that is not Established is not served: \(served.code) \(served.body)")
        // Once the first is gone, the second's names are free: accepted and served.
        _ = try await client.delete(CustomResourceDefinition.self, namespace: "", name: first.metadata.name)
        try await waitUntil("the second definition is Established") {
            let now = try await client.get(CustomResourceDefinition.self, namespace: "", name: "crontabs.example.cox.io")
            return now.status.conditions.contains { $0.type == "Established" && $0.status == "True" } && now.status.acceptedNames.plural == "crontabs"
        }
        let servedNow = try await server.request("GET", "/apis/example.cox.io/v1/namespaces/default/crontabs")
        #expect(servedNow.code == 200, "\(servedNow.code) \(servedNow.body)")

        var badDefault = first
        badDefault.metadata.name = "badtasks.example.cox.io"
        badDefault.spec.names = CustomResourceDefinitionNames()
        badDefault.spec.names.plural = "badtasks"
        badDefault.spec.names.kind = "BadTask"
        badDefault.spec.versions[0].schema.openApiV3Schema = #"{"type":"object","properties":{"spec":{"type":"object","properties":{"limit":{"type":"integer","minimum":0,"default":-2}}}}}"#
        do {
            _ = try await client.create(badDefault)
            Issue.record("a definition whose default its schema refuses was stored")
        } catch let error as ClientError {
            #expect(error.code == 422 && error.message.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[limit].default: Invalid value: -2"),
                    "\(error)")
        }
    }

    /// Server-side apply reads the schema's list types: two managers' items of a `map` list (by
    /// its key) and of a `set` are kept side by side, an item a manager stops applying goes, and
    /// an `atomic` list is one field (a second manager's apply conflicts with the first's).
    @Test func serverSideApplyMergesListsByTheirSchemaTypes() async throws {
        let server = try await ServerHarness()
        defer { Task { await server.stop() } }
        let definition = #"""
            {"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"routers.example.cox.io"},
             "spec":{"group":"example.cox.io","scope":"Namespaced","names":{"plural":"routers","kind":"Router"},
              "versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{
                "spec":{"type":"object","properties":{
                  "routes":{"type":"array","x-kubernetes-list-type":"map","x-kubernetes-list-map-keys":["path"],
                            "items":{"type":"object","required":["path"],"properties":{"path":{"type":"string"},"backend":{"type":"string"}}}},
                  "tags":{"type":"array","x-kubernetes-list-type":"set","items":{"type":"string"}},
                  "order":{"type":"array","items":{"type":"string"}}}}}}}}]}}
            """#
        let created = try await server.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body: definition)
        #expect(created.code == 201, "\(created.body)")
        let path = "/apis/example.cox.io/v1/namespaces/default/routers/edge"
        func apply(_ manager: String, _ spec: String, force: Bool = false) async throws -> ServerHarness.Reply {
            try await server.request("PATCH", path + "?fieldManager=\(manager)\(force ? "&force=true" : "")",
                                     body: #"{"apiVersion":"example.cox.io/v1","kind":"Router","metadata":{"name":"edge"},"spec":"# + spec + "}",
                                     contentType: "application/apply-patch+yaml")
        }
        var reply = try await apply("a", #"{"routes":[{"path":"/a","backend":"one"}],"tags":["x"],"order":["1"]}"#)
        #expect(reply.code == 201, "\(reply.body)")
        reply = try await apply("b", #"{"routes":[{"path":"/b","backend":"two"}],"tags":["y"]}"#)
        #expect(reply.code == 200, "\(reply.body)")
        var spec = try JSONParser.parse(reply.body)["spec"]
        #expect(spec?["routes"]?.elements?.compactMap { $0["path"] } == [.string("/a"), .string("/b")], "both managers' routes: \(String(describing: spec))")
        #expect(spec?["tags"]?.elements == [.string("x"), .string("y")], "both managers' tags: \(String(describing: spec))")
        // a stops applying its route: it goes, b's stays.
        reply = try await apply("a", #"{"tags":["x"],"order":["1"]}"#)
        spec = try JSONParser.parse(reply.body)["spec"]
        #expect(reply.code == 200 && spec?["routes"]?.elements?.compactMap { $0["path"] } == [.string("/b")], "\(reply.body)")
        // An atomic list is owned whole: another manager's different value conflicts.
        reply = try await apply("b", #"{"routes":[{"path":"/b","backend":"two"}],"tags":["y"],"order":["2"]}"#)
        #expect(reply.code == 409 && reply.body.contains(".spec.order"), "\(reply.body)")
    }

    /// Several served versions with `conversion: None` (the only strategy without a webhook): an
    /// object written through one version reads through every other with only its apiVersion
    /// changed — in gets, lists and watches — and is stored once, in the storage version.
    @Test func servedVersionsDifferOnlyInTheirApiVersion() async throws {
        let server = try await ServerHarness()
        defer { Task { await server.stop() } }
        let version = #"{"type":"object","properties":{"spec":{"type":"object","properties":{"size":{"type":"integer"}}}}}"#
        let definition = #"""
            {"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"gadgets.example.cox.io"},
             "spec":{"group":"example.cox.io","scope":"Namespaced","names":{"plural":"gadgets","kind":"Gadget"},
              "versions":[{"name":"v1beta1","served":true,"storage":false,"schema":{"openAPIV3Schema":VERSION}},
                          {"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":VERSION}}]}}
            """#.replacingOccurrences(of: "VERSION", with: version)
        let created = try await server.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body: definition)
        #expect(created.code == 201, "\(created.body)")
        let base = "/apis/example.cox.io/%@/namespaces/default/gadgets"
        let watch = Task { try await server.request("GET", String(format: base, "v1") + "?watch=true&timeoutSeconds=3") }
        try await Task.sleep(for: .milliseconds(300))
        let old = try await server.request("POST", String(format: base, "v1beta1"),
                                           body: #"{"apiVersion":"example.cox.io/v1beta1","kind":"Gadget","metadata":{"name":"g"},"spec":{"size":3}}"#)
        let written = try JSONParser.parse(old.body)
        #expect(old.code == 201 && written["apiVersion"] == .string("example.cox.io/v1beta1"), "\(old.body)")
        for (served, expected) in [("v1", "example.cox.io/v1"), ("v1beta1", "example.cox.io/v1beta1")] {
            let got = try JSONParser.parse(try await server.request("GET", String(format: base, served) + "/g").body)
            #expect(got["apiVersion"] == .string(expected) && got["spec"]?["size"] == .int(3), "GET as \(served): \(got)")
            let list = try JSONParser.parse(try await server.request("GET", String(format: base, served)).body)
            #expect(list["apiVersion"] == .string(expected) && list["items"]?.elements?.first?["apiVersion"] == .string(expected), "LIST as \(served): \(list)")
        }
        let events = try await watch.value.body.split(separator: "\n").map { try JSONParser.parse(String($0)) }
        #expect(events.first?["object"]?["apiVersion"] == .string("example.cox.io/v1"), "a v1 watch sees the object as v1: \(events)")
    }

    /// Defaults apply on read too: a default added to the schema shows in an object stored
    /// before it (in gets, lists and watches), as Kubernetes defaults what it reads from storage.
    @Test func aDefaultAddedLaterShowsWhenObjectsAreRead() async throws {
        let server = try await ServerHarness()
        defer { Task { await server.stop() } }
        let client = try APIClient(kubeconfig: try Kubeconfig.load(path: server.kubeconfig), timeout: .seconds(10))
        defer { Task { try? await client.shutdown() } }
        var definition = try CustomResourceDefinition(json: try Manifests.singleDocument(Self.definition))
        definition.spec.versions[0].schema.openApiV3Schema = #"{"type":"object","properties":{"spec":{"type":"object","properties":{"schedule":{"type":"string"}}}}}"#
        _ = try await client.create(definition)
        let path = "/apis/example.cox.io/v1/namespaces/default/crontasks"
        let created = try await server.request("POST", path, body: #"{"apiVersion":"example.cox.io/v1","kind":"CronTask","metadata":{"name":"old"},"spec":{"schedule":"* * * * *"}}"#)
        #expect(created.code == 201, "\(created.body)")
        var stored = try await client.get(CustomResourceDefinition.self, namespace: "", name: definition.metadata.name)
        stored.spec.versions[0].schema.openApiV3Schema =
            #"{"type":"object","properties":{"spec":{"type":"object","properties":{"schedule":{"type":"string"},"historyLimit":{"type":"integer","default":3}}}}}"#
        _ = try await client.update(stored)
        try await waitUntil("the object reads with the new default") {
            let got = try JSONParser.parse(try await server.request("GET", path + "/old").body)
            return got["spec"]?["historyLimit"] == .int(3)
        }
        let list = try JSONParser.parse(try await server.request("GET", path).body)
        #expect(list["items"]?.elements?.first?["spec"]?["historyLimit"] == .int(3), "\(list)")
    }
}
