// The labels of CTC fine-tuning: the transcripts `NAME.wrd` beside the training and validation manifests,
// normalised and encoded with the run's dictionary, one label list per manifest entry, checked before
// training starts.
//
// The dictionary is RUN/dict.ltr.txt. A fresh run writes it there: `--dict F` copied, or built from the
// training transcripts. A resumed run reads it back; a `--dict` that differs from it is refused, naming both
// files. Every problem is a `TrainError` (exit 1) naming the file and, for a transcript, its line:
//   - a .wrd with a different number of lines than its manifest has rows
//   - a character that is not in the dictionary
//   - a transcript that its audio cannot carry under CTC (encoder frames of the manifest length < labels +
//     blanks between repeated letters)
// Utterances without a label (an empty line) and utterances longer than train.max_samples (a crop would cut
// the transcript) are skipped: their length is given as 0 to the data order, which drops them.

import Foundation
import W2VBert
import Audio

public struct FinetuneLabels: Sendable {
    /// The run's dictionary; its size is the CTC head's model.vocab_size.
    public let vocabulary: CTCVocabulary
    /// Per entry of the training / validation manifest: its label ids (empty: skipped).
    public let train: [[Int32]]
    public let valid: [[Int32]]
    /// Per manifest entry, the lengths the data order plans with (0: skipped).
    public let trainLengths: [Int]
    public let validLengths: [Int]
    /// Skipped utterances of the training / validation manifest.
    public let skipped: (train: Skipped, valid: Skipped)
    /// Whether the CTC head of the --init-from source (if it has one) is over this dictionary's symbols, so
    /// it can be loaded; false when the source has a dictionary that differs from the run's.
    public let sourceHeadFits: Bool

    public struct Skipped: Sendable, Equatable {
        public var unlabelled = 0
        public var tooLong = 0
        public init(unlabelled: Int = 0, tooLong: Int = 0) {
            self.unlabelled = unlabelled
            self.tooLong = tooLong
        }
    }

    public static let dictionaryName = "dict.ltr.txt"

    /// Reads the transcripts of `train` (and `valid`), settles the run's dictionary (`dictPath`: `--dict`;
    /// `resume`: a dictionary already in the run folder is the run's; `source`: the dictionary of the CTC
    /// model of --init-from, used when there is no `dictPath`) and encodes and checks every label.
    public static func prepare(
        config c: Config, train: Manifest, trainPath: String, valid: Manifest?, validPath: String?,
        runDirectory: String, dictPath: String?, source: CTCVocabulary? = nil, resume: Bool
    ) throws -> FinetuneLabels {
        do {
            let trainText = try Transcripts.read(
                path: Transcripts.path(forManifest: trainPath), manifestPath: trainPath, rows: train.count)
            let validText = try valid.map {
                try Transcripts.read(
                    path: Transcripts.path(forManifest: validPath!), manifestPath: validPath!, rows: $0.count)
            }
            let vocabulary = try runDictionary(
                trainText, runDirectory: runDirectory, dictPath: dictPath, source: source, resume: resume)
            let (tl, tLen, tSkip) = try encode(trainText, manifest: train, vocabulary: vocabulary, config: c)
            let (vl, vLen, vSkip) =
                try validText.map { try encode($0, manifest: valid!, vocabulary: vocabulary, config: c) }
                ?? ([], [], Skipped())
            return FinetuneLabels(
                vocabulary: vocabulary, train: tl, valid: vl, trainLengths: tLen, validLengths: vLen,
                skipped: (tSkip, vSkip), sourceHeadFits: source.map { $0.symbols == vocabulary.symbols } ?? true)
        } catch let e as TranscriptError {
            throw TrainError(e.description)
        }
    }

    /// The dictionary of the run in `runDirectory` (read back on resume, else `dictPath`, else `source`, else
    /// built from the training transcripts).
    static func runDictionary(
        _ train: Transcripts, runDirectory: String, dictPath: String?, source: CTCVocabulary?, resume: Bool
    ) throws -> CTCVocabulary {
        let runPath = runDirectory + "/" + dictionaryName
        let given = try dictPath.map { try CTCVocabulary.read(path: $0) }
        if resume && FileManager.default.fileExists(atPath: runPath) {
            let recorded = try CTCVocabulary.read(path: runPath)
            if let given, given.symbols != recorded.symbols {
                throw TrainError(
                    "\(dictPath!): the dictionary differs from the run's \(runPath) (a resumed run keeps the "
                        + "dictionary it started with)")
            }
            return recorded
        }
        return given ?? source ?? CTCVocabulary.build(from: train.texts.compactMap { $0 })
    }

    /// Writes the dictionary to RUN/dict.ltr.txt unless the run already has it (rank 0 only).
    public func record(runDirectory: String) throws {
        let path = runDirectory + "/" + FinetuneLabels.dictionaryName
        if FileManager.default.fileExists(atPath: path),
            (try? CTCVocabulary.read(path: path))?.symbols == vocabulary.symbols
        {
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
            try vocabulary.write(to: path)
        } catch let e as TranscriptError {
            throw TrainError(e.description)
        }
    }

    /// Label ids per entry, the planning lengths and the skipped counts; infeasible labels are errors.
    static func encode(
        _ t: Transcripts, manifest m: Manifest, vocabulary: CTCVocabulary, config c: Config
    ) throws(TranscriptError) -> ([[Int32]], [Int], Skipped) {
        var labels = [[Int32]](repeating: [], count: m.count)
        var lengths = [Int](repeating: 0, count: m.count)
        var skipped = Skipped()
        for row in 0..<m.count {
            guard let ids = try t.labels(row, vocabulary: vocabulary) else {
                skipped.unlabelled += 1
                continue
            }
            let samples = m.entries[row].samples
            guard samples <= c.train.maxSamples else {
                skipped.tooLong += 1
                continue
            }
            try t.checkFeasible(ids, frames: c.encoderLength(t0: fbankFrameCount(samples: samples)), row: row)
            labels[row] = ids
            lengths[row] = samples
        }
        return (labels, lengths, skipped)
    }

    /// The start-up line about skipped utterances (nil: none skipped).
    public var skippedSummary: String? {
        let (t, v) = skipped
        guard t != Skipped() || v != Skipped() else { return nil }
        return "skipped for fine-tuning: \(t.unlabelled) unlabelled and \(t.tooLong) longer than "
            + "train.max_samples of the training manifest; \(v.unlabelled) unlabelled and \(v.tooLong) too long "
            + "of the validation manifest"
    }
}
