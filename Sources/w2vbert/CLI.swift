import ArgumentParser
import Foundation

struct W2VBertCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "w2vbert",
        abstract: "Pre-train W2V-BERT speech models on CPU clusters, data-parallel over MPI.",
        discussion: """
            Exit statuses (every subcommand): 0 done, 1 runtime error (bad input file, I/O, MPI; one line naming \
            the file and the problem), 2 bad command line or configuration (with the usage); train also 75 stopped \
            by a signal after a checkpoint, 76 too many non-finite steps, 77 replica divergence, 78 collective \
            watchdog timeout. Any other status means the process died of a signal (128 + signal number).
            """,
        subcommands: [
            Train.self, Finetune.self, ShowConfig.self, Validate.self, Embed.self, ExportHF.self, ImportHF.self,
            Inspect.self, Compare.self, Prepare.self, Features.self, Bench.self, Check.self, Transcribe.self,
            Evaluate.self, InitCTC.self,
        ])

    /// The words that name `command` on the command line after `w2vbert` ("bench model"), nil when it is not in
    /// the tree.
    static func path(of command: ParsableCommand.Type, under root: ParsableCommand.Type = W2VBertCLI.self) -> String? {
        for sub in root.configuration.subcommands {
            let name = sub.configuration.commandName ?? "\(sub)"
            if sub == command { return name }
            if let rest = path(of: command, under: sub) { return name + " " + rest }
        }
        return nil
    }
}

// MARK: The exit-status contract (README "Exit statuses"), implemented here and nowhere else.

/// A bad command line or configuration found after parsing (a config file or --set value that does not
/// validate, an unknown preset): status 2, printed with the subcommand's usage.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A runtime error about an input or output (a file that is missing, unreadable, damaged; a full disk):
/// status 1, one line naming the file and the problem. Any other error thrown by a command is treated the same.
struct RuntimeError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The statuses a command may return besides 0/1/2 (train: TrainExit) — anything else is mapped to 1.
let documentedStatuses: Set<Int32> = [0, 1, 2, 75, 76, 77, 78]

@main
enum Main {
    static func main() {
        let command: ParsableCommand
        do {
            command = try W2VBertCLI.parseAsRoot()
        } catch {
            let status: Int32 = W2VBertCLI.exitCode(for: error) == .success ? 0 : 2
            finish(status, W2VBertCLI.fullMessage(for: error), toStandardError: status != 0)
        }
        do {
            var c = command
            try c.run()
            finish(0)
        } catch let e as ExitCode {
            // Statuses decided by the command (train's 75–78, compare over tolerance); its messages are out.
            finish(documentedStatuses.contains(e.rawValue) ? e.rawValue : 1)
        } catch let e as UsageError {
            let name = W2VBertCLI.path(of: type(of: command)) ?? ""
            finish(
                2,
                "w2vbert: error: \(oneLine(e.description))\n" + usage(command)
                    + "\n  See 'w2vbert \(name) --help' for more information.")
        } catch let e as ValidationError {
            // Thrown from run() it is still about the command line (e.g. two options that exclude each other).
            finish(2, "w2vbert: error: \(oneLine(e.message))\n" + usage(command))
        } catch {
            if W2VBertCLI.exitCode(for: error) == .success {  // CleanExit (help, version) from a command
                finish(0, W2VBertCLI.fullMessage(for: error), toStandardError: false)
            }
            finish(1, "w2vbert: error: \(oneLine("\(error)"))")
        }
    }

    static func usage(_ command: ParsableCommand) -> String {
        "Usage: " + W2VBertCLI.usageString(for: type(of: command))
    }

    /// Multi-line descriptions (e.g. a list of unusable checkpoints) are joined so the status line stays one line.
    static func oneLine(_ s: String) -> String {
        s.split(separator: "\n", omittingEmptySubsequences: true)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .joined(separator: "; ")
    }

    static func finish(_ status: Int32, _ message: String = "", toStandardError: Bool = true) -> Never {
        if !message.isEmpty {
            let text = Data((message.hasSuffix("\n") ? message : message + "\n").utf8)
            if toStandardError {
                FileHandle.standardError.write(text)
            } else {
                FileHandle.standardOutput.write(text)
            }
        }
        exit(status)
    }
}
