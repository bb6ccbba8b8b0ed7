import API
import Foundation
import Testing
import TestSupport

/// `Examples/CronTask`, a controller plugin in a package of its own that depends on this one by
/// path: its tests pass, and its controller runs CronTasks on a cluster — a due run becomes a Pod
/// it owns that runs to completion, the status says when, and the Pods go with the task.
@Suite("The CronTask example plugin", .watchdog, .serialized)
struct ExamplePluginTests {
    @Test func theCronTaskPluginBuildsPassesItsTestsAndRunsTasks() async throws {
        guard let swift = Tools.find("swift"), let (_, kubectl) = Tools.kubectlRange().last else {
            Issue.record("swift and kubectl are needed to build and drive the example plugin")
            return
        }
        let package = repositoryRoot + "/Examples/CronTask"
        let scratch = repositoryRoot + "/.build-examples"
        // Its own package and build tree: the first build compiles the dependency graph again
        // (minutes; CI builds it before the tests, so SwiftPM does not load the machine while
        // other tests run: under that load cox up's end-to-end test failed three CI runs in a row).
        let binary = scratch + "/debug/crontask-controller"
        let tests = scratch + "/debug/CronTaskPackageTests.xctest"
        if !FileManager.default.isExecutableFile(atPath: binary) || !FileManager.default.isExecutableFile(atPath: tests) {
            let built = try await Tools.runDetached(swift, ["build", "--package-path", package, "--scratch-path", scratch, "--build-tests"], timeout: 1800)
            #expect(built.status == 0, "swift build of the example: \(built.output.suffix(3000))")
        }
        let tested = try await Tools.runDetached(tests, ["--testing-library", "swift-testing"], timeout: 300)
        #expect(tested.status == 0 && tested.output.contains("passed"), "the example's tests: \(tested.output.suffix(3000))")
        guard tested.status == 0, FileManager.default.isExecutableFile(atPath: binary) else { return }

        try await AgentCluster.run { cluster in
            func run(_ arguments: [String], input: String? = nil) async throws -> Tools.Output {
                try await Tools.runDetached(kubectl, ["--kubeconfig", cluster.kubeconfig] + arguments, input: input, timeout: 60)
            }
            let manifest = try String(contentsOfFile: package + "/crontask.yaml", encoding: .utf8)
            let definition = manifest.components(separatedBy: "\n---\n")[0]
            let applied = try await run(["apply", "-f", "-"], input: definition)
            #expect(applied.status == 0, "\(applied.output)")
            let log = cluster.dir.path + "/crontask-controller.log"
            let controller = try Child(binary, ["--kubeconfig", cluster.kubeconfig], stdout: .file(log), stderr: .stdout)
            defer { controller.signal(SIGKILL) }
            func controllerLog() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

            let task = """
                apiVersion: examples.cox.io/v1
                kind: CronTask
                metadata: {name: tick}
                spec:
                  schedule: "* * * * *"
                  historyLimit: 1
                  template:
                    containers:
                    - {name: main, image: busybox, command: [sh, -c, "echo tick-ran \(cluster.marker)"]}
                """
            let created = try await run(["apply", "-f", "-"], input: task)
            #expect(created.status == 0, "\(created.output)")
            // Its last run three minutes ago: the next is due at once (not at the next minute).
            let earlier = ISO8601DateFormatter().string(from: Date().addingTimeInterval(-180))
            let backdated = try await run(["patch", "crontask", "tick", "--subresource=status", "--type=merge", "-p", #"{"status":{"lastScheduleTime":"\#(earlier)"}}"#])
            #expect(backdated.status == 0, "\(backdated.output)")
            var podName = ""
            try await eventually("the controller started the due run as a Pod that ran to completion") {
                if !controller.isRunning { Issue.record("the controller ended: \(controllerLog())"); return true }
                let pods = try await run(["get", "pods", "-l", "crontask=tick", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.metadata.ownerReferences[0].kind}{\"\\n\"}{end}"]).output
                guard let line = pods.split(separator: "\n").first(where: { $0.hasSuffix("Succeeded CronTask") }) else { return false }
                podName = String(line.split(separator: " ")[0])
                return true
            }
            let output = try await run(["logs", podName])
            #expect(output.output.contains("tick-ran"), "the run's output: \(output.output)")
            let status = try await run(["get", "crontask", "tick", "-o", "jsonpath={.status.lastScheduleTime}"])
            #expect(status.output > earlier, "the status says when it last ran: \(status.output) (was \(earlier))")
            let table = try await run(["get", "crontasks"])
            #expect(table.output.contains("SCHEDULE") && table.output.contains("* * * * *"), "\(table.output)")
            // The task goes: so do its Pods (they are owned by it).
            let deleted = try await run(["delete", "crontask", "tick"])
            #expect(deleted.status == 0, "\(deleted.output)")
            try await eventually("the deleted task's Pods are collected") {
                try await run(["get", "pods", "-l", "crontask=tick", "-o", "name"]).output.isEmpty
            }
            #expect(controller.isRunning, "the controller kept running: \(controllerLog())")
        }
    }
}
