import ArgumentParser
import Training

/// `w2vbert compare`: the parameters of two checkpoints, max relative difference per tensor.
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare the parameters of two checkpoints (or run folders: their newest): max relative difference "
            + "per tensor.",
        discussion: "Relative to each tensor's scale: max|a − b| / max(max|b|, 1e-3). Exits 1 when it exceeds --rtol.")
    @Argument(help: "Checkpoint or run folder A.") var a: String
    @Argument(help: "Checkpoint or run folder B (the reference).") var b: String
    @Option(help: "Tolerance.") var rtol = 1e-5
    @Flag(
        help: ArgumentHelp(
            "Compare only the tensors both hold (e.g. a LoRA run's base tensors against the checkpoint it started "
                + "from)."))
    var common = false

    func run() throws {
        let c = try CheckpointComparison(a, b, common: common)
        if common {
            print("compare: \(c.shared.count) common tensors; only in A: \(c.onlyInA), only in B: \(c.onlyInB)")
        }
        print("compare: \(c.a) vs \(c.b): \(c.verdict)")
        if c.worst > rtol { throw ExitCode(1) }
    }
}
