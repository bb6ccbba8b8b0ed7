import Foundation

/// A fresh directory under the system temp dir, removed when this value is released.
public final class TemporaryDirectory: Sendable {
    public let path: String

    public init(_ prefix: String = "cox-test") {
        let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("\(prefix)-\(getpid())-\(UUID().uuidString.prefix(8))")
        // Creating a uniquely named directory in the temp dir only fails if the disk is gone.
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        self.path = path
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}
