import XCTest
import W2VBert
import Tensor

/// The series (stack over k steps, NaN read as 0) and tokens (embed) front ends on the twin's fixtures
/// k_series and l_tokens: central differences of the whole loss (in Double) against the analytic gradient of
/// the front-end tensors, and missing values that change nothing but themselves. The targets are detached
/// (quantizer.detach_targets): the straight-through quantizer's forward value is its hard code, which a
/// difference does not see, so the check is on the loss that is a function of the parameters everywhere but
/// at code flips; detaching also stops the diversity loss at z (docs/method.md), so its weight is 0 here.
final class SequenceFrontEndTests: XCTestCase {
    /// |numeric − analytic| ≤ 3e-2·|analytic| + 2e-6/ε (a few ulps of the Float loss over 2ε). A perturbation
    /// that flips a code (m_series_plain has a frame whose best two codes are close) is a step, not a slope: it
    /// is recognised by its one-sided differences and left out, at most 2 of the samples.
    func checkFiniteDifferences(_ fixture: String, _ names: [String], eps: Float = 2e-3) throws {
        let run = try FixtureRun(fixture, extra: ["quantizer.detach_targets=true", "loss.diversity_weight=0"])
        let c = run.config
        let tau = c.tau(step: 0)
        run.model.zeroGrads()
        let s = run.forward(tau: tau)
        XCTAssertTrue(s.loss(c).isFinite)
        run.model.backward(lossScale: 1 / Float(s.masked))
        for e in run.model.layout.entries {
            for i in 0..<e.count {
                XCTAssertTrue(run.model.grads.ptr[e.offset + i].isFinite, "\(e.name)[\(i)] is not finite")
            }
        }
        func loss() -> Double { run.forward(tau: tau).loss(c) }
        let l0 = loss()
        var rng = RandomStream(seed: 3, purpose: .test)
        var flips = 0, checked = 0
        for name in names {
            let e = run.model.layout.entry(name)
            let picks = (0..<8).map { _ in e.offset + rng.nextInt(e.count) }
            let analytic = picks.map { Double(run.model.grads.ptr[$0]) }
            XCTAssertGreaterThan(analytic.map(abs).max()!, 0, "\(name): no gradient")
            for (i, a) in zip(picks, analytic) {
                let saved = run.model.params.ptr[i]
                run.model.params.ptr[i] = saved + eps
                let lp = loss()
                run.model.params.ptr[i] = saved - eps
                let lm = loss()
                run.model.params.ptr[i] = saved
                // A code flip inside ±ε is a step of the loss: the one-sided differences then disagree.
                let up = (lp - l0) / Double(eps), down = (l0 - lm) / Double(eps)
                if abs(up - down) > 0.5 * max(abs(up), abs(down)) + 4e-6 / Double(eps) {
                    flips += 1
                    continue
                }
                checked += 1
                let numeric = (lp - lm) / (2 * Double(eps))
                XCTAssertEqual(numeric, a, accuracy: 3e-2 * abs(a) + 2e-6 / Double(eps), "\(name)[\(i - e.offset)]")
            }
        }
        XCTAssertLessThanOrEqual(flips, 2, "code flips inside ±ε (\(checked) differences checked)")
    }

    func testSeriesFrontEndFiniteDifferencesWithMissingValues() throws {
        let run = try FixtureRun("fixture_k_series.safetensors")
        XCTAssertGreaterThan(run.features.filter(\.isNaN).count, 6, "the fixture holds missing values")
        try checkFiniteDifferences(
            "fixture_k_series.safetensors",
            [
                "feature_encoder.stack_norm.weight", "feature_encoder.stack_norm.bias", "feature_encoder.proj.weight",
                "feature_encoder.proj.bias", "contrastive.blocks.0.attn.q.weight",
            ])
    }

    func testSeriesFrontEndWithoutStackNormFiniteDifferences() throws {
        try checkFiniteDifferences(
            "fixture_m_series_plain.safetensors",
            ["feature_encoder.proj.weight", "feature_encoder.proj.bias", "feature_encoder.norm.weight"], eps: 5e-4)
    }

    func testTokensFrontEndFiniteDifferences() throws {
        try checkFiniteDifferences(
            "fixture_l_tokens.safetensors",
            [
                "feature_encoder.embedding.weight", "feature_encoder.proj.weight", "feature_encoder.norm.weight",
                "mlm.blocks.1.ffn2.fc2.weight",
            ])
    }

    /// A missing value is the channel mean (0 after normalisation): the same loss and gradients, bit for bit,
    /// as the input with its NaNs replaced by 0.
    func testMissingValuesReadAsZero() throws {
        let nan = try FixtureRun("fixture_k_series.safetensors")
        let zero = try FixtureRun("fixture_k_series.safetensors")
        zero.features = zero.features.map { $0.isNaN ? 0 : $0 }
        let tau = nan.config.tau(step: 0)
        for r in [nan, zero] {
            r.model.zeroGrads()
            let s = r.forward(tau: tau)
            r.model.backward(lossScale: 1 / Float(s.masked))
        }
        XCTAssertEqual(nan.forward(tau: tau).loss(nan.config), zero.forward(tau: tau).loss(zero.config))
        XCTAssertEqual(nan.model.grads.array, zero.model.grads.array)
    }
}
