import Foundation
import Testing
import TestSupport
@testable import API

/// Jobs and DaemonSets in the API: Kubernetes' defaults, the selector a Job's create generates,
/// and their rules and words.
@Suite("Jobs and DaemonSets in the API", .watchdog)
struct JobValidationTests {
    func job(_ json: String) throws -> Job {
        var job = try Job(jsonString: json)
        job.applyDefaults()
        return job
    }

    @Test func defaultsAndTheGeneratedSelector() throws {
        var job = try job(#"{"metadata":{"name":"j"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","command":["x"]}]}}}}"#)
        #expect(job.spec.completions == 1 && job.spec.parallelism == 1 && job.spec.backoffLimit == 6 && job.spec.completionMode == "NonIndexed" && !job.spec.suspend)
        #expect(job.validate().isEmpty, "\(job.validate())")
        job.metadata.uid = "u-1"
        job.uidAssigned()
        #expect(job.spec.selector.matchLabels == ["batch.kubernetes.io/controller-uid": "u-1"])
        #expect(job.spec.template.metadata.labels == ["batch.kubernetes.io/controller-uid": "u-1", "controller-uid": "u-1",
                                                      "batch.kubernetes.io/job-name": "j", "job-name": "j"])
        #expect(job.validate().isEmpty, "a generated selector is valid on later writes: \(job.validate())")

        // Parallelism alone is a work queue: no completions.
        let queue = try self.job(#"{"metadata":{"name":"q"},"spec":{"parallelism":3,"template":{"spec":{"restartPolicy":"OnFailure","containers":[{"name":"c","command":["x"]}]}}}}"#)
        #expect(!queue.spec.hasCompletions && queue.spec.parallelism == 3)
        #expect(Table.jobCompletions(queue) == "0/1 of 3")
    }

    @Test func badJobsAreRefusedInKubernetesWords() throws {
        let bad = try job(#"""
        {"metadata":{"name":"j"},"spec":{"completions":-1,"backoffLimit":-2,"activeDeadlineSeconds":0,"completionMode":"Indexed",
          "selector":{"matchLabels":{"app":"x"}},
          "template":{"metadata":{"labels":{"app":"x"}},"spec":{"containers":[{"name":"c","command":["x"]}]}}}}
        """#)
        let messages = bad.validate().map(\.description)
        #expect(messages.contains(#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#), "\(messages)")
        #expect(messages.contains(#"spec.selector: Invalid value: "app=x": `selector` not auto-generated"#), "\(messages)")
        #expect(messages.contains(#"spec.completions: Invalid value: -1: must be greater than or equal to 0"#), "\(messages)")
        #expect(messages.contains(#"spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0"#), "\(messages)")
        #expect(messages.contains(#"spec.activeDeadlineSeconds: Invalid value: 0: must be greater than 0"#), "\(messages)")
        #expect(messages.contains(#"spec.completionMode: Unsupported value: "Indexed": supported values: "NonIndexed""#), "\(messages)")
        #expect(messages.count == 6, "\(messages)")

        // manualSelector: the user's selector, which must select the template.
        let manual = try job(#"""
        {"metadata":{"name":"j"},"spec":{"manualSelector":true,"selector":{"matchLabels":{"app":"x"}},
          "template":{"metadata":{"labels":{"app":"y"}},"spec":{"restartPolicy":"Never","containers":[{"name":"c","command":["x"]}]}}}}
        """#)
        #expect(manual.validate().map(\.description).contains { $0.contains("`selector` does not match template `labels`") })

        // After the create: the template, selector and completions cannot change.
        var stored = try job(#"{"metadata":{"name":"j"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","command":["x"]}]}}}}"#)
        stored.metadata.uid = "u"
        stored.uidAssigned()
        var changed = stored
        changed.spec.template.spec.containers[0].command = ["y"]
        changed.spec.completions = 2
        changed.spec.parallelism = 5
        let immutable = changed.immutabilityErrors(updating: stored).map(\.description)
        #expect(immutable == [#"spec.template: Invalid value: "": field is immutable"#, "spec.completions: Invalid value: 2: field is immutable"], "\(immutable)")
    }

    @Test func daemonSetsAreDefaultedAndCheckedInKubernetesWords() throws {
        var good = try DaemonSet(jsonString: #"{"metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","command":["x"]}]}}}}"#)
        good.applyDefaults()
        #expect(good.spec.updateStrategy.type == "RollingUpdate" && good.spec.updateStrategy.rollingUpdate.maxUnavailable.displayString == "1")
        #expect(good.spec.revisionHistoryLimit == 10 && good.spec.template.spec.restartPolicy == "Always")
        #expect(good.validate().isEmpty, "\(good.validate())")

        var bad = try DaemonSet(jsonString: #"""
        {"metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},
          "updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}},
          "template":{"metadata":{"labels":{"a":"c"}},"spec":{"restartPolicy":"Never","containers":[{"name":"c","command":["x"]}],
            "affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[
              {"matchFields":[{"key":"metadata.labels","operator":"Exists"},{"key":"metadata.name","operator":"In","values":["a","b"]}]}]}}}}}}}
        """#)
        bad.applyDefaults()
        let messages = bad.validate().map(\.description)
        #expect(messages.contains { $0.hasPrefix("spec.template.metadata.labels: Invalid value") && $0.hasSuffix("`selector` does not match template `labels`") }, "\(messages)")
        #expect(messages.contains(#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#), "\(messages)")
        #expect(messages.contains { $0.hasPrefix("spec.updateStrategy.rollingUpdate.maxSurge: Invalid value") }, "\(messages)")
        let terms = "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
        #expect(messages.contains(#"\#(terms).matchFields[0].operator: Unsupported value: "Exists": supported values: "In", "NotIn""#), "\(messages)")
        #expect(messages.contains(#"\#(terms).matchFields[0].key: Unsupported value: "metadata.labels": supported values: "metadata.name""#), "\(messages)")
        #expect(messages.contains("\(terms).matchFields[1].values: Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector"), "\(messages)")
    }
}
