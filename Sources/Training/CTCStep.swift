// One data-parallel CTC fine-tuning step (the objective of `w2vbert finetune`). For rank r with update_freq U
// micro-batches of the step:
//   1. one all-reduce counts the step's labelled utterances N over all ranks and micro-batches; the loss is
//      Σ_b loss_b / targetLength_b / N, so lossScale = 1 / N (as pre-training's 1 / masked frames)
//   2. forward/backward per micro-batch (time and channel masks keyed by seed, step, micro-batch index);
//      while the optimizer delays the encoder (finetune.freeze_updates), backward computes the head's
//      gradients only
//   3. GradientStep: accumulation, buckets, the CTC sums all-reduced, non-finite agreement, clip, AdamW
// Validation: the loss without masking or dropout, and the greedy transcripts' CER and WER against the
// references (the labels decoded with the run's dictionary).

import Foundation
import Tensor
import Distributed
import W2VBert
import Audio

extension CTCModel: TrainableModel {}

public final class CTCStepRunner {
    public let config: Config
    public let model: CTCModel
    public let gradientStep: GradientStep
    public let vocabulary: CTCVocabulary
    var collectives: Collectives { gradientStep.collectives }

    /// The optimizer: the front end outside its ranges when finetune.freeze_frontend, the rest of the
    /// encoder delayed by finetune.freeze_updates updates.
    public init(
        config c: Config, model: CTCModel, vocabulary: CTCVocabulary, collectives: Collectives, updateFreq: Int
    ) {
        config = c
        self.model = model
        self.vocabulary = vocabulary
        let (trainable, encoder) = c.finetuneRanges(model.layout)
        let optimizer = Optimizer(
            config: c, layout: model.layout, ranges: trainable, delayed: encoder,
            delayUpdates: c.finetune.freezeUpdates)
        gradientStep = GradientStep(
            model: model, optimizer: optimizer, collectives: collectives, updateFreq: updateFreq)
    }

    /// The model's view of a micro-batch (CTCModel draws its own masks from the key).
    func withView<R>(_ mb: MicroBatch, step: Int, _ body: (BatchView) throws -> R) rethrows -> R {
        let lengths = mb.frames.map { Int32($0) }
        let key = RandomKey(seed: config.train.seed, step: step, microBatch: mb.index)
        let noMask = [UInt8](repeating: 0, count: 1)
        return try mb.features.withUnsafeBufferPointer { f in
            try lengths.withUnsafeBufferPointer { l in
                try noMask.withUnsafeBufferPointer { m in
                    try body(
                        BatchView(
                            features: f.baseAddress!, lengths: l.baseAddress!, mask: m.baseAddress!,
                            batch: mb.batchSize, frames: mb.maxFrames, key: key, conditioning: nil))
                }
            }
        }
    }

    /// forward of one micro-batch with its labels.
    func forward(_ mb: MicroBatch, step: Int, training: Bool) -> CTCStats {
        // No utterance labelled (every label length 0): the model reads no label, but wants a pointer.
        let labels = mb.labels.isEmpty ? [CTCVocabulary.blank] : mb.labels
        return withView(mb, step: step) { view in
            labels.withUnsafeBufferPointer { l in
                mb.labelLengths.withUnsafeBufferPointer { n in
                    model.forward(view, labels: l.baseAddress!, labelLengths: n.baseAddress!, training: training)
                }
            }
        }
    }
}

extension CTCStepRunner: TrainingObjective {
    public var trainMetrics: [Metric] { Metric.finetune }
    public var bestMetric: String { "wer" }

    public func run(_ batches: [MicroBatch], step: Int) throws -> StepResult {
        precondition(batches.count == updateFreq, "a step takes update_freq micro-batches")
        let start = monotonicSeconds()
        var labelled = [Double(batches.reduce(0) { n, mb in n + mb.labelLengths.filter { $0 > 0 }.count })]
        try collectives.allReduce("labelled utterances", &labelled)
        let lossScale = Float(1 / max(1, labelled[0]))
        let trainEncoder = optimizer.step >= optimizer.delayUpdates
        let steps = gradientStep
        steps.begin()
        var result = StepResult()
        var ctc = CTCSums()
        for (j, mb) in batches.enumerated() {
            let last = j == batches.count - 1
            if mb.batchSize == 0 {
                steps.emptyMicroBatch(j, last: last)
                continue
            }
            ctc.add(forward(mb, step: step, training: true))
            model.backward(lossScale: lossScale, trainEncoder: trainEncoder) { b in steps.bucketReady(b, last: last) }
            result.sums.audioSeconds += Double(mb.frames.reduce(0, +)) * fbankFrameSeconds
            result.sums.utterances += Double(mb.batchSize)
            steps.microBatchDone(j, last: last)
        }
        steps.handOverRemaining()
        result.computeSeconds = monotonicSeconds() - start
        let local = ctc.array + [result.sums.audioSeconds, result.sums.utterances]
        var global = local
        let u = try steps.finish {
            try collectives.allReduce("step metrics", &global)
            return global[0].isFinite
        }
        result.ctc = CTCSums(Array(global[0..<4]))
        result.sums.audioSeconds = global[4]
        result.sums.utterances = global[5]
        result.gradNorm = u.gradNorm
        result.skipped = u.skipped
        result.lr = u.lr
        result.allReduceWaitSeconds = u.allReduceWaitSeconds
        result.allReduceSeconds = u.allReduceSeconds
        return result
    }

    /// Loss (no masking, no dropout) and the greedy transcripts' errors over this rank's micro-batches.
    public func validation(_ loader: DataLoader) throws -> (window: MetricWindow, metrics: [Metric]) {
        var ctc = CTCSums()
        var chars = ErrorRate(), words = ErrorRate()
        let V = config.model.vocabSize
        while let mb = try loader.nextIfAny() {
            if mb.batchSize == 0 { continue }
            ctc.add(forward(mb, step: 0, training: false))
            let lengths = mb.frames.map { Int32($0) }
            let (logits, frames) = mb.features.withUnsafeBufferPointer { f in
                lengths.withUnsafeBufferPointer { l in
                    model.logits(
                        features: f.baseAddress!, lengths: l.baseAddress!, batch: mb.batchSize, frames: mb.maxFrames)
                }
            }
            let T = config.encoderLength(t0: mb.maxFrames)
            var offset = 0
            for b in 0..<mb.batchSize {
                let n = Int(mb.labelLengths[b])
                defer { offset += n }
                guard n > 0 else { continue }
                let reference = vocabulary.decode(mb.labels[offset..<(offset + n)])
                let hypothesis = CTCGreedyDecoding.text(
                    logits: logits + b * T * V, frames: frames[b], vocabulary: vocabulary)
                chars.add(.characters(reference: reference, hypothesis: hypothesis))
                words.add(.words(reference: reference, hypothesis: hypothesis))
            }
        }
        var all = ctc.array + [chars.edits, chars.referenceLength, words.edits, words.referenceLength].map(Double.init)
        try collectives.allReduce("validation sums", &all)
        var w = MetricWindow(config: config)
        w.ctc = CTCSums(Array(all[0..<4]))
        w.characterErrors = ErrorRate(edits: Int(all[4]), referenceLength: Int(all[5]))
        w.wordErrors = ErrorRate(edits: Int(all[6]), referenceLength: Int(all[7]))
        return (w, Metric.finetuneValid)
    }
}
