// The feature encoder: fbank [B, T0, 80] → z [B, T, d], one of two front ends, then a
// projection and a LayerNorm:
//   conv2d: two 3×3 stride-2 convolutions with ReLU (C channels, 80 → 19 bins, T0 → T = ((T0−1)/2−1)/2),
//           channels × bins flattened per frame (C·19) → proj
//   stack:  two consecutive frames stacked (T = T0/2, 160 values) → LayerNorm(160) → proj
//   z = LayerNorm(proj(·))
// Activations are carved from the model's arena; backward reads `dz` (filled by the model) and
// accumulates into the parameter gradients. The conv2d front end keeps only its input, conv1's output (not even
// that with train.checkpoint_activations = blocks: backward runs conv1 again, the same arithmetic) and the
// projection's input; its other buffers (conv2's output, the im2col workspace, the gradients) are carved over the
// Conformer stack's region, which is free whenever the front end runs (`ConformerStack.sharedMark`).

import Tensor

/// conv2d front end: conv1 (1 → C) → ReLU → conv2 (C → C) → ReLU → [N, C·19].
struct ConvStem {
    let conv1w, conv1b, conv2w, conv2b: PG
    let input: FPtr  // [B, T0, 80] copy of the features (conv1's backward reads it)
    let y1, y2: FPtr  // conv outputs [B, C, H1, 39], [B, C, T, 19] (y2 only within forward)
    var dy2: FPtr { y2 }  // conv2's output gradient, in y2's floats (y2 is dead once feat holds ReLU(y2))
    let feat: FPtr  // [N, C·19] proj input
    let cols: FPtr  // im2col workspace
    let dy1: FPtr  // doubles as d(feat) [N, C·19]
    let channels: Int
    let compute: Compute
    /// y1 is not kept (checkpointing): backward computes it again from `input`.
    let recomputeY1: Bool

    /// `shared`: the arena mark of a region that is free whenever the front end runs (see the top of the file).
    init(
        _ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ a: Arena, capacity cap: Capacity, channels C: Int,
        recomputeY1: Bool, shared: Int
    ) {
        compute = a.compute
        conv1w = PG(l, "feature_encoder.conv1.weight", p, g)
        conv1b = PG(l, "feature_encoder.conv1.bias", p, g)
        conv2w = PG(l, "feature_encoder.conv2.weight", p, g)
        conv2b = PG(l, "feature_encoder.conv2.bias", p, g)
        channels = C
        let fq = Config.convFreq, w1 = Config.convFreq1
        // conv1 output rows Σ_b H1 ≤ B·T0/2.
        let h1 = max(0, (cap.frames - 3) / 2 + 1)
        let rows1 = max(h1, min(cap.batch * h1, cap.totalFrames / 2 + cap.batch))
        let n = cap.n
        self.recomputeY1 = recomputeY1
        // Over the shared region first (it ends where the arena ends now), then the kept parts after it.
        let y1Shared: FPtr?
        (y2, cols, dy1, y1Shared) = a.carve(over: shared) {
            (
                a.take(C * n * fq),
                // One chunk of im2col columns (conv2dColsBudget floats) and the transposed dW, for conv1 and conv2.
                a.take(
                    max(
                        Conv2dShape(b: 1, cin: 1, cout: C, h: max(cap.frames, 3), w: Config.melBins)
                            .colsCount(budget: conv2dColsBudget),
                        Conv2dShape(b: 1, cin: C, cout: C, h: 2 * cap.t + 1, w: w1)
                            .colsCount(budget: conv2dColsBudget))),
                a.take(max(C * rows1 * w1, n * C * fq)),
                recomputeY1 ? a.take(C * rows1 * w1) : nil
            )
        }
        y1 = y1Shared ?? a.take(C * rows1 * w1)
        input = a.take(max(cap.frames, cap.totalFrames) * Config.melBins)
        feat = a.take(n * C * fq)
    }

    /// y1 = ReLU(conv1(input)).
    private func conv1(_ s1: Conv2dShape) {
        conv2dForward(compute, y: y1, cols: cols, x: input, weight: conv1w.w, bias: conv1b.w, shape: s1)
        reluForward(y: y1, x: y1, n: s1.b * s1.cout * s1.ho * s1.wo)
    }

    /// x [B, T0, 80] → feat [N, C·19].
    func forward(_ x: CFPtr, _ s: BatchShape) {
        let C = channels, fq = Config.convFreq, w = C * fq, T = s.t
        input.update(from: x, count: s.b * s.t0 * Config.melBins)  // the caller may reuse its buffer after forward
        let s1 = Conv2dShape(b: s.b, cin: 1, cout: C, h: s.t0, w: Config.melBins)
        conv1(s1)
        let s2 = Conv2dShape(b: s.b, cin: C, cout: C, h: s1.ho, w: s1.wo)
        precondition(s2.ho == T && s2.wo == fq)
        conv2dForward(compute, y: y2, cols: cols, x: y1, weight: conv2w.w, bias: conv2b.w, shape: s2)
        reluForward(y: y2, x: y2, n: s.b * C * T * fq)
        parallelFor(s.b * C) { lo, hi in
            for bc in lo..<hi {
                let b = bc / C, ch = bc % C
                for t in 0..<T { (feat + (b * T + t) * w + ch * fq).update(from: y2 + (bc * T + t) * fq, count: fq) }
            }
        }
    }

    /// Reads d(feat) from `dy1` (written by proj's backward), mirrors forward.
    func backward(_ s: BatchShape) {
        let C = channels, fq = Config.convFreq, w = C * fq, T = s.t
        let dfeat = dy1
        // dy2 = d(feat) back in conv2's layout, through ReLU's mask (feat = ReLU(y2) > 0 exactly where y2 > 0).
        parallelFor(s.b * C) { lo, hi in
            for bc in lo..<hi {
                let b = bc / C, ch = bc % C
                for t in 0..<T {
                    let dst = dy2 + (bc * T + t) * fq, src = dfeat + (b * T + t) * w + ch * fq
                    let y = feat + (b * T + t) * w + ch * fq
                    for j in 0..<fq { dst[j] = y[j] > 0 ? src[j] : 0 }
                }
            }
        }
        let s1 = Conv2dShape(b: s.b, cin: 1, cout: C, h: s.t0, w: Config.melBins)
        let s2 = Conv2dShape(b: s.b, cin: C, cout: C, h: s1.ho, w: s1.wo)
        let n1 = s.b * C * s1.ho * s1.wo
        if recomputeY1 { conv1(s1) }
        conv2dBackward(
            compute, dx: dy1, dWeight: conv2w.g, dBias: conv2b.g, cols: cols, dy: dy2, x: y1,
            weight: conv2w.w, shape: s2, write: .overwrite)
        reluMask(dy1, y1, n1)
        conv2dBackward(
            compute, dx: nil, dWeight: conv1w.g, dBias: conv1b.g, cols: cols, dy: dy1, x: input,
            weight: conv1w.w, shape: s1)
    }
}

/// d[i] = 0 where y[i] ≤ 0 (ReLU's backward in place), over the threads.
func reluMask(_ d: FPtr, _ y: CFPtr, _ n: Int) {
    parallelChunks(n) { s, count in for i in s..<(s + count) where y[i] <= 0 { d[i] = 0 } }
}

/// stack front end: input frames kt … kt+k−1 side by side (missing values, NaN, read as 0) → LayerNorm(k·F)
/// (unless model.stack_norm is false) → [N, k·F].
struct StackStem {
    let norm: NormPG?
    let stacked, normed, mean, rstd: FPtr  // [N, kF], [N, kF], [N], [N]
    let dNormed, dStacked: FPtr  // [N, kF]
    let k, width: Int  // frames per encoder frame, values per input frame

    init(_ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ a: Arena, config c: Config, capacity cap: Capacity) {
        norm = c.model.stackNorm ? NormPG(l, "feature_encoder.stack_norm", p, g) : nil
        k = c.model.stackFrames
        width = c.inputWidth
        let n = cap.n, w = c.stackedWidth
        stacked = a.take(n * w)
        normed = a.take(n * w)
        mean = a.take(n)
        rstd = a.take(n)
        dNormed = a.take(n * w)
        dStacked = a.take(n * w)
    }

    func forward(_ x: CFPtr, _ s: BatchShape) {
        let w = k * width
        for b in 0..<s.b {
            for t in 0..<s.t {
                let dst = stacked + (b * s.t + t) * w, src = x + (b * s.t0 + k * t) * width
                for j in 0..<w {
                    let v = src[j]
                    dst[j] = v.isNaN ? 0 : v
                }
            }
        }
        norm?.forward(y: normed, mean: mean, rstd: rstd, x: stacked, n: s.n, c: w)
    }

    /// The projection's input: the normed frames, or the stacked ones without the LayerNorm.
    var output: FPtr { norm == nil ? stacked : normed }

    /// Reads d(output) from `dNormed` (written by proj's backward). Without the LayerNorm nothing is left to do:
    /// the input is data.
    func backward(_ s: BatchShape) {
        guard let norm else { return }
        zero(dStacked, s.n * k * width)
        norm.backward(dx: dStacked, dy: dNormed, x: stacked, mean: mean, rstd: rstd, n: s.n, c: k * width)
    }
}

/// embed front end: token ids x [B, T0] (as floats) → k embeddings E[x_kt] … E[x_kt+k−1] side by side → [N, k·e].
struct EmbedStem {
    let table: PG  // [V, e]
    let stacked, dStacked: FPtr  // [N, k·e]
    let ids: UnsafeMutablePointer<Int32>  // [N·k]
    let k, e, vocab: Int

    init(_ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ a: Arena, config c: Config, capacity cap: Capacity) {
        table = PG(l, "feature_encoder.embedding.weight", p, g)
        k = c.model.stackFrames
        e = c.model.frontendChannels
        vocab = c.data.vocabSize
        stacked = a.take(cap.n * k * e)
        dStacked = a.take(cap.n * k * e)
        ids = a.takeInt32(cap.n * k)
    }

    func forward(_ x: CFPtr, _ s: BatchShape) {
        for b in 0..<s.b {
            for t in 0..<s.t {
                let row = b * s.t + t
                for j in 0..<k {
                    // Ids are checked by the loader; padding and anything else out of range reads row 0.
                    let v = x[b * s.t0 + k * t + j]
                    let id = v >= 0 && v < Float(vocab) ? Int32(v) : 0
                    ids[row * k + j] = id
                    (stacked + (row * k + j) * e).update(from: table.w + Int(id) * e, count: e)
                }
            }
        }
    }

    /// Scatter-adds d(stacked) (written by proj's backward) into the table's gradient rows.
    func backward(_ s: BatchShape) {
        for r in 0..<(s.n * k) {
            let dst = table.g + Int(ids[r]) * e, src = dStacked + r * e
            for c in 0..<e { dst[c] += src[c] }
        }
    }
}

/// The Conformer stack, then the feature encoder right after it: the encoder carves its workspace over the
/// stack's region (see the top of the file), which must end where the arena ends when the encoder is built.
func stackAndEncoder(
    _ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ a: Arena, config c: Config, capacity cap: Capacity
) -> (ConformerStack, FeatureEncoder) {
    let stack = ConformerStack(l, p, g, a, config: c, capacity: cap)
    return (stack, FeatureEncoder(l, p, g, a, config: c, capacity: cap, shared: stack.sharedMark))
}

struct FeatureEncoder {
    let conv: ConvStem?, stack: StackStem?, embed: EmbedStem?
    let proj: LinearPG, norm: NormPG?  // norm nil: model.frontend_norm false (the HF family), z = proj output
    let zp, z, mean, rstd: FPtr  // [N, d] projection, [N, d] output, [N], [N]
    let dz, dzp: FPtr  // [N, d]: dz is filled by the model's backward
    let d, inDim: Int

    /// `shared`: see `ConvStem.init`.
    init(
        _ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ a: Arena, config c: Config, capacity cap: Capacity, shared: Int
    ) {
        conv =
            c.model.frontend == .conv2d
            ? ConvStem(
                l, p, g, a, capacity: cap, channels: c.model.frontendChannels,
                recomputeY1: c.train.checkpointActivations == .blocks, shared: shared) : nil
        stack = c.model.frontend == .stack ? StackStem(l, p, g, a, config: c, capacity: cap) : nil
        embed = c.model.frontend == .embed ? EmbedStem(l, p, g, a, config: c, capacity: cap) : nil
        proj = LinearPG(l, "feature_encoder.proj", p, g, a.compute)
        norm = c.model.frontendNorm ? NormPG(l, "feature_encoder.norm", p, g) : nil
        d = c.model.dim
        inDim = c.encoderInputDim
        let n = cap.n
        zp = a.take(n * d)
        z = a.take(n * d)
        mean = a.take(n)
        rstd = a.take(n)
        dz = a.take(n * d)
        dzp = a.take(n * d)
    }

    /// x [B, T0, F] → z [N, d].
    func forward(_ x: CFPtr, _ s: BatchShape) {
        let projInput: CFPtr
        if let conv {
            conv.forward(x, s)
            projInput = CFPtr(conv.feat)
        } else if let stack {
            stack.forward(x, s)
            projInput = CFPtr(stack.output)
        } else {
            embed!.forward(x, s)
            projInput = CFPtr(embed!.stacked)
        }
        proj.forward(y: zp, x: projInput, n: s.n, inDim: inDim, outDim: d)
        if let norm {
            norm.forward(y: z, mean: mean, rstd: rstd, x: zp, n: s.n, c: d)
        } else {
            z.update(from: zp, count: s.n * d)
        }
    }

    /// Accumulates the parameter gradients for dz.
    func backward(_ s: BatchShape) {
        zero(dzp, s.n * d)
        if let norm {
            norm.backward(dx: dzp, dy: dz, x: zp, mean: mean, rstd: rstd, n: s.n, c: d)
        } else {
            dzp.update(from: dz, count: s.n * d)
        }
        if let conv {
            zero(conv.dy1, s.n * inDim)
            proj.backward(dx: conv.dy1, dy: dzp, x: conv.feat, n: s.n, inDim: inDim, outDim: d)
            conv.backward(s)
        } else if let stack {
            // Without stack_norm the input needs no gradient: proj's dW only.
            if stack.norm != nil { zero(stack.dNormed, s.n * inDim) }
            proj.backward(
                dx: stack.norm == nil ? nil : stack.dNormed, dy: dzp, x: stack.output, n: s.n, inDim: inDim, outDim: d)
            stack.backward(s)
        } else if let embed {
            zero(embed.dStacked, s.n * inDim)
            proj.backward(dx: embed.dStacked, dy: dzp, x: embed.stacked, n: s.n, inDim: inDim, outDim: d)
            embed.backward(s)
        }
    }
}
