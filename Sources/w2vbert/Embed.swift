import ArgumentParser
import Foundation
import W2VBert
import Training

/// `w2vbert embed`: hidden states (or hyper-lora speaker vectors) of audio files from a checkpoint, as .npy.
struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Hidden states of audio files from a checkpoint (no masking, no noise) as .npy.",
        discussion: "One input: OUT.npy holds [T, d]. Several: OUT.npy holds [N, T_max, d] zero-padded and "
            + "OUT.lengths.npy the frame counts. Files longer than --window run in overlapping windows (not "
            + "with --batch).")
    @Option(help: "Checkpoint folder (step-…) or run folder (its newest checkpoint).") var checkpoint: String
    @Argument(help: "Audio files (anything libsndfile reads; resampled to 16 kHz, downmixed).") var audio: [String]
    @Option(help: "Output .npy file.") var out: String
    @Option(
        help: ArgumentHelp(
            "contrastive (after the last contrastive block), mlm (after the last MLM block) or speaker "
                + "(hyper-lora's speaker vector per file: [files, adapter.speaker_dim])."))
    var layer = "mlm"
    @Option(name: .customLong("set"), help: "Override one key, e.g. compute.precision=bf16 (repeatable).")
    var overrides: [String] = []
    @Flag(help: "Run all inputs as one zero-padded batch (padding must not change the states of real frames).")
    var batch = false
    @Option(
        help: ArgumentHelp(
            "Also write the model's input features (CMVN'd fbank, [N, T0_max, 80] zero-padded) here, with "
                + "PATH.lengths.npy."))
    var saveFeatures: String?
    @Option(
        name: .customLong("speaker"),
        help: """
            adapter.speaker = table runs: the speaker label of the files (once: every file; or once per file, in \
            order); a label the table does not know, e.g. '-', takes the unknown-speaker row, as do files without \
            --speaker.
            """)
    var speakers: [String] = []
    @Option(
        help: ArgumentHelp(
            "Longest audio run at once, seconds (0: whole files). Longer files run in overlapping windows: "
                + "memory of one window however long the file (docs/performance.md, \"Memory\")."))
    var window: Double = 60
    @Option(help: "Seconds of context each side of a window's kept frames (windows overlap by twice this).")
    var context: Double = 10

    func validate() throws {
        guard W2VBertModel.EmbedLayer(rawValue: layer) != nil else {
            throw ValidationError("--layer must be contrastive, mlm or speaker, not '\(layer)'")
        }
        guard !audio.isEmpty else { throw ValidationError("give at least one audio file") }
        guard window >= 0, context >= 0, window == 0 || window > 2 * context else {
            throw ValidationError(
                "--window must be 0 or longer than twice --context (got \(window) and \(context) seconds)")
        }
        guard speakers.count <= 1 || speakers.count == audio.count else {
            throw ValidationError(
                "give --speaker once (every file) or once per file (\(audio.count)), "
                    + "not \(speakers.count) times")
        }
    }

    func run() throws {
        let folder = try checkpointFolder(checkpoint, overrides: overrides)
        let compute = startCompute(folder.config.compute, announce: true)
        var embedding = Embedding(audio: audio)
        embedding.layer = W2VBertModel.EmbedLayer(rawValue: layer)!
        embedding.batched = batch
        embedding.speakers = speakers
        embedding.saveFeatures = saveFeatures
        embedding.window = window
        embedding.context = context
        for warning in try embedding.run(folder, compute: compute, out: out) {
            FileHandle.standardError.write(Data((warning + "\n").utf8))
        }
        let c = folder.config
        let width = embedding.layer == .speaker ? "speaker_dim = \(c.adapter.speakerDim)" : "d = \(c.model.dim)"
        print("embed: \(audio.count) file(s), layer \(layer), \(width) → \(out)")
    }
}
