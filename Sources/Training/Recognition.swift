// Speech recognition with a CTC fine-tuned checkpoint (`w2vbert transcribe`, `w2vbert evaluate`): each audio file
// is decoded whole (no cropping however long it is; the model is rebuilt larger when a longer file comes), as
// fbank with per-utterance CMVN like training, through the encoder and the CTC head without masking or
// dropout, then greedy (best-path) CTC decoding with the run's dictionary. Evaluation compares each hypothesis
// with the normalised reference of the manifest's .wrd file: character and word error rates from edit
// distances (ErrorRate), summed over the files.

import Audio
import Foundation
import Tensor
import W2VBert

/// A fine-tuned checkpoint ready to transcribe audio files.
public final class Recognizer {
    public let folder: CheckpointFolder
    public let vocabulary: CTCVocabulary
    /// The dictionary used: dict.ltr.txt in the checkpoint folder, else in its run folder.
    public let dictionaryPath: String
    let compute: Compute
    let params: FloatBuffer
    var model: CTCModel?

    /// Loads the checkpoint's parameters and dictionary. Errors name the file: a checkpoint without model.head
    /// ctc, a missing or unreadable dictionary, one whose size is not the head's model.vocab_size.
    public init(_ folder: CheckpointFolder, compute: Compute) throws {
        let c = folder.config
        guard c.model.head == .ctc else {
            throw CheckpointFolderError(
                "\(folder.directory)/trainer.json: not a CTC model (model.head is \(c.model.head.rawValue); "
                    + "transcribe and evaluate need a fine-tuned checkpoint, model.head ctc)")
        }
        let local = folder.directory + "/dict.ltr.txt"
        dictionaryPath =
            FileManager.default.fileExists(atPath: local) ? local : folder.runDirectory + "/dict.ltr.txt"
        vocabulary = try CTCVocabulary.read(path: dictionaryPath)
        guard vocabulary.size == c.model.vocabSize else {
            throw TranscriptError(
                path: dictionaryPath, line: nil,
                "has \(vocabulary.size) entries (blank included), but the checkpoint's CTC head has "
                    + "model.vocab_size = \(c.model.vocabSize)")
        }
        self.folder = folder
        self.compute = compute
        params = FloatBuffer(count: ParameterLayout(config: c).count)
        try folder.readParameters(ParameterLayout(config: c), into: params.ptr)
    }

    /// The CMVN'd fbank of one file and its frame count; a file too short for the encoder is an error naming it.
    public func features(path: String) throws -> (features: [Float], frames: Int) {
        var f = KaldiFbank().compute(try AudioDecoder.load(path: path))
        let t0 = f.count / Config.melBins
        guard folder.config.encoderLength(t0: t0) >= 1 else {
            throw AudioError(.tooShort, path: path, "\(t0) fbank frames")
        }
        applyCMVN(&f, frames: t0, bins: Config.melBins)
        return (f, t0)
    }

    /// Greedy CTC text of one file (decoded whole).
    public func transcribe(path: String) throws -> String {
        let (f, t0) = try features(path: path)
        return transcribe(features: f, frames: t0)
    }

    /// Greedy CTC text of one utterance's features [T0, 80].
    public func transcribe(features: [Float], frames t0: Int) -> String {
        let m = model(frames: t0)
        let length = [Int32(t0)]
        return features.withUnsafeBufferPointer { fp in
            length.withUnsafeBufferPointer { lp in
                let (logits, frames) = m.logits(
                    features: fp.baseAddress!, lengths: lp.baseAddress!, batch: 1, frames: t0)
                return CTCGreedyDecoding.text(logits: logits, frames: frames[0], vocabulary: vocabulary)
            }
        }
    }

    /// The model, rebuilt with room for 1.25× the frames when `t0` does not fit.
    func model(frames t0: Int) -> CTCModel {
        if let model, model.maxFrames >= t0 { return model }
        let m = CTCModel(config: folder.config, compute: compute, maxBatch: 1, maxFrames: t0 + t0 / 4)
        m.params.ptr.update(from: params.ptr, count: params.count)
        model = m
        return m
    }
}

/// One evaluated file.
public struct EvaluatedFile: Sendable {
    public let path: String
    public let reference: String
    public let hypothesis: String
    public let characters: ErrorRate
    public let words: ErrorRate
}

/// Error rates of a test set.
public struct Evaluation: Sendable {
    public var files: [EvaluatedFile] = []
    public var characters = ErrorRate()
    public var words = ErrorRate()

    /// Decodes every file of the manifest and compares it with its line of the .wrd beside it (an empty reference
    /// counts the hypothesis as insertions). `progress` sees each file as it is done.
    public static func run(
        _ recognizer: Recognizer, manifest path: String,
        progress: (EvaluatedFile) -> Void = { _ in }
    ) throws -> Evaluation {
        let manifest = try Manifest.read(path: path)
        let transcripts = try Transcripts.read(
            path: Transcripts.path(forManifest: path), manifestPath: path, rows: manifest.count)
        var out = Evaluation()
        for i in 0..<manifest.count {
            let audio = manifest.fullPath(i)
            let reference = transcripts.texts[i] ?? ""
            let hypothesis = try recognizer.transcribe(path: audio)
            let file = EvaluatedFile(
                path: audio, reference: reference, hypothesis: hypothesis,
                characters: .characters(reference: reference, hypothesis: hypothesis),
                words: .words(reference: reference, hypothesis: hypothesis))
            out.characters.add(file.characters)
            out.words.add(file.words)
            out.files.append(file)
            progress(file)
        }
        return out
    }

    /// One JSON object: cer, wer (null when every reference is empty), files, chars and words (reference
    /// lengths), char_edits, word_edits.
    public var json: String {
        func rate(_ r: ErrorRate) -> String { r.rate.map { String(format: "%.6f", $0) } ?? "null" }
        return "{\"cer\": \(rate(characters)), \"wer\": \(rate(words)), \"files\": \(files.count), "
            + "\"chars\": \(characters.referenceLength), \"words\": \(words.referenceLength), "
            + "\"char_edits\": \(characters.edits), \"word_edits\": \(words.edits)}"
    }
}
