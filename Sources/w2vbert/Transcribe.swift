import ArgumentParser
import Foundation
import Training

/// `w2vbert transcribe`: greedy CTC transcripts of audio files from a fine-tuned checkpoint.
struct Transcribe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transcribe",
        abstract: "Greedy CTC transcripts of audio files from a fine-tuned checkpoint (model.head ctc).",
        discussion: """
            Prints one line per file, PATH<TAB>TEXT, with each path as given; --out also writes those lines to a \
            file. Every file is decoded whole, however long. The dictionary is dict.ltr.txt of the checkpoint \
            folder or of its run folder.
            """)
    @Option(help: "Checkpoint folder (step-…) or run folder (its newest checkpoint) of a CTC fine-tuning run.")
    var checkpoint: String
    @Argument(help: "Audio files (anything libsndfile reads; resampled to 16 kHz, downmixed).") var audio: [String]
    @Option(help: "Also write the PATH<TAB>TEXT lines to this file.") var out: String?
    @Option(name: .customLong("set"), help: "Override one key, e.g. compute.precision=bf16 (repeatable).")
    var overrides: [String] = []

    func validate() throws {
        guard !audio.isEmpty else { throw ValidationError("give at least one audio file") }
    }

    func run() throws {
        let folder = try checkpointFolder(checkpoint, overrides: overrides)
        let recognizer = try Recognizer(folder, compute: startCompute(folder.config.compute, announce: false))
        var lines = ""
        for path in audio {
            let line = "\(path)\t\(try recognizer.transcribe(path: path))"
            print(line)
            lines += line + "\n"
        }
        if let out {
            do {
                try lines.write(toFile: out, atomically: true, encoding: .utf8)
            } catch {
                throw RuntimeError("\(out): cannot write the transcripts: \(error.localizedDescription)")
            }
        }
    }
}
