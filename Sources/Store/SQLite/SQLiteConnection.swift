import CSQLite

/// An error from SQLite, with its result code and message.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public var description: String { "sqlite error \(code): \(message)" }
}

/// One SQLite connection. Not thread-safe: the store gives each connection to one thread at a time
/// (the writer thread owns its own; readers borrow from a pool).
final class SQLiteConnection: @unchecked Sendable {
    let handle: OpaquePointer
    private var statements: [String: Statement] = [:]

    init(path: String, readOnly: Bool = false) throws {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc, message: "\(message) (\(path))")
        }
        handle = db
        sqlite3_busy_timeout(db, 5_000)
    }

    deinit {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    func check(_ rc: Int32) throws {
        if rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE {
            throw SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)))
        }
    }

    func execute(_ sql: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &error)
        if rc != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? "unknown"
            sqlite3_free(error)
            throw SQLiteError(code: rc, message: message)
        }
    }

    /// Resets every cached statement, ending their read cursors so a transaction can end and the
    /// next one sees a fresh snapshot.
    func resetStatements() {
        for statement in statements.values { sqlite3_reset(statement.handle) }
    }

    /// A prepared statement, cached by its SQL text and reset before reuse.
    func prepare(_ sql: String) throws -> Statement {
        if let cached = statements[sql] {
            cached.reset()
            return cached
        }
        var stmt: OpaquePointer?
        try check(sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil))
        let statement = Statement(connection: self, handle: stmt!)
        statements[sql] = statement
        return statement
    }

    final class Statement {
        unowned let connection: SQLiteConnection
        let handle: OpaquePointer

        init(connection: SQLiteConnection, handle: OpaquePointer) {
            self.connection = connection
            self.handle = handle
        }

        deinit { sqlite3_finalize(handle) }

        func reset() {
            sqlite3_reset(handle)
            sqlite3_clear_bindings(handle)
        }

        @discardableResult
        func bind(_ index: Int32, _ value: Int64) -> Statement {
            sqlite3_bind_int64(handle, index, value)
            return self
        }

        @discardableResult
        func bind(_ index: Int32, _ value: String) -> Statement {
            sqlite3_bind_text(handle, index, value, -1, csqlite_transient())
            return self
        }

        @discardableResult
        func bind(_ index: Int32, _ value: [UInt8]) -> Statement {
            value.withUnsafeBytes { buffer in
                _ = sqlite3_bind_blob(handle, index, buffer.baseAddress, Int32(buffer.count), csqlite_transient())
            }
            return self
        }

        /// Steps once; true when a row is available.
        func step() throws -> Bool {
            let rc = sqlite3_step(handle)
            if rc == SQLITE_ROW { return true }
            if rc == SQLITE_DONE { return false }
            let error = SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(connection.handle)))
            sqlite3_reset(handle)
            throw error
        }

        /// Runs a statement that returns no rows.
        func run() throws {
            while try step() {}
        }

        func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

        /// Virtual-machine steps this statement took since the last call (SQLite's measure of the
        /// work a query did, which grows with the rows it visits).
        func takeWork() -> Int { Int(sqlite3_stmt_status(handle, Int32(SQLITE_STMTSTATUS_VM_STEP), 1)) }

        func string(_ column: Int32) -> String {
            guard let text = sqlite3_column_text(handle, column) else { return "" }
            return String(cString: text)
        }

        func blob(_ column: Int32) -> [UInt8] {
            let count = Int(sqlite3_column_bytes(handle, column))
            guard count > 0, let pointer = sqlite3_column_blob(handle, column) else { return [] }
            return [UInt8](UnsafeRawBufferPointer(start: pointer, count: count))
        }
    }
}

extension SQLiteConnection {
    /// Rows changed by the last statement.
    var changes: Int64 { Int64(sqlite3_changes(handle)) }
}
