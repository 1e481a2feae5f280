import XCTest
import W2VBert
import Audio
import Tensor

/// Synthetic micro-batch: fixed features (N(0, 1) frames with a per-utterance, slowly varying pattern) and a
/// fixed span mask.
final class SyntheticBatch {
    let features: FloatBuffer
    let lengths: [Int32]
    var mask: [UInt8]
    let b: Int, t0: Int, t: Int
    init(config: Config, lengths: [Int], seed: UInt64 = 3) {
        b = lengths.count
        t0 = lengths.max()!
        t = config.encoderLength(t0: t0)
        self.lengths = lengths.map { Int32($0) }
        features = FloatBuffer(count: b * t0 * 80)
        var rng = RandomStream(seed: seed, purpose: .test)
        for u in 0..<b {
            for f in 0..<lengths[u] {
                let row = features.ptr + (u * t0 + f) * 80
                for j in 0..<80 {
                    row[j] = Float(sin(Double(f * (u + 1)) * 0.05 + Double(j) * 0.3)) + 0.5 * rng.nextNormal()
                }
            }
        }
        var mrng = RandomStream(seed: seed, purpose: .mask)
        let enc = lengths.map { config.encoderLength(t0: $0) }
        mask = SpanMasker(maskProb: Double(config.mask.prob), span: config.mask.span, minSpans: config.mask.minSpans)
            .mask(lengths: enc, paddedLength: t, stream: &mrng)
    }
    func forward(
        _ model: W2VBertModel, step: Int, microBatch: Int = 0, tau: Float, training: Bool = true,
        reduce: (UnsafeMutableBufferPointer<Double>) -> Void = { _ in }
    ) -> StepStats {
        lengths.withUnsafeBufferPointer { lp in
            mask.withUnsafeBufferPointer { mp in
                model.forward(
                    BatchView(
                        features: features.ptr, lengths: lp.baseAddress!, mask: mp.baseAddress!, batch: b,
                        frames: t0,
                        key: RandomKey(
                            seed: 11, step: step,
                            microBatch: microBatch)), tau: tau, training: training,
                    reduceUsage: reduce)
            }
        }
    }
}

final class TrainingTests: XCTestCase {
    /// The tiny preset overfits four fixed 2-second utterances: the total loss halves within 300 steps and
    /// the codebook does not collapse. Warm-up shortened to 100 steps (the preset's 300 would leave the
    /// learning rate near zero for most of the run); everything else is the preset.
    func testTinyOverfitsFourUtterances() throws {
        let config = try Config.load(preset: "tiny", overrides: ["optimizer.warmup=100"])
        let batch = SyntheticBatch(config: config, lengths: [199, 185, 170, 199])
        let model = W2VBertModel(config: config, compute: .fp32(), maxBatch: 4, maxFrames: 199)
        let opt = Optimizer(config: config, layout: model.layout)
        var curve: [(Int, Double, Double, Double)] = []
        var first = 0.0, last = 0.0, minPPL = Double.infinity
        var window: [Double] = []
        for step in 0..<300 {
            model.zeroGrads()
            let s = batch.forward(model, step: step, tau: opt.tau)
            let loss = s.loss(config)
            if step == 0 { first = loss }
            window.append(loss)
            if window.count > 10 { window.removeFirst() }
            last = window.reduce(0, +) / Double(window.count)  // mean of the last 10 steps (noise, masks' draws vary)
            if step >= 50 { minPPL = min(minPPL, s.probPerplexity) }
            if step % 25 == 0 || step == 299 { curve.append((step, loss, s.probPerplexity, s.codePerplexity)) }
            model.backward(lossScale: 1 / Float(s.masked))
            opt.update(params: model.params, grads: model.grads)
        }
        for (s, l, p, c) in curve { print("overfit step \(s): loss \(l) prob_ppl \(p) code_ppl \(c)") }
        print("overfit: first \(first), mean of the last 10 \(last)")
        XCTAssertLessThan(last, first / 2, "mean loss of the last 10 steps did not halve within 300 steps")
        XCTAssertGreaterThan(minPPL, 5, "codebook collapsed")
    }
}
