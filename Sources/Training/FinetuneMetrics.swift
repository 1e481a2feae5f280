// The metrics of CTC fine-tuning (see Metric.swift): the step's CTC sums and the validation's error rates.

import Foundation
import W2VBert
import Audio

/// A step's (or validation pass's) CTC sums, all-reduced as one array.
public struct CTCSums: Sendable {
    /// Σ loss_b / targetLength_b over the labelled utterances with a finite loss.
    public var lossSum = 0.0
    /// Labelled utterances.
    public var utterances = 0.0
    /// Impossible alignments (their loss zeroed).
    public var infinite = 0.0
    /// Encoder frames.
    public var frames = 0.0
    public init() {}
    var array: [Double] { [lossSum, utterances, infinite, frames] }
    init(_ a: [Double]) {
        lossSum = a[0]
        utterances = a[1]
        infinite = a[2]
        frames = a[3]
    }
    mutating func add(_ s: CTCStats) {
        lossSum += s.lossSum
        utterances += Double(s.utterances)
        infinite += Double(s.infinite)
        frames += Double(s.frames)
    }
    mutating func add(_ o: CTCSums) {
        lossSum += o.lossSum
        utterances += o.utterances
        infinite += o.infinite
        frames += o.frames
    }
    /// The mean over labelled utterances of loss_b / targetLength_b (impossible ones count as 0, as torch's
    /// zero_infinity).
    var meanLoss: Double { lossSum / max(utterances, 1) }
}

extension Metric {
    /// A fine-tuning training log line.
    public static let finetune: [Metric] = [
        Metric("loss", "loss %.3f") { $0.ctc.meanLoss },
        Metric("lr", "lr %.2e") { $0.lr },
        Metric("grad_norm", "|g| %.3f") { $0.gradNorm },
        Metric("infinite_losses", "inf %.0f") { $0.ctc.infinite },
        Metric("audio_seconds_per_second", "%.0f audio s/s") { $0.sums.audioSeconds / max($0.seconds, 1e-9) },
        Metric("utterances_per_second", nil) { $0.sums.utterances / max($0.seconds, 1e-9) },
        Metric("labelled_utterances", nil) { $0.ctc.utterances },
        Metric("allreduce_hidden_fraction", nil) {
            $0.allReduceSeconds > 0 ? max(0, 1 - $0.allReduceWaitSeconds / $0.allReduceSeconds) : 1
        },
        Metric("data_wait_seconds", "data wait %.3f s") { $0.dataWaitSeconds / Double(max($0.steps, 1)) },
    ]

    /// A fine-tuning validation record: loss and the greedy transcripts' CER and WER.
    public static let finetuneValid: [Metric] = [
        Metric("loss", "loss %.3f") { $0.ctc.meanLoss },
        Metric("cer", "cer %.4f") { $0.characterErrors.rate ?? 0 },
        Metric("wer", "wer %.4f") { $0.wordErrors.rate ?? 0 },
        Metric("infinite_losses", nil) { $0.ctc.infinite },
        Metric("labelled_utterances", "%.0f utterances") { $0.ctc.utterances },
    ]
}
