import Tensor
import Audio
import W2VBert

/// The synthetic micro-batch the step benchmarks time (`bench model`, `bench dist`): `batch` utterances of
/// `seconds` of audio as N(0, 1) fbank features from RandomStream(seed, 0, microBatch, .test), so ranks
/// can differ. `bench dist` hands it to the trainer's step runner as a data-pipeline micro-batch (masks
/// from the data pipeline's SpanMasker, keyed like training's); `bench model` views it with a fixed mask.
public struct SyntheticBatch {
    /// Utterances; fbank frames per utterance; frames after the feature encoder.
    public let batch: Int, t0: Int, t: Int
    public let microBatch: MicroBatch
    public let lengths: [Int32]
    public let mask: [UInt8]
    public var masked: Int { mask.reduce(0) { $0 + Int($1) } }

    public init(config: Config, batch: Int, seconds: Double, seed: UInt64, microBatch index: Int = 0) {
        self.batch = batch
        t0 = Int(seconds * 100) - 1  // fbank frames of `seconds` of audio (25 ms window, 10 ms shift)
        t = config.encoderLength(t0: t0)
        var features = [Float](repeating: 0, count: batch * t0 * Config.melBins)
        var rng = RandomStream(seed: seed, microBatch: index, purpose: .test)
        features.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, $0.count) }
        microBatch = MicroBatch(
            epoch: 0, index: index, resumeCursor: DataCursor(), numBins: Config.melBins,
            maxFrames: t0, features: features, frames: [Int](repeating: t0, count: batch),
            utterances: Array(0..<batch), paths: [], offsets: [], failed: [])
        lengths = [Int32](repeating: Int32(t0), count: batch)
        var mrng = RandomStream(seed: seed, microBatch: index, purpose: .mask)
        mask = SpanMasker(maskProb: Double(config.mask.prob), span: config.mask.span, minSpans: config.mask.minSpans)
            .mask(lengths: [Int](repeating: t, count: batch), paddedLength: t, stream: &mrng)
    }

    /// The model's view of this batch for one step.
    public func withView<R>(key: RandomKey, _ body: (BatchView) -> R) -> R {
        microBatch.features.withUnsafeBufferPointer { fp in
            lengths.withUnsafeBufferPointer { lp in
                mask.withUnsafeBufferPointer { mp in
                    body(
                        BatchView(
                            features: fp.baseAddress!, lengths: lp.baseAddress!, mask: mp.baseAddress!,
                            batch: batch, frames: t0, key: key))
                }
            }
        }
    }
}
