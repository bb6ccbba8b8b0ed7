@testable import APIServer
import Testing

@Suite("The server-wide budget for request bodies")
struct BodyBudgetTests {
    /// A take that would pass the limit counts nothing: the total (the
    /// `cox_apiserver_request_body_bytes` gauge) never reads above the limit, even for the moment
    /// between a refused chunk's arrival and its refusal (a flood test read 16 KiB over it).
    @Test func aRefusedTakeIsNeverCounted() {
        let budget = BodyBudget(limit: 100)
        #expect(budget.take(60))
        #expect(!budget.take(50))
        #expect(budget.current == 60)
        #expect(budget.take(40))
        #expect(budget.current == 100)
        budget.give(100)
        #expect(budget.current == 0)
    }
}
