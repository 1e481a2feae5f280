// The tri-stage learning-rate schedule of CTC fine-tuning (fairseq's `tri_stage`): with
// (w, h, d) = ⌊max_steps · optimizer.tri_stage_ratios⌋, init = init_lr_scale·lr and final = final_lr_scale·lr,
// update s (0-based) gets
//   s < w:              init + (lr − init) · s / w           (linear warm-up)
//   w ≤ s < w + h:      lr                                   (hold)
//   w + h ≤ s ≤ w+h+d:  lr · exp(ln(final_lr_scale) · (s − w − h) / d)    (exponential decay)
//   later:              final
// Unlike the other schedules it is evaluated at s itself: the first update gets init, not zero.

import Foundation

extension Config {
    /// Warm-up, hold and decay lengths in updates.
    public var triStageSteps: (warmup: Int, hold: Int, decay: Int) {
        let r = optimizer.triStageRatios
        let total = Double(optimizer.maxSteps)
        return (Int(total * r[0]), Int(total * r[1]), Int(total * r[2]))
    }

    /// The tri-stage rate of update `step` (0-based).
    func triStageRate(step: Int) -> Float {
        let peak = Double(optimizer.lr)
        let initial = Double(optimizer.initLrScale) * peak
        let (w, h, d) = triStageSteps
        if step < w {
            return Float(initial + (peak - initial) * Double(step) / Double(w))
        }
        if step < w + h { return Float(peak) }
        let offset = step - w - h
        if offset <= d && d > 0 {
            return Float(peak * exp(log(Double(optimizer.finalLrScale)) * Double(offset) / Double(d)))
        }
        return Float(Double(optimizer.finalLrScale) * peak)
    }

    /// The schedules' keys and the finetune section.
    func validateFinetune() throws {
        func check(_ ok: Bool, _ key: String, _ msg: String) throws { if !ok { throw ConfigError(key, msg) } }
        try check(
            optimizer.schedule != .polynomial || optimizer.maxSteps > optimizer.warmup, "optimizer.max_steps",
            "must exceed optimizer.warmup for the polynomial schedule")
        let r = optimizer.triStageRatios
        try check(
            r.count == 3 && r.allSatisfy { $0 >= 0 && $0 <= 1 } && abs(r.reduce(0, +) - 1) < 1e-6,
            "optimizer.tri_stage_ratios", "expected three shares [warm-up, hold, decay] in [0, 1] summing to 1")
        try check(
            optimizer.initLrScale > 0 && optimizer.initLrScale <= 1, "optimizer.init_lr_scale", "must be in (0, 1]")
        try check(
            optimizer.finalLrScale > 0 && optimizer.finalLrScale <= 1, "optimizer.final_lr_scale",
            "must be in (0, 1]")
        try check(finetune.freezeUpdates >= 0, "finetune.freeze_updates", "must be ≥ 0")
    }
}
