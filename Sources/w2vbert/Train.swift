import ArgumentParser
import Foundation
import W2VBert
import Training

/// `w2vbert train`: pre-training; under mpirun/srun every rank trains a replica on its shard.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Pre-train W2V-BERT; under mpirun/srun every rank trains a replica on its shard.",
        discussion: """
            Resumes from RUN/checkpoints when it holds one (--no-resume refuses). Exit statuses: 0 finished, 1 error, \
            2 bad command line or config, 75 stopped by SIGTERM/SIGUSR1 after a checkpoint (run the same command again \
            to resume), 76 too many non-finite steps, 77 replica divergence, 78 collective watchdog timeout.
            """)

    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "Training manifest (fairseq TSV from `w2vbert prepare`).") var train: String
    @Option(help: "Validation manifest.") var valid: String?
    @Option(help: "Run folder: checkpoints, metrics.jsonl, tensorboard/, config.yaml.") var runDir: String
    @Option(
        help: ArgumentHelp(
            "Stop after this many optimizer steps (overrides optimizer.max_steps; 0: save the initial weights "
                + "as step 0)."))
    var maxSteps: Int?
    @Flag(help: "Refuse to resume when the run folder already holds checkpoints.") var noResume = false
    @Option(
        help: """
            Start a new run (step 0, fresh optimizer) from the weights of a checkpoint, run folder or Hugging Face \
            model folder; quantizer and heads stay fresh where the source has none. Ignored when the run folder \
            already holds checkpoints (it resumes).
            """)
    var initFrom: String?
    @Flag(help: "Only warnings and errors on the console.") var quiet = false
    @Option(
        help: "Decoding threads per rank (2: enough for the tiny preset at its bf16 step rate; docs/performance.md).")
    var loaderWorkers = 2
    // Test hooks.
    @Option(help: .hidden) var testDivergeRank: Int?
    @Option(help: .hidden) var testDivergeStep: Int?
    @Option(help: .hidden) var testSkipCollective: Int?
    @Option(help: .hidden) var testSkipRank = 1
    @Option(help: .hidden) var testStopAfterStep: Int?

    func validate() throws {
        if let m = maxSteps, m < 0 { throw ValidationError("--max-steps must be ≥ 0") }
        if loaderWorkers < 1 { throw ValidationError("--loader-workers must be ≥ 1") }
    }

    func run() throws {
        let config = try configOptions.load()  // bad config is rejected before any MPI work (status 2)
        try requirePretraining(config, "train")
        for m in [train] + (valid.map { [$0] } ?? []) where !FileManager.default.fileExists(atPath: m) {
            throw RuntimeError("\(m): no such manifest")  // an input file: status 1, no usage
        }
        if let i = initFrom, !FileManager.default.fileExists(atPath: i) {
            throw RuntimeError("--init-from \(i): no such folder")
        }
        let o = options()
        try runDistributed(compute: config.compute) { comm, compute in
            try Trainer(config: config, compute: compute, options: o, comm: comm).run()
        }
    }

    func options() -> TrainOptions {
        var o = TrainOptions(trainManifest: train, validManifest: valid, runDirectory: runDir)
        o.maxSteps = maxSteps
        o.resume = !noResume
        o.quiet = quiet
        o.loaderWorkers = loaderWorkers
        o.initFrom = initFrom
        o.divergeRank = testDivergeRank
        o.divergeStep = testDivergeStep
        o.skipCollective = testSkipCollective.map(Int64.init)
        o.skipRank = testSkipRank
        o.stopAfterStep = testStopAfterStep
        return o
    }
}
