import Foundation
import Testing
import TestSupport
@testable import API

/// Init containers and sidecars in the API: Kubernetes' rules and messages, and the columns
/// `kubectl get pods` prints for them (the server's Table answers).
@Suite("Init containers in the API", .watchdog)
struct InitContainerTests {
    func pod(_ json: String) throws -> Pod {
        var pod = try Pod(jsonString: json)
        pod.applyDefaults()
        return pod
    }

    @Test func initContainersAreDefaultedAndCheckedLikeContainersWithTheirOwnRules() throws {
        let good = try pod(#"""
        {"metadata":{"name":"p"},"spec":{
          "initContainers":[{"name":"migrate","image":"db:1.2","command":["migrate"]},
                            {"name":"proxy","image":"proxy","restartPolicy":"Always","readinessProbe":{"tcpSocket":{"port":8080}},"ports":[{"containerPort":8080}]}],
          "containers":[{"name":"app","command":["app"]}]}}
        """#)
        #expect(good.validate().isEmpty, "\(good.validate())")
        #expect(good.spec.initContainers[0].imagePullPolicy == "IfNotPresent" && good.spec.initContainers[1].imagePullPolicy == "Always")
        #expect(good.spec.initContainers[1].ports[0].protocol == "TCP" && good.spec.initContainers[1].readinessProbe.periodSeconds == 10)
        #expect(good.spec.initContainers[1].isSidecar && !good.spec.initContainers[0].isSidecar)

        let bad = try pod(#"""
        {"metadata":{"name":"p"},"spec":{
          "initContainers":[{"name":"app","command":["a"]},
                            {"name":"once","command":["b"],"restartPolicy":"Never"},
                            {"name":"probed","command":["c"],"livenessProbe":{"exec":{"command":["true"]}},"startupProbe":{"exec":{"command":["true"]}}},
                            {"name":"mounts","command":["d"],"volumeMounts":[{"name":"nowhere","mountPath":"/x"}]}],
          "containers":[{"name":"app","command":["app"],"restartPolicy":"Always"}]}}
        """#)
        let messages = bad.validate().map(\.description)
        #expect(messages.contains(#"spec.containers[0].name: Duplicate value: "app""#), "\(messages)")
        #expect(messages.contains(#"spec.initContainers[1].restartPolicy: Unsupported value: "Never": supported values: "Always""#), "\(messages)")
        #expect(messages.contains("spec.initContainers[2].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always"), "\(messages)")
        #expect(messages.contains("spec.initContainers[2].startupProbe: Forbidden: may not be set for init containers without restartPolicy=Always"), "\(messages)")
        #expect(messages.contains(#"spec.initContainers[3].volumeMounts[0].name: Not found: "nowhere""#), "\(messages)")
        #expect(messages.contains("spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"), "\(messages)")
        #expect(messages.count == 6, "\(messages)")
    }

    /// Hooks: one action each, a sleep within the grace period, none on a plain init container.
    @Test func lifecycleHooksAreChecked() throws {
        let pod = try pod(#"""
        {"metadata":{"name":"p"},"spec":{"terminationGracePeriodSeconds":10,
          "initContainers":[{"name":"i","command":["a"],"lifecycle":{"preStop":{"sleep":{"seconds":1}}}},
                            {"name":"s","command":["a"],"restartPolicy":"Always","lifecycle":{"preStop":{"sleep":{"seconds":10}}}}],
          "containers":[{"name":"app","command":["app"],"lifecycle":{"postStart":{},"preStop":{"httpGet":{"port":0}}}},
                        {"name":"ok","command":["app"],"lifecycle":{"postStart":{"exec":{"command":["true"]}},"preStop":{"httpGet":{"port":"http"}}}}]}}
        """#)
        #expect(pod.spec.containers[1].lifecycle.preStop.httpGet.path == "/" && pod.spec.containers[1].lifecycle.preStop.httpGet.scheme == "HTTP")
        let messages = pod.validate().map(\.description)
        #expect(messages.contains("spec.initContainers[0].lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always"), "\(messages)")
        #expect(messages.contains("spec.containers[0].lifecycle.postStart: Required value: must specify a handler type"), "\(messages)")
        #expect(messages.contains(#"spec.containers[0].lifecycle.preStop.httpGet.port: Invalid value: "0": must be between 1 and 65535, inclusive"#), "\(messages)")
        #expect(messages.count == 3, "\(messages)")
    }

    @Test func theNodeMayReadWhatInitContainersReferTo() throws {
        let pod = try pod(#"""
        {"metadata":{"name":"p"},"spec":{
          "initContainers":[{"name":"i","command":["a"],"env":[{"name":"T","valueFrom":{"secretKeyRef":{"name":"token","key":"t"}}}],
                             "envFrom":[{"configMapRef":{"name":"settings"}}]}],
          "containers":[{"name":"app","command":["app"]}]}}
        """#)
        #expect(pod.referencedNames(secrets: true) == ["token"] && pod.referencedNames(secrets: false) == ["settings"])
    }

    /// kubectl's STATUS, READY and RESTARTS cells through a pod's life with init containers.
    @Test func columnsFollowKubectlsPrinter() throws {
        func status(_ json: String) throws -> (ready: Int, total: Int, status: String, restarts: Int32) {
            let pod = try Pod(jsonString: #"""
            {"metadata":{"name":"p"},"spec":{
              "initContainers":[{"name":"one","command":["a"]},{"name":"two","command":["b"]},{"name":"side","command":["c"],"restartPolicy":"Always"}],
              "containers":[{"name":"app","command":["app"]}]},
             "status":\#(json)}
            """#)
            return Table.podSummary(pod)
        }
        let waiting = #"{"waiting":{"reason":"PodInitializing"}}"#
        let completed = #"{"terminated":{"exitCode":0,"reason":"Completed"}}"#
        let running = #"{"running":{}}"#
        func ics(_ name: String, _ state: String, restarts: Int = 0, started: Bool = false, ready: Bool = false) -> String {
            #"{"name":"\#(name)","state":\#(state),"ready":\#(ready),"started":\#(started),"restartCount":\#(restarts),"image":"","imageID":""}"#
        }
        let appWaiting = #"[{"name":"app","state":{"waiting":{"reason":"PodInitializing"}},"ready":false,"restartCount":0,"image":"","imageID":""}]"#

        var cells = try status(#"{"phase":"Pending","initContainerStatuses":[\#(ics("one", running)),\#(ics("two", waiting)),\#(ics("side", waiting))],"containerStatuses":\#(appWaiting)}"#)
        #expect(cells.status == "Init:0/3" && cells.ready == 0 && cells.total == 2)

        cells = try status(#"{"phase":"Pending","initContainerStatuses":[\#(ics("one", completed)),\#(ics("two", #"{"terminated":{"exitCode":2,"reason":"Error"}}"#, restarts: 1)),\#(ics("side", waiting))],"containerStatuses":\#(appWaiting)}"#)
        #expect(cells.status == "Init:Error" && cells.restarts == 1)

        cells = try status(#"{"phase":"Pending","initContainerStatuses":[\#(ics("one", completed)),\#(ics("two", #"{"waiting":{"reason":"CrashLoopBackOff"}}"#, restarts: 3)),\#(ics("side", waiting))],"containerStatuses":\#(appWaiting)}"#)
        #expect(cells.status == "Init:CrashLoopBackOff" && cells.restarts == 3)

        cells = try status(#"{"phase":"Pending","initContainerStatuses":[\#(ics("one", completed)),\#(ics("two", #"{"terminated":{"exitCode":137,"signal":9}}"#))],"containerStatuses":\#(appWaiting)}"#)
        #expect(cells.status == "Init:Signal:9")

        // Initialized: the sidecar counts among the containers once started (and ready).
        let initialized = #""conditions":[{"type":"Initialized","status":"True"},{"type":"Ready","status":"True"}]"#
        cells = try status(#"{"phase":"Running",\#(initialized),"initContainerStatuses":[\#(ics("one", completed)),\#(ics("two", completed)),\#(ics("side", running, restarts: 2, started: true, ready: true))],"containerStatuses":[{"name":"app","state":{"running":{}},"ready":true,"restartCount":1,"image":"","imageID":""}]}"#)
        #expect(cells.status == "Running" && cells.ready == 2 && cells.total == 2 && cells.restarts == 3, "\(cells)")

        cells = try status(#"{"phase":"Pending",\#(initialized),"initContainerStatuses":[\#(ics("one", completed)),\#(ics("two", completed)),\#(ics("side", running, started: true))],"containerStatuses":[{"name":"app","state":{"waiting":{"reason":"ContainerCreating"}},"ready":false,"restartCount":0,"image":"","imageID":""}]}"#)
        #expect(cells.status == "ContainerCreating" && cells.ready == 0)
    }

    /// Two containers, one Completed and one running: kubectl says Running or NotReady, not Completed.
    @Test func aCompletedContainerBesideARunningOneIsNotCompleted() throws {
        func cells(ready: Bool) throws -> String {
            let pod = try Pod(jsonString: #"""
            {"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","command":["a"]},{"name":"b","command":["b"]}]},
             "status":{"phase":"Running","conditions":[{"type":"Ready","status":"\#(ready ? "True" : "False")"}],"containerStatuses":[
               {"name":"a","state":{"terminated":{"exitCode":0,"reason":"Completed"}},"ready":false,"restartCount":0,"image":"","imageID":""},
               {"name":"b","state":{"running":{}},"ready":true,"restartCount":0,"image":"","imageID":""}]}}
            """#)
            return Table.podSummary(pod).status
        }
        #expect(try cells(ready: false) == "NotReady")
        #expect(try cells(ready: true) == "Running")
    }
}
