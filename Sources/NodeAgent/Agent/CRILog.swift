import Foundation

/// The CRI container log format (what containerd, CRI-O and `cox runtime process` write, and the
/// kubelet reads): one record per line, `TIMESTAMP STREAM TAG CONTENT`, where TIMESTAMP is RFC 3339
/// with nanoseconds, STREAM is stdout or stderr, and TAG is F for the end of a line or P for a
/// part of a longer one that continues in the next record.
public enum CRILog {
    public struct Line: Equatable, Sendable {
        public var time: Date
        /// The timestamp as written (what `--timestamps` prints).
        public var stamp: Substring
        public var stream: Substring
        /// The text, with its newline when the line is complete.
        public var text: Data
    }

    /// Parses the records in `data` into whole lines (partial records joined). A malformed record
    /// is passed through as stdout text, so nothing written is hidden.
    public static func lines(_ data: Data) -> [Line] {
        var result: [Line] = []
        var pending: Line?
        for record in data.split(separator: 0x0A, omittingEmptySubsequences: true) {
            let fields = record.split(separator: 0x20, maxSplits: 3, omittingEmptySubsequences: false)
            guard fields.count >= 3, let stamp = String(data: Data(fields[0]), encoding: .utf8), let time = parseTime(stamp) else {
                result.append(Line(time: Date(timeIntervalSince1970: 0), stamp: "", stream: "stdout", text: Data(record) + [0x0A]))
                continue
            }
            let stream = String(decoding: fields[1], as: UTF8.self)
            let partial = fields[2].elementsEqual("P".utf8)
            let text = fields.count > 3 ? Data(fields[3]) : Data()
            if var line = pending {
                line.text.append(text)
                pending = line
            } else {
                pending = Line(time: time, stamp: Substring(stamp), stream: Substring(stream), text: text)
            }
            if !partial, var line = pending {
                line.text.append(0x0A)
                result.append(line)
                pending = nil
            }
        }
        if let pending { result.append(pending) }
        return result
    }

    /// What `logs` prints: the lines' text, after `since`, the last `tail`, with timestamps if asked.
    public static func render(_ lines: [Line], timestamps: Bool, since: Date? = nil, tail: Int? = nil) -> Data {
        var selected = since.map { since in lines.filter { $0.time >= since } } ?? lines
        if let tail, tail >= 0, selected.count > tail { selected = Array(selected.suffix(tail)) }
        var out = Data()
        for line in selected {
            if timestamps {
                out.append(contentsOf: Array(line.stamp.utf8))
                out.append(0x20)
            }
            out.append(line.text)
        }
        return out
    }

    /// RFC 3339 with up to nine fractional digits and Z or an offset.
    public static func parseTime(_ text: String) -> Date? {
        let scalars = Array(text.utf8)
        guard scalars.count >= 20 else { return nil }
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= scalars.count else { return nil }
            var value = 0
            for byte in scalars[from..<from + count] {
                guard byte >= 48 && byte <= 57 else { return nil }
                value = value * 10 + Int(byte - 48)
            }
            return value
        }
        guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
              let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2) else { return nil }
        var index = 19
        var fraction = 0.0
        if index < scalars.count, scalars[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            while index < scalars.count, scalars[index] >= 48, scalars[index] <= 57 {
                fraction += Double(scalars[index] - 48) * scale
                scale /= 10
                index += 1
            }
        }
        var offset = 0
        if index < scalars.count, scalars[index] == UInt8(ascii: "+") || scalars[index] == UInt8(ascii: "-") {
            guard let hours = number(index + 1, 2), let minutes = number(index + 4, 2) else { return nil }
            offset = (hours * 3600 + minutes * 60) * (scalars[index] == UInt8(ascii: "-") ? -1 : 1)
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let seconds = timegm(&parts)
        return Date(timeIntervalSince1970: Double(seconds - offset) + fraction)
    }
}
