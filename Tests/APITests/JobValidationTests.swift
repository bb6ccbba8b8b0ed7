import Foundation
import Testing
import TestSupport
@testable import API

/// Jobs in the API: Kubernetes' defaults, the selector a create generates, and its rules and words.
@Suite("Jobs in the API", .watchdog)
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
}
