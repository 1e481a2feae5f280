import XCTest
import W2VBert
import Tensor

final class InvarianceTests: XCTestCase {
    func microConfig(_ extra: [String] = []) throws -> Config {
        try Config.load(
            preset: "tiny",
            overrides: [
                "model.frontend_channels=4", "model.dim=32", "model.heads=4", "model.ffn_dim=64", "model.conv_kernel=5",
                "model.contrastive_blocks=2", "model.mlm_blocks=1", "model.pos_conv_kernel=6",
                "model.pos_conv_groups=4",
                "model.final_dim=16", "quantizer.entries=24", "quantizer.dim=16", "mask.span=4", "loss.num_negatives=5"
            ] + extra)
    }

    /// Two ranks holding one utterance each (different padding), usage all-reduced, gradients summed and
    /// scaled by the global masked count == one process holding both utterances.
    func testTwoRanksEqualOneProcess() throws {
        let c = try microConfig()
        let whole = SyntheticBatch(config: c, lengths: [95, 71])
        let model = W2VBertModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 95)
        let rank = (0..<2).map { _ in W2VBertModel(config: c, compute: .fp32(), maxBatch: 1, maxFrames: 95) }
        let part = [SyntheticBatch(config: c, lengths: [95]), SyntheticBatch(config: c, lengths: [71])]
        // Same features and masks as the whole batch.
        for (u, p) in part.enumerated() {
            p.features.ptr.update(from: whole.features.ptr + u * 95 * 80, count: p.t0 * 80)
            for t in 0..<p.t { p.mask[t] = whole.mask[u * whole.t + t] }
        }
        // Injected draws: the whole batch's, sliced per rank (distractors re-based).
        let s0 = (0..<part[0].t).filter { part[0].mask[$0] != 0 }.count
        let s1 = (0..<part[1].t).filter { part[1].mask[$0] != 0 }.count
        let d = c.model.dim, gv = c.quantizer.entries, K = c.loss.numNegatives
        var rng = RandomStream(seed: 5, purpose: .test)
        let noise = (0..<((s0 + s1) * d)).map { _ in 0.1 * rng.nextNormal() }
        let gumbel = (0..<((s0 + s1) * gv)).map { _ in rng.nextGumbel() }
        var dist = [Int32]()
        for i in 0..<(s0 + s1) {
            let (start, n) = i < s0 ? (0, s0) : (s0, s1)
            for _ in 0..<K {
                var r = rng.nextInt(n - 1)
                if r >= i - start { r += 1 }
                dist.append(Int32(start + r))
            }
        }
        model.noiseOverride = NoiseOverride(maskNoise: noise, gumbel: gumbel, distractors: dist)
        rank[0].noiseOverride = NoiseOverride(
            maskNoise: Array(noise[0..<(s0 * d)]),
            gumbel: Array(gumbel[0..<(s0 * gv)]),
            distractors: Array(dist[0..<(s0 * K)]))
        rank[1].noiseOverride = NoiseOverride(
            maskNoise: Array(noise[(s0 * d)...]), gumbel: Array(gumbel[(s0 * gv)...]),
            distractors: dist[(s0 * K)...].map { $0 - Int32(s0) })
        for r in rank { r.params.ptr.update(from: model.params.ptr, count: model.layout.count) }

        let tau: Float = 1.5
        let ref = whole.forward(model, step: 0, tau: tau)
        model.backward(lossScale: 1 / Float(ref.masked))
        // The all-reduce, emulated: each rank's local usage is captured first, then added to the other's.
        var local = [[Double]](repeating: [], count: 2)
        for i in 0..<2 { _ = part[i].forward(rank[i], step: 0, tau: tau) { buf in local[i] = Array(buf) } }
        var stats = [StepStats]()
        for i in 0..<2 {
            let other = local[1 - i]
            stats.append(
                part[i].forward(
                    rank[i], step: 0,
                    tau: tau
                ) { buf in for j in 0..<buf.count { buf[j] += other[j] } })
        }
        _ = (
            "ref", ref.masked, ref.contrastiveLossSum, ref.mlmLossSum, ref.diversityLoss, "ranks", stats[0].masked,
            stats[1].masked, stats[0].contrastiveLossSum, stats[1].contrastiveLossSum, stats[0].mlmLossSum,
            stats[1].mlmLossSum, stats[0].diversityLoss, stats[1].diversityLoss
        )
        let nGlobal = Float(stats[0].masked + stats[1].masked)
        XCTAssertEqual(Double(nGlobal), stats[0].maskedGlobal)
        for i in 0..<2 { rank[i].backward(lossScale: 1 / nGlobal, diversityScale: c.loss.diversityWeight) }
        XCTAssertEqual(stats[0].diversityLoss, ref.diversityLoss, accuracy: 1e-6)
        XCTAssertEqual(
            stats[0].contrastiveLossSum + stats[1].contrastiveLossSum, ref.contrastiveLossSum,
            accuracy: 1e-4)
        XCTAssertEqual(stats[0].mlmLossSum + stats[1].mlmLossSum, ref.mlmLossSum, accuracy: 1e-4)
        var worst = 0.0
        for e in model.layout.entries {
            var maxRef: Float = 0, maxDiff: Float = 0
            for i in e.offset..<(e.offset + e.count) {
                let sum = rank[0].grads.ptr[i] + rank[1].grads.ptr[i]
                maxRef = max(maxRef, abs(model.grads.ptr[i]))
                maxDiff = max(maxDiff, abs(sum - model.grads.ptr[i]))
            }
            if maxRef > 1e-7 {
                worst = max(worst, Double(maxDiff / maxRef))
                XCTAssertLessThan(maxDiff / maxRef, 1e-4, e.name)
            }
        }
        print("two ranks vs one process: worst gradient rel err \(worst)")
    }

    /// Dropout and layer drop (training mode): the analytic gradient matches a central difference of the
    /// loss along a direction (the streams fix the masks, so the loss is a deterministic function).
    func testDropoutAndLayerDropDirectionalDerivative() throws {
        for extra in [
            [
                "quantizer.detach_targets=true", "model.dropout=0.2", "model.layer_drop=0.4",
                "model.frontend=stack", "mask.replacement=learned"
            ],
            [
                "quantizer.detach_targets=true", "model.dropout=0.1", "model.position=shaw", "model.shaw_left=3",
                "model.shaw_right=2"
            ],
            // the Hugging Face family: no LayerNorm(d) after the front end, no context projection
            [
                "quantizer.detach_targets=true", "model.dropout=0.1", "model.frontend=stack",
                "model.frontend_norm=false",
                "model.context_proj=false", "model.position=shaw", "model.shaw_left=3", "model.shaw_right=2",
                "model.causal_conv=true", "model.conv_kernel=5", "mask.replacement=learned"
            ]
        ] {
            let c = try microConfig(extra)
            let batch = SyntheticBatch(config: c, lengths: [60, 47])
            let model = W2VBertModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 60)
            func loss(step: Int) -> Double { batch.forward(model, step: step, tau: 1.0).loss(c) }
            for step in 0..<3 {
                model.zeroGrads()
                let s = batch.forward(model, step: step, tau: 1.0)
                model.backward(lossScale: 1 / Float(s.masked), diversityScale: c.loss.diversityWeight)
                var rng = RandomStream(seed: UInt64(step + 9), purpose: .test)
                let n = model.layout.count
                // Direction: unit gradient + unit random vector (a wrong gradient shows along either).
                let rnd = (0..<n).map { _ in rng.nextNormal() }
                let gnorm = Float(sumOfSquares(model.grads.ptr, n: n).squareRoot())
                let rnorm = rnd.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
                var dir = (0..<n).map { model.grads.ptr[$0] / gnorm + rnd[$0] / rnorm }
                // The straight-through estimator is not the derivative of the forward (one-hot) loss, and
                // a code id that flips makes the loss jump: the quantizer logits and everything upstream of z
                // (the feature encoder) are left out of the direction, and targets are detached (below).
                for e in model.layout.entries
                where e.name.hasPrefix("quantizer.proj") || e.name.hasPrefix("feature_encoder.") {
                    for i in e.offset..<(e.offset + e.count) { dir[i] = 0 }
                }
                var analytic = 0.0
                for i in 0..<n { analytic += Double(dir[i]) * Double(model.grads.ptr[i]) }
                let saved = model.params.array
                let eps: Float = 1e-3
                for i in 0..<n { model.params.ptr[i] = saved[i] + eps * dir[i] }
                let lp = loss(step: step)
                for i in 0..<n { model.params.ptr[i] = saved[i] - eps * dir[i] }
                let lm = loss(step: step)
                for i in 0..<n { model.params.ptr[i] = saved[i] }
                let numeric = (lp - lm) / (2 * Double(eps))
                print("\(extra) step \(step): directional derivative analytic \(analytic) numeric \(numeric)")
                XCTAssertEqual(numeric, analytic, accuracy: 3e-2 * abs(analytic) + 1e-2)
            }
        }
    }

    /// Evaluation mode is deterministic and draws nothing: two calls agree exactly; no allocation after
    /// the first training step.
    func testEvaluationAndNoAllocationInStep() throws {
        let c = try microConfig(["model.dropout=0.1"])
        let batch = SyntheticBatch(config: c, lengths: [60, 47])
        let model = W2VBertModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 60)
        let opt = Optimizer(config: c, layout: model.layout)
        let a = batch.forward(model, step: 3, tau: 1, training: false)
        let b = batch.forward(model, step: 3, tau: 1, training: false)
        XCTAssertEqual(a.loss(c), b.loss(c))
        let before = FloatBuffer.allocatedBytes.current
        for step in 0..<3 {
            model.zeroGrads()
            let s = batch.forward(model, step: step, tau: opt.tau)
            model.backward(lossScale: 1 / Float(s.masked))
            opt.update(params: model.params, grads: model.grads)
        }
        XCTAssertEqual(FloatBuffer.allocatedBytes.current, before)
    }
}

final class EmbedTests: XCTestCase {
    /// Padding and batching do not change the hidden states of real frames (an utterance embedded alone
    /// equals the same utterance padded inside a batch).
    func testEmbedIgnoresPaddingAndBatching() throws {
        let c = try Config.load(
            preset: "tiny",
            overrides: [
                "model.dim=32", "model.heads=4", "model.ffn_dim=64",
                "model.frontend_channels=4",
                "model.pos_conv_kernel=6", "model.pos_conv_groups=4", "quantizer.entries=16", "quantizer.dim=16"
            ])
        let both = SyntheticBatch(config: c, lengths: [95, 71])
        let one = SyntheticBatch(config: c, lengths: [71])
        one.features.ptr.update(from: both.features.ptr + 95 * 80, count: 71 * 80)
        let model = W2VBertModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 95)
        let tb = both.t, t1 = one.t, d = 32
        for layer in [W2VBertModel.EmbedLayer.contrastive, .mlm] {
            let hb = both.lengths.withUnsafeBufferPointer {
                model.embed(
                    features: both.features.ptr,
                    lengths: $0.baseAddress!, batch: 2, frames: 95, layer: layer)
            }
            let second = Array(UnsafeBufferPointer(start: hb + tb * d, count: t1 * d))
            let h1 = one.lengths.withUnsafeBufferPointer {
                model.embed(
                    features: one.features.ptr,
                    lengths: $0.baseAddress!, batch: 1, frames: 71, layer: layer)
            }
            var worst: Float = 0
            for i in 0..<(t1 * d) { worst = max(worst, abs(second[i] - h1[i])) }
            print("embed \(layer): max difference padded vs alone \(worst)")
            XCTAssertLessThan(worst, 1e-4)
        }
    }
}

final class CapacityTests: XCTestCase {
    /// An arena sized by a total-frame budget serves every batch shape inside it, with the same results as a
    /// model sized exactly for the batch.
    func testTotalFrameBudget() throws {
        for extra in [
            ["model.position=rope"],
            [
                "model.frontend=stack", "model.position=shaw", "model.shaw_left=3",
                "model.shaw_right=2"
            ]
        ] {
            let c = try Config.load(
                preset: "tiny",
                overrides: [
                    "model.dim=32", "model.heads=4", "model.ffn_dim=64",
                    "model.frontend_channels=4", "quantizer.entries=16",
                    "quantizer.dim=16", "mask.span=3"
                ] + extra)
            let shared = W2VBertModel(config: c, compute: .fp32(), maxBatch: 4, maxFrames: 120, maxTotalFrames: 200)
            let full = W2VBertModel(config: c, compute: .fp32(), maxBatch: 4, maxFrames: 120)
            print("arena floats: budget \(shared.activationBytes / 4), full \(full.activationBytes / 4)")
            for lengths in [[120], [100, 97], [50, 48, 45, 50]] {
                let batch = SyntheticBatch(config: c, lengths: lengths)
                let exact = W2VBertModel(
                    config: c, compute: .fp32(), maxBatch: lengths.count,
                    maxFrames: lengths.max()!)
                var results: [(Double, Double)] = []
                for m in [shared, exact] {
                    m.zeroGrads()
                    let s = batch.forward(m, step: 1, tau: 1)
                    m.backward(lossScale: 1 / Float(s.masked))
                    results.append((s.loss(c), sumOfSquares(m.grads.ptr, n: m.grads.count)))
                }
                XCTAssertEqual(results[0].0, results[1].0)
                XCTAssertEqual(results[0].1, results[1].1)
            }
        }
    }
}

final class GradientHookTests: XCTestCase {
    /// The ranges reported by gradientsReady cover the layout exactly once, and each range's gradients are
    /// final when reported (a snapshot taken in the hook equals the gradients after backward).
    /// An error of the cross-rank reduction inside forward (MPI) comes out of forward as a thrown error.
    func testReductionErrorReachesTheCaller() throws {
        struct Boom: Error {}
        let c = try Config.load(
            preset: "tiny",
            overrides: [
                "model.dim=36", "model.heads=4", "model.ffn_dim=60",
                "model.frontend_channels=3",
                "model.pos_conv_kernel=6", "model.pos_conv_groups=4", "quantizer.entries=15",
                "quantizer.dim=18", "mask.span=3", "model.conv_kernel=3"
            ])
        let batch = SyntheticBatch(config: c, lengths: [80, 66])
        let model = W2VBertModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 80)
        XCTAssertThrowsError(
            try batch.lengths.withUnsafeBufferPointer { lp in
                try batch.mask.withUnsafeBufferPointer { mp in
                    try model.forward(
                        BatchView(
                            features: batch.features.ptr, lengths: lp.baseAddress!,
                            mask: mp.baseAddress!, batch: 2,
                            frames: 80,
                            key: RandomKey(
                                seed: 1, step: 0,
                                microBatch: 0)), tau: 1
                    ) { _ in throw Boom() }
                }
            }
        ) { XCTAssertTrue($0 is Boom) }
    }

    func testGradientsReadyCoverLayoutWithFinalValues() throws {
        let c = try Config.load(
            preset: "tiny",
            overrides: [
                "model.dim=36", "model.heads=4", "model.ffn_dim=60",
                "model.frontend_channels=3",
                "model.pos_conv_kernel=6", "model.pos_conv_groups=4", "quantizer.entries=15",
                "quantizer.dim=18", "quantizer.groups=3", "mask.span=3", "model.layer_drop=0.3",
                "model.conv_kernel=3"
            ])
        let batch = SyntheticBatch(config: c, lengths: [80, 66])
        let model = W2VBertModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 80)
        var covered = [Int](repeating: 0, count: model.layout.count)
        var snapshot = [Float](repeating: .nan, count: model.layout.count)
        var order: [Int] = []
        let s = batch.forward(model, step: 2, tau: 1)
        model.backward(lossScale: 1 / Float(s.masked)) { i in
            order.append(i)
            for j in model.gradientRanges[i] {
                covered[j] += 1
                snapshot[j] = model.grads.ptr[j]
            }
        }
        XCTAssertEqual(order, Array(model.gradientRanges.indices), "ranges are reported once each, in order")
        XCTAssertTrue(covered.allSatisfy { $0 == 1 })
        XCTAssertEqual(snapshot, model.grads.array)
    }
}
