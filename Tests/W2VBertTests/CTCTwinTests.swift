import Tensor
import W2VBert
import XCTest

/// The CTC model against the PyTorch twin (fixture_j_ctc: the encoder, `ctc_head` and torch's `ctc_loss`, no
/// masking, no dropout): the logits of real frames to 1e-4 of their largest magnitude, Σ loss_b / L_b to 1e-5
/// relative, every parameter gradient to 1e-3 (max |Δ| / max |reference| per tensor; structurally zero ones,
/// attn.k.bias, to 1e-7 absolute).
final class CTCTwinTests: XCTestCase {
    func testFixtureJCTC() throws {
        let st = try SafeTensors(path: fixturePath("fixture_j_ctc.safetensors"))
        let config = try st.config()
        let f = st["input.features"]
        let (b, t0) = (f.shape[0], f.shape[1])
        let model = CTCModel(config: config, compute: .fp32(), maxBatch: b, maxFrames: t0)
        st.loadParameters(into: model.params.ptr, layout: model.layout)
        let features = f.values.map(Float.init)
        let lengths = st["input.lengths"].values.map { Int32($0) }
        let labels = st["input.labels"].values.map { Int32($0) }
        let labelLengths = st["input.label_lengths"].values.map { Int32($0) }
        let mask = [UInt8](repeating: 0, count: b * config.encoderLength(t0: t0))
        // Logits of the real frames.
        let reference = st["out.logits"]
        let (t, v) = (reference.shape[1], reference.shape[2])
        let (logits, frames) = model.logits(features: features, lengths: lengths, batch: b, frames: t0)
        var worst = 0.0, largest = 0.0
        for u in 0..<b {
            for i in 0..<(frames[u] * v) {
                let r = reference.values[u * t * v + i]
                worst = max(worst, abs(Double(logits[u * t * v + i]) - r))
                largest = max(largest, abs(r))
            }
        }
        XCTAssertLessThan(worst, 1e-4 * largest, "logits: max |Δ| \(worst), max |reference| \(largest)")
        // Loss and gradients (lossScale 1: d Σ loss_b / L_b).
        model.zeroGrads()
        let stats = model.forward(
            BatchView(
                features: features, lengths: lengths, mask: mask, batch: b, frames: t0,
                key: RandomKey(seed: 1, step: 0, microBatch: 0)),
            labels: labels, labelLengths: labelLengths, training: true)
        XCTAssertEqual(stats.utterances, b)
        XCTAssertEqual(stats.infinite, 0)
        let loss = st["out.loss"].values[0]
        XCTAssertEqual(stats.lossSum, loss, accuracy: 1e-5 * abs(loss))
        model.backward(lossScale: 1, trainEncoder: true)
        var worstGradient = 0.0
        defer {
            print(
                "fixture_j_ctc: logits \(worst / largest), loss \(abs(stats.lossSum - loss) / loss), "
                    + "gradients \(worstGradient) (relative)")
        }
        for e in model.layout.entries {
            let r = st["grad.\(e.name)"].values
            let got = (0..<e.count).map { Double(model.grads.ptr[e.offset + $0]) }
            let diff = zip(got, r).map { abs($0 - $1) }.max()!
            let scale = r.map(abs).max()!
            if scale < 1e-8 {
                XCTAssertLessThan(diff, 1e-7, "\(e.name): structurally zero")
            } else {
                worstGradient = max(worstGradient, diff / scale)
                XCTAssertLessThan(diff / scale, 1e-3, "\(e.name): max |Δ| \(diff), max |reference| \(scale)")
            }
        }
    }
}
