// The CTC fine-tuning model (model.head = ctc; as fairseq's wav2vec2_asr / HF Wav2Vec2BertForCTC): the
// pre-training encoder with a Linear head to the letters and the CTC loss, in parts that each own their
// parameters and activations:
//   1. FeatureEncoder   fbank [B, T0, 80] → z [N, d]   (not trained with finetune.freeze_frontend)
//   2. CTCMasking       time spans (→ mask embedding) and channel spans, drawn from the micro-batch's key
//   3. ContextInput     masking, context projection, positional convolution → x0; masked channels zeroed
//   4. ConformerStack   every block (contrastive then MLM blocks; layer drop as configured) → y
//   5. CTCHead          final dropout, ctc_head → logits [B, T, V]; CTC loss per utterance
// `backward` runs 5 → 1. As W2VBertModel: the activations live in an arena carved at construction for the
// largest micro-batch, nothing is allocated in forward or backward, and gradients ACCUMULATE into `grads`.
// The loss convention: Σ_b loss_b / L_b over this micro-batch's labelled utterances (L_b labels); the caller
// passes lossScale = 1 / (labelled utterances of the whole step, all ranks and micro-batches) to backward.
// `training` false: no masking, no dropout, no layer drop. The masks are drawn from `BatchView.key`
// (its `mask` is not read): time spans from the .mask stream, as pre-training's masks, so every rank and a
// resumed run draw the same ones.

import Tensor

public final class CTCModel {
    public let config: Config
    public let layout: ParameterLayout
    public let params: FloatBuffer
    public let grads: FloatBuffer
    public let maxBatch: Int, maxFrames: Int, maxTotalFrames: Int
    /// Ranges of the layout in the order `backward` makes their gradients final (its `gradientsReady` hook
    /// reports indices into this list): the head, each Conformer block last to first, then the tensors before
    /// the blocks (feature encoder, mask embedding, context projection, positional conv). Together they cover
    /// the layout exactly once. Every range is reported on every backward, also those it leaves untouched.
    public let gradientRanges: [Range<Int>]
    public let arena: Arena
    public let compute: Compute

    let encoder: FeatureEncoder
    var frames: MaskedFrames
    var masking: CTCMasking
    let context: ContextInput
    var stack: ConformerStack
    var head: CTCHead

    // State of the last forward.
    var shape = BatchShape()
    var training = true

    /// Builds the model for micro-batches of at most `maxBatch` utterances of at most `maxFrames` fbank frames
    /// each and at most `maxTotalFrames` padded frames in all (B·T0; default maxBatch·maxFrames). Parameters
    /// are initialised from `config.train.seed` (the head as HF's Wav2Vec2BertForCTC: N(0, 0.02²), bias 0).
    public init(config c: Config, compute: Compute, maxBatch: Int, maxFrames: Int, maxTotalFrames: Int? = nil) {
        // fatalError, not precondition: it stays in -Ounchecked builds (commands refuse such configs first).
        guard c.model.head == .ctc else {
            fatalError("CTCModel needs model.head ctc; model.head pretrain is W2VBertModel's")
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
        typealias Parts = (FeatureEncoder, MaskedFrames, CTCMasking, ContextInput, ConformerStack, CTCHead)
        func build(_ a: Arena) -> Parts {
            let frames = MaskedFrames(a, capacity: cap)
            let masking = CTCMasking(a, config: c, capacity: cap)
            let context = ContextInput(l, p, g, a, config: c, capacity: cap)
            let (stack, encoder) = stackAndEncoder(l, p, g, a, config: c, capacity: cap)
            return (encoder, frames, masking, context, stack, CTCHead(l, p, g, a, config: c, capacity: cap))
        }
        (arena, (encoder, frames, masking, context, stack, head)) = Arena.measuredAndCarved(compute: compute, build)
        gradientRanges = CTCModel.gradientRanges(layout: layout, config: c)
    }

    /// See `gradientRanges`.
    static func gradientRanges(layout l: ParameterLayout, config c: Config) -> [Range<Int>] {
        let blocks = W2VBertModel.blockRanges(layout: l, config: c)
        var out = [blocks.last!.upperBound..<l.count]
        out += blocks.reversed()
        if blocks.first!.lowerBound > 0 { out.append(0..<blocks.first!.lowerBound) }
        return out
    }

    /// Activation arena size in bytes.
    public var activationBytes: Int { arena.peak * 4 }

    /// Frames after the feature encoder.
    public func encoderLength(t0: Int) -> Int { config.encoderLength(t0: t0) }

    public func zeroGrads() { grads.zero() }

    /// The time mask of the last forward, [B, T] (1 = the frame had the mask embedding); all 0 without training.
    public var lastTimeMask: [UInt8] { Array(UnsafeBufferPointer(start: masking.timeMask, count: shape.n)) }

    /// Sections 1–4: z, the masks (training), x0 and the blocks' output y.
    func encode(
        features: UnsafePointer<Float>, lengths: UnsafePointer<Int32>, batch: Int, frames t0: Int,
        key: RandomKey, training: Bool
    ) {
        precondition(
            batch >= 1 && batch <= maxBatch && t0 <= maxFrames && batch * t0 <= maxTotalFrames,
            "micro-batch exceeds the model's capacity")
        let c = config
        shape = BatchShape(b: batch, t0: t0, t: c.encoderLength(t0: t0))
        precondition(shape.t >= 1, "utterances too short for the feature encoder")
        self.training = training
        frames.setLengths(lengths, shape, config: c)
        masking.draw(lengths: frames.encoderLengths, shape, key: key, enabled: training)
        frames.collect(mask: masking.timeMask, shape)
        encoder.forward(features, shape)
        context.forward(z: encoder.z, frames: frames, shape, key: key, given: nil)
        masking.zeroChannels(context.x0, shape)
        stack.generate(
            StepConditioning(z: encoder.z, lengths: frames.encoderLengths, conditioning: nil, batch: batch, t: shape.t))
        stack.drawLayerDrop(key: key, probability: c.model.layerDrop, training: training, given: nil)
        var rng = DropoutSource(stream: key.stream(.dropout), given: nil)
        stack.forward(
            x0: context.x0, lengths: frames.encoderLengths, shape, config: BlockConfig(c, training: training),
            count: stack.dropped.count, rng: &rng)
        head.project(stack.mlmOutput, n: shape.n, training: training, rng: &rng)
    }

    // MARK: Forward

    /// Runs one micro-batch: labels are the B utterances' label ids (1..<V) one after another, labelLengths [B]
    /// (0 = unlabelled: contributes nothing). With `training` the gradient of the loss w.r.t. the logits is
    /// kept for `backward`.
    public func forward(
        _ mb: BatchView, labels: UnsafePointer<Int32>, labelLengths: UnsafePointer<Int32>,
        training: Bool
    ) -> CTCStats {
        encode(
            features: mb.features, lengths: mb.lengths, batch: mb.batch, frames: mb.frames, key: mb.key,
            training: training)
        return head.loss(
            encoderLengths: frames.encoderLengths, labels: labels, labelLengths: labelLengths, shape,
            gradient: training)
    }

    /// Inference (no masking, no dropout): logits [B, T, V] row-major (T = encoderLength(frames), rows
    /// t ≥ T_b are padding) and each utterance's T_b. The pointer is valid until the next forward or logits.
    public func logits(
        features: UnsafePointer<Float>, lengths: UnsafePointer<Int32>, batch: Int,
        frames t0: Int
    ) -> (logits: UnsafePointer<Float>, frames: [Int]) {
        encode(
            features: features, lengths: lengths, batch: batch, frames: t0,
            key: RandomKey(seed: config.train.seed, step: 0, microBatch: 0), training: false)
        return (UnsafePointer(head.logits), (0..<batch).map { Int(frames.encoderLengths[$0]) })
    }

    // MARK: Backward

    /// ACCUMULATES into grads d(lossScale · Σ_b loss_b/L_b) of the last forward (which ran with `training`).
    /// `trainEncoder` false: only the head's gradients (the encoder's stay untouched); the front end's are
    /// never computed with finetune.freeze_frontend. `gradientsReady(i)` is called once for every index of
    /// `gradientRanges`, in order, as soon as that range's gradients are final.
    public func backward(lossScale: Float, trainEncoder: Bool, gradientsReady: (Int) throws -> Void) rethrows {
        let c = config, n = shape.n, d = c.model.dim
        let blocks = stack.dropped.count
        head.backward(lossScale: lossScale, input: trainEncoder, n: n)
        try gradientsReady(0)
        guard trainEncoder else {
            for r in 1..<gradientRanges.count { try gradientsReady(r) }
            return
        }
        // 4. Conformer blocks in reverse → dx0 (each block's range is ready as soon as it is done).
        try stack.backward(
            x0: context.x0, dy: head.dInput, lengths: frames.encoderLengths, shape,
            config: BlockConfig(c, training: training), blockDone: { i in try gradientsReady(blocks - i) })
        // 3. Channel mask, positional conv, context projection, time masking → dz.
        masking.zeroChannels(stack.dCur, shape)
        zero(encoder.dz, n * d)
        stack.finish(dz: encoder.dz, lengths: frames.encoderLengths, t: shape.t)
        context.backward(dx0: stack.dCur, dz: encoder.dz, frames: frames, shape)
        // 1. Feature encoder.
        if !c.finetune.freezeFrontend { encoder.backward(shape) }
        if gradientRanges.count > blocks + 1 { try gradientsReady(blocks + 1) }
    }

    /// backward without the readiness hook.
    public func backward(lossScale: Float, trainEncoder: Bool = true) {
        backward(lossScale: lossScale, trainEncoder: trainEncoder, gradientsReady: { _ in })
    }
}
