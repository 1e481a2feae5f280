import Tensor
import Audio
import W2VBert

/// The synthetic micro-batch the step benchmarks time (`bench`, `bench-dist`): `batch` utterances of
/// `seconds` of audio as N(0, 1) fbank features, masked by the data pipeline's SpanMasker (SPEC §4).
/// Features and mask come from RandomStream(seed, 0, microBatch, .test / .mask), so ranks can differ.
struct SyntheticBatch {
    let batch: Int, t0: Int, t: Int
    let features: FloatBuffer
    let lengths: [Int32]
    let mask: [UInt8]
    var masked: Int { mask.reduce(0) { $0 + Int($1) } }

    init(config: Config, batch: Int, seconds: Double, seed: UInt64, microBatch: Int = 0) {
        self.batch = batch
        t0 = Int(seconds * 100) - 1            // fbank frames of `seconds` of audio (25 ms window, 10 ms shift)
        t = config.encoderLength(t0: t0)
        features = FloatBuffer(count: batch * t0 * 80)
        var rng = RandomStream(seed: seed, microBatch: microBatch, purpose: .test)
        rng.fillNormal(features.ptr, features.count)
        lengths = [Int32](repeating: Int32(t0), count: batch)
        var mrng = RandomStream(seed: seed, microBatch: microBatch, purpose: .mask)
        mask = SpanMasker(maskProb: Double(config.mask.prob), span: config.mask.span, minSpans: config.mask.minSpans)
            .mask(lengths: [Int](repeating: t, count: batch), paddedLength: t, stream: &mrng)
    }

    /// The model's view of this batch for one step.
    func withMicroBatch<R>(seed: UInt64, step: Int, microBatch: Int, _ body: (W2VBert.MicroBatch) -> R) -> R {
        lengths.withUnsafeBufferPointer { lp in
            mask.withUnsafeBufferPointer { mp in
                body(W2VBert.MicroBatch(features: features.ptr, lengths: lp.baseAddress!, mask: mp.baseAddress!, batch: batch,
                                        frames: t0, seed: seed, step: step, microBatch: microBatch))
            }
        }
    }
}
