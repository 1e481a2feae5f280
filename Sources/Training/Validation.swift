// Validation (`train.valid_interval` and `w2vbert validate`): losses, accuracies and perplexities on the
// validation manifest with no Gumbel noise and no dropout; masks and noise keyed by step 0 (the same
// every time); micro-batches round-robin over the ranks; sums all-reduced once at the end.

import Foundation
import Distributed
import W2VBert
import Audio

extension Trainer {
    /// `w2vbert validate`: load the run's newest checkpoint and evaluate the validation manifest.
    public func evaluate() throws -> TrainExit {
        try resumeOrStart()
        try validate()
        coll.stop()
        return .finished
    }

    public func validate() throws {
        guard let vm = validManifest else { return }
        let c = config, gv = c.quantizer.groups * c.quantizer.entries
        var lo = LoaderOptions()
        lo.maxBadFraction = c.train.maxBadFraction
        lo.conditioning = conditioning?.valid ?? []
        let loader = DataLoader(manifest: vm, batches: validPlan, worldSize: comm.size, options: lo)
        defer { loader.stop() }
        var sums = StepSums()
        var usage = [Double](repeating: 0, count: 2 * gv)  // soft usage, hard counts
        let key = 0  // the random key's step: the same every validation
        while let mb = try loader.nextIfAny() {
            if mb.batchSize == 0 { continue }
            let s = runner.withView(mb, mask: runner.mask(mb, step: key), step: key) { view in
                model.forward(view, tau: optimizer.tau, training: false) { buf in
                    for i in 0..<(2 * gv) { usage[i] += buf[i] }
                }
            }
            sums.add(s, audioSeconds: Double(mb.frames.reduce(0, +)) * fbankFrameSeconds, utterances: mb.batchSize)
        }
        var all = sums.array + usage
        try coll.allReduce("validation sums", &all)
        var w = MetricWindow(config: c)
        w.sums = StepSums(Array(all[0..<7]))
        let n = max(1, w.sums.masked)
        (w.probPerplexity, w.codePerplexity) = all[7...].withUnsafeBufferPointer {
            codePerplexities($0.baseAddress!, groups: c.quantizer.groups, entries: c.quantizer.entries, masked: n)
        }
        w.diversityLoss = (Double(gv) - w.probPerplexity) / Double(gv)
        let m = StepMetrics(kind: "valid", step: step, metrics: Metric.valid, window: w)
        lastValidLoss = m.value("loss")
        try sinks.write(m)
    }
}
