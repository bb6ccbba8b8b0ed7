import Foundation

/// A cron schedule, five fields (minute, hour, day of month, month, day of week; UTC): each `*`,
/// a number, a range `a-b`, a step `*/n` or `a-b/n`, or a list of those. As cron, when both day
/// fields are restricted, a day matching either runs.
public struct Schedule: Sendable, Equatable {
    public let minutes: Set<Int>
    public let hours: Set<Int>
    public let days: Set<Int>
    public let months: Set<Int>
    public let weekdays: Set<Int>
    let daysRestricted: Bool
    let weekdaysRestricted: Bool

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(_ text: String) throws {
        let fields = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard fields.count == 5 else { throw ParseError(description: "a schedule has 5 fields (minute hour day month weekday), not \(fields.count): \"\(text)\"") }
        minutes = try Self.field(fields[0], 0...59, "minute")
        hours = try Self.field(fields[1], 0...23, "hour")
        days = try Self.field(fields[2], 1...31, "day of month")
        months = try Self.field(fields[3], 1...12, "month")
        // 7 is Sunday too.
        weekdays = Set(try Self.field(fields[4], 0...7, "day of week").map { $0 % 7 })
        daysRestricted = fields[2] != "*"
        weekdaysRestricted = fields[4] != "*"
    }

    static func field(_ text: String, _ range: ClosedRange<Int>, _ name: String) throws -> Set<Int> {
        var out: Set<Int> = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = part.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count <= 2 else { throw ParseError(description: "bad \(name) \"\(part)\"") }
            let step = pieces.count == 2 ? Int(pieces[1]) : 1
            guard let step, step > 0 else { throw ParseError(description: "bad step in \(name) \"\(part)\"") }
            let span: ClosedRange<Int>
            if pieces[0] == "*" {
                span = range
            } else {
                let bounds = pieces[0].split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
                guard (1...2).contains(bounds.count), bounds.allSatisfy({ $0 != nil }), let low = bounds[0], let high = bounds.last ?? nil,
                      range.contains(low), range.contains(high), low <= high else {
                    throw ParseError(description: "bad \(name) \"\(part)\" (\(range.lowerBound)–\(range.upperBound))")
                }
                span = low...(pieces.count == 2 && bounds.count == 1 ? range.upperBound : high)
            }
            out.formUnion(stride(from: span.lowerBound, through: span.upperBound, by: step))
        }
        return out
    }

    static let utc: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    /// Whether a run is due at `date`'s minute.
    public func matches(_ date: Date) -> Bool {
        let parts = Self.utc.dateComponents([.minute, .hour, .day, .month, .weekday], from: date)
        guard let minute = parts.minute, let hour = parts.hour, let day = parts.day, let month = parts.month, let weekday = parts.weekday else { return false }
        guard minutes.contains(minute), hours.contains(hour), months.contains(month) else { return false }
        let dayOK = days.contains(day), weekdayOK = weekdays.contains(weekday - 1)
        if daysRestricted && weekdaysRestricted { return dayOK || weekdayOK }
        return dayOK && weekdayOK
    }

    /// The first minute after `date` a run is due (within five years; nil if none).
    public func next(after date: Date) -> Date? {
        var minute = (date.timeIntervalSince1970 / 60).rounded(.down) * 60 + 60
        let limit = minute + 5 * 366 * 86_400
        while minute < limit {
            let candidate = Date(timeIntervalSince1970: minute)
            if matches(candidate) { return candidate }
            minute += 60
        }
        return nil
    }
}
