import Foundation

/// Writes a line to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Flushes what `print` buffered, before output written unbuffered (or a long wait).
func fflushStandardOutput() {
    fflush(nil)
}
