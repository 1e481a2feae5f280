// What a run optimises, for the Trainer: a model, one data-parallel step over this rank's micro-batches and
// one validation pass. Pre-training (StepRunner over W2VBertModel, TrainStep.swift) and CTC fine-tuning
// (CTCStepRunner over CTCModel, CTCStep.swift) satisfy it; the loop, checkpoints, resume, signals, replica
// checks and metrics sinks are the Trainer's and the same for both.

import Foundation
import Tensor
import Distributed
import W2VBert
import Audio

public protocol TrainingObjective: AnyObject {
    /// Accumulation, buckets, the non-finite agreement and the update (its model and optimizer).
    var gradientStep: GradientStep { get }
    /// Runs optimizer step `step` on this rank's micro-batches of it; sums in the result are global.
    func run(_ batches: [MicroBatch], step: Int) throws -> StepResult
    /// The metrics of a train log line.
    var trainMetrics: [Metric] { get }
    /// One validation pass over this rank's micro-batches (`loader`), its sums all-reduced: the record's
    /// window and metrics.
    func validation(_ loader: DataLoader) throws -> (window: MetricWindow, metrics: [Metric])
    /// The metric that picks best.json (lower is better).
    var bestMetric: String { get }
}

extension TrainingObjective {
    public var optimizer: Optimizer { gradientStep.optimizer }
    public var params: FloatBuffer { gradientStep.model.params }
    public var layout: ParameterLayout { gradientStep.model.layout }
    public var updateFreq: Int {
        get { gradientStep.updateFreq }
        set { gradientStep.updateFreq = newValue }
    }
}

extension StepRunner: TrainingObjective {
    public var trainMetrics: [Metric] { Metric.train }
    public var bestMetric: String { "loss" }

    /// Losses, accuracies and perplexities with no Gumbel noise and no dropout; masks and noise keyed by
    /// step 0 (the same every time).
    public func validation(_ loader: DataLoader) throws -> (window: MetricWindow, metrics: [Metric]) {
        let c = config
        var sums = StepSums()
        var usage = [Double](repeating: 0, count: 2 * gv)  // soft usage, hard counts
        let key = 0  // the random key's step: the same every validation
        while let mb = try loader.nextIfAny() {
            if mb.batchSize == 0 { continue }
            let s = withView(mb, mask: mask(mb, step: key), step: key) { view in
                model.forward(view, tau: optimizer.tau, training: false) { buf in
                    for i in 0..<(2 * gv) { usage[i] += buf[i] }
                }
            }
            sums.add(s, audioSeconds: Double(mb.frames.reduce(0, +)) * fbankFrameSeconds, utterances: mb.batchSize)
        }
        var all = sums.array + usage
        try collectives.allReduce("validation sums", &all)
        var w = MetricWindow(config: c)
        w.sums = StepSums(Array(all[0..<7]))
        let n = max(1, w.sums.masked)
        (w.probPerplexity, w.codePerplexity) = all[7...].withUnsafeBufferPointer {
            codePerplexities($0.baseAddress!, groups: c.quantizer.groups, entries: c.quantizer.entries, masked: n)
        }
        w.diversityLoss = (Double(gv) - w.probPerplexity) / Double(gv)
        return (w, Metric.valid)
    }
}
