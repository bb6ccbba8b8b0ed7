import API
import APIServer
import ArgumentParser
import Client
import Dispatch
import Foundation
import Logging
import PKI
import Store
import Synchronization

/// `cox bench api`: C clients create pods over TLS while W watchers stream them, against a server
/// in this process (its own temporary data directory, a loopback port). Reports creates/s, create
/// latency p50/p99, and watch delivery lag p99, for protobuf and JSON in the same run.
struct APIBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "api", abstract: "Creates/s over TLS with watchers attached: protobuf vs JSON.")

    @Option(help: "Concurrent creating clients.") var clients = 64
    @Option(help: "HTTP/2 connections the creating clients share (each its own client, as separate programs would be).") var connections = 8
    @Option(help: "Watchers attached while creating.") var watchers = 1_000
    @Option(help: "Pods created per run.") var creates = 10_000
    @Option(help: "Formats to measure (protobuf, json).") var format: [String] = ["protobuf", "json"]
    @Option(help: "What each watcher watches: all (every pod: each create reaches every watcher) or node (as kubelets do: pods bound to its own node, spec.nodeName=node-N; the creates are spread over the watchers' nodes, so each reaches one).")
    var watch: WatchShape = .all
    @Flag(help: "Creates over HTTP/1.1 keep-alive connections instead of HTTP/2 (for comparison: swift-nio-http2 makes a channel per stream on both ends).")
    var http1 = false
    @Flag(help: "Watches as HTTP/1.1 streams, one connection each (as before watches moved to HTTP/2 streams, 100 to a connection): the baseline for the watch transport.")
    var watchHttp1 = false
    @Option(help: "What each client request is: create (a pod), dry-run (the same create with ?dryRun=All: checked and answered as a real one, but nothing is stored and no watcher gets an event), livez (GET /livez: the transport and the client alone), or a change of one annotation of the client's own pod (made before the clock starts) as put (the whole pod), patch (a strategic merge patch) or apply (server-side apply of the whole pod, forced). livez and dry-run are floors to compare creates with; put is the baseline of patch and apply.")
    var request: RequestShape = .create
    @Option(help: "What is created: pods, or custom (objects of a custom resource, a CustomResourceDefinition made first whose structural schema has the pods' fields; pods are measured in the same run as the baseline). custom takes --request create and --watch all.")
    var resource: ResourceShape = .pods

    enum ResourceShape: String, ExpressibleByArgument { case pods, custom }

    /// The custom resource `--resource custom` creates.
    static let benchDefinition = """
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: benchitems.bench.cox.io}
        spec:
          group: bench.cox.io
          scope: Namespaced
          names: {plural: benchitems, kind: BenchItem}
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
                    properties:
                      nodeName: {type: string}
                      containers:
                        type: array
                        items:
                          type: object
                          required: [name]
                          properties:
                            name: {type: string}
                            command: {type: array, items: {type: string}}
        """

    static var benchResource: CustomResource {
        CustomResource(KindInfo(group: "bench.cox.io", version: "v1", kind: "BenchItem", resource: "benchitems", singular: "benchitem", namespaced: true))
    }
    @Option(help: "Load an already running server (its kubeconfig) instead of one in this process, so each side's CPU can be measured apart. Its store keeps the pods.")
    var kubeconfig: String?
    @Flag(help: "Compare stores in one run: creates on cox with the embedded store, cox on etcd (a member this bench starts, mutual TLS, etcd on PATH), and raw etcd puts of the same bytes over TLS (protobuf only).")
    var etcd = false

    enum WatchShape: String, ExpressibleByArgument { case all, node }
    enum RequestShape: String, ExpressibleByArgument { case create, dryRun = "dry-run", livez, put, patch, apply }

    var isChange: Bool { [.put, .patch, .apply].contains(request) }

    /// Lag samples from every Nth event per watcher.
    static let lagSampleEvery = 50

    func run() async throws {
        print("machine: \(machineDescription())")
        if etcd { return try await compareStores() }
        let what = switch request {
        case .create: "creating \(creates) pods"
        case .dryRun: "dry-run creating \(creates) pods (nothing stored: the watchers get no events)"
        case .livez: "asking GET /livez \(creates) times (the watchers get no events)"
        case .put, .patch, .apply: "changing an annotation of their own pod \(creates) times in all, by \(request.rawValue)"
        }
        print("\(clients) clients \(what) over TLS (creates over \(http1 ? "HTTP/1.1" : "HTTP/2") on \(connections) clients, \(watchHttp1 ? "each watch its own HTTP/1.1 connection" : "watches as HTTP/2 streams, 100 to a connection")) while \(watchers) watchers stream "
              + (watch == .all ? "them all" : "those bound to their own node (spec.nodeName=node-N)"))
        let noun = request == .livez ? "request" : isChange ? request.rawValue : "create"
        let nouns = request == .patch ? "patches" : request == .apply ? "applies" : noun + "s"
        if resource == .custom {
            guard request == .create, watch == .all else { throw ValidationError("--resource custom measures creates (--request create) watched whole (--watch all)") }
            for name in format {
                guard let wire: WireFormat = name == "json" ? .json : name == "protobuf" ? .protobuf : nil else {
                    throw ValidationError("unknown format \(name): protobuf or json")
                }
                let pods = try await measure(wire)
                let custom = try await CustomResources.$current.withValue(Self.benchResource) { try await measure(wire, custom: true) }
                for (label, result) in [("pods", pods), ("BenchItem", custom)] {
                    print("  \(name) \(label.padding(toLength: 9, withPad: " ", startingAt: 0)) \(fmt(result.rate, 0)) creates/s; create p50 \(fmt(result.p50, 1)) ms, p99 \(fmt(result.p99, 1)) ms; watch lag p99 \(fmt(result.lagP99, 1)) ms; \(result.delivered) events delivered; this process \(fmt(result.cpuPerCreate * 1e6, 0)) µs CPU per create")
                }
                print("  → \(name): custom objects are created at \(fmt(custom.rate / pods.rate, 2))× the pods' rate; watch lag p99 \(fmt(custom.lagP99 / max(pods.lagP99, 0.001), 2))× theirs")
            }
            return
        }
        var rates: [String: Double] = [:]
        for name in format {
            guard let wire: WireFormat = name == "json" ? .json : name == "protobuf" ? .protobuf : nil else {
                throw ValidationError("unknown format \(name): protobuf or json")
            }
            let result = try await measure(wire)
            rates[name] = result.rate
            print("  \(name.padding(toLength: 9, withPad: " ", startingAt: 0)) \(fmt(result.rate, 0)) \(nouns)/s; \(noun) p50 \(fmt(result.p50, 1)) ms, p99 \(fmt(result.p99, 1)) ms; watch lag p99 \(fmt(result.lagP99, 1)) ms; \(result.delivered) events delivered; \(fmt(result.encodesPerEvent, 2)) encodings per event; this process \(fmt(result.cpuPerCreate * 1e6, 0)) µs CPU per \(noun)\(kubeconfig == nil ? " (server and clients)" : " (clients only)")")
        }
        if let pb = rates["protobuf"], let js = rates["json"] { print("  → protobuf \(nouns)/s is \(fmt(pb / js, 2))× JSON's") }
    }

    struct Result {
        let rate: Double, p50: Double, p99: Double, lagP99: Double, delivered: Int, encodesPerEvent: Double
        /// CPU of this process (clients, watchers and, unless --kubeconfig, the server) per create.
        let cpuPerCreate: Double
    }

    final class Samples: Sendable {
        let lags = Mutex<[Double]>([])
        let delivered = Atomic<Int>(0)
    }

    /// One run; with `custom`, of BenchItems (call it with `CustomResources.current` set to
    /// `benchResource`): their definition is made first, and they carry the pods' fields.
    func measure(_ wire: WireFormat, custom: Bool = false, etcdStore: EtcdStore.Options? = nil) async throws -> Result {
        if custom {
            return try await measure(wire, as: CustomObject.self) { pod in
                var object = CustomObject()
                object.apiVersion = "bench.cox.io/v1"
                object.kind = "BenchItem"
                object.metadata = pod.metadata
                let containers: [JSONValue] = pod.spec.containers.map { container in
                    .object([JSONMember("name", .string(container.name)), JSONMember("command", .array(container.command.map { .string($0) }))])
                }
                var spec = [JSONMember("containers", .array(containers))]
                if !pod.spec.nodeName.isEmpty { spec.append(JSONMember("nodeName", .string(pod.spec.nodeName))) }
                object.content = [JSONMember("spec", .object(spec))]
                return object
            }
        }
        return try await measure(wire, as: Pod.self, etcdStore: etcdStore) { $0 }
    }

    func measure<T: APIObject>(_ wire: WireFormat, as type: T.Type, etcdStore: EtcdStore.Options? = nil,
                               _ shape: @escaping @Sendable (Pod) -> T) async throws -> Result {
        let server = kubeconfig == nil ? try await BenchServer.start("api-\(wire == .json ? "json" : "pb")\(etcdStore == nil ? "" : "-etcd")", etcd: etcdStore) : nil
        defer { server?.stop() }
        let kubeconfigPath = kubeconfig ?? server!.kubeconfigPath
        if T.self == CustomObject.self {
            let admin = try APIClient(kubeconfig: try Kubeconfig.load(path: kubeconfigPath))
            _ = try? await admin.create(try CustomResourceDefinition(json: try Manifests.singleDocument(Self.benchDefinition)))
            try? await admin.shutdown()
        }
        // Names unique per run: an external server keeps the previous runs' pods.
        let prefix = "bench-\(wire == .json ? "j" : "p")\(UInt32.random(in: 0...UInt32.max))-"
        let kubeconfig = try Kubeconfig.load(path: kubeconfigPath)
        let writers = try (0..<max(1, min(connections, clients))).map { _ in
            try APIClient(kubeconfig: kubeconfig, format: wire, maxConnections: max(1, clients / max(1, connections)), http2: !http1)
        }
        let writer = writers[0]
        let reader = try APIClient(kubeconfig: kubeconfig, format: wire, maxConnections: watchers, http2: !watchHttp1)
        let samples = Samples()
        let total = creates
        let byNode = watch == .node && watchers > 0
        // How many events each watcher waits for: all of them, or those of its node.
        func expected(_ watcher: Int) -> Int { request != .create ? 0 : byNode ? total / watchers + (watcher < total % watchers ? 1 : 0) : total }
        // The pods: new ones for creates; for changes, one per client, made before the clock starts.
        let watcherCount = watchers
        @Sendable func ownPod(_ name: String, node: Int) -> Pod {
            var pod = Pod()
            pod.metadata.name = name
            pod.metadata.namespace = "default"
            var container = Container()
            container.name = "main"
            container.command = ["sleep", "3600"]
            pod.spec.containers = [container]
            if byNode { pod.spec.nodeName = "node-\(node % watcherCount)" }
            return pod
        }
        if isChange {
            for c in 0..<clients { _ = try await writers[c % writers.count].create(shape(ownPod("\(prefix)\(c)", node: c))) }
        }

        // Watchers first, each from revision 0 of an empty store.
        let watchTasks = (0..<watchers).map { watcher in
            Task {
                let want = expected(watcher)
                let body = try await reader.watchChunks(T.self, namespace: "default", resourceVersion: "0", timeoutSeconds: 600,
                                                        fieldSelector: byNode ? "spec.nodeName=node-\(watcher)" : nil)
                var splitter = WatchFrameSplitter(format: wire)
                var seen = 0
                var lags: [Double] = []
                for try await chunk in body {
                    splitter.append(chunk.readableBytesView)
                    for event in splitter.frames() {
                        if byNode {
                            // Few events each: every one is timed (bookmarks, which carry no send time, are not counted).
                            guard let sent = Self.sentAt(event, wire, as: T.self) else { continue }
                            seen += 1
                            lags.append(Double(DispatchTime.now().uptimeNanoseconds &- sent) / 1e6)
                            continue
                        }
                        if Self.isBookmark(event, wire) { continue }
                        seen += 1
                        if seen % Self.lagSampleEvery == 0, let sent = Self.sentAt(event, wire, as: T.self) {
                            lags.append(Double(DispatchTime.now().uptimeNanoseconds &- sent) / 1e6)
                        }
                    }
                    if seen >= want { break }
                }
                samples.delivered.add(seen, ordering: .relaxed)
                samples.lags.withLock { $0 += lags }
            }
        }
        // Creates start once every watch is attached (1,000 TLS handshakes take seconds here):
        // otherwise early creates queue behind the handshakes and early events are timed from
        // before their watch existed.
        let attachBy = ContinuousClock.now + .seconds(120)
        while watchers > 0, ContinuousClock.now < attachBy {
            if let attached = try? await writer.metric("cox_apiserver_watchers"), Int(attached) >= watchers { break }
            try await Task.sleep(for: .milliseconds(100))
        }

        // The counter is process-wide and this process may have run a server before (the other format).
        let encodesBefore = (try? await writer.metric("cox_watch_event_encodes_total")) ?? 0
        let start = DispatchTime.now().uptimeNanoseconds
        let cpuStart = ControllersBench.cpuSeconds(getpid())
        let latencies = try await timedOperations(clients: clients, total: total) { c, i in
            let writer = writers[c % writers.count]
            // A new pod, or (changes) the client's own with its annotation changed.
            var pod = isChange ? ownPod("\(prefix)\(c)", node: c) : ownPod("\(prefix)\(i)", node: i)
            let t0 = DispatchTime.now().uptimeNanoseconds
            pod.metadata.annotations["bench/sent"] = String(t0)
            if isChange { pod.metadata.annotations["bench/n"] = String(i) }
            switch request {
            case .create: _ = try await writer.create(shape(pod))
            case .dryRun: _ = try await writer.create(shape(pod), dryRun: true)
            case .livez: _ = try await writer.getText("/livez")
            case .put: _ = try await writer.update(pod)
            case .patch:
                _ = try await writer.patch(Pod.self, namespace: "default", name: pod.metadata.name,
                                           body: Array(#"{"metadata":{"annotations":{"bench/n":"\#(i)"}}}"#.utf8),
                                           contentType: "application/strategic-merge-patch+json")
            case .apply:
                pod.apiVersion = "v1"
                pod.kind = "Pod"
                _ = try await writer.patch(Pod.self, namespace: "default", name: pod.metadata.name, body: pod.jsonBytes(),
                                           contentType: "application/apply-patch+yaml", query: "fieldManager=bench&force=true")
            }
            return t0
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let cpu = ControllersBench.cpuSeconds(getpid()) - cpuStart
        // Without creates the watchers were only attached: nothing will reach them.
        if request != .create { for task in watchTasks { task.cancel() } }
        for task in watchTasks { _ = try? await task.value }
        // Transport cost: wire encodings per event, however many watchers (issue #8, fallacy 7).
        let encodes = ((try? await writer.metric("cox_watch_event_encodes_total")) ?? .nan) - encodesBefore
        for writer in writers { try? await writer.shutdown() }
        try? await reader.shutdown()
        let sorted = latencies.sorted()
        let lags = samples.lags.withLock { $0 }.sorted()
        return Result(rate: Double(total) / seconds, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99),
                      lagP99: percentile(lags, 0.99), delivered: samples.delivered.load(ordering: .relaxed), encodesPerEvent: encodes / Double(total),
                      cpuPerCreate: cpu / Double(total))
    }

    static let protobufBookmark: [UInt8] = [0x0a, 0x08] + Array("BOOKMARK".utf8)
    static let jsonBookmark = Array(#""type":"BOOKMARK""#.utf8)

    /// Whether a frame is a BOOKMARK (not counted as a delivered event), from its first bytes only.
    static func isBookmark(_ event: ArraySlice<UInt8>, _ wire: WireFormat) -> Bool {
        switch wire {
        case .protobuf: return event.starts(with: protobufBookmark)
        case .json: return event.prefix(32).firstRange(of: jsonBookmark) != nil
        }
    }

    /// The `bench/sent` annotation of an event's pod.
    static func sentAt<T: APIObject>(_ event: ArraySlice<UInt8>, _ wire: WireFormat, as type: T.Type) -> UInt64? {
        switch wire {
        case .json:
            guard let json = try? JSONParser.parse(bytes: event), case .string(let sent)? = json["object"]?["metadata"]?["annotations"]?["bench/sent"] else { return nil }
            return UInt64(sent)
        case .protobuf:
            guard let frame = try? WatchEvent(protobuf: Array(event)), let object = try? T(protobuf: Array(frame.object)) else { return nil }
            return UInt64(object.metadata.annotations["bench/sent"] ?? "")
        }
    }
}
