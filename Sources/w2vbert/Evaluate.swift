import ArgumentParser
import Audio
import Foundation
import Training

/// `w2vbert evaluate`: character and word error rates of a fine-tuned checkpoint on a test manifest.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "CER and WER of a fine-tuned checkpoint (model.head ctc) on a manifest with its .wrd transcripts.",
        discussion: """
            Greedy CTC decoding of every file of the manifest (decoded whole), compared with its normalised line of \
            NAME.wrd beside NAME.tsv: edit distances summed over the files and divided by the reference lengths \
            (characters with spaces; words). --details prints PATH<TAB>CER<TAB>WER<TAB>REFERENCE<TAB>HYPOTHESIS per \
            file first. The last line is one JSON object: cer, wer, files, chars, words, char_edits, word_edits.
            """)
    @Option(help: "Checkpoint folder (step-…) or run folder (its newest checkpoint) of a CTC fine-tuning run.")
    var checkpoint: String
    @Option(help: "Test manifest (fairseq TSV); its transcripts are NAME.wrd beside it.") var manifest: String
    @Flag(help: "Print each file's error rates, reference and hypothesis.") var details = false
    @Option(name: .customLong("set"), help: "Override one key, e.g. compute.precision=bf16 (repeatable).")
    var overrides: [String] = []

    func run() throws {
        let folder = try checkpointFolder(checkpoint, overrides: overrides)
        let recognizer = try Recognizer(folder, compute: startCompute(folder.config.compute, announce: false))
        func rate(_ r: ErrorRate) -> String { r.rate.map { String(format: "%.4f", $0) } ?? "-" }
        let result = try Evaluation.run(recognizer, manifest: manifest) { f in
            if details {
                print("\(f.path)\t\(rate(f.characters))\t\(rate(f.words))\t\(f.reference)\t\(f.hypothesis)")
            }
        }
        print(
            "evaluate: \(result.files.count) files, CER \(rate(result.characters)) "
                + "(\(result.characters.edits)/\(result.characters.referenceLength)), WER \(rate(result.words)) "
                + "(\(result.words.edits)/\(result.words.referenceLength))")
        print(result.json)
    }
}
