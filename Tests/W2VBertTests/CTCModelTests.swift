import Audio
import Tensor
import W2VBert
import XCTest

/// A fixed micro-batch for the CTC model: features as SyntheticBatch's, and label sequences.
final class CTCBatch {
    let synthetic: SyntheticBatch
    let labels: [Int32]
    let labelLengths: [Int32]
    init(config: Config, lengths: [Int], labels: [[Int32]]) {
        synthetic = SyntheticBatch(config: config, lengths: lengths)
        self.labels = labels.flatMap { $0 }
        labelLengths = labels.map { Int32($0.count) }
    }
    func forward(_ model: CTCModel, step: Int, microBatch: Int = 0, training: Bool = true) -> CTCStats {
        let s = synthetic
        return s.lengths.withUnsafeBufferPointer { lp in
            s.mask.withUnsafeBufferPointer { mp in
                labels.withUnsafeBufferPointer { lb in
                    labelLengths.withUnsafeBufferPointer { ll in
                        model.forward(
                            BatchView(
                                features: s.features.ptr, lengths: lp.baseAddress!, mask: mp.baseAddress!,
                                batch: s.b, frames: s.t0, key: RandomKey(seed: 11, step: step, microBatch: microBatch)),
                            labels: lb.baseAddress ?? UnsafePointer(bitPattern: 8)!, labelLengths: ll.baseAddress!,
                            training: training)
                    }
                }
            }
        }
    }
    /// Inference logits [B, T, V] as an array, and the utterances' T_b.
    func logits(_ model: CTCModel) -> ([Float], [Int]) {
        let s = synthetic
        return s.lengths.withUnsafeBufferPointer { lp in
            let (p, frames) = model.logits(features: s.features.ptr, lengths: lp.baseAddress!, batch: s.b, frames: s.t0)
            return (Array(UnsafeBufferPointer(start: p, count: s.b * s.t * model.config.model.vocabSize)), frames)
        }
    }
}

final class CTCModelTests: XCTestCase {
    /// A micro CTC config: vocabulary of 7 (blank, `|`, five letters), masking and dropout off unless `extra`.
    func microConfig(_ extra: [String] = []) throws -> Config {
        try Config.load(
            preset: "tiny",
            overrides: [
                "model.frontend_channels=4", "model.dim=32", "model.heads=4", "model.ffn_dim=64",
                "model.conv_kernel=5", "model.contrastive_blocks=2", "model.mlm_blocks=1",
                "model.pos_conv_kernel=6", "model.pos_conv_groups=4", "model.head=ctc", "model.vocab_size=7",
                "finetune.mask_time_prob=0", "finetune.freeze_frontend=false", "finetune.mask_time_span=3",
                "finetune.mask_channel_span=4"
            ] + extra)
    }

    let labels: [[Int32]] = [[3, 1, 4, 4, 2, 6], [5, 6, 2]]

    /// Central differences (the loss summed in Double) of sampled parameters of the head, Conformer blocks, the
    /// positional convolution, the context projection and the front-end projection match the analytic gradient:
    /// |numeric − analytic| ≤ 2e-2·|analytic| + 5e-7/ε, with ε = 1e-2 (2e-3 for the front end, whose LayerNorm
    /// curves faster). The model runs in Float: a few ulps of the loss (≈ 4, ulp 5e-7) over 2ε make the floor.
    /// (The conv stem's ReLUs are kinks a pointwise difference of this size crosses; the directional test below
    /// covers the stem.)
    func testFiniteDifferences() throws {
        let c = try microConfig()
        let batch = CTCBatch(config: c, lengths: [60, 47], labels: labels)
        let model = CTCModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 60)
        // Larger head weights than the init's 0.02 so the head's gradients reach the encoder visibly.
        let head = model.layout.entry("ctc_head.weight")
        for i in 0..<head.count { model.params.ptr[head.offset + i] *= 20 }
        model.zeroGrads()
        let stats = batch.forward(model, step: 0)
        XCTAssertEqual(stats.utterances, 2)
        XCTAssertEqual(stats.infinite, 0)
        model.backward(lossScale: 0.5)
        func loss() -> Double { batch.forward(model, step: 0).lossSum * 0.5 }
        var rng = RandomStream(seed: 5, purpose: .test)
        for name in [
            "ctc_head.weight", "ctc_head.bias", "mlm.blocks.0.ffn1.fc1.weight", "contrastive.blocks.0.attn.q.weight",
            "contrastive.blocks.1.conv.dw.weight", "pos_conv.weight", "context_proj.weight",
            "feature_encoder.proj.weight", "feature_encoder.proj.bias"
        ] {
            let e = model.layout.entry(name)
            let picks = (0..<6).map { _ in e.offset + rng.nextInt(e.count) }
            let analytic = picks.map { Double(model.grads.ptr[$0]) }
            let g = analytic.map(abs).max()!
            XCTAssertGreaterThan(g, 0, "\(name): no gradient")
            for (i, a) in zip(picks, analytic) {
                let saved = model.params.ptr[i]
                let eps: Float = name.hasPrefix("feature_encoder.") ? 2e-3 : 1e-2
                model.params.ptr[i] = saved + eps
                let lp = loss()
                model.params.ptr[i] = saved - eps
                let lm = loss()
                model.params.ptr[i] = saved
                let numeric = (lp - lm) / (2 * Double(eps))
                XCTAssertEqual(numeric, a, accuracy: 2e-2 * abs(a) + 5e-7 / Double(eps), "\(name)[\(i - e.offset)]")
            }
        }
    }

    /// Time and channel masking, final dropout, block dropout and layer drop (training): the analytic gradient
    /// matches a central difference along a direction (the key fixes every draw, so the loss is deterministic).
    func testMaskingAndDropoutDirectionalDerivative() throws {
        let c = try microConfig([
            "finetune.mask_time_prob=0.3", "finetune.mask_channel_prob=0.2", "model.final_dropout=0.2",
            "model.dropout=0.1", "model.layer_drop=0.3", "mask.replacement=learned"
        ])
        let batch = CTCBatch(config: c, lengths: [60, 47], labels: labels)
        let model = CTCModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 60)
        for step in 0..<3 {
            model.zeroGrads()
            _ = batch.forward(model, step: step)
            XCTAssertTrue(model.lastTimeMask.contains(1), "frames masked")
            model.backward(lossScale: 0.5)
            let n = model.layout.count
            var rng = RandomStream(seed: UInt64(step + 9), purpose: .test)
            let rnd = (0..<n).map { _ in rng.nextNormal() }
            let gnorm = Float(sumOfSquares(model.grads.ptr, n: n).squareRoot())
            let rnorm = rnd.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            let dir = (0..<n).map { model.grads.ptr[$0] / gnorm + rnd[$0] / rnorm }
            var analytic = 0.0
            for i in 0..<n { analytic += Double(dir[i]) * Double(model.grads.ptr[i]) }
            let saved = model.params.array
            let eps: Float = 1e-3
            for i in 0..<n { model.params.ptr[i] = saved[i] + eps * dir[i] }
            let lp = batch.forward(model, step: step).lossSum * 0.5
            for i in 0..<n { model.params.ptr[i] = saved[i] - eps * dir[i] }
            let lm = batch.forward(model, step: step).lossSum * 0.5
            for i in 0..<n { model.params.ptr[i] = saved[i] }
            let numeric = (lp - lm) / (2 * Double(eps))
            XCTAssertEqual(numeric, analytic, accuracy: 3e-2 * abs(analytic) + 1e-2, "step \(step)")
        }
    }

    /// `trainEncoder: false` leaves every encoder gradient untouched (bit for bit) and gives the head the same
    /// gradients as a full backward; finetune.freeze_frontend leaves the feature encoder's untouched. Every
    /// range of `gradientRanges` is reported once, in order, with its final values, in each mode.
    func testFrozenEncoderAndFrontend() throws {
        for frozenFrontend in [false, true] {
            let c = try microConfig(["finetune.freeze_frontend=\(frozenFrontend)", "model.layer_drop=0.3"])
            let batch = CTCBatch(config: c, lengths: [60, 47], labels: labels)
            let model = CTCModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 60)
            let n = model.layout.count
            var covered = [Int](repeating: 0, count: n)
            XCTAssertTrue(model.gradientRanges.flatMap { Array($0) }.sorted() == Array(0..<n))
            var full: [Float] = []
            for trainEncoder in [true, false] {
                let pattern = (0..<n).map { Float($0 % 7) * 0.25 }
                for i in 0..<n { model.grads.ptr[i] = pattern[i] }
                _ = batch.forward(model, step: 1)
                var order: [Int] = []
                var snapshot = [Float](repeating: .nan, count: n)
                covered = [Int](repeating: 0, count: n)
                model.backward(lossScale: 0.5, trainEncoder: trainEncoder) { r in
                    order.append(r)
                    for j in model.gradientRanges[r] {
                        covered[j] += 1
                        snapshot[j] = model.grads.ptr[j]
                    }
                }
                XCTAssertEqual(order, Array(model.gradientRanges.indices))
                XCTAssertTrue(covered.allSatisfy { $0 == 1 })
                XCTAssertEqual(snapshot, model.grads.array)
                for e in model.layout.entries {
                    let got = Array(model.grads.array[e.offset..<(e.offset + e.count)])
                    let before = Array(pattern[e.offset..<(e.offset + e.count)])
                    let isHead = e.name.hasPrefix("ctc_head.")
                    let isFront = e.name.hasPrefix("feature_encoder.")
                    if isHead || (trainEncoder && !(isFront && frozenFrontend)) {
                        XCTAssertNotEqual(got, before, "\(e.name) gets a gradient")
                    } else {
                        XCTAssertEqual(got, before, "\(e.name) untouched")
                    }
                    if !trainEncoder && isHead {
                        XCTAssertEqual(got, Array(full[e.offset..<(e.offset + e.count)]), "\(e.name) as in full")
                    }
                }
                if trainEncoder { full = model.grads.array }
            }
        }
    }

    /// Unlabelled utterances contribute nothing; labels longer than the frames are impossible (counted, zeroed);
    /// the training-off forward's losses equal `ctcLossMean` on `logits`; the step allocates nothing.
    func testCountsLogitsAndNoAllocation() throws {
        let c = try microConfig(["model.dropout=0.1", "finetune.mask_time_prob=0.5"])
        let long = [Int32](repeating: 3, count: 13)  // 13 labels (12 repeats) > the 11 frames of 47 fbank frames
        let batch = CTCBatch(config: c, lengths: [60, 47, 52], labels: [labels[0], long, []])
        let model = CTCModel(config: c, compute: .fp32(), maxBatch: 3, maxFrames: 60)
        let s = batch.forward(model, step: 0, training: false)
        XCTAssertEqual(s.utterances, 2)
        XCTAssertEqual(s.infinite, 1)
        XCTAssertEqual(s.frames, [60, 47, 52].map { c.encoderLength(t0: $0) }.reduce(0, +))
        XCTAssertEqual(model.lastTimeMask, [UInt8](repeating: 0, count: 3 * c.encoderLength(t0: 60)))
        let (logits, frames) = batch.logits(model)
        XCTAssertEqual(frames, [60, 47, 52].map { c.encoderLength(t0: $0) })
        let one = CTCBatch(config: c, lengths: [60], labels: [labels[0]])
        let (alone, _) = one.logits(CTCModel(config: c, compute: .fp32(), maxBatch: 1, maxFrames: 60))
        let worst = zip(alone, logits.prefix(alone.count)).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, 1e-4, "padding and batching do not change an utterance's logits")
        // Utterance 0 alone through the Tensor CTC loss.
        let t = c.encoderLength(t0: 60)
        var loss: Float = 0
        let scratch = FloatBuffer(count: ctcScratchCount(batch: 1, frames: t, vocab: 7, maxLabelLength: 6))
        let (mean, _) = ctcLossMean(
            losses: &loss, dLogits: nil, logits: logits, inputLengths: [Int32(t)], labels: labels[0],
            labelLengths: [6], batch: 1, frames: t, vocab: 7, maxLabelLength: 6, scratch: scratch.ptr)
        XCTAssertEqual(s.lossSum, Double(mean), accuracy: 1e-5 * Double(mean))
        let before = FloatBuffer.allocatedBytes.current
        for step in 0..<2 {
            _ = batch.forward(model, step: step)
            model.backward(lossScale: 0.5)
        }
        XCTAssertEqual(FloatBuffer.allocatedBytes.current, before)
    }

    /// The step's loss convention across micro-batches (or ranks): two utterances in one micro-batch, or each in
    /// its own with the gradients accumulated, both with lossScale = 1/2, give the same loss and gradients
    /// (padding does not leak; masking off, whose draws depend on the micro-batch).
    func testSplitMicroBatchesAccumulateToTheSameGradient() throws {
        let c = try microConfig(["model.layer_drop=0"])
        let both = CTCBatch(config: c, lengths: [60, 47], labels: labels)
        let model = CTCModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 60)
        model.zeroGrads()
        let whole = both.forward(model, step: 0)
        model.backward(lossScale: 0.5)
        let reference = model.grads.array
        model.zeroGrads()
        var sum = 0.0
        for (i, length) in [60, 47].enumerated() {
            let one = CTCBatch(config: c, lengths: [length], labels: [labels[i]])
            if i == 1 {
                // The second utterance's features as in the two-utterance batch.
                let src = both.synthetic.features.ptr + 60 * 80
                one.synthetic.features.ptr.update(from: src, count: 47 * 80)
            }
            let s = one.forward(model, step: 0, microBatch: i)
            XCTAssertEqual(s.utterances, 1)
            sum += s.lossSum
            model.backward(lossScale: 0.5)
        }
        XCTAssertEqual(sum, whole.lossSum, accuracy: 1e-5 * whole.lossSum)
        let scale = reference.map(abs).max()!
        let worst = zip(reference, model.grads.array).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, 1e-4 * scale, "max |Δ| \(worst) of max |g| \(scale)")
    }

    /// The time masks are pre-training's span masks (Audio's SpanMasker with two spans at least) from the key's
    /// .mask stream, so every rank and a resumed run draw the same.
    func testTimeMaskIsTheSpanMaskersDraw() throws {
        let c = try microConfig(["finetune.mask_time_prob=0.4"])
        let batch = CTCBatch(config: c, lengths: [60, 47], labels: labels)
        let model = CTCModel(config: c, compute: .fp32(), maxBatch: 2, maxFrames: 60)
        for step in 0..<4 {
            _ = batch.forward(model, step: step, microBatch: 3)
            var rng = RandomKey(seed: 11, step: step, microBatch: 3).stream(.mask)
            let expected = SpanMasker(maskProb: 0.4, span: 3, minSpans: 2).mask(
                lengths: [60, 47].map { c.encoderLength(t0: $0) }, paddedLength: batch.synthetic.t, stream: &rng)
            XCTAssertEqual(model.lastTimeMask, expected)
        }
    }
}

final class CTCConfigTests: XCTestCase {
    /// The head and fine-tuning keys: listed, round-tripped through YAML, validated with the key named; the
    /// ctc layout holds the encoder and ctc_head.{weight, bias} (decayed as Linear weights; bias not), and no
    /// pre-training head.
    func testKeysValidationAndLayout() throws {
        for k in [
            "model.head", "model.vocab_size", "model.final_dropout", "finetune.mask_time_prob",
            "finetune.mask_time_span", "finetune.mask_channel_prob", "finetune.mask_channel_span",
            "finetune.freeze_frontend"
        ] { XCTAssertTrue(Config.keyNames.contains(k), k) }
        func key(_ o: [String]) -> String? {
            do {
                _ = try Config.load(preset: "tiny", overrides: o)
                return nil
            } catch let e as ConfigError { return e.key } catch { return "?" }
        }
        XCTAssertEqual(key(["model.head=ctc"]), "model.vocab_size")
        XCTAssertEqual(key(["model.head=ctc", "model.vocab_size=1"]), "model.vocab_size")
        XCTAssertEqual(key(["model.head=rnnt"]), "model.head")
        XCTAssertEqual(key(["model.final_dropout=1"]), "model.final_dropout")
        XCTAssertEqual(key(["finetune.mask_time_prob=1.5"]), "finetune.mask_time_prob")
        XCTAssertEqual(key(["finetune.mask_time_span=0"]), "finetune.mask_time_span")
        XCTAssertEqual(key(["finetune.mask_channel_prob=-0.1"]), "finetune.mask_channel_prob")
        XCTAssertEqual(key(["finetune.mask_channel_span=0"]), "finetune.mask_channel_span")
        XCTAssertEqual(key(["finetune.bogus=0"]), "finetune.bogus")
        XCTAssertEqual(key(["model.head=ctc", "model.vocab_size=30", "adapter.kind=lora"]), "model.head")
        XCTAssertNil(key(["model.head=ctc", "model.vocab_size=30"]))
        let c = try Config.load(
            preset: "base",
            overrides: ["model.head=ctc", "model.vocab_size=30", "finetune.mask_channel_prob=0.1"])
        var back = Config()
        try back.apply(yaml: c.yaml)
        XCTAssertEqual(back, c)
        let pre = ParameterLayout(config: try Config.preset("base"))
        let l = ParameterLayout(config: c)
        XCTAssertEqual(l.entry("ctc_head.weight").shape, [30, c.model.dim])
        XCTAssertTrue(l.entry("ctc_head.weight").decay)
        XCTAssertFalse(l.entry("ctc_head.bias").decay)
        XCTAssertEqual(l.entry("ctc_head.bias").initialization, .zeros)
        let heads = ["quantizer.", "contrastive_head.", "mlm_head."]
        XCTAssertFalse(l.entries.contains { e in heads.contains { e.name.hasPrefix($0) } })
        let encoder = pre.entries.filter { e in !heads.contains { e.name.hasPrefix($0) } }
        XCTAssertEqual(Array(l.entries.prefix(encoder.count)), encoder, "the encoder at the same offsets")
        XCTAssertEqual(l.entries.count, encoder.count + 2)
    }
}
