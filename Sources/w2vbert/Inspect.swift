import ArgumentParser
import Foundation
import Training

/// `w2vbert inspect`: a run or checkpoint folder summarised; exits 1 (after the summary) when a checkpoint
/// is unusable.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Summarise a run or checkpoint folder: checkpoints (validated), trainer state, parameters, "
            + "last metrics.")
    @Argument(help: "Run folder or checkpoint folder.") var dir: String
    @Flag(help: "List every tensor with its shape and RMS.") var tensors = false

    func run() throws {
        let summary = try RunSummary(dir, tensors: tensors)
        for line in summary.lines { print(line) }
        if !summary.corrupt.isEmpty {
            throw RuntimeError(
                "\(summary.runDirectory): unusable checkpoint(s) "
                    + "\(summary.corrupt.joined(separator: ", ")) (see above)")
        }
    }
}
