import API
import Foundation
import Testing
import TestSupport
@testable import Store

@Suite("Store: crash safety", .watchdog)
struct CrashTests {
    /// A child process writes as fast as it can and prints each acknowledged revision; it is
    /// killed with SIGKILL mid-stream. Every acknowledged write must be there after reopening, and
    /// the revision log must have no gap.
    @Test func acknowledgedWritesSurviveSIGKILL() async throws {
        let dir = TemporaryDirectory()
        let process = try Child(try coxBinary(), ["debug", "store-writer", "--dir", dir.path, "--writers", "16"], stdout: .pipe)
        // Whatever happens below, the child dies within a minute, which also ends any blocked read.
        let pid = process.pid
        let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
        defer { watchdog.cancel() }

        let handle = try #require(process.output)
        var received = try await Tools.detached {
            var received = Data()
            let deadline = Date().addingTimeInterval(60)
            // Wait for a good number of acknowledgements, then kill mid-stream.
            while received.split(separator: UInt8(ascii: "\n")).count < 500 && Date() < deadline {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                received.append(chunk)
            }
            return received
        }
        kill(process.pid, SIGKILL)
        await process.wait()
        received.append(try await Tools.detached { handle.readDataToEndOfFile() })
        #expect(process.terminatedBySignal)

        // Only whole lines are acknowledgements.
        var text = String(decoding: received, as: UTF8.self)
        if !text.hasSuffix("\n"), let lastNewline = text.lastIndex(of: "\n") { text = String(text[...lastNewline]) }
        let acks = text.split(separator: "\n").map { line -> (Int64, String) in
            let parts = line.split(separator: " ")
            return (Int64(parts[0])!, String(parts[1]))
        }
        #expect(acks.count >= 500, "the writer acknowledged only \(acks.count) writes")

        let store = try openStore(dir)
        defer { store.close() }
        for (revision, name) in acks {
            let pod = try await store.get(Pod.self, namespace: "default", name: name)
            #expect(pod.metadata.resourceVersion == String(revision))
        }
        let log = try store.logRevisions()
        #expect(log.map(\.revision) == Array(1...Int64(log.count)), "revisions are gap-free")
        #expect(store.currentRevision == Int64(log.count))
        #expect(Int64(log.count) >= acks.map(\.0).max()!)
        // And the store is writable after the crash.
        _ = try await store.create(TestObjects.pod("after-crash"))
    }

    /// One process per data directory: while a writer holds the store, a second process and a
    /// second open here are refused, naming the holder; once it is SIGKILLed (no clean-up at
    /// all), the kernel has dropped its lock and the directory opens at once.
    @Test func aSecondProcessIsRefusedUntilTheFirstIsGone() async throws {
        let dir = TemporaryDirectory()
        let first = try Child(try coxBinary(), ["debug", "store-writer", "--dir", dir.path, "--writers", "1"], stdout: .pipe)
        let pid = first.pid
        let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
        defer { watchdog.cancel() }
        let handle = try #require(first.output)
        // The first acknowledged write: the writer has the store open.
        _ = try await Tools.detached { handle.availableData }

        let second = try await Tools.runDetached(try coxBinary(), ["debug", "store-writer", "--dir", dir.path, "--writers", "1"], timeout: 60)
        #expect(second.status != 0)
        #expect(second.output.contains("the data directory \(dir.path) is in use by pid \(pid) (cox debug store-writer)"), "\(second.output)")
        #expect(throws: DirectoryLock.InUse.self) { try openStore(dir) }

        kill(pid, SIGKILL)
        await first.wait()
        let store = try openStore(dir)
        defer { store.close() }
        _ = try await store.create(TestObjects.pod("after-the-first-is-gone"))
        // Closed, the directory is free again for the next process.
        store.close()
        let again = try openStore(dir)
        again.close()
    }

}
