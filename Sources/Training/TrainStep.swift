// One data-parallel pre-training step, shared by `train` and `bench dist`; the objective-independent
// machinery (accumulation, buckets, non-finite agreement, clipping, AdamW) is GradientStep.swift.
// For rank r with update_freq U micro-batches of the step:
//   1. masks keyed (seed, step, micro-batch index)
//   2. U > 1: a pre-pass sums the quantizer usage of all micro-batches and ranks (one all-reduce), so the
//      diversity loss is that of the step; U = 1: the forward's own all-reduce does it
//   3. forward/backward per micro-batch; each micro-batch's gradient goes into zeroed gradients and is
//      added to an accumulator (g₀ + g₁ + …, the sum two ranks form in MPI); on the last micro-batch every
//      gradient bucket is handed to the background all-reduce as soon as backward has finished it
//   4. wait for the buckets, collective non-finite check (all ranks skip together), clip, AdamW

import Foundation
import Tensor
import Distributed
import W2VBert
import Audio

/// What one optimizer step produced (after its collectives: sums and flags are global).
public struct StepResult: Sendable {
    public var sums = StepSums()
    /// CTC fine-tuning's sums (zero in pre-training).
    public var ctc = CTCSums()
    public var diversityLoss = 0.0, probPerplexity = 0.0, codePerplexity = 0.0
    /// Hard-code counts of the step (global), for the codebook protocol.
    public var codeCounts: [Double] = []
    public var gradNorm = 0.0
    /// Some rank had a non-finite loss or gradient: nobody updated.
    public var skipped = false
    public var tau: Float = 0, lr: Float = 0
    public var computeSeconds = 0.0, allReduceWaitSeconds = 0.0, allReduceSeconds = 0.0
}

public final class StepRunner {
    public let config: Config
    public let model: W2VBertModel
    /// Accumulation, buckets, the non-finite agreement and the update.
    public let gradientStep: GradientStep
    public var optimizer: Optimizer { gradientStep.optimizer }
    public var collectives: Collectives { gradientStep.collectives }
    public var reducer: GradientBucketReducer { gradientStep.reducer }
    public var updateFreq: Int {
        get { gradientStep.updateFreq }
        set { gradientStep.updateFreq = newValue }
    }
    let masker: SpanMasker
    let gv: Int

    public init(
        config c: Config, model: W2VBertModel, optimizer: Optimizer, collectives: Collectives,
        updateFreq: Int
    ) {
        config = c
        self.model = model
        gradientStep = GradientStep(
            model: model, optimizer: optimizer, collectives: collectives, updateFreq: updateFreq)
        masker = SpanMasker(maskProb: Double(c.mask.prob), span: c.mask.span, minSpans: c.mask.minSpans)
        gv = c.quantizer.groups * c.quantizer.entries
    }

    /// The span masks of a micro-batch, keyed (seed, step, micro-batch index).
    public func mask(_ mb: MicroBatch, step: Int) -> [UInt8] {
        let c = config, T = c.encoderLength(t0: mb.maxFrames)
        var rng = mb.randomStream(seed: c.train.seed, step: step, purpose: .mask)
        return masker.mask(lengths: mb.frames.map { min(T, c.encoderLength(t0: $0)) }, paddedLength: T, stream: &rng)
    }

    /// The model's view of a micro-batch and its mask, with random key (seed, step, micro-batch index) and
    /// the utterances' conditioning indices (none: nil).
    public func withView<R>(
        _ mb: MicroBatch, mask: [UInt8], step: Int,
        _ body: (BatchView) throws -> R
    ) rethrows -> R {
        let lengths = mb.frames.map { Int32($0) }
        let key = RandomKey(seed: config.train.seed, step: step, microBatch: mb.index)
        return try mb.features.withUnsafeBufferPointer { f in
            try lengths.withUnsafeBufferPointer { l in
                try mask.withUnsafeBufferPointer { m in
                    try mb.conditioning.withUnsafeBufferPointer { cond in
                        try body(
                            BatchView(
                                features: f.baseAddress!, lengths: l.baseAddress!, mask: m.baseAddress!,
                                batch: mb.batchSize, frames: mb.maxFrames, key: key,
                                conditioning: mb.conditioning.isEmpty ? nil : cond.baseAddress))
                    }
                }
            }
        }
    }

    /// Runs optimizer step `step` on this rank's micro-batches of it.
    public func run(_ batches: [MicroBatch], step: Int) throws -> StepResult {
        precondition(batches.count == updateFreq, "a step takes update_freq micro-batches")
        let start = monotonicSeconds()
        let masks = batches.map { mask($0, step: step) }
        var result = StepResult()
        result.tau = optimizer.tau
        let stepUsage = try updateFreq > 1 ? preUsage(batches, masks, step: step, tau: result.tau) : nil
        let usage = try forwardBackward(batches, masks, step: step, stepUsage: stepUsage, result: &result)
        result.computeSeconds = monotonicSeconds() - start
        result.codeCounts = Array(usage[gv..<(2 * gv)])
        try finish(&result)
        return result
    }

    /// update_freq > 1: the quantizer usage of all micro-batches of the step on all ranks.
    func preUsage(_ batches: [MicroBatch], _ masks: [[UInt8]], step: Int, tau: Float) throws -> [Double] {
        var total = [Double](repeating: 0, count: 2 * gv + 1)
        for (j, mb) in batches.enumerated() where mb.batchSize > 0 {
            let u = withView(mb, mask: masks[j], step: step) { model.quantizerUsage($0, tau: tau) }
            for i in 0..<u.count { total[i] += u[i] }
        }
        try collectives.allReduce("quantizer usage (step)", &total)
        return total
    }

    /// Forward and backward of every micro-batch, gradients accumulated in order and handed to the
    /// all-reduce bucket by bucket on the last one. Returns the step's usage [soft, hard, masked].
    func forwardBackward(
        _ batches: [MicroBatch], _ masks: [[UInt8]], step: Int, stepUsage: [Double]?,
        result: inout StepResult
    ) throws -> [Double] {
        let steps = gradientStep
        steps.begin()
        var usage = stepUsage ?? [Double](repeating: 0, count: 2 * gv + 1)
        var sums = StepSums()
        for (j, mb) in batches.enumerated() {
            let last = j == batches.count - 1
            if mb.batchSize == 0 {
                // Every file of this micro-batch failed to load: take part in the collectives, add nothing.
                if stepUsage == nil {
                    usage = [Double](repeating: 0, count: 2 * gv + 1)
                    try collectives.allReduce("quantizer usage", &usage)
                }
                steps.emptyMicroBatch(j, last: last)
                continue
            }
            let stats = try withView(mb, mask: masks[j], step: step) { view -> StepStats in
                let s = try model.forward(view, tau: result.tau, training: true) { buf in
                    if let stepUsage {
                        for i in 0..<buf.count { buf[i] = stepUsage[i] }
                    } else {
                        try collectives.allReduce(
                            "quantizer usage", buf.baseAddress!, count: buf.count,
                            type: .double, op: .sum)
                        usage = Array(buf)
                    }
                }
                let lossScale = Float(1 / max(1.0, s.maskedGlobal))
                model.backward(lossScale: lossScale, diversityScale: config.loss.diversityWeight) { b in
                    steps.bucketReady(b, last: last)
                }
                return s
            }
            sums.add(stats, audioSeconds: Double(mb.frames.reduce(0, +)) * fbankFrameSeconds, utterances: mb.batchSize)
            result.diversityLoss = stats.diversityLoss
            result.probPerplexity = stats.probPerplexity
            result.codePerplexity = stats.codePerplexity
            steps.microBatchDone(j, last: last)
        }
        steps.handOverRemaining()
        result.sums = sums
        return usage
    }

    /// Waits for the buckets, sums the metrics, agrees on a non-finite step, clips and updates.
    func finish(_ r: inout StepResult) throws {
        var sums = r.sums
        let u = try gradientStep.finish {
            var a = sums.array
            try collectives.allReduce("step metrics", &a)
            sums = StepSums(a)
            return sums.contrastive.isFinite && sums.mlm.isFinite
        }
        r.sums = sums
        r.allReduceWaitSeconds = u.allReduceWaitSeconds
        r.allReduceSeconds = u.allReduceSeconds
        r.gradNorm = u.gradNorm
        r.skipped = u.skipped
        r.sums.masked = max(r.sums.masked, 1)
        r.lr = u.lr
    }
}
