// Validation (`train.valid_interval` and `w2vbert validate`): the objective's validation pass over the
// validation manifest (TrainingObjective.swift); micro-batches round-robin over the ranks; sums all-reduced
// once at the end. The objective's best metric (pre-training: loss; fine-tuning: WER) picks best.json.

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
        var lo = LoaderOptions()
        lo.maxBadFraction = config.train.maxBadFraction
        lo.format = format
        lo.conditioning = conditioning?.valid ?? []
        lo.labels = labels?.valid ?? []
        let loader = DataLoader(manifest: vm, batches: validPlan, worldSize: comm.size, options: lo)
        defer { loader.stop() }
        let (w, metrics) = try objective.validation(loader)
        let m = StepMetrics(kind: "valid", step: step, metrics: metrics, window: w)
        lastValidLoss = m.value(objective.bestMetric)
        try sinks.write(m)
    }
}
