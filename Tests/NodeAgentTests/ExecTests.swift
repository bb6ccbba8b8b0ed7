import API
import Client
import Foundation
import Testing
import TestSupport

/// exec through the process runtime, end to end: `cox server` and `cox agent` processes, the
/// real kubectl (oldest and newest installed) and `cox exec`. The API server proxies the upgraded
/// connection to the agent, the agent to the process runtime's streaming server (WebSocket,
/// v5.channel.k8s.io; SPDY/3.1 from kubectl 1.27); attach, port-forward and `kubectl run -i` too. (containerd:
/// `RuntimeConformanceTests.coxUpOnContainerd`.)
@Suite("exec, cp and their refusals on the process runtime", .watchdog, .serialized)
struct ExecTests {
    @Test func execCpAndRefusalsThroughKubectlAndCox() async throws {
        let kubectls = Tools.kubectlRange()
        guard let (_, newest) = kubectls.last, let (oldestVersion, oldest) = kubectls.first else { return }
        try await AgentCluster.run { cluster in
            _ = try await cluster.client.create(cluster.pod("shell", "echo started; exec sleep 300"))
            try await eventually("shell is Running") { try await cluster.get("shell").status.phase == "Running" }
            func kubectl(_ path: String, _ arguments: [String], input: String? = nil) async throws -> Tools.Output {
                try await Tools.runDetached(path, ["--kubeconfig", cluster.kubeconfig] + arguments, input: input, timeout: 60)
            }

            // Output on both streams, the exit code, stdin to its end.
            let failed = try await kubectl(newest, ["exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 7"])
            #expect(failed.status == 7 && failed.output.contains("out\n") && failed.output.contains("err\n")
                    && failed.output.contains("command terminated with exit code 7"), "\(failed.status): \(failed.output)")
            let piped = try await kubectl(newest, ["exec", "-i", "shell", "--", "sh", "-c", "cat; echo end"], input: "line one\nline two\n")
            #expect(piped.status == 0 && piped.output == "line one\nline two\nend\n", "\(piped.output)")

            // cp both ways: tar over exec with stdin (the process runtime's commands run on the host).
            let source = cluster.dir.path + "/payload.bin"
            var payload = Data(count: 300_000)
            for index in payload.indices { payload[index] = UInt8.random(in: 0...255) }
            try payload.write(to: URL(fileURLWithPath: source))
            let copied = try await kubectl(newest, ["cp", source, "default/shell:\(cluster.dir.path)/in-pod.bin"])
            #expect(copied.status == 0, "\(copied.output)")
            #expect(FileManager.default.contents(atPath: cluster.dir.path + "/in-pod.bin") == payload, "cp into the pod carried the bytes")
            let back = try await kubectl(newest, ["cp", "default/shell:\(cluster.dir.path)/in-pod.bin", cluster.dir.path + "/back.bin"])
            #expect(back.status == 0 && FileManager.default.contents(atPath: cluster.dir.path + "/back.bin") == payload, "\(back.output)")

            // SPDY/3.1 (kubectl ≤ 1.29): the same output, exit code, stdin and cp.
            if oldestVersion < "1.30" {
                let old = try await kubectl(oldest, ["exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 7"])
                #expect(old.status == 7 && old.output.contains("out\n") && old.output.contains("err\n")
                        && old.output.contains("command terminated with exit code 7"), "kubectl \(oldestVersion) exec over SPDY: \(old.status) \(old.output)")
                let oldPiped = try await kubectl(oldest, ["exec", "-i", "shell", "--", "sh", "-c", "cat; echo end"], input: "line one\nline two\n")
                #expect(oldPiped.status == 0 && oldPiped.output == "line one\nline two\nend\n", "kubectl \(oldestVersion) exec -i over SPDY: \(oldPiped.output)")
                let oldCopy = try await kubectl(oldest, ["cp", source, "default/shell:\(cluster.dir.path)/in-pod-old.bin"])
                #expect(oldCopy.status == 0 && FileManager.default.contents(atPath: cluster.dir.path + "/in-pod-old.bin") == payload,
                        "kubectl \(oldestVersion) cp over SPDY: \(oldCopy.output)")
                // A terminal over SPDY: the resize stream's first size is the command's.
                let script = "stty cols 90 rows 20; \(oldest) --kubeconfig \(cluster.kubeconfig) exec -it shell -- sh -c 'tty; stty size'"
                let terminal = try await Tools.runDetached("/usr/bin/script", ["-qec", script, "/dev/null"], timeout: 60)
                #expect(terminal.status == 0 && terminal.output.contains("/dev/pts/") && terminal.output.contains("20 90"),
                        "kubectl \(oldestVersion) exec -it over SPDY: \(terminal.output)")
            }

            // attach: the container's output from now on and its stdin; with stdinOnce the end of
            // the first attach's input is the container's.
            var reader = cluster.pod("reader", "echo waiting; cat; echo input-ended", restartPolicy: "Never")
            reader.spec.containers[0].stdin = true
            reader.spec.containers[0].stdinOnce = true
            _ = try await cluster.client.create(reader)
            try await eventually("reader is Running") { try await cluster.get("reader").status.phase == "Running" }
            let attached = try await kubectl(newest, ["attach", "-i", "reader"], input: "through attach\n")
            #expect(attached.status == 0 && attached.output.hasSuffix("through attach\ninput-ended\n") && !attached.output.contains("waiting"),
                    "kubectl attach -i: \(attached.status) \(attached.output)")
            try await eventually("reader ends once its input did") { try await cluster.get("reader").status.phase == "Succeeded" }
            if oldestVersion < "1.30" {
                var oldReader = cluster.pod("old-reader", "echo waiting; cat; echo old-input-ended", restartPolicy: "Never")
                oldReader.spec.containers[0].stdin = true
                oldReader.spec.containers[0].stdinOnce = true
                _ = try await cluster.client.create(oldReader)
                try await eventually("old-reader is Running") { try await cluster.get("old-reader").status.phase == "Running" }
                let oldAttached = try await kubectl(oldest, ["attach", "-i", "old-reader"], input: "through spdy\n")
                #expect(oldAttached.status == 0 && oldAttached.output.hasSuffix("through spdy\nold-input-ended\n"),
                        "kubectl \(oldestVersion) attach -i over SPDY: \(oldAttached.status) \(oldAttached.output)")
            }
            // kubectl run -i --rm: create, attach with stdin, wait, delete.
            let run = try await kubectl(newest, ["run", "once", "-i", "--rm", "--restart=Never", "--image=busybox", #"--overrides={"spec":{"nodeName":"n1"}}"#,
                                                 "--command", "--", "sh", "-c", "cat; echo run-done", cluster.marker], input: "via run\n")
            #expect(run.status == 0 && run.output.contains("via run\nrun-done\n") && run.output.contains(#"pod "once" deleted"#), "kubectl run -i --rm: \(run.status) \(run.output)")
            // A terminal is refused, saying why (it would not outlive the runtime).
            var withTerminal = cluster.pod("terminal", "sleep 60")
            withTerminal.spec.containers[0].stdin = true
            withTerminal.spec.containers[0].tty = true
            _ = try await cluster.client.create(withTerminal)
            try await eventually("a tty container is refused, named") {
                try await cluster.get("terminal").status.containerStatuses.first?.state.waiting.message.contains("the process runtime cannot give container \"main\" a terminal") == true
            }
            // A securityContext it cannot give is refused too, naming what; runAsNonRoot with
            // nothing but root to run as is the kubelet's CreateContainerConfigError.
            var hardened = cluster.pod("hardened", "sleep 60")
            hardened.spec.containers[0].securityContext.runAsUser = 1000
            hardened.spec.containers[0].securityContext.readOnlyRootFilesystem = true
            _ = try await cluster.client.create(hardened)
            var nonRoot = cluster.pod("non-root", "sleep 60")
            nonRoot.spec.securityContext.runAsNonRoot = true
            _ = try await cluster.client.create(nonRoot)
            try await eventually("securityContexts the process runtime cannot give are refused, named") {
                let refused = try await cluster.get("hardened").status.containerStatuses.first?.state.waiting
                let rooted = try await cluster.get("non-root").status.containerStatuses.first?.state.waiting
                return refused?.reason == "CreateContainerError"
                    && refused?.message.contains("the process runtime cannot give container \"main\" its securityContext: runAsUser 1000, readOnlyRootFilesystem") == true
                    && rooted?.reason == "CreateContainerConfigError"
                    && rooted?.message.hasPrefix("container has runAsNonRoot and image will run as root (pod: \"non-root_default(") == true
            }

            // RBAC: create on pods/exec, checked before anything reaches the node (jane may read
            // pods, as kubectl exec does first, but not run commands in them).
            let bound = try await kubectl(newest, ["create", "rolebinding", "jane-views", "--clusterrole=view", "--user=jane"])
            #expect(bound.status == 0, "\(bound.output)")
            let forbidden = try await kubectl(newest, ["--as", "jane", "exec", "shell", "--", "true"])
            #expect(forbidden.status != 0 && forbidden.output.contains(#"User "jane" cannot create resource "pods/exec""#), "\(forbidden.output)")

            // cox exec: exit codes, stdin, a terminal of its own.
            func cox(_ arguments: [String], input: String? = nil) async throws -> Tools.Output {
                let split = arguments.firstIndex(of: "--") ?? arguments.endIndex
                return try await Tools.runDetached(cluster.binary, Array(arguments[..<split]) + ["--kubeconfig", cluster.kubeconfig] + Array(arguments[split...]),
                                                   input: input)
            }
            let coxFailed = try await cox(["exec", "shell", "--", "sh", "-c", "echo from cox; exit 5"])
            #expect(coxFailed.status == 5 && coxFailed.output == "from cox\n", "\(coxFailed.status): \(coxFailed.output)")
            let coxPiped = try await cox(["exec", "-i", "shell", "--", "wc", "-l"], input: "a\nb\nc\n")
            #expect(coxPiped.status == 0 && coxPiped.output.trimmingCharacters(in: .whitespacesAndNewlines) == "3", "\(coxPiped.output)")
            // A terminal, as kubectl gives one: -t needs -i and a terminal to read from (`script`
            // gives it one, 100×30); the command sees that size from its start.
            let script = "stty cols 100 rows 30; \(cluster.binary) exec -it shell --kubeconfig \(cluster.kubeconfig) -- sh -c 'tty; stty size'"
            let terminal = try await Tools.runDetached("/usr/bin/script", ["-qec", script, "/dev/null"], timeout: 60)
            #expect(terminal.status == 0 && terminal.output.contains("/dev/pts/") && terminal.output.contains("30 100"), "cox exec -it: \(terminal.output)")
            let noInput = try await cox(["exec", "-t", "shell", "--", "sh", "-c", "tty || true"])
            #expect(noInput.status == 0 && noInput.output == "not a tty\n", "-t without -i: no terminal, as kubectl: \(noInput.output)")
            let piped2 = try await cox(["exec", "-it", "shell", "--", "sh", "-c", "tty || true"], input: "")
            #expect(piped2.output.contains("Unable to use a TTY - input is not a terminal or the right kind of file") && piped2.output.contains("not a tty"),
                    "-it from a pipe: kubectl's warning, no terminal: \(piped2.output)")
            // cox attach -i: as kubectl attach -i, the input's end is the container's (stdinOnce).
            var coxReader = cluster.pod("cox-reader", "echo waiting; cat; echo cox-input-ended", restartPolicy: "Never")
            coxReader.spec.containers[0].stdin = true
            coxReader.spec.containers[0].stdinOnce = true
            _ = try await cluster.client.create(coxReader)
            try await eventually("cox-reader is Running") { try await cluster.get("cox-reader").status.phase == "Running" }
            let coxAttached = try await cox(["attach", "-i", "cox-reader"], input: "through cox attach\n")
            #expect(coxAttached.status == 0 && coxAttached.output.hasSuffix("through cox attach\ncox-input-ended\n") && !coxAttached.output.contains("waiting"),
                    "cox attach -i: \(coxAttached.status) \(coxAttached.output)")
            try await eventually("cox-reader ends once its input did") { try await cluster.get("cox-reader").status.phase == "Succeeded" }
            // cox cp both ways (tar through exec), onto a new name and into an existing directory.
            let coxIn = try await cox(["cp", source, "default/shell:\(cluster.dir.path)/cox-in.bin"])
            #expect(coxIn.status == 0 && FileManager.default.contents(atPath: cluster.dir.path + "/cox-in.bin") == payload, "cox cp in: \(coxIn.output)")
            try FileManager.default.createDirectory(atPath: cluster.dir.path + "/into", withIntermediateDirectories: true)
            let coxInto = try await cox(["cp", source, "shell:\(cluster.dir.path)/into"])
            #expect(coxInto.status == 0 && FileManager.default.contents(atPath: cluster.dir.path + "/into/payload.bin") == payload, "cox cp into a directory: \(coxInto.output)")
            let coxOut = try await cox(["cp", "shell:\(cluster.dir.path)/into", cluster.dir.path + "/out-dir"])
            #expect(coxOut.status == 0 && FileManager.default.contents(atPath: cluster.dir.path + "/out-dir/payload.bin") == payload, "cox cp a directory out: \(coxOut.output)")
            let neither = try await cox(["cp", source, cluster.dir.path + "/x"])
            #expect(neither.status != 0 && neither.output.contains("one of src or dest must be a remote file specification"), "\(neither.output)")
            // port-forward on the process runtime (over WebSocket, v4.channel.k8s.io): cox
            // port-forward, and the official Python client's portforward. The pod's server is
            // reached on the node (its network is the node's).
            let webPort = try TestHost.freePort()
            try FileManager.default.createDirectory(atPath: cluster.dir.path + "/site", withIntermediateDirectories: true)
            try Data("served by web\n".utf8).write(to: URL(fileURLWithPath: cluster.dir.path + "/site/index.html"))
            _ = try await cluster.client.create(cluster.pod("web", "exec python3 -m http.server \(webPort) --bind 127.0.0.1 --directory \(cluster.dir.path)/site"))
            try await eventually("web is Running") { try await cluster.get("web").status.phase == "Running" }
            try await eventually("web's server listens") {
                (try? await Tools.runDetached("/usr/bin/curl", ["-s", "-m", "5", "http://127.0.0.1:\(webPort)/"]))?.output == "served by web\n"
            }
            let forwardLog = cluster.dir.path + "/port-forward.log"
            let forward = try Child(cluster.binary, ["port-forward", "web", ":\(webPort)", "--kubeconfig", cluster.kubeconfig],
                                    stdout: .file(forwardLog), stderr: .stdout)
            var localPort = 0
            try await eventually("cox port-forward listens") {
                let log = (try? String(contentsOfFile: forwardLog, encoding: .utf8)) ?? ""
                if !forward.isRunning {
                    Issue.record("cox port-forward ended early: \(log)")
                    return true
                }
                guard let line = log.split(separator: "\n").first(where: { $0.hasPrefix("Forwarding from 127.0.0.1:") }) else { return false }
                localPort = Int(line.dropFirst("Forwarding from 127.0.0.1:".count).prefix { $0.isNumber }) ?? 0
                return localPort > 0
            }
            for attempt in 1...2 {
                let page = try await Tools.runDetached("/usr/bin/curl", ["-s", "-m", "10", "http://127.0.0.1:\(localPort)/"])
                #expect(page.output == "served by web\n", "cox port-forward, connection \(attempt): \(page.output)")
            }
            forward.signal(SIGINT)
            await forward.wait(killAfter: 10)
            let forwarded = (try? String(contentsOfFile: forwardLog, encoding: .utf8)) ?? ""
            #expect(forward.terminationStatus == 0 && forwarded.contains("Handling connection for \(localPort)"), "cox port-forward: \(forwarded)")
            // kubectl port-forward speaks SPDY (1.31+ first offers it tunnelled in WebSocket, then
            // falls back): oldest and newest, two connections each.
            for (version, path) in [kubectls.first!, kubectls.last!] {
                let kubectlPort = try TestHost.freePort()
                let log = cluster.dir.path + "/kubectl-port-forward-\(version).log"
                let child = try Child(path, ["--kubeconfig", cluster.kubeconfig, "port-forward", "pod/web", "\(kubectlPort):\(webPort)"],
                                      stdout: .file(log), stderr: .stdout)
                try await eventually("kubectl \(version) port-forward listens") {
                    ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("Forwarding from 127.0.0.1:\(kubectlPort)") || !child.isRunning
                }
                for attempt in 1...2 {
                    let page = try await Tools.runDetached("/usr/bin/curl", ["-s", "-m", "10", "http://127.0.0.1:\(kubectlPort)/"])
                    #expect(page.output == "served by web\n",
                            "kubectl \(version) port-forward, connection \(attempt): \(page.output) \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
                }
                child.signal(SIGTERM)
                await child.wait(killAfter: 5)
            }
            if let (newestVersion, _) = kubectls.last, newestVersion >= "1.31" {
                // kubectl ≥ 1.31 tunnels the SPDY of port-forward in WebSocket: served so, not refused into its fallback.
                let logs = (try FileManager.default.contentsOfDirectory(atPath: cluster.dir.path)).filter { $0.hasSuffix(".log") }
                    .compactMap { try? String(contentsOfFile: cluster.dir.path + "/" + $0, encoding: .utf8) }.joined()
                #expect(logs.contains("serving a port-forward as SPDY tunnelled in WebSocket"), "kubectl \(newestVersion)'s port-forward took the WebSocket tunnel")
            }
            if Tools.pythonKubernetesClient() {
                let script = """
                    import sys
                    from kubernetes import client, config
                    from kubernetes.stream import portforward
                    config.load_kube_config(sys.argv[1])
                    port = int(sys.argv[2])
                    forward = portforward(client.CoreV1Api().connect_get_namespaced_pod_portforward, "web", "default", ports=str(port))
                    sock = forward.socket(port)
                    sock.setblocking(True)
                    sock.sendall(b"GET / HTTP/1.0\\r\\nHost: web\\r\\n\\r\\n")
                    data = b""
                    while True:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    sock.close()
                    print(data.decode().split("\\r\\n\\r\\n", 1)[1], end="")
                    """
                let python = try await Tools.runDetached(try #require(Tools.find("python3")), ["-c", script, cluster.kubeconfig, "\(webPort)"], timeout: 60)
                #expect(python.status == 0 && python.output == "served by web\n", "the Python client's portforward: \(python.output)")
            }

            let missing = try await cox(["exec", "shell", "-c", "nope", "--", "true"])
            #expect(missing.status != 0 && missing.output.contains("container nope is not valid for pod shell"), "\(missing.output)")

            // On record: who ran a command where.
            let audit = try String(contentsOfFile: cluster.dir.path + "/audit.log", encoding: .utf8)
            #expect(audit.split(separator: "\n").contains { $0.contains("\"pods/exec\"") && $0.contains("\"shell\"") && $0.contains("\"code\":101") },
                    "the audit log has the exec")
            #expect(audit.split(separator: "\n").contains { $0.contains("\"pods/exec\"") && $0.contains("jane") && $0.contains("\"code\":403") })
        }
    }
}
