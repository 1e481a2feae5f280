import ArgumentParser
import Foundation

/// Shared by the audio commands (prepare, features, bench-data): stderr output and the one place their
/// errors become a message and an exit status.
enum AudioCommand {
    /// Writes a line to standard error.
    static func printError(_ s: String) {
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }

    /// Runs `body`; an error becomes "error: <description>" on stderr and exit status 1.
    static func reportingErrors(_ body: () throws -> Void) throws {
        do { try body() } catch let e as ExitCode { throw e } catch let e as ValidationError { throw e } catch {
            printError("error: \(error)")
            throw ExitCode(1)
        }
    }
}
