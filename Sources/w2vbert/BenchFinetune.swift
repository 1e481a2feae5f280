import ArgumentParser
import Training
import W2VBert

/// `w2vbert bench finetune`: CTC fine-tuning steps of a preset on synthetic features and transcripts.
struct BenchFinetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Time CTC fine-tuning steps of a preset on synthetic features; prints one JSON line.",
        discussion: """
            The model is the preset's encoder with a CTC head of --vocab outputs (model.head ctc), trained as \
            `w2vbert finetune` trains it: time (and channel) masking from finetune.*, the front end frozen with \
            finetune.freeze_frontend, the rest of the encoder and the head updated by AdamW every step. \
            Transcripts are random letters, 14 per second of audio. --hf-config writes the Hugging Face \
            Wav2Vec2BertForCTC config.json of the same model (launch/bench-finetune-vs-pytorch.sh builds the \
            PyTorch peer from it).
            """)

    @Option(help: "Preset (an HF-family preset such as small2 for the PyTorch comparison).") var preset = "small2"
    @Option(help: "Utterances per micro-batch.") var batch = 8
    @Option(help: "Seconds of audio per utterance.") var seconds = 10.0
    @Option(help: "Timed steps (after one warm-up step).") var steps = 5
    @Option(help: "CTC outputs, the blank included.") var vocab = 40
    @Option(help: "Threads in the process (overrides compute.threads; default: compute.threads, else its CPUs).")
    var threads: Int?
    @Option(help: "Also write the model's Hugging Face config.json here.") var hfConfig: String?
    @Option(name: .customLong("set"), help: "Config override section.key=value (repeatable).")
    var overrides: [String] = []

    func validate() throws {
        guard batch > 0, seconds >= 1, steps > 0, vocab >= 2 else {
            throw ValidationError("--batch and --steps must be ≥ 1, --seconds ≥ 1, --vocab ≥ 2")
        }
    }

    func run() throws {
        var config: Config
        do {
            let ctc = ["model.head=ctc", "model.vocab_size=\(vocab)"]
            config = try Config.load(preset: preset, overrides: ctc + overrides)
        } catch {
            throw UsageError("\(error)")
        }
        config.finetune.freezeUpdates = 0
        if let hfConfig {
            do {
                try HuggingFace.writeJSON(HuggingFace.ctcConfigJSON(config), to: hfConfig)
            } catch {
                throw RuntimeError("\(hfConfig): cannot write the config (\(error))")
            }
        }
        let compute = startCompute(config.compute, threads: threads, announce: true)
        let bench = StepBenchmark(config: config, compute: compute, batch: batch, seconds: seconds, steps: steps)
        print(bench.runFinetune(preset: preset))
    }
}
