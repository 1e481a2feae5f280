import ArgumentParser
import Foundation
import W2VBert
import Training

/// `w2vbert finetune`: CTC fine-tuning of a pre-trained encoder on transcribed audio; the same launchers,
/// ranks, signals, resume, metrics and `--set` keys as `train`.
struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune the encoder with a CTC head on transcribed audio (NAME.wrd beside each manifest).",
        discussion: """
            The letter dictionary is --dict or built from the training transcripts, and is written to \
            RUN/dict.ltr.txt (a resumed run reads it back). Utterances with an empty transcript line, or longer \
            than train.max_samples, are skipped. Typical settings: optimizer.schedule=tri_stage, \
            finetune.freeze_updates (the encoder waits, the head trains), finetune.freeze_frontend (default true). \
            Exit statuses as `train`: 0 finished, 1 error (a bad transcript names its file and line), 2 bad command \
            line or config, 75 stopped after a checkpoint, 76 too many non-finite steps, 77 replica divergence, \
            78 collective watchdog timeout.
            """)

    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "Training manifest; its transcripts are NAME.wrd beside it, one line per row.") var train: String
    @Option(help: "Validation manifest (with its .wrd): loss, CER and WER every train.valid_interval steps.")
    var valid: String?
    @Option(help: "Run folder: checkpoints, metrics.jsonl, tensorboard/, config.yaml, dict.ltr.txt.") var runDir: String
    @Option(help: "Letter dictionary (fairseq dict.ltr.txt); default: built from the training transcripts.")
    var dict: String?
    @Option(help: "Stop after this many optimizer steps (overrides optimizer.max_steps).") var maxSteps: Int?
    @Flag(help: "Refuse to resume when the run folder already holds checkpoints.") var noResume = false
    @Option(
        help: """
            Start from the encoder of a pre-training checkpoint, run folder or Hugging Face model folder (the CTC \
            head starts fresh). Ignored when the run folder already holds checkpoints (it resumes).
            """)
    var initFrom: String?
    @Flag(help: "Only warnings and errors on the console.") var quiet = false
    @Option(help: "Decoding threads per rank.") var loaderWorkers = 2
    @Option(help: .hidden) var testStopAfterStep: Int?

    func validate() throws {
        if let m = maxSteps, m < 1 { throw ValidationError("--max-steps must be ≥ 1") }
        if loaderWorkers < 1 { throw ValidationError("--loader-workers must be ≥ 1") }
    }

    func run() throws {
        let config = try configOptions.load()
        for m in [train] + (valid.map { [$0] } ?? []) where !FileManager.default.fileExists(atPath: m) {
            throw RuntimeError("\(m): no such manifest")
        }
        if let i = initFrom, !FileManager.default.fileExists(atPath: i) {
            throw RuntimeError("--init-from \(i): no such folder")
        }
        if let d = dict, !FileManager.default.fileExists(atPath: d) { throw RuntimeError("--dict \(d): no such file") }
        var o = TrainOptions(trainManifest: train, validManifest: valid, runDirectory: runDir)
        o.finetune = true
        o.dictionary = dict
        o.maxSteps = maxSteps
        o.resume = !noResume
        o.quiet = quiet
        o.loaderWorkers = loaderWorkers
        o.initFrom = initFrom
        o.stopAfterStep = testStopAfterStep
        let options = o
        try runDistributed(compute: config.compute) { comm, compute in
            try Trainer(config: config, compute: compute, options: options, comm: comm).run()
        }
    }
}
