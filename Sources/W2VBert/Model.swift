// The W2V-BERT model, as parts that each own their parameters and activations:
//   1. FeatureEncoder   fbank [B, T0, 80] → z [N, d]
//   2. Quantizer        targets q, ids from unmasked z at the masked frames; usage → diversity loss L_d
//   3. ContextInput     masking, context projection, positional convolution → x0
//   4. ConformerStack   N contrastive + M MLM blocks → c (last contrastive), m (last block)
//                       (the model options, Options/, hooked in at fixed points)
//   5. ContrastiveLoss  on c and q;   6. MLMLoss on m and ids
// `backward` runs 6 → 1, the reverse of `forward`.
//
// Contract (llm.c style): `forward` runs one micro-batch and saves every activation in an arena sized at
// construction for the largest micro-batch (B ≤ maxBatch, T0 ≤ maxFrames, B·T0 ≤ maxTotalFrames); no
// allocation happens in forward or backward. `backward` ACCUMULATES into `grads`. Losses come back as
// un-normalised sums over this micro-batch's masked frames; the caller knows N_masked of the whole
// optimizer step (all ranks, all micro-batches) and passes lossScale = 1/N_masked to backward.
// The diversity loss is that of the whole step: `forward` hands its local usage [soft G·V, hard G·V,
// masked count] to `reduceUsage`, which must leave the step's total in the buffer (an all-reduce over
// ranks with update_freq 1; with accumulation the trainer sums `quantizerUsage` of every micro-batch
// and rank first and writes that total). An error thrown there (MPI) comes out of `forward`.
//
// Shapes: B utterances, T0 fbank frames (padded), T = encoderLength(T0), N = B·T, S masked frames,
// d model dim, f FFN dim, G codebooks × V entries, D codebook dim, F final dim, K distractors.

import Tensor

/// Per-micro-batch results. Sums are over this micro-batch (this rank); `maskedGlobal`, the
/// perplexities and the diversity loss come from the step's usage.
public struct StepStats: Sendable {
    public var masked = 0  // S, masked frames here
    public var maskedGlobal = 0.0  // masked frames of the step over all ranks
    public var contrastiveLossSum = 0.0  // Σ L_w
    public var mlmLossSum = 0.0  // Σ L_m (mean over codebooks per frame)
    public var contrastiveCorrect = 0  // frames whose positive beats every valid distractor
    public var mlmCorrect = 0  // (frame, codebook) pairs with argmax = target
    public var diversityLoss = 0.0  // L_d (global)
    public var probPerplexity = 0.0
    public var codePerplexity = 0.0
    public var tau: Float = 0
    public init() {}
    /// L = (w_c·ΣL_w + w_m·ΣL_m)/S + α·L_d of this micro-batch alone.
    public func loss(_ c: Config) -> Double {
        let n = Double(max(masked, 1))
        return (Double(c.loss.contrastiveWeight) * contrastiveLossSum + Double(c.loss.mlmWeight) * mlmLossSum) / n
            + Double(c.loss.diversityWeight) * diversityLoss
    }
}

/// Test hook: random draws injected instead of the streams (row order = masked frames in (b, t) order).
public struct NoiseOverride {
    public var maskNoise: [Float]?  // [S, d] (already scaled: the replacement vectors themselves)
    public var gumbel: [Float]?  // [S, G, V]
    public var distractors: [Int32]?  // [S, K] indices into the masked-frame list
    /// Dropout masks (values 0 or 1/(1−p)) in forward order: per executed block ffn1 [N, f], ffn1 [N, d],
    /// attn [N, d], conv [N, d], ffn2 [N, f], ffn2 [N, d] (N = B·T).
    public var dropoutMasks: [[Float]]?
    /// Layer-drop decisions, contrastive blocks then MLM blocks.
    public var droppedBlocks: [Bool]?
    public init(
        maskNoise: [Float]? = nil, gumbel: [Float]? = nil, distractors: [Int32]? = nil,
        dropoutMasks: [[Float]]? = nil, droppedBlocks: [Bool]? = nil
    ) {
        self.maskNoise = maskNoise
        self.gumbel = gumbel
        self.distractors = distractors
        self.dropoutMasks = dropoutMasks
        self.droppedBlocks = droppedBlocks
    }
}

public final class W2VBertModel {
    public let config: Config
    public let layout: ParameterLayout
    public let params: FloatBuffer
    public let grads: FloatBuffer
    public let maxBatch: Int, maxFrames: Int, maxTotalFrames: Int
    public var noiseOverride: NoiseOverride?
    /// Ranges of the layout in the order `backward` makes their gradients final (its `gradientsReady`
    /// hook reports indices into this list): each Conformer block, last to first (alignment padding up
    /// to the next tensor included), then the tensors after the blocks (quantizer, heads), then those
    /// before (feature encoder, mask embedding, context projection, positional conv). Together they cover
    /// the layout exactly once; the trainer all-reduces them as buckets.
    public let gradientRanges: [Range<Int>]
    /// Per block, the indices of `gradientRanges` final once its backward is done; `finishReady`: those final
    /// once the options' `finish` is done (base frozen: the options' tensors after the blocks).
    let blockReady: [[Int]]
    let finishReady: [Int]
    public let arena: Arena
    /// The settings every product of this model runs with (its arena is sized for `compute.threads`).
    public let compute: Compute

    let encoder: FeatureEncoder
    var frames: MaskedFrames
    let quantizer: Quantizer
    let context: ContextInput
    var stack: ConformerStack
    let contrastiveLoss: ContrastiveLoss
    let mlmLoss: MLMLoss
    let usage: UnsafeMutablePointer<Double>  // [2·G·V + 1] the step's usage (after reduceUsage)
    let gv: Int

    // State of the last forward.
    var shape = BatchShape()
    var tau: Float = 1
    var training = true
    var maskedGlobal = 0.0

    /// Builds the model for micro-batches of at most `maxBatch` utterances of at most `maxFrames` fbank frames
    /// each and at most `maxTotalFrames` padded frames in all (B·T0; default maxBatch·maxFrames). The arena
    /// is sized for the worst case of these bounds and for `compute.threads`. Parameters are initialised from
    /// `config.train.seed`.
    public init(config c: Config, compute: Compute, maxBatch: Int, maxFrames: Int, maxTotalFrames: Int? = nil) {
        // fatalError, not precondition: it stays in -Ounchecked builds (commands refuse such configs first).
        guard c.model.head == .pretrain else {
            fatalError("W2VBertModel is the pre-training model; model.head ctc is CTCModel's")
        }
        config = c
        self.compute = compute
        layout = ParameterLayout(config: c)
        params = FloatBuffer(count: layout.count)
        grads = FloatBuffer(count: layout.count)
        layout.initialize(params.ptr, seed: c.train.seed)
        self.maxBatch = maxBatch
        self.maxFrames = maxFrames
        let total = min(maxTotalFrames ?? maxBatch * maxFrames, maxBatch * maxFrames)
        self.maxTotalFrames = total
        let cap = Capacity(config: c, batch: maxBatch, frames: maxFrames, totalFrames: total)
        let (l, p, g) = (layout, params.ptr, grads.ptr)
        typealias Parts = (
            FeatureEncoder, MaskedFrames, Quantizer, ContextInput, ConformerStack, ContrastiveLoss,
            MLMLoss
        )
        func build(_ a: Arena) -> Parts {
            let frames = MaskedFrames(a, capacity: cap)
            let quantizer = Quantizer(l, p, g, a, config: c, capacity: cap)
            let context = ContextInput(l, p, g, a, config: c, capacity: cap)
            let (stack, encoder) = stackAndEncoder(l, p, g, a, config: c, capacity: cap)
            return (
                encoder, frames, quantizer, context, stack,
                ContrastiveLoss(l, p, g, a, config: c, capacity: cap), MLMLoss(l, p, g, a, config: c, capacity: cap)
            )
        }
        (arena, (encoder, frames, quantizer, context, stack, contrastiveLoss, mlmLoss)) =
            Arena.measuredAndCarved(compute: compute, build)
        gv = c.quantizer.groups * c.quantizer.entries
        usage = .allocate(capacity: 2 * gv + 1)
        (gradientRanges, blockReady, finishReady) = W2VBertModel.gradientRanges(layout: layout, config: c)
    }

    deinit { usage.deallocate() }

    /// Each block's layout range, first block first (alignment padding up to the next tensor included).
    static func blockRanges(layout l: ParameterLayout, config c: Config) -> [Range<Int>] {
        var blocks: [Range<Int>] = []
        for (module, n) in [("contrastive", c.model.contrastiveBlocks), ("mlm", c.model.mlmBlocks)] {
            for i in 0..<n {
                let prefix = "\(module).blocks.\(i)."
                let first = l.entries.firstIndex { $0.name.hasPrefix(prefix) }!
                let last = l.entries.lastIndex { $0.name.hasPrefix(prefix) }!
                let end = last + 1 < l.entries.count ? l.entries[last + 1].offset : l.count
                blocks.append(l.entries[first].offset..<end)
            }
        }
        return blocks
    }

    /// See `gradientRanges`, `blockReady` and `finishReady`.
    static func gradientRanges(
        layout l: ParameterLayout,
        config c: Config
    ) -> ([Range<Int>], blockReady: [[Int]], finishReady: [Int]) {
        let blocks = blockRanges(layout: l, config: c)
        var blockReady = [[Int]](repeating: [], count: blocks.count)
        // Base frozen: only the trainable ranges, last first; a range inside a block is final after that
        // block's backward, any other (options' tensors after the blocks) after `finish`.
        if c.baseFrozen {
            let ranges = Array(l.trainableRanges(c).reversed())
            var finishReady: [Int] = []
            for (k, r) in ranges.enumerated() {
                if let i = blocks.firstIndex(where: { $0.contains(r.lowerBound) }) {
                    blockReady[i].append(k)
                } else {
                    finishReady.append(k)
                }
            }
            return (ranges, blockReady, finishReady)
        }
        var out = Array(blocks.reversed())
        for i in blocks.indices { blockReady[i] = [blocks.count - 1 - i] }
        if blocks.last!.upperBound < l.count { out.append(blocks.last!.upperBound..<l.count) }
        if blocks.first!.lowerBound > 0 { out.append(0..<blocks.first!.lowerBound) }
        return (out, blockReady, [])
    }

    /// Activation arena size in bytes.
    public var activationBytes: Int { arena.peak * 4 }

    /// Frames after the feature encoder.
    public func encoderLength(t0: Int) -> Int { config.encoderLength(t0: t0) }

    public func zeroGrads() { grads.zero() }

    /// Shape, encoder lengths and (with a mask) the masked frames of a micro-batch.
    func begin(
        features: UnsafePointer<Float>, lengths: UnsafePointer<Int32>, batch: Int, frames t0: Int,
        mask: UnsafePointer<UInt8>?
    ) {
        precondition(
            batch >= 1 && batch <= maxBatch && t0 <= maxFrames && batch * t0 <= maxTotalFrames,
            "micro-batch exceeds the model's capacity")
        shape = BatchShape(b: batch, t0: t0, t: config.encoderLength(t0: t0))
        precondition(shape.t >= 1, "utterances too short for the feature encoder")
        frames.setLengths(lengths, shape, config: config)
        if let mask { frames.collect(mask: mask, shape) } else { frames.clear() }
    }

    /// Sections 1–2 of forward: z, and the quantizer's targets at the masked frames.
    func encodeAndQuantize(_ mb: BatchView, tau: Float, training: Bool) {
        begin(features: mb.features, lengths: mb.lengths, batch: mb.batch, frames: mb.frames, mask: mb.mask)
        self.tau = tau
        self.training = training
        encoder.forward(mb.features, shape)
        quantizer.forward(
            z: encoder.z, frames: frames, key: mb.key, tau: tau, training: training,
            given: training ? noiseOverride?.gumbel : nil)
    }

    /// The pre-pass of gradient accumulation: feature encoder and quantizer only, returning this
    /// micro-batch's [soft usage sums G·V, hard-code counts G·V, masked count] exactly as `forward`
    /// computes them (same noise).
    public func quantizerUsage(_ mb: BatchView, tau: Float, training: Bool = true) -> [Double] {
        encodeAndQuantize(mb, tau: tau, training: training)
        var out = [Double](repeating: 0, count: 2 * gv + 1)
        out.withUnsafeMutableBufferPointer { quantizer.localUsage(frames: frames.count, into: $0.baseAddress!) }
        return out
    }

    // MARK: Forward

    /// Runs one micro-batch. `tau` is the Gumbel temperature of this optimizer update (config.tau(step:)).
    /// `training` false: no Gumbel noise (argmax), no dropout, no layer drop.
    public func forward(_ mb: BatchView, tau: Float, training: Bool = true) -> StepStats {
        forward(mb, tau: tau, training: training, reduceUsage: { _ in })
    }

    /// forward, with the step's usage from `reduceUsage` (see the contract above).
    public func forward(
        _ mb: BatchView, tau: Float, training: Bool = true,
        reduceUsage: (UnsafeMutableBufferPointer<Double>) throws -> Void
    ) rethrows -> StepStats {
        let c = config
        var stats = StepStats()
        stats.tau = tau
        // 1–2. Feature encoder → z; quantizer → q, ids; the step's usage → L_d.
        encodeAndQuantize(mb, tau: tau, training: training)
        let S = frames.count
        stats.masked = S
        quantizer.localUsage(frames: S, into: usage)
        try reduceUsage(UnsafeMutableBufferPointer(start: usage, count: 2 * gv + 1))
        maskedGlobal = usage[2 * gv]
        stats.maskedGlobal = maskedGlobal
        (stats.diversityLoss, stats.probPerplexity, stats.codePerplexity) =
            quantizer.diversity(usage: usage, masked: maskedGlobal)
        // 3. Masking, context projection, positional convolution → x0.
        context.forward(z: encoder.z, frames: frames, shape, key: mb.key, given: noiseOverride?.maskNoise)
        // 4. Conformer blocks, after the model options' per-micro-batch work (e.g. generated weights).
        stack.generate(
            StepConditioning(
                z: encoder.z, lengths: frames.encoderLengths, conditioning: mb.conditioning,
                batch: shape.b, t: shape.t))
        stack.drawLayerDrop(
            key: mb.key, probability: c.model.layerDrop, training: training,
            given: noiseOverride?.droppedBlocks)
        var rng = DropoutSource(stream: mb.key.stream(.dropout), given: training ? noiseOverride?.dropoutMasks : nil)
        stack.forward(
            x0: context.x0, lengths: frames.encoderLengths, shape,
            config: BlockConfig(c, training: training), count: stack.dropped.count, rng: &rng)
        if S == 0 { return stats }
        // 5. Contrastive loss on c; 6. MLM loss on m.
        (stats.contrastiveLossSum, stats.contrastiveCorrect) = contrastiveLoss.forward(
            c: stack.contrastiveOutput, q: quantizer.q, ids: quantizer.ids, groups: c.quantizer.groups, frames: frames,
            key: mb.key, given: noiseOverride?.distractors)
        (stats.mlmLossSum, stats.mlmCorrect) = mlmLoss.forward(
            mOut: stack.mlmOutput, ids: quantizer.ids,
            frames: frames)
        return stats
    }

    // MARK: Backward

    /// Accumulates the gradient of lossScale·(w_c·ΣL_w + w_m·ΣL_m) + diversityScale·L_d into `grads`,
    /// sections in the reverse order of forward. lossScale = 1/N_masked of the whole optimizer step;
    /// diversityScale = α by default. `gradientsReady(i)` is called as soon as the gradients of
    /// `gradientRanges[i]` are final.
    public func backward(lossScale: Float, diversityScale: Float? = nil) {
        backward(lossScale: lossScale, diversityScale: diversityScale, gradientsReady: { _ in })
    }

    /// backward, reporting each range of `gradientRanges` as soon as its gradients are final.
    public func backward(
        lossScale: Float, diversityScale: Float? = nil,
        gradientsReady: (Int) throws -> Void
    ) rethrows {
        let c = config, S = frames.count, n = shape.n, d = c.model.dim
        let blocks = stack.dropped.count
        zero(quantizer.dq, S * c.quantizer.dim)
        if S > 0 {
            // 6. MLM loss → dm; 5. contrastive loss → dc, dq.
            mlmLoss.backward(scale: c.loss.mlmWeight * lossScale, ids: quantizer.ids, frames: frames)
            contrastiveLoss.backward(
                scale: c.loss.contrastiveWeight * lossScale, dTargets: quantizer.dq,
                q: quantizer.q, frames: frames)
        }
        // 4. Conformer blocks in reverse → dx0 (each block's bucket is ready as soon as it is done).
        try stack.backward(
            x0: context.x0, dm: mlmLoss.dm, dc: contrastiveLoss.dContext, frames: frames,
            lengths: frames.encoderLengths, shape, config: BlockConfig(c, training: training),
            blockDone: { i in for r in blockReady[i] { try gradientsReady(r) } })
        // Base frozen: nothing below the blocks is trained; the options finish their gradients, skip 3–1.
        if c.baseFrozen {
            stack.finish(dz: nil, lengths: frames.encoderLengths, t: shape.t)
            for r in finishReady { try gradientsReady(r) }
            return
        }
        // 3. The options' remaining gradients (into dz), positional conv, context projection, masking → dz.
        zero(encoder.dz, n * d)
        stack.finish(dz: encoder.dz, lengths: frames.encoderLengths, t: shape.t)
        context.backward(dx0: stack.dCur, dz: encoder.dz, frames: frames, shape)
        // 2. Quantizer (straight-through targets and diversity) → dz at the masked rows.
        if S > 0 {
            quantizer.backward(
                dz: encoder.dz, frames: frames, tau: tau, training: training,
                diversityScale: diversityScale ?? c.loss.diversityWeight, masked: maskedGlobal,
                detach: c.quantizer.detachTargets)
        }
        if gradientRanges.count > blocks { try gradientsReady(blocks) }
        // 1. Feature encoder.
        encoder.backward(shape)
        if gradientRanges.count > blocks + 1 { try gradientsReady(blocks + 1) }
    }
}
