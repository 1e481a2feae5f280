import ArgumentParser
import Audio
import Foundation
import Training
import W2VBert

/// `w2vbert transcribe`: greedy CTC transcripts of audio files from a fine-tuned checkpoint.
struct Transcribe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transcribe",
        abstract: "Greedy CTC transcripts of audio files from a fine-tuned checkpoint (model.head ctc).",
        discussion: """
            Prints one line per file, PATH<TAB>TEXT, with each path as given; --out also writes those lines to a \
            file. Every file is decoded whole, however long. The dictionary is dict.ltr.txt of the checkpoint \
            folder or of its run folder. For checking another implementation (launch/check-hf-ctc.sh), --logits \
            writes the CTC head's logits the texts were decoded from and --save-features the model's input.
            """)
    @Option(help: "Checkpoint folder (step-…) or run folder (its newest checkpoint) of a CTC fine-tuning run.")
    var checkpoint: String
    @Argument(help: "Audio files (anything libsndfile reads; resampled to 16 kHz, downmixed).") var audio: [String]
    @Option(help: "Also write the PATH<TAB>TEXT lines to this file.") var out: String?
    @Option(name: .customLong("set"), help: "Override one key, e.g. compute.precision=bf16 (repeatable).")
    var overrides: [String] = []
    @Option(
        help: ArgumentHelp(
            "Also write the CTC head's logits ([N, T_max, V] zero-padded, T = encoder frames) here, with "
                + "PATH.lengths.npy (each file's T)."))
    var logits: String?
    @Option(
        help: ArgumentHelp(
            "Also write the model's input features (CMVN'd fbank, [N, T0_max, 80] zero-padded) here, with "
                + "PATH.lengths.npy."))
    var saveFeatures: String?

    func validate() throws {
        guard !audio.isEmpty else { throw ValidationError("give at least one audio file") }
    }

    func run() throws {
        let folder = try checkpointFolder(checkpoint, overrides: overrides)
        let recognizer = try Recognizer(folder, compute: startCompute(folder.config.compute, announce: false))
        var lines = ""
        var features: [[Float]] = [], outputs: [[Float]] = []
        for path in audio {
            let (f, t0) = try recognizer.features(path: path)
            let l = recognizer.logits(features: f, frames: t0)
            let text = l.withUnsafeBufferPointer {
                CTCGreedyDecoding.text(
                    logits: $0.baseAddress!, frames: l.count / recognizer.vocabulary.size,
                    vocabulary: recognizer.vocabulary)
            }
            let line = "\(path)\t\(text)"
            print(line)
            lines += line + "\n"
            if saveFeatures != nil { features.append(f) }
            if logits != nil { outputs.append(l) }
        }
        if let logits { try writePadded(outputs, width: recognizer.vocabulary.size, to: logits) }
        if let saveFeatures { try writePadded(features, width: Config.melBins, to: saveFeatures) }
        if let out {
            do {
                try lines.write(toFile: out, atomically: true, encoding: .utf8)
            } catch {
                throw RuntimeError("\(out): cannot write the transcripts: \(error.localizedDescription)")
            }
        }
    }

    /// [N, max rows, width] zero-padded at PATH and the row counts at PATH.lengths.npy.
    func writePadded(_ rows: [[Float]], width: Int, to path: String) throws {
        let most = rows.map { $0.count / width }.max() ?? 0
        var all = [Float](repeating: 0, count: rows.count * most * width)
        for (i, r) in rows.enumerated() { all.replaceSubrange(i * most * width..<i * most * width + r.count, with: r) }
        let lengths = (path.hasSuffix(".npy") ? String(path.dropLast(4)) : path) + ".lengths.npy"
        do {
            try Npy.write(NpyArray(shape: [rows.count, most, width], data: all), to: path)
            try Npy.write(NpyArray(shape: [rows.count], data: rows.map { Float($0.count / width) }), to: lengths)
        } catch {
            throw RuntimeError("\(path): cannot write: \(error)")
        }
    }
}
