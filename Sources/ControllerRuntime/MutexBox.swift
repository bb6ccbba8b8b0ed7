import Synchronization

/// A Mutex in a class, so Sendable classes can hold lock-protected state by reference.
public final class MutexBox<Value: Sendable>: Sendable {
    let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try mutex.withLock { value in try body(&value) }
    }
}
