import ArgumentParser
import Foundation

/// Writes a line to standard error.
func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// Runs `body`; an error becomes "error: <description>" on stderr and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as ExitCode { throw e } catch let e as ValidationError { throw e } catch {
        printError("error: \(error)")
        throw ExitCode(1)
    }
}
