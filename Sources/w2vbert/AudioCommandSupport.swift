import ArgumentParser
import Foundation

/// Shared by the audio commands (prepare, features): stderr output and the one place their
/// errors become a message and an exit status.
enum AudioCommand {
    /// Writes a line to standard error.
    static func printError(_ s: String) {
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }

    /// Runs `body`. Its errors go to the one exit-status contract in CLI.swift (`Main`): a runtime error
    /// becomes "w2vbert: error: <description>" on stderr and exit status 1.
    static func reportingErrors(_ body: () throws -> Void) throws {
        try body()
    }
}
