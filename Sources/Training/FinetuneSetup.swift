// How the Trainer sets up CTC fine-tuning (`w2vbert finetune`): the labels and dictionary before the layout
// (the head's size is the dictionary's), and the objective the run optimises.

import Foundation
import Tensor
import Distributed
import W2VBert
import Audio

extension Config {
    /// The span of the minimum-length filter of the data order: a kept utterance has at least span + min_spans
    /// encoder frames (fine-tuning: its time-mask span).
    var maskSpanForLengthFilter: Int { model.head == .ctc ? finetune.maskTimeSpan : mask.span }
}

extension Trainer {
    /// Fine-tuning: model.head ctc with model.vocab_size the dictionary's size, and the labels.
    static func finetuneLabels(
        _ c: inout Config, _ o: TrainOptions, _ train: Manifest, _ valid: Manifest?
    ) throws -> FinetuneLabels {
        let source: CTCVocabulary?
        do {
            source = try o.initFrom.flatMap { try InitialWeights.sourceDictionary($0) }
        } catch {
            throw TrainError("--init-from: \(error)")
        }
        let labels = try FinetuneLabels.prepare(
            config: c, train: train, trainPath: o.trainManifest, valid: valid, validPath: o.validManifest,
            runDirectory: o.runDirectory, dictPath: o.dictionary, source: source,
            resume: o.resume || o.requireCheckpoint)
        let size = labels.vocabulary.size
        if c.model.vocabSize != 0 && c.model.vocabSize != size {
            let dict = o.dictionary ?? o.runDirectory + "/" + FinetuneLabels.dictionaryName
            throw TrainError(
                "\(dict): the dictionary gives \(size) outputs (blank included), but model.vocab_size is "
                    + "\(c.model.vocabSize); leave model.vocab_size unset")
        }
        c.model.head = .ctc
        c.model.vocabSize = size
        do { try c.validate() } catch { throw TrainError("\(error)", exit: .usage) }
        return labels
    }

    /// Pre-training's StepRunner over a W2VBertModel, or with labels a CTCStepRunner over a CTCModel.
    static func objective(
        _ c: Config, compute: Compute, labels: FinetuneLabels?, collectives: Collectives, maxBatch: Int,
        maxFrames: Int
    ) -> TrainingObjective {
        let total = max(c.train.maxFrames, maxFrames)
        if let labels {
            let model = CTCModel(
                config: c, compute: compute, maxBatch: maxBatch, maxFrames: maxFrames, maxTotalFrames: total)
            return CTCStepRunner(
                config: c, model: model, vocabulary: labels.vocabulary, collectives: collectives,
                updateFreq: c.train.updateFreq)
        }
        let model = W2VBertModel(
            config: c, compute: compute, maxBatch: maxBatch, maxFrames: maxFrames, maxTotalFrames: total)
        return StepRunner(
            config: c, model: model, optimizer: Optimizer(config: c, layout: model.layout), collectives: collectives,
            updateFreq: c.train.updateFreq)
    }
}
