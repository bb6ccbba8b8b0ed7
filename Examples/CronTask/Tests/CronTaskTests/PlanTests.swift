import CronTask
import Foundation
import Testing

@Suite("CronTask schedule and plan")
struct PlanTests {
    let t0 = Date(timeIntervalSince1970: 1_765_000_000)  // 2025-12-06 05:46:40 UTC

    @Test func schedulesAsCronDoes() throws {
        let everyTwo = try Schedule("*/2 * * * *")
        #expect(everyTwo.next(after: t0) == Date(timeIntervalSince1970: 1_765_000_080))  // 05:48
        let nightly = try Schedule("0 3 * * *")
        #expect(nightly.next(after: t0) == Date(timeIntervalSince1970: 1_765_076_400))  // the next day 03:00
        #expect(throws: Schedule.ParseError.self) { _ = try Schedule("61 * * * *") }
        #expect(throws: Schedule.ParseError.self) { _ = try Schedule("* * *") }
    }

    @Test func runsTheLatestMissedTimeOnceAndKeepsTheHistoryLimit() throws {
        let spec = CronTaskSpec(schedule: "* * * * *", historyLimit: 1, suspend: nil,
                                template: .init(containers: [.init(name: "main", image: "busybox", command: ["true"], args: nil)]))
        let pods = [
            Plan.PodState(name: "old", created: t0, finished: true),
            Plan.PodState(name: "newer", created: t0 + 60, finished: true),
            Plan.PodState(name: "running", created: t0 + 120, finished: false),
        ]
        let plan = try Plan(spec: spec, lastScheduleTime: t0, created: t0, pods: pods, now: t0 + 190)
        #expect(plan.run == Date(timeIntervalSince1970: 1_765_000_140))  // 3 minutes after 05:46: the last one missed
        #expect(plan.delete == ["old"] && plan.active == ["running"])
        let suspended = try Plan(spec: CronTaskSpec(schedule: spec.schedule, historyLimit: 1, suspend: true, template: spec.template),
                                 lastScheduleTime: t0, created: t0, pods: [], now: t0 + 190)
        #expect(suspended.run == nil)
    }
}
