// The W2V-BERT model (SPEC §1, §3–§10): feature encoder, masking, context projection, positional conv,
// N contrastive + M MLM Conformer blocks, Gumbel quantizer, contrastive / MLM / diversity losses.
//
// Contract (llm.c style): `forward` runs one micro-batch and saves every activation in an arena sized at
// construction for the largest micro-batch (B ≤ maxBatch, T0 ≤ maxFrames, B·T0 ≤ maxTotalFrames); no
// allocation happens in forward or backward. `backward` mirrors forward section by section (numbered) and
// ACCUMULATES into `grads`. Losses come back as un-normalised sums over this micro-batch's masked
// frames; the caller knows N_masked of the whole optimizer step (all ranks, all micro-batches) and passes
// lossScale = 1/N_masked to backward. The diversity loss is computed from the soft code usage all-reduced
// through `reduce` and its gradient is weighted by `diversityScale` (α by default). `reduce` must leave the
// usage of the whole optimizer step in the buffer: with update_freq 1 an all-reduce over ranks does that;
// with accumulation the trainer sums `quantizerUsage` of every micro-batch and rank first (a cheap
// pre-pass) and `reduce` writes that total, so L_d is the whole step's (SPEC §7, §10).
//
// How a trainer runs one optimizer step of update_freq micro-batches on each of R ranks (Training/Trainer.swift):
//     U = Σ over micro-batches f and ranks of quantizerUsage(mb_f)        // only when update_freq > 1
//     model.zeroGrads()
//     for each micro-batch f (features, T0 lengths, mask from the data pipeline):
//         stats_f = model.forward(mb, tau: optimizer.tau, reduce: update_freq == 1 ? allReduceSum : writeU)
//         model.backward(lossScale: 1 / N_step, diversityScale: α)
//     all-reduce grads (sum); optimizer.update(params:grads:) (clips, AdamW, advances step → τ, LR)
// where N_step = stats.maskedGlobal, the masked frames of the whole step (last entry of the reduced usage).
// The logged loss is (w_c·ΣL_w + w_m·ΣL_m)/N_step + α·L_d(step).
//
// Shapes: B utterances, T0 fbank frames (padded), T = encoderLength(T0), N = B·T, S masked frames,
// d model dim, f FFN dim, G codebooks × V entries, D codebook dim, F final dim, K distractors.

import Tensor

/// One micro-batch as the data pipeline produces it. The pointers need to stay valid during `forward` only
/// (the model copies what its backward needs).
public struct MicroBatch {
    public var features: UnsafePointer<Float>   // [B, T0, 80], zero padded
    public var lengths: UnsafePointer<Int32>    // [B] fbank frames per utterance
    public var mask: UnsafePointer<UInt8>       // [B, T] 1 = masked (only frames t < encoderLength(lengths[b]) count)
    public var batch: Int                       // B
    public var frames: Int                      // T0 (padded)
    public var seed: UInt64, step: Int, microBatch: Int
    public init(features: UnsafePointer<Float>, lengths: UnsafePointer<Int32>, mask: UnsafePointer<UInt8>, batch: Int,
                frames: Int, seed: UInt64, step: Int, microBatch: Int) {
        self.features = features; self.lengths = lengths; self.mask = mask; self.batch = batch; self.frames = frames
        self.seed = seed; self.step = step; self.microBatch = microBatch
    }
}

/// Per-micro-batch results. Sums are over this micro-batch (this rank); `*Global` and the perplexities
/// and diversity loss come from the all-reduced usage.
public struct StepStats: Sendable {
    public var masked = 0                       // S, masked frames here
    public var maskedGlobal = 0.0               // masked frames of this micro-batch over all ranks
    public var contrastiveLossSum = 0.0         // Σ L_w
    public var mlmLossSum = 0.0                 // Σ L_m (mean over codebooks per frame)
    public var contrastiveCorrect = 0           // frames whose positive beats every valid distractor
    public var mlmCorrect = 0                   // (frame, codebook) pairs with argmax = target
    public var diversityLoss = 0.0              // L_d (global)
    public var probPerplexity = 0.0
    public var codePerplexity = 0.0
    public var tau: Float = 0
    public init() {}
    /// Micro-batches merged into this value (see `merge`).
    public var microBatches = 1
    /// Merges the stats of another micro-batch of the same step (same or another rank): sums add; L_d, the
    /// perplexities and τ are averaged over micro-batches (each is already global across ranks).
    public mutating func merge(_ o: StepStats) {
        let n = Double(microBatches), m = Double(o.microBatches)
        diversityLoss = (diversityLoss * n + o.diversityLoss * m) / (n + m)
        probPerplexity = (probPerplexity * n + o.probPerplexity * m) / (n + m)
        codePerplexity = (codePerplexity * n + o.codePerplexity * m) / (n + m)
        masked += o.masked; maskedGlobal += o.maskedGlobal
        contrastiveLossSum += o.contrastiveLossSum; mlmLossSum += o.mlmLossSum
        contrastiveCorrect += o.contrastiveCorrect; mlmCorrect += o.mlmCorrect
        microBatches += o.microBatches
    }
    public var contrastiveAccuracy: Double { Double(contrastiveCorrect) / Double(max(masked, 1)) }
    /// Share of (masked frame, codebook) pairs predicted right; pass G.
    public func mlmAccuracy(groups: Int) -> Double { Double(mlmCorrect) / Double(max(masked * groups, 1)) }
    /// L = (w_c·ΣL_w + w_m·ΣL_m)/N_masked + α·L_d with N_masked = `masked` (all merged micro-batches).
    public func loss(_ c: Config) -> Double {
        let n = Double(max(masked, 1))
        return (Double(c.loss.contrastiveWeight) * contrastiveLossSum + Double(c.loss.mlmWeight) * mlmLossSum) / n
            + Double(c.loss.diversityWeight) * diversityLoss
    }
}

/// Test hook: random draws injected instead of the streams (row order = masked frames in (b, t) order).
public struct NoiseOverride {
    public var maskNoise: [Float]?              // [S, d] (already scaled: the replacement vectors themselves)
    public var gumbel: [Float]?                 // [S, G, V]
    public var distractors: [Int32]?            // [S, K] indices into the masked-frame list
    /// Dropout masks (values 0 or 1/(1−p)) in forward order: per executed block ffn1 [N, f], ffn1 [N, d],
    /// attn [N, d], conv [N, d], ffn2 [N, f], ffn2 [N, d] (N = B·T).
    public var dropoutMasks: [[Float]]?
    /// Layer-drop decisions, contrastive blocks then MLM blocks.
    public var droppedBlocks: [Bool]?
    public init(maskNoise: [Float]? = nil, gumbel: [Float]? = nil, distractors: [Int32]? = nil,
                dropoutMasks: [[Float]]? = nil, droppedBlocks: [Bool]? = nil) {
        self.maskNoise = maskNoise; self.gumbel = gumbel; self.distractors = distractors
        self.dropoutMasks = dropoutMasks; self.droppedBlocks = droppedBlocks
    }
}

public final class W2VBertModel {
    public let config: Config
    public let layout: ParameterLayout
    public let params: FloatBuffer
    public let grads: FloatBuffer
    public let maxBatch: Int, maxFrames: Int, maxTotalFrames: Int
    public var noiseOverride: NoiseOverride?
    /// Called during `backward` each time the gradients of a contiguous range of the layout are final for
    /// this micro-batch (offset, count): each Conformer block as soon as its backward is done (MLM blocks
    /// last to first, then contrastive), then the rest before the blocks (feature encoder, mask embedding,
    /// context projection, positional conv) and after them (quantizer, heads). Together the ranges cover
    /// the layout exactly once. The distributed trainer sets it on the last micro-batch of a step to start
    /// bucketed all-reduces while backward continues.
    public var gradientsReady: ((Int, Int) -> Void)?
    /// [start, end) of each block's parameters in the layout (contrastive blocks, then MLM blocks).
    public let blockRanges: [Range<Int>]
    public let arena: Arena

    // dims
    let d, f, G, V, D, F, K, C: Int
    let capT, capN: Int

    // parameters
    let conv1w, conv1b, conv2w, conv2b: PG?
    let stackNorm: NormPG?
    let proj: LinearPG, encNorm: NormPG
    let maskEmbedding: PG?
    let contextProj: LinearPG
    let posConv: LinearPG?   // weight [d, d/Gp, P], bias [d]
    let contrastive: [ConformerBlock]
    let mlm: [ConformerBlock]
    let quantProj: LinearPG, codebook: PG
    let headContext: LinearPG, headTarget: LinearPG, mlmHead: LinearPG
    var dropped: [Bool]

    // activations (capacity)
    let encLen: UnsafeMutablePointer<Int32>                 // [B]
    let input: FPtr?                                        // [B, T0, 80] copy of the features (conv1's backward reads it)
    let y1, y2, feat, cols, dy1, dy2: FPtr?                // conv2d frontend
    let st, sn, snMean, snRstd, dsn, dst: FPtr?             // stack frontend
    let zp, z, zMean, zRstd, dz, dzp: FPtr
    let rows: UnsafeMutablePointer<Int32>                   // [S] masked row index b·T + t
    let rowUtt: UnsafeMutablePointer<Int32>                 // [S] utterance of each masked row
    let uttStart, uttCount: UnsafeMutablePointer<Int32>     // [B] into rows
    let xm, noise, xp, pc, x0, posCols: FPtr
    let zm, ql, qy, soft, sp, gnoise, q: FPtr
    let ids: UnsafeMutablePointer<Int32>                    // [S, G]
    let cm, yc, yq, normA, normB, cosv, logits, cprobs, closses: FPtr
    let ia, ib, distractors, zeroTargets: UnsafeMutablePointer<Int32>
    let excluded: UnsafeMutablePointer<Int32>              // [S, K+1] 1 = excluded
    let mm, ml, mprobs, mlosses: FPtr
    let usage: UnsafeMutablePointer<Double>                 // [2·G·V + 1]
    let usageGrad: FPtr                                     // [G·V] dL_d/dp̄ / N (unscaled)
    let scratch: BlockScratch
    // backward-only
    let dCur, dxm, dPc: FPtr
    let dyc, dyq, dcm, dq, dqy, dql, dzm, dml, dmm, dLogits: FPtr

    // state of the last forward
    var B = 0, T = 0, T0 = 0, S = 0
    var tau: Float = 1
    var training = true
    var maskedGlobal = 0.0
    var attShape = AttentionShape(b: 1, t: 1, d: 1, heads: 1, position: .none)

    /// Builds the model for micro-batches of at most `maxBatch` utterances of at most `maxFrames` fbank frames
    /// each and at most `maxTotalFrames` padded frames in all (B·T0; default maxBatch·maxFrames). The arena
    /// is sized for the worst case of these bounds. Parameters are initialised from `config.train.seed`.
    public init(config c: Config, maxBatch: Int, maxFrames: Int, maxTotalFrames: Int? = nil) {
        config = c
        layout = ParameterLayout(config: c)
        params = FloatBuffer(count: layout.count)
        grads = FloatBuffer(count: layout.count)
        layout.initialize(params.ptr, seed: c.train.seed)
        self.maxBatch = maxBatch; self.maxFrames = maxFrames
        let total = min(maxTotalFrames ?? maxBatch * maxFrames, maxBatch * maxFrames)
        self.maxTotalFrames = total
        d = c.model.dim; f = c.model.ffnDim; G = c.quantizer.groups; V = c.quantizer.entries; D = c.quantizer.dim
        F = c.model.finalDim; K = c.loss.numNegatives; C = c.model.frontendChannels
        // N = Σ_b T = B·encoderLength(T0) ≤ B·T0/4 (conv2d) or B·T0/2 (stack), and ≤ maxBatch·capT.
        capT = max(1, c.encoderLength(t0: maxFrames))
        capN = max(capT, min(maxBatch * capT, (c.model.frontend == .conv2d ? total / 4 : total / 2) + maxBatch))
        let p = params.ptr, g = grads.ptr, l = layout
        dropped = [Bool](repeating: false, count: c.model.contrastiveBlocks + c.model.mlmBlocks)

        let conv2d = c.model.frontend == .conv2d
        conv1w = conv2d ? PG(l, "feature_encoder.conv1.weight", p, g) : nil
        conv1b = conv2d ? PG(l, "feature_encoder.conv1.bias", p, g) : nil
        conv2w = conv2d ? PG(l, "feature_encoder.conv2.weight", p, g) : nil
        conv2b = conv2d ? PG(l, "feature_encoder.conv2.bias", p, g) : nil
        stackNorm = conv2d ? nil : NormPG(l, "feature_encoder.stack_norm", p, g)
        proj = LinearPG(l, "feature_encoder.proj", p, g); encNorm = NormPG(l, "feature_encoder.norm", p, g)
        maskEmbedding = c.mask.replacement == .learned ? PG(l, "mask_embedding", p, g) : nil
        contextProj = LinearPG(l, "context_proj", p, g)
        posConv = c.model.position == .conv ? LinearPG(l, "pos_conv", p, g) : nil
        quantProj = LinearPG(l, "quantizer.proj", p, g); codebook = PG(l, "quantizer.codebook", p, g)
        headContext = LinearPG(l, "contrastive_head.context", p, g); headTarget = LinearPG(l, "contrastive_head.target", p, g)
        mlmHead = LinearPG(l, "mlm_head", p, g)
        var ranges: [Range<Int>] = []
        for (module, n) in [("contrastive", c.model.contrastiveBlocks), ("mlm", c.model.mlmBlocks)] {
            for i in 0..<n {
                // From the block's first tensor to the next tensor after it (alignment padding included).
                let prefix = "\(module).blocks.\(i)."
                let first = l.entries.firstIndex { $0.name.hasPrefix(prefix) }!
                let last = l.entries.lastIndex { $0.name.hasPrefix(prefix) }!
                let end = last + 1 < l.entries.count ? l.entries[last + 1].offset : l.count
                ranges.append(l.entries[first].offset..<end)
            }
        }
        blockRanges = ranges

        // Carve the arena twice: measure, then for real.
        let position: AttentionPosition
        switch c.model.position {
        case .shaw: position = .shaw(left: c.model.shawLeft, right: c.model.shawRight)
        case .rope: position = .rope
        default: position = .none
        }
        attShape = AttentionShape(b: 1, t: capT, d: d, heads: c.model.heads, position: position)
        let n = capN, s = capN, gv = G * V
        // Attention: probabilities B·h·T² ≤ h·N·T_max (+ rotated q, k); workspace per (utterance, head).
        let rope = position == .rope ? 2 * capN * d : 0
        let savedCount = c.model.heads * capN * capT + rope
        // issue 10: one attention workspace per thread (AttentionShape.workspaceCount's layout).
        let attWork = attShape.perThreadWorkspace * Compute.threads + rope
        // conv2d frontend: conv1 output rows Σ_b H1 ≤ B·T0/2.
        let h1 = max(0, (maxFrames - 3) / 2 + 1)
        let rows1 = max(h1, min(maxBatch * h1, total / 2 + maxBatch))
        let inputCount = max(maxFrames, total) * 80
        let dM = d, fM = f, DM = D, FM = F, KM = K, CM = C, GM = G, mbM = maxBatch, capTM = capT
        func carve(_ a: Arena) -> Carved {
            var r = Carved()
            r.encLen = a.takeInt32(mbM)
            if conv2d {
                r.input = a.take(inputCount)
                r.y1 = a.take(CM * rows1 * 39); r.y2 = a.take(CM * n * Config.convFreq)
                r.feat = a.take(n * CM * Config.convFreq)
                r.cols = a.take(max(9 * h1 * 39, CM * 9 * capTM * Config.convFreq))
                r.dy1 = a.take(max(CM * rows1 * 39, n * CM * Config.convFreq)); r.dy2 = a.take(CM * n * Config.convFreq)
            } else {
                r.st = a.take(n * 160); r.sn = a.take(n * 160); r.snMean = a.take(n); r.snRstd = a.take(n)
                r.dsn = a.take(n * 160); r.dst = a.take(n * 160)
            }
            r.zp = a.take(n * dM); r.z = a.take(n * dM); r.zMean = a.take(n); r.zRstd = a.take(n)
            r.dz = a.take(n * dM); r.dzp = a.take(n * dM)
            r.rows = a.takeInt32(s); r.rowUtt = a.takeInt32(s); r.uttStart = a.takeInt32(mbM); r.uttCount = a.takeInt32(mbM)
            r.xm = a.take(n * dM); r.noise = a.take(s * dM); r.xp = a.take(n * dM); r.pc = a.take(n * dM); r.x0 = a.take(n * dM)
            r.posCols = a.take(c.model.position == .conv ? groupedConv1dFastWorkspaceCount(t: capTM, c: dM, groups: c.model.posConvGroups, p: c.model.posConvKernel) : 1)
            r.zm = a.take(s * dM); r.ql = a.take(s * gv); r.qy = a.take(s * gv); r.soft = a.take(s * gv); r.sp = a.take(s * gv)
            r.gnoise = a.take(s * gv); r.q = a.take(s * DM); r.ids = a.takeInt32(s * GM)
            r.cm = a.take(s * dM); r.yc = a.take(s * FM); r.yq = a.take(s * FM); r.normA = a.take(s); r.normB = a.take(s)
            r.cosv = a.take(s * (KM + 1)); r.logits = a.take(s * (KM + 1)); r.cprobs = a.take(s * (KM + 1)); r.closses = a.take(s)
            r.ia = a.takeInt32(s * (KM + 1)); r.ib = a.takeInt32(s * (KM + 1)); r.distractors = a.takeInt32(s * KM)
            r.zeroTargets = a.takeInt32(s); r.excluded = a.takeInt32(s * (KM + 1))
            r.mm = a.take(s * dM); r.ml = a.take(s * gv); r.mprobs = a.take(s * gv); r.mlosses = a.take(s * GM)
            r.usageGrad = a.take(gv)
            r.scratch = BlockScratch(a, n: n, d: dM, f: fM, k: c.model.convKernel, attWork: attWork)
            r.dCur = a.take(n * dM); r.dxm = a.take(n * dM); r.dPc = a.take(n * dM)
            r.dyc = a.take(s * FM); r.dyq = a.take(s * FM); r.dcm = a.take(s * dM); r.dq = a.take(s * DM); r.dqy = a.take(s * gv)
            r.dql = a.take(s * gv); r.dzm = a.take(s * dM); r.dml = a.take(s * gv); r.dmm = a.take(s * dM); r.dLogits = a.take(s * (KM + 1))
            r.contrastive = (0..<c.model.contrastiveBlocks).map {
                ConformerBlock(l, "contrastive.blocks.\($0)", p, g, a, n: n, c: c, savedCount: savedCount)
            }
            r.mlm = (0..<c.model.mlmBlocks).map {
                ConformerBlock(l, "mlm.blocks.\($0)", p, g, a, n: n, c: c, savedCount: savedCount)
            }
            return r
        }
        let measure = Arena()
        _ = carve(measure)
        arena = Arena(count: measure.used)
        let r = carve(arena)
        encLen = r.encLen!
        input = r.input; y1 = r.y1; y2 = r.y2; feat = r.feat; cols = r.cols; dy1 = r.dy1; dy2 = r.dy2
        st = r.st; sn = r.sn; snMean = r.snMean; snRstd = r.snRstd; dsn = r.dsn; dst = r.dst
        zp = r.zp!; z = r.z!; zMean = r.zMean!; zRstd = r.zRstd!; dz = r.dz!; dzp = r.dzp!
        rows = r.rows!; rowUtt = r.rowUtt!; uttStart = r.uttStart!; uttCount = r.uttCount!
        xm = r.xm!; noise = r.noise!; xp = r.xp!; pc = r.pc!; x0 = r.x0!; posCols = r.posCols!
        zm = r.zm!; ql = r.ql!; qy = r.qy!; soft = r.soft!; sp = r.sp!; gnoise = r.gnoise!; q = r.q!; ids = r.ids!
        cm = r.cm!; yc = r.yc!; yq = r.yq!; normA = r.normA!; normB = r.normB!; cosv = r.cosv!; logits = r.logits!
        cprobs = r.cprobs!; closses = r.closses!; ia = r.ia!; ib = r.ib!; distractors = r.distractors!
        zeroTargets = r.zeroTargets!; excluded = r.excluded!
        mm = r.mm!; ml = r.ml!; mprobs = r.mprobs!; mlosses = r.mlosses!; usageGrad = r.usageGrad!
        scratch = r.scratch!
        dCur = r.dCur!; dxm = r.dxm!; dPc = r.dPc!
        dyc = r.dyc!; dyq = r.dyq!; dcm = r.dcm!; dq = r.dq!; dqy = r.dqy!; dql = r.dql!; dzm = r.dzm!; dml = r.dml!
        dmm = r.dmm!; dLogits = r.dLogits!
        contrastive = r.contrastive; mlm = r.mlm
        usage = .allocate(capacity: 2 * gv + 1)
        zeroTargets.update(repeating: 0, count: s)
    }

    deinit { usage.deallocate() }

    /// Activation arena size in bytes.
    public var activationBytes: Int { arena.used * 4 }

    /// Frames after the feature encoder (SPEC §3).
    public func encoderLength(t0: Int) -> Int { config.encoderLength(t0: t0) }

    public func zeroGrads() { grads.zero() }

    /// Called by backward right after Conformer block i (contrastive 0..<N, then MLM N..<N+M) has
    /// accumulated its parameter gradients, so the trainer can all-reduce that block's bucket while
    /// backward goes on.
    public var blockBackwardDone: ((Int) -> Void)? = nil

    /// The pre-pass of gradient accumulation: feature encoder and quantizer only, returning this
    /// micro-batch's [soft usage sums G·V, hard-code counts G·V, masked count] exactly as `forward`
    /// computes them (same noise). The trainer sums them over all micro-batches of the optimizer step
    /// and all ranks, then hands the total to each `forward` through `reduce`, so the diversity loss is
    /// that of the whole step (SPEC §7, §10) for any update_freq.
    public func quantizerUsage(_ mb: MicroBatch, tau: Float, training: Bool = true) -> [Double] {
        let c = config
        precondition(mb.batch >= 1 && mb.batch <= maxBatch && mb.frames <= maxFrames, "micro-batch exceeds the model's capacity")
        B = mb.batch; T0 = mb.frames; T = c.encoderLength(t0: T0)
        precondition(T >= 1, "utterances too short for the feature encoder")
        let gv = G * V
        for b in 0..<B { encLen[b] = Int32(min(T, c.encoderLength(t0: Int(mb.lengths[b])))) }
        frontendForward(mb.features)
        var S = 0
        for b in 0..<B {
            for t in 0..<Int(encLen[b]) where mb.mask[b * T + t] != 0 { rows[S] = Int32(b * T + t); S += 1 }
        }
        self.tau = tau
        quantizerForward(mb, S: S, training: training)
        var out = [Double](repeating: 0, count: 2 * gv + 1)
        out.withUnsafeMutableBufferPointer { localUsage(S: S, into: $0.baseAddress!) }
        return out
    }

    // MARK: Forward

    /// Runs one micro-batch. `tau` is the Gumbel temperature of this optimizer update (config.tau(step:)).
    /// `training` false: no Gumbel noise (argmax), no dropout, no layer drop. `reduce` all-reduces
    /// (sums) a buffer of Doubles across ranks in place: [soft usage G·V, hard counts G·V, masked count].
    public func forward(_ mb: MicroBatch, tau: Float, training: Bool = true,
                        reduce: (UnsafeMutablePointer<Double>, Int) -> Void = { _, _ in }) -> StepStats {
        let c = config
        precondition(mb.batch >= 1 && mb.batch <= maxBatch && mb.frames <= maxFrames && mb.batch * mb.frames <= maxTotalFrames,
                     "micro-batch exceeds the model's capacity")
        B = mb.batch; T0 = mb.frames; T = c.encoderLength(t0: T0); self.tau = tau; self.training = training
        precondition(T >= 1, "utterances too short for the feature encoder")
        let N = B * T, gv = G * V
        attShape = AttentionShape(b: B, t: T, d: d, heads: c.model.heads, position: attShape.position)
        for b in 0..<B { encLen[b] = Int32(min(T, c.encoderLength(t0: Int(mb.lengths[b])))) }

        // 1. Feature encoder → z [N, d].
        frontendForward(mb.features)

        // 2. Masked frames in (b, t) order.
        S = 0
        for b in 0..<B {
            uttStart[b] = Int32(S)
            for t in 0..<Int(encLen[b]) where mb.mask[b * T + t] != 0 {
                rows[S] = Int32(b * T + t); rowUtt[S] = Int32(b); S += 1
            }
            uttCount[b] = Int32(S) - uttStart[b]
        }
        let S = self.S

        // 3. Masking: xm = z with masked frames replaced.
        xm.update(from: z, count: N * d)
        if let me = maskEmbedding {
            for i in 0..<S { (xm + Int(rows[i]) * d).update(from: me.w, count: d) }
        } else {
            if let given = noiseOverride?.maskNoise {
                precondition(given.count == S * d, "maskNoise override has the wrong size")
                given.withUnsafeBufferPointer { noise.update(from: $0.baseAddress!, count: S * d) }
            } else {
                var rng = RandomStream(seed: mb.seed, step: mb.step, microBatch: mb.microBatch, purpose: .maskNoise)
                rng.fillNormal(noise, S * d, std: c.mask.randomStd)
            }
            for i in 0..<S { (xm + Int(rows[i]) * d).update(from: noise + i * d, count: d) }
        }

        // 4. Context projection and positional convolution → x0.
        contextProj.forward(y: xp, x: xm, n: N, inDim: d, outDim: d)
        positionalForward()

        // 5. Conformer blocks (layer drop drawn per step, identical on every rank).
        var drop = RandomStream(seed: mb.seed, step: mb.step, microBatch: 0, purpose: .layerDrop)
        for i in 0..<dropped.count { dropped[i] = training && c.model.layerDrop > 0 && drop.nextUniform() < c.model.layerDrop }
        if training, let given = noiseOverride?.droppedBlocks {
            precondition(given.count == dropped.count, "droppedBlocks override has the wrong size")
            for i in 0..<dropped.count { dropped[i] = given[i] }
        }
        var rng = DropoutSource(stream: RandomStream(seed: mb.seed, step: mb.step, microBatch: mb.microBatch, purpose: .dropout),
                                given: training ? noiseOverride?.dropoutMasks : nil)
        var input = CFPtr(x0)
        for i in 0..<dropped.count {
            let blk = i < contrastive.count ? contrastive[i] : mlm[i - contrastive.count]
            if dropped[i] { blk.y.update(from: input, count: N * d) } else {
                blk.forward(x: input, s: scratch, lengths: encLen, shape: attShape, c: dropoutConfig(training), rng: &rng)
            }
            input = CFPtr(blk.y)
        }
        let cOut = contrastive.last!.y
        let mOut = mlm.last?.y ?? cOut

        var stats = StepStats()
        stats.masked = S; stats.tau = tau

        // 6. Quantizer on unmasked z at masked frames: logits [S, G·V] → ids, q [S, D].
        quantizerForward(mb, S: S, training: training)
        let dg = D / G
        for i in 0..<S {
            for g in 0..<G {
                let id = Int(ids[i * G + g])
                (q + i * D + g * dg).update(from: codebook.w + (g * V + id) * dg, count: dg)
            }
        }

        // Diversity: global soft usage and hard counts.
        localUsage(S: S, into: usage)
        reduce(usage, 2 * gv + 1)
        maskedGlobal = usage[2 * gv]
        stats.maskedGlobal = maskedGlobal
        usageGrad.update(repeating: 0, count: gv)
        if maskedGlobal > 0 {
            var pp = 0.0, cp = 0.0
            for g in 0..<G {
                var h = 0.0, hc = 0.0
                for v in 0..<V {
                    let pv = usage[g * V + v] / maskedGlobal, cv = usage[gv + g * V + v] / maskedGlobal
                    h -= pv * log(pv + 1e-7); hc -= cv * log(cv + 1e-7)
                }
                let ppg = exp(h)
                pp += ppg; cp += exp(hc)
                for v in 0..<V {
                    let pv = usage[g * V + v] / maskedGlobal
                    usageGrad[g * V + v] = Float(ppg / Double(gv) * (log(pv + 1e-7) + pv / (pv + 1e-7)) / maskedGlobal)
                }
            }
            stats.probPerplexity = pp; stats.codePerplexity = cp
            stats.diversityLoss = (Double(gv) - pp) / Double(gv)
        }
        if S == 0 { return stats }

        // 7. Contrastive loss: cos(Wc·c_t, Wq·q_j)/κ for the positive (j = t) and K distractors.
        for i in 0..<S { (cm + i * d).update(from: cOut + Int(rows[i]) * d, count: d) }
        headContext.forward(y: yc, x: cm, n: S, inDim: d, outDim: F)
        headTarget.forward(y: yq, x: q, n: S, inDim: D, outDim: F)
        if let given = noiseOverride?.distractors {
            precondition(given.count == S * K, "distractors override has the wrong size")
            given.withUnsafeBufferPointer { distractors.update(from: $0.baseAddress!, count: S * K) }
        } else {
            var rd = RandomStream(seed: mb.seed, step: mb.step, microBatch: mb.microBatch, purpose: .distractors)
            for i in 0..<S {
                let b = Int(rowUtt[i]), start = Int(uttStart[b]), cnt = Int(uttCount[b]), own = i - start
                for k in 0..<K {
                    if cnt < 2 { distractors[i * K + k] = -1; continue }
                    var r = rd.nextInt(cnt - 1)
                    if r >= own { r += 1 }
                    distractors[i * K + k] = Int32(start + r)
                }
            }
        }
        let K1 = K + 1
        for i in 0..<S {
            ia[i * K1] = Int32(i); ib[i * K1] = Int32(i); excluded[i * K1] = 0
            for k in 0..<K {
                let j = Int(distractors[i * K + k])
                ia[i * K1 + 1 + k] = Int32(i)
                var ex: Int32 = 0
                if j < 0 { ex = 1 } else {
                    ex = 1
                    for g in 0..<G where ids[j * G + g] != ids[i * G + g] { ex = 0; break }
                }
                ib[i * K1 + 1 + k] = j < 0 ? Int32(i) : Int32(j)
                excluded[i * K1 + 1 + k] = ex
            }
        }
        cosineForward(out: cosv, normA: normA, normB: normB, a: yc, b: yq, ia: ia, ib: ib, n: S * K1, na: S, nb: S, dim: F)
        let invKappa = 1 / c.loss.kappa
        for p in 0..<(S * K1) { logits[p] = excluded[p] != 0 ? -.infinity : cosv[p] * invKappa }
        var lw = 0.0
        crossEntropyForward(losses: closses, probs: cprobs, logits: logits, targets: zeroTargets, n: S, v: K1)
        for i in 0..<S {
            lw += Double(closses[i])
            let pos = logits[i * K1]
            var ok = true
            for k in 1..<K1 where excluded[i * K1 + k] == 0 && logits[i * K1 + k] >= pos { ok = false; break }
            if ok { stats.contrastiveCorrect += 1 }
        }
        stats.contrastiveLossSum = lw

        // 8. MLM: head on m at masked frames, per codebook V-way cross-entropy against ids.
        for i in 0..<S { (mm + i * d).update(from: mOut + Int(rows[i]) * d, count: d) }
        mlmHead.forward(y: ml, x: mm, n: S, inDim: d, outDim: gv)
        crossEntropyForward(losses: mlosses, probs: mprobs, logits: ml, targets: ids, n: S * G, v: V)
        var lm = 0.0
        for r in 0..<(S * G) {
            lm += Double(mlosses[r])
            let row = ml + r * V
            var best = 0
            for v in 1..<V where row[v] > row[best] { best = v }
            if best == Int(ids[r]) { stats.mlmCorrect += 1 }
        }
        stats.mlmLossSum = lm / Double(G)
        return stats
    }

    /// Which hidden states `embed` returns (SPEC §14.14).
    public enum EmbedLayer: String, Sendable { case contrastive, mlm }

    /// Hidden states for whole utterances, no masking, no noise, no dropout (SPEC §14.14): the output of the
    /// last contrastive block or of the last MLM block (each after its final LayerNorm), [B, T, d] with
    /// T = encoderLength(frames); rows t ≥ encoderLength(lengths[b]) are padding. The pointer is valid until
    /// the next forward or embed.
    public func embed(features: UnsafePointer<Float>, lengths: UnsafePointer<Int32>, batch: Int, frames: Int,
                      layer: EmbedLayer = .mlm) -> UnsafePointer<Float> {
        let c = config
        precondition(batch >= 1 && batch <= maxBatch && frames <= maxFrames && batch * frames <= maxTotalFrames,
                     "batch exceeds the model's capacity")
        B = batch; T0 = frames; T = c.encoderLength(t0: T0); training = false; S = 0
        precondition(T >= 1, "utterances too short for the feature encoder")
        let N = B * T
        attShape = AttentionShape(b: B, t: T, d: d, heads: c.model.heads, position: attShape.position)
        for b in 0..<B { encLen[b] = Int32(min(T, c.encoderLength(t0: Int(lengths[b])))) }
        frontendForward(features)
        contextProj.forward(y: xp, x: z, n: N, inDim: d, outDim: d)
        positionalForward()
        var rng = DropoutSource(stream: RandomStream(seed: 0, purpose: .dropout), given: nil)   // unused: dropout is off
        let noDropout = dropoutConfig(false)
        var input = CFPtr(x0)
        let count = layer == .contrastive ? contrastive.count : dropped.count
        for i in 0..<count {
            let blk = i < contrastive.count ? contrastive[i] : mlm[i - contrastive.count]
            blk.forward(x: input, s: scratch, lengths: encLen, shape: attShape, c: noDropout, rng: &rng)
            input = CFPtr(blk.y)
        }
        return input
    }

    /// Quantizer logits of the S masked rows of z → Gumbel ids (noise from .gumbel unless training is off),
    /// the straight-through sample and the plain softmax `sp` (for the usage).
    func quantizerForward(_ mb: MicroBatch, S: Int, training: Bool) {
        let gv = G * V
        for i in 0..<S { (zm + i * d).update(from: z + Int(rows[i]) * d, count: d) }
        quantProj.forward(y: ql, x: zm, n: S, inDim: d, outDim: gv)
        var gn: CFPtr? = nil
        if training {
            if let given = noiseOverride?.gumbel {
                precondition(given.count == S * gv, "gumbel override has the wrong size")
                given.withUnsafeBufferPointer { gnoise.update(from: $0.baseAddress!, count: S * gv) }
            } else {
                var g = RandomStream(seed: mb.seed, step: mb.step, microBatch: mb.microBatch, purpose: .gumbel)
                g.fillGumbel(gnoise, S * gv)
            }
            gn = CFPtr(gnoise)
        }
        gumbelSoftmaxForward(y: qy, ids: ids, soft: soft, logits: ql, noise: gn, tau: tau, n: S * G, v: V)
        softmaxForward(y: sp, x: ql, n: S * G, v: V)
    }

    /// [soft usage sums G·V, hard-id counts G·V, S] of this micro-batch's masked frames.
    func localUsage(S: Int, into out: UnsafeMutablePointer<Double>) {
        let gv = G * V
        out.update(repeating: 0, count: 2 * gv + 1)
        for i in 0..<S {
            let r = sp + i * gv
            for j in 0..<gv { out[j] += Double(r[j]) }
            for g in 0..<G { out[gv + g * V + Int(ids[i * G + g])] += 1 }
        }
        out[2 * gv] = Double(S)
    }

    /// x0 = xp + GELU(pos_conv(xp)) with padded frames zeroed first (position: conv), else x0 = xp.
    func positionalForward() {
        let c = config, N = B * T
        if let posConv {
            zeroPadding(xp, lengths: encLen, b: B, t: T, c: d)
            groupedConv1dForward(y: pc, cols: posCols, x: xp, weight: posConv.weight.w, bias: posConv.bias!.w,
                                 b: B, t: T, c: d, groups: c.model.posConvGroups, p: c.model.posConvKernel)
            geluForward(y: x0, x: pc, n: N * d)
            axpy(x0, xp, n: N * d)
        } else {
            x0.update(from: xp, count: N * d)
        }
    }

    func dropoutConfig(_ training: Bool) -> Config {
        if training || config.model.dropout == 0 { return config }
        var c = config; c.model.dropout = 0; return c   // (dropout buffers exist; p = 0 gives masks of ones)
    }

    func frontendForward(_ x: UnsafePointer<Float>) {
        let N = B * T
        if let conv1w, let conv1b, let conv2w, let conv2b, let y1, let y2, let feat, let cols, let input {
            input.update(from: x, count: B * T0 * Config.melBins)   // the caller may reuse its buffer after forward
            let x = CFPtr(input)
            let s1 = Conv2dShape(b: B, cin: 1, cout: C, h: T0, w: Config.melBins)
            conv2dForward(y: y1, cols: cols, x: x, weight: conv1w.w, bias: conv1b.w, shape: s1)
            reluForward(y: y1, x: y1, n: B * C * s1.ho * s1.wo)
            let s2 = Conv2dShape(b: B, cin: C, cout: C, h: s1.ho, w: s1.wo)
            precondition(s2.ho == T && s2.wo == Config.convFreq)
            conv2dForward(y: y2, cols: cols, x: y1, weight: conv2w.w, bias: conv2b.w, shape: s2)
            reluForward(y: y2, x: y2, n: B * C * T * Config.convFreq)
            let fq = Config.convFreq, w = C * fq
            for b in 0..<B { for ch in 0..<C { for t in 0..<T {
                (feat + (b * T + t) * w + ch * fq).update(from: y2 + ((b * C + ch) * T + t) * fq, count: fq)
            } } }
            proj.forward(y: zp, x: feat, n: N, inDim: w, outDim: d)
        } else if let st, let sn, let snMean, let snRstd, let stackNorm {
            for b in 0..<B { for t in 0..<T {
                (st + (b * T + t) * 160).update(from: x + (b * T0 + 2 * t) * 80, count: 160)
            } }
            layerNormForward(y: sn, mean: snMean, rstd: snRstd, x: st, weight: stackNorm.weight.w, bias: stackNorm.bias.w, n: N, c: 160)
            proj.forward(y: zp, x: sn, n: N, inDim: 160, outDim: d)
        }
        layerNormForward(y: z, mean: zMean, rstd: zRstd, x: zp, weight: encNorm.weight.w, bias: encNorm.bias.w, n: N, c: d)
    }

    // MARK: Backward

    /// Accumulates the gradient of lossScale·(w_c·ΣL_w + w_m·ΣL_m) + diversityScale·L_d into `grads`.
    /// lossScale = 1/N_masked of the whole optimizer step; diversityScale = α by default (the usage handed
    /// to forward's `reduce` must be the whole step's).
    public func backward(lossScale: Float, diversityScale: Float? = nil) {
        let c = config, N = B * T, S = self.S, gv = G * V, K1 = K + 1, dg = D / G
        let divScale = diversityScale ?? c.loss.diversityWeight
        let cOut = contrastive.last!.y
        zero(dCur, N * d)
        zero(dz, N * d)
        if S > 0 {
            // 8. MLM head.
            zero(dml, S * gv)
            let wm = c.loss.mlmWeight * lossScale / Float(G)
            for r in 0..<(S * G) { mlosses[r] = wm }     // reuse as dLosses (forward values no longer needed)
            crossEntropyBackward(dLogits: dml, dLosses: mlosses, probs: mprobs, targets: ids, n: S * G, v: V)
            zero(dmm, S * d)
            mlmHead.backward(dx: dmm, dy: dml, x: mm, n: S, inDim: d, outDim: gv)
            for i in 0..<S { axpy(dCur + Int(rows[i]) * d, dmm + i * d, n: d) }
        }
        // 5b. MLM blocks in reverse.
        let blocksC = contrastive.count
        for i in stride(from: mlm.count - 1, through: 0, by: -1) {
            if !dropped[blocksC + i] {
                let x = i == 0 ? cOut : mlm[i - 1].y
                mlm[i].backward(dY: dCur, x: x, s: scratch, lengths: encLen, shape: attShape, c: c)
                dCur.update(from: scratch.dRes, count: N * d)
            }
            blockBackwardDone?(blocksC + i)
            if let hook = gradientsReady { let r = blockRanges[blocksC + i]; hook(r.lowerBound, r.count) }
        }
        zero(dq, S * D)
        if S > 0 {
            // 7. Contrastive head.
            let wc = c.loss.contrastiveWeight * lossScale
            for i in 0..<S { closses[i] = wc }
            zero(dLogits, S * K1)
            crossEntropyBackward(dLogits: dLogits, dLosses: closses, probs: cprobs, targets: zeroTargets, n: S, v: K1)
            let invKappa = 1 / c.loss.kappa
            for p in 0..<(S * K1) { dLogits[p] = excluded[p] != 0 ? 0 : dLogits[p] * invKappa }
            zero(dyc, S * F); zero(dyq, S * F)
            cosineBackward(da: dyc, db: dyq, dOut: dLogits, out: cosv, normA: normA, normB: normB, a: yc, b: yq,
                           ia: ia, ib: ib, n: S * K1, dim: F)
            zero(dcm, S * d)
            headContext.backward(dx: dcm, dy: dyc, x: cm, n: S, inDim: d, outDim: F)
            for i in 0..<S { axpy(dCur + Int(rows[i]) * d, dcm + i * d, n: d) }
            headTarget.backward(dx: dq, dy: dyq, x: q, n: S, inDim: D, outDim: F)
        }
        // 5a. Contrastive blocks in reverse.
        for i in stride(from: contrastive.count - 1, through: 0, by: -1) {
            if !dropped[i] {
                let x = i == 0 ? CFPtr(x0) : CFPtr(contrastive[i - 1].y)
                contrastive[i].backward(dY: dCur, x: x, s: scratch, lengths: encLen, shape: attShape, c: c)
                dCur.update(from: scratch.dRes, count: N * d)
            }
            blockBackwardDone?(i)
            if let hook = gradientsReady { let r = blockRanges[i]; hook(r.lowerBound, r.count) }
        }
        // 4. Positional convolution and context projection: dCur = dx0 → dxp (kept in dCur) → dxm.
        if let posConv {
            zero(dPc, N * d)
            geluBackward(dx: dPc, dy: dCur, x: pc, n: N * d)
            groupedConv1dBackwardFast(dx: dCur, dWeight: posConv.weight.g, dBias: posConv.bias!.g, work: posCols, dy: dPc, x: xp,
                                  weight: posConv.weight.w, b: B, t: T, c: d, groups: c.model.posConvGroups, p: c.model.posConvKernel)
            zeroPadding(dCur, lengths: encLen, b: B, t: T, c: d)
        }
        zero(dxm, N * d)
        contextProj.backward(dx: dxm, dy: dCur, x: xm, n: N, inDim: d, outDim: d)
        // 3. Masking: masked rows go to the mask embedding (learned) or nowhere (random); the rest to z.
        for i in 0..<S {
            let r = dxm + Int(rows[i]) * d
            if let me = maskEmbedding { axpy(me.g, r, n: d) }
            r.update(repeating: 0, count: d)
        }
        axpy(dz, dxm, n: N * d)
        // 6. Quantizer: straight-through Gumbel + diversity; into dz at masked rows unless detached.
        if S > 0 {
            for i in 0..<S {
                for g in 0..<G {
                    let id = Int(ids[i * G + g])
                    axpy(codebook.g + (g * V + id) * dg, dq + i * D + g * dg, n: dg)
                }
            }
            for g in 0..<G {
                gemm(transA: false, transB: true, m: S, n: V, k: dg, alpha: 1, a: dq + g * dg, lda: D,
                     b: codebook.w + g * V * dg, ldb: dg, beta: 0, c: dqy + g * V, ldc: gv)
            }
            zero(dql, S * gv)
            if training {
                gumbelSoftmaxBackward(dLogits: dql, dy: dqy, soft: soft, tau: tau, n: S * G, v: V)
            }
            if maskedGlobal > 0 && divScale != 0 {
                for r in 0..<(S * G) {
                    let pr = sp + r * V, gr = usageGrad + (r % G) * V, dr = dql + r * V
                    var dot: Float = 0
                    for v in 0..<V { dot += gr[v] * pr[v] }
                    for v in 0..<V { dr[v] += divScale * pr[v] * (gr[v] - dot) }
                }
            }
            zero(dzm, S * d)
            quantProj.backward(dx: dzm, dy: dql, x: zm, n: S, inDim: d, outDim: gv)
            if !c.quantizer.detachTargets {
                for i in 0..<S { axpy(dz + Int(rows[i]) * d, dzm + i * d, n: d) }
            }
        }
        // 1. Feature encoder.
        frontendBackward()
        if let hook = gradientsReady {
            let first = blockRanges.first!.lowerBound, last = blockRanges.last!.upperBound
            hook(0, first)
            hook(last, layout.count - last)
        }
    }

    func frontendBackward() {
        let N = B * T
        zero(dzp, N * d)
        layerNormBackward(dx: dzp, dWeight: encNorm.weight.g, dBias: encNorm.bias.g, dy: dz, x: zp, weight: encNorm.weight.w,
                          mean: zMean, rstd: zRstd, n: N, c: d)
        if let conv1w, let conv1b, let conv2w, let conv2b, let y1, let y2, let feat, let cols, let dy1, let dy2 {
            let fq = Config.convFreq, w = C * fq
            // dfeat in dy2's storage, laid out [N, C·19], then transposed into dy1 temporarily? No: use dy1 as dfeat.
            let dfeat = dy1
            zero(dfeat, N * w)
            proj.backward(dx: dfeat, dy: dzp, x: feat, n: N, inDim: w, outDim: d)
            for b in 0..<B { for ch in 0..<C { for t in 0..<T {
                (dy2 + ((b * C + ch) * T + t) * fq).update(from: dfeat + (b * T + t) * w + ch * fq, count: fq)
            } } }
            let n2 = B * C * T * fq
            for i in 0..<n2 where y2[i] <= 0 { dy2[i] = 0 }
            let s1 = Conv2dShape(b: B, cin: 1, cout: C, h: T0, w: Config.melBins)
            let s2 = Conv2dShape(b: B, cin: C, cout: C, h: s1.ho, w: s1.wo)
            let n1 = B * C * s1.ho * s1.wo
            zero(dy1, n1)
            conv2dBackward(dx: dy1, dWeight: conv2w.g, dBias: conv2b.g, cols: cols, dy: dy2, x: y1, weight: conv2w.w, shape: s2)
            for i in 0..<n1 where y1[i] <= 0 { dy1[i] = 0 }
            conv2dBackward(dx: nil, dWeight: conv1w.g, dBias: conv1b.g, cols: cols, dy: dy1, x: input!, weight: conv1w.w, shape: s1)
        } else if let st, let sn, let snMean, let snRstd, let dsn, let dst, let stackNorm {
            zero(dsn, N * 160)
            proj.backward(dx: dsn, dy: dzp, x: sn, n: N, inDim: 160, outDim: d)
            zero(dst, N * 160)
            layerNormBackward(dx: dst, dWeight: stackNorm.weight.g, dBias: stackNorm.bias.g, dy: dsn, x: st, weight: stackNorm.weight.w,
                              mean: snMean, rstd: snRstd, n: N, c: 160)
        }
    }
}

/// Pointers carved from an arena (a helper so the measuring and the real carve share one code path).
struct Carved {
    var encLen: UnsafeMutablePointer<Int32>?
    var input, y1, y2, feat, cols, dy1, dy2: FPtr?
    var st, sn, snMean, snRstd, dsn, dst: FPtr?
    var zp, z, zMean, zRstd, dz, dzp: FPtr?
    var rows, rowUtt, uttStart, uttCount: UnsafeMutablePointer<Int32>?
    var xm, noise, xp, pc, x0, posCols: FPtr?
    var zm, ql, qy, soft, sp, gnoise, q: FPtr?
    var ids: UnsafeMutablePointer<Int32>?
    var cm, yc, yq, normA, normB, cosv, logits, cprobs, closses: FPtr?
    var ia, ib, distractors, zeroTargets, excluded: UnsafeMutablePointer<Int32>?
    var mm, ml, mprobs, mlosses, usageGrad: FPtr?
    var scratch: BlockScratch?
    var dCur, dxm, dPc: FPtr?
    var dyc, dyq, dcm, dq, dqy, dql, dzm, dml, dmm, dLogits: FPtr?
    var contrastive: [ConformerBlock] = []
    var mlm: [ConformerBlock] = []
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
