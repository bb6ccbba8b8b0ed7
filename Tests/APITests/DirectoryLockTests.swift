@testable import API
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("One process per data directory")
struct DirectoryLockTests {
    /// A child spawned by another thread holds a copy of every descriptor until its exec; the lock
    /// must not outlive `release` because of it (a store closed and opened again in one process
    /// was refused now and then in a full test run).
    @Test func releaseFreesTheDirectoryWhileACopyOfTheDescriptorIsOpen() throws {
        let directory = NSTemporaryDirectory() + "cox-lock-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try DirectoryLock(directory: directory)
        #expect(throws: DirectoryLock.InUse.self) { _ = try DirectoryLock(directory: directory) }
        let copy = dup(first.descriptorForTesting)
        defer { close(copy) }
        first.release()
        let second = try DirectoryLock(directory: directory)
        second.release()
    }
}
