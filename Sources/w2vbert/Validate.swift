import ArgumentParser
import Foundation
import Training

/// `w2vbert validate`: a run's newest checkpoint evaluated on a validation manifest.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Evaluate a run's newest checkpoint on a validation manifest (no Gumbel noise, fixed masks); "
            + "works under mpirun.")
    @Option(help: "Run folder holding checkpoints/.") var runDir: String
    @Option(help: "Validation manifest.") var valid: String
    @Option(name: .customLong("set"), help: "Override one key, section.key=value (repeatable).")
    var overrides: [String] = []

    func run() throws {
        let folder = try checkpointFolder(runDir, overrides: overrides)
        try folder.requirePretraining("validate")
        let config = folder.config
        guard FileManager.default.fileExists(atPath: valid) else { throw RuntimeError("\(valid): no such manifest") }
        var o = TrainOptions(trainManifest: valid, validManifest: valid, runDirectory: runDir)
        o.requireCheckpoint = true
        try runDistributed(compute: config.compute) { comm, compute in
            try Trainer(config: config, compute: compute, options: o, comm: comm).evaluate()
        }
    }
}
