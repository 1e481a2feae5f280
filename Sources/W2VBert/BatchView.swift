// What the model reads of one micro-batch, and the sizes it is built for.
//
// Shapes: B utterances, T0 fbank frames (padded), T = encoderLength(T0) frames after the feature
// encoder, N = B·T rows, S masked frames.

import Tensor

/// The key of every random draw of one micro-batch (ARCHITECTURE "Global data order"): masks, mask
/// noise, Gumbel noise, distractors and dropout come from streams keyed (seed, step, micro-batch index,
/// purpose), so a draw does not depend on the rank that makes it. Layer drop is keyed per step only.
public struct RandomKey: Sendable, Equatable {
    public var seed: UInt64, step: Int, microBatch: Int
    public init(seed: UInt64, step: Int, microBatch: Int) {
        self.seed = seed
        self.step = step
        self.microBatch = microBatch
    }
    public func stream(_ purpose: RandomPurpose) -> RandomStream {
        RandomStream(seed: seed, step: step, microBatch: microBatch, purpose: purpose)
    }
}

/// One micro-batch as the model reads it (the data pipeline's `Audio.MicroBatch` plus its mask). The
/// pointers need to stay valid during `forward` only (the model copies what its backward needs).
public struct BatchView {
    public var features: UnsafePointer<Float>  // [B, T0, F] (F = Config.inputWidth), zero padded
    public var lengths: UnsafePointer<Int32>  // [B] fbank frames per utterance
    public var mask: UnsafePointer<UInt8>  // [B, T] 1 = masked (frames t < encoderLength(lengths[b]) count)
    public var batch: Int  // B
    public var frames: Int  // T0 (padded)
    public var key: RandomKey
    /// [B] per-utterance conditioning index, −1 = none (nil: none for the whole batch). Read by the model
    /// options that condition on the utterance (e.g. hyper-lora's speaker table: the row of the table).
    public var conditioning: UnsafePointer<Int32>?
    public init(
        features: UnsafePointer<Float>, lengths: UnsafePointer<Int32>, mask: UnsafePointer<UInt8>, batch: Int,
        frames: Int, key: RandomKey, conditioning: UnsafePointer<Int32>? = nil
    ) {
        self.features = features
        self.lengths = lengths
        self.mask = mask
        self.batch = batch
        self.frames = frames
        self.key = key
        self.conditioning = conditioning
    }
}

/// B, T0 and T of the micro-batch in the model.
struct BatchShape {
    var b = 0, t0 = 0, t = 0
    var n: Int { b * t }
}

/// The largest micro-batch the activation arena is carved for: B ≤ batch, T0 ≤ frames, B·T0 ≤ totalFrames.
struct Capacity {
    let batch, frames, totalFrames: Int
    let t: Int  // encoder frames of the longest utterance
    let n: Int  // rows N = Σ_b T over a micro-batch
    var masked: Int { n }
    init(config c: Config, batch: Int, frames: Int, totalFrames: Int) {
        self.batch = batch
        self.frames = frames
        self.totalFrames = totalFrames
        t = max(1, c.encoderLength(t0: frames))
        // N = B·encoderLength(T0) ≤ B·T0/4 (conv2d) or B·T0/k (stack, embed), and ≤ batch·t.
        n = max(
            t,
            min(batch * t, (c.model.frontend == .conv2d ? totalFrames / 4 : totalFrames / c.model.stackFrames) + batch))
    }
}

/// What a Conformer block needs of the config.
struct BlockConfig {
    let d, f, heads, kernel: Int
    let causal: Bool
    let dropout: Float
    let frozen: Bool  // base weights frozen (train.trainable = adapters)
    /// While the blocks are carved: the block's index and the model options' runtime parts.
    var block = 0
    var extensions = BlockExtensions(all: [])
    /// While the blocks are carved: whether they keep their LayerNorm and Swish outputs (short utterances, see
    /// `ConformerStack.attentionMemory`) or rebuild them in backward.
    var keepNormOutputs = false
    init(_ c: Config, training: Bool = true) {
        d = c.model.dim
        f = c.model.ffnDim
        heads = c.model.heads
        kernel = c.model.convKernel
        causal = c.model.causalConv
        dropout = training ? c.model.dropout : 0
        frozen = c.baseFrozen
    }
}
