// One Conformer block (dropout per §14.1) over x [B, T, d] (N = B·T rows):
//   x1 = x  + ½·FFN1(x)        FFN: LN → fc1 (d→f) → Swish → Dropout → fc2 (f→d) → Dropout
//   x2 = x1 + MHSA(x1)         LN → q, k, v → attention (key padding; shaw/rope) → out → Dropout
//   x3 = x2 + Conv(x2)         LN → pw1 (d→2d) → GLU → zero padded frames → depthwise k → LN → Swish → pw2
//                              → Dropout
//   x4 = x3 + ½·FFN2(x3)
//   y  = LN(x4)
// forward saves what backward needs in the block's own activation slots; backward mirrors it and uses
// the model's shared scratch. The modules' LayerNorm outputs and Swish outputs (and the dropped FFN activation),
// 2·f + 5·d floats per row, are kept only for short utterances (`BlockConfig.keepNormOutputs`, the same rule
// that keeps attention's probabilities); for long ones forward writes them to scratch and backward computes them
// again from the kept inputs, means and rstds with the same kernels (bit-identical either way). Every gradient
// accumulates.

import Tensor

/// Scratch shared by all blocks (forward temporaries and backward gradients), capacity N rows.
struct BlockScratch {
    let o: FPtr  // [N, d] branch output before the residual add
    let dRes: FPtr  // [N, d] running gradient of the residual stream
    let dO: FPtr  // [N, d]
    let dLn: FPtr  // [N, d]
    let dH: FPtr  // [N, f]
    let dA: FPtr  // [N, f]
    let dq: FPtr, dk: FPtr, dv: FPtr, dAtt: FPtr  // [N, d]
    let dP1: FPtr  // [N, 2d]
    let dG: FPtr, dDw: FPtr, dS: FPtr  // [N, d]
    let attWork: FPtr  // attention workspace
    let wT: FPtr  // [k, d]
    let dU: FPtr  // [N, r] scratch of the options' Linear branches (r = their branchScratch)
    init(_ a: Arena, n: Int, d: Int, f: Int, k: Int, attWork: Int, rank: Int) {
        o = a.take(n * d)
        dRes = a.take(n * d)
        dO = a.take(n * d)
        dLn = a.take(n * d)
        dH = a.take(n * f)
        dA = a.take(n * f)
        dq = a.take(n * d)
        dk = a.take(n * d)
        dv = a.take(n * d)
        dAtt = a.take(n * d)
        dP1 = a.take(n * 2 * d)
        dG = a.take(n * d)
        dDw = a.take(n * d)
        dS = a.take(n * d)
        self.attWork = a.take(attWork)
        wT = a.take(k * d)
        dU = a.take(n * rank)
    }
}

/// Where dropout masks come from: the .dropout stream, or (tests) masks given in forward order, one per
/// dropout site: per block ffn1 [N, f], ffn1 [N, d], attn [N, d], conv [N, d], ffn2 [N, f], ffn2 [N, d];
/// layer-dropped blocks take none.
struct DropoutSource {
    var stream: RandomStream
    let given: [[Float]]?
    var next = 0
    mutating func fill(_ mask: FPtr, n: Int, p: Float) {
        if let given {
            precondition(next < given.count && given[next].count >= n, "dropout mask override too short")
            given[next].withUnsafeBufferPointer { mask.update(from: $0.baseAddress!, count: n) }
            next += 1
        } else {
            dropoutMask(mask, n: n, p: p, stream: &stream)
        }
    }
}

/// Feed-forward module: y = x + ½·Dropout(fc2(Dropout(Swish(fc1(LN(x)))))).
struct FFN {
    let norm: NormPG, fc1: BlockLinear, fc2: BlockLinear
    // saved activations; LN(x) and fc2's input (the Swish output, dropped out) only when kept, else they are
    // rebuilt in scratch from mean, rstd and h
    let mean, rstd, h: FPtr
    let ln, act: FPtr?  // kept: LN(x) [N, d], fc2's input [N, f]
    let m1, m2: FPtr?  // dropout only
    init(
        _ l: ParameterLayout, _ name: String, _ p: FPtr, _ g: FPtr, _ ar: Arena, n: Int, d: Int, f: Int,
        dropout: Bool, c: BlockConfig
    ) {
        norm = NormPG(l, name + ".norm", p, g)
        fc1 = BlockLinear(l, name + ".fc1", p, g, ar, n: n, c: c)
        fc2 = BlockLinear(l, name + ".fc2", p, g, ar, n: n, c: c)
        mean = ar.take(n)
        rstd = ar.take(n)
        h = ar.take(n * f)
        ln = c.keepNormOutputs ? ar.take(n * d) : nil
        act = c.keepNormOutputs ? ar.take(n * f) : nil
        m1 = dropout ? ar.take(n * f) : nil
        m2 = dropout ? ar.take(n * d) : nil
    }

    func forward(y: FPtr, x: CFPtr, s: BlockScratch, n: Int, d: Int, f: Int, p: Float, rng: inout DropoutSource) {
        let lnOut = ln ?? s.dO, a = act ?? s.dH  // kept, or in scratch
        norm.forward(y: lnOut, mean: mean, rstd: rstd, x: x, n: n, c: d)
        fc1.forward(y: h, x: lnOut, n: n, inDim: d, outDim: f)
        if let m1 { rng.fill(m1, n: n * f, p: p) }
        activation(into: a, n: n * f)
        fc2.forward(y: s.o, x: a, n: n, inDim: f, outDim: d)
        if let m2 {
            rng.fill(m2, n: n * d, p: p)
            multiply(s.o, by: m2, n: n * d)
        }
        addScaled(y, x, s.o, alpha: 0.5, n: n * d)
    }

    /// fc2's input: Swish(h), times the dropout mask m1 (forward and backward build it the same way).
    func activation(into a: FPtr, n: Int) {
        swishForward(y: a, x: h, n: n)
        if let m1 { multiply(a, by: m1, n: n) }
    }

    /// dRes holds dy on entry and dx on exit (residual: dx = dy + branch gradient).
    func backward(s: BlockScratch, x: CFPtr, n: Int, d: Int, f: Int) {
        let dRes = s.dRes
        scaledCopy(s.dO, dRes, alpha: 0.5, mask: m2.map { CFPtr($0) }, n: n * d)
        if act == nil { activation(into: s.dH, n: n * f) }  // dH is free until swishBackward writes it
        fc2.backward(dx: s.dA, du: s.dU, dy: s.dO, x: act ?? s.dH, n: n, inDim: f, outDim: d, write: .overwrite)
        if let m1 { multiply(s.dA, by: m1, n: n * f) }
        swishBackward(dx: s.dH, dy: s.dA, x: h, n: n * f, write: .overwrite)
        if ln == nil { norm.apply(y: s.dO, mean: mean, rstd: rstd, x: x, n: n, c: d) }  // dO is free after fc2
        fc1.backward(dx: s.dLn, du: s.dU, dy: s.dH, x: ln ?? s.dO, n: n, inDim: d, outDim: f, write: .overwrite)
        layerNormBackward(
            dx: dRes, dWeight: norm.weight.g, dBias: norm.bias.g, dy: s.dLn, x: x, weight: norm.weight.w,
            mean: mean, rstd: rstd, n: n, c: d)
    }
}

/// Self-attention module: y = x + Dropout(out(Attention(q(LN x), k(LN x), v(LN x)))).
struct MHSA {
    let norm: NormPG, q: BlockLinear, k: BlockLinear, v: BlockLinear, out: BlockLinear
    let relKey: PG?
    let mean, rstd, qa, ka, va, att, saved: FPtr
    let ln: FPtr?  // kept LN(x), else rebuilt in scratch
    let m: FPtr?
    let compute: Compute
    init(
        _ l: ParameterLayout, _ name: String, _ p: FPtr, _ g: FPtr, _ ar: Arena, n: Int, d: Int, savedCount: Int,
        shaw: Bool, dropout: Bool, c: BlockConfig
    ) {
        compute = ar.compute
        norm = NormPG(l, name + ".norm", p, g)
        q = BlockLinear(l, name + ".q", p, g, ar, n: n, c: c)
        k = BlockLinear(l, name + ".k", p, g, ar, n: n, c: c)
        v = BlockLinear(l, name + ".v", p, g, ar, n: n, c: c)
        out = BlockLinear(l, name + ".out", p, g, ar, n: n, c: c)
        relKey = shaw ? PG(l, name + ".rel_key", p, g) : nil
        mean = ar.take(n)
        rstd = ar.take(n)
        qa = ar.take(n * d)
        ka = ar.take(n * d)
        va = ar.take(n * d)
        att = ar.take(n * d)
        saved = ar.take(savedCount)
        ln = c.keepNormOutputs ? ar.take(n * d) : nil
        m = dropout ? ar.take(n * d) : nil
    }

    func forward(
        y: FPtr, x: CFPtr, s: BlockScratch, lengths: UnsafePointer<Int32>, shape: AttentionShape, p: Float,
        rng: inout DropoutSource
    ) {
        let n = shape.b * shape.t, d = shape.d, ln = self.ln ?? s.dO  // kept, or in scratch
        norm.forward(y: ln, mean: mean, rstd: rstd, x: x, n: n, c: d)
        withSharedOperand(compute, ln, rows: n, cols: d, ld: d) {  // bf16: ln converted once for q, k, v
            q.forward(y: qa, x: ln, n: n, inDim: d, outDim: d)
            k.forward(y: ka, x: ln, n: n, inDim: d, outDim: d)
            v.forward(y: va, x: ln, n: n, inDim: d, outDim: d)
        }
        attentionForward(
            compute, out: att, saved: saved, work: s.attWork, q: qa, k: ka, v: va,
            relKey: relKey.map { CFPtr($0.w) }, lengths: lengths, shape: shape)
        out.forward(y: s.o, x: att, n: n, inDim: d, outDim: d)
        if let m {
            rng.fill(m, n: n * d, p: p)
            multiply(s.o, by: m, n: n * d)
        }
        addScaled(y, x, s.o, n: n * d)
    }

    func backward(s: BlockScratch, x: CFPtr, lengths: UnsafePointer<Int32>, shape: AttentionShape) {
        let n = shape.b * shape.t, d = shape.d
        scaledCopy(s.dO, s.dRes, mask: m.map { CFPtr($0) }, n: n * d)
        out.backward(dx: s.dAtt, du: s.dU, dy: s.dO, x: att, n: n, inDim: d, outDim: d, write: .overwrite)
        attentionBackward(
            compute, dq: s.dq, dk: s.dk, dv: s.dv, dRelKey: relKey?.g, work: s.attWork, dOut: s.dAtt, saved: saved,
            q: qa, k: ka, v: va, relKey: relKey.map { CFPtr($0.w) }, lengths: lengths, shape: shape, write: .overwrite)
        let ln = self.ln ?? s.dO  // LN(x) for q, k, v (rebuilt unless kept; dO is free after out's backward)
        if self.ln == nil { norm.apply(y: ln, mean: mean, rstd: rstd, x: x, n: n, c: d) }
        withSharedOperand(compute, ln, rows: n, cols: d, ld: d) {
            q.backward(dx: s.dLn, du: s.dU, dy: s.dq, x: ln, n: n, inDim: d, outDim: d, write: .overwrite)
            k.backward(dx: s.dLn, du: s.dU, dy: s.dk, x: ln, n: n, inDim: d, outDim: d)
            v.backward(dx: s.dLn, du: s.dU, dy: s.dv, x: ln, n: n, inDim: d, outDim: d)
        }
        layerNormBackward(
            dx: s.dRes, dWeight: norm.weight.g, dBias: norm.bias.g, dy: s.dLn, x: x,
            weight: norm.weight.w, mean: mean, rstd: rstd, n: n, c: d)
    }
}

/// Convolution module: y = x + Dropout(pw2(Swish(LN(depthwise(zeroPad(GLU(pw1(LN x)))))))).
struct ConvModule {
    let norm: NormPG, pw1: BlockLinear, dw: PG, dwNorm: NormPG, pw2: BlockLinear
    // LN(x), LN2(dwo) and Swish(LN2) are kept, or rebuilt in scratch from the kept inputs, means and rstds
    let mean, rstd, p1, gl, dwo, mean2, rstd2: FPtr
    let ln, ln2, sw: FPtr?  // kept
    let m: FPtr?
    init(
        _ l: ParameterLayout, _ name: String, _ p: FPtr, _ g: FPtr, _ ar: Arena, n: Int, d: Int, dropout: Bool,
        c: BlockConfig
    ) {
        norm = NormPG(l, name + ".norm", p, g)
        dw = PG(l, name + ".dw.weight", p, g)
        pw1 = BlockLinear(l, name + ".pw1", p, g, ar, n: n, c: c, bias: false)
        dwNorm = NormPG(l, name + ".dw_norm", p, g)
        pw2 = BlockLinear(l, name + ".pw2", p, g, ar, n: n, c: c, bias: false)
        mean = ar.take(n)
        rstd = ar.take(n)
        p1 = ar.take(2 * n * d)
        gl = ar.take(n * d)
        dwo = ar.take(n * d)
        mean2 = ar.take(n)
        rstd2 = ar.take(n)
        ln = c.keepNormOutputs ? ar.take(n * d) : nil
        ln2 = c.keepNormOutputs ? ar.take(n * d) : nil
        sw = c.keepNormOutputs ? ar.take(n * d) : nil
        m = dropout ? ar.take(n * d) : nil
    }

    func forward(
        y: FPtr, x: CFPtr, s: BlockScratch, lengths: UnsafePointer<Int32>, b: Int, t: Int, d: Int, k: Int,
        causal: Bool, p: Float, rng: inout DropoutSource
    ) {
        let n = b * t
        let lnOut = ln ?? s.dO, ln2Out = ln2 ?? s.dG, swOut = sw ?? s.dLn  // kept, or in scratch
        norm.forward(y: lnOut, mean: mean, rstd: rstd, x: x, n: n, c: d)
        pw1.forward(y: p1, x: lnOut, n: n, inDim: d, outDim: 2 * d)
        gluForward(y: gl, x: p1, n: n, c: d)
        zeroPadding(gl, lengths: lengths, b: b, t: t, c: d)
        depthwiseConv1dForward(y: dwo, wT: s.wT, x: gl, weight: dw.w, b: b, t: t, c: d, k: k, causal: causal)
        dwNorm.forward(y: ln2Out, mean: mean2, rstd: rstd2, x: dwo, n: n, c: d)
        swishForward(y: swOut, x: ln2Out, n: n * d)
        pw2.forward(y: s.o, x: swOut, n: n, inDim: d, outDim: d)
        if let m {
            rng.fill(m, n: n * d, p: p)
            multiply(s.o, by: m, n: n * d)
        }
        addScaled(y, x, s.o, n: n * d)
    }

    func backward(
        s: BlockScratch, x: CFPtr, lengths: UnsafePointer<Int32>, b: Int, t: Int, d: Int, k: Int,
        causal: Bool
    ) {
        let n = b * t
        scaledCopy(s.dO, s.dRes, mask: m.map { CFPtr($0) }, n: n * d)
        // Unless kept: LN2 (in dG, free until depthwise's backward) and pw2's input Swish(LN2) (in dLn) again.
        if ln2 == nil {
            dwNorm.apply(y: s.dG, mean: mean2, rstd: rstd2, x: dwo, n: n, c: d)
            swishForward(y: s.dLn, x: s.dG, n: n * d)
        }
        pw2.backward(dx: s.dS, du: s.dU, dy: s.dO, x: sw ?? s.dLn, n: n, inDim: d, outDim: d, write: .overwrite)
        swishBackward(dx: s.dLn, dy: s.dS, x: ln2 ?? s.dG, n: n * d, write: .overwrite)
        layerNormBackward(
            dx: s.dDw, dWeight: dwNorm.weight.g, dBias: dwNorm.bias.g, dy: s.dLn, x: dwo,
            weight: dwNorm.weight.w, mean: mean2, rstd: rstd2, n: n, c: d, write: .overwrite)
        depthwiseConv1dBackward(
            dx: s.dG, dWeight: dw.g, wT: s.wT, dy: s.dDw, x: gl, weight: dw.w,
            b: b, t: t, c: d, k: k, causal: causal, write: .overwrite)
        zeroPadding(s.dG, lengths: lengths, b: b, t: t, c: d)
        gluBackward(dx: s.dP1, dy: s.dG, x: p1, n: n, c: d, write: .overwrite)
        if ln == nil { norm.apply(y: s.dO, mean: mean, rstd: rstd, x: x, n: n, c: d) }  // dO is free after pw2
        pw1.backward(dx: s.dLn, du: s.dU, dy: s.dP1, x: ln ?? s.dO, n: n, inDim: d, outDim: 2 * d, write: .overwrite)
        layerNormBackward(
            dx: s.dRes, dWeight: norm.weight.g, dBias: norm.bias.g, dy: s.dLn, x: x,
            weight: norm.weight.w, mean: mean, rstd: rstd, n: n, c: d)
    }
}

struct ConformerBlock {
    let ffn1: FFN, attn: MHSA, conv: ConvModule, ffn2: FFN, norm: NormPG
    let x1, x2, x3, x4, mean, rstd: FPtr
    let y: FPtr  // the block output [N, d] (carved by the stack: kept even when the rest is shared)

    init(
        _ l: ParameterLayout, _ name: String, _ p: FPtr, _ g: FPtr, _ ar: Arena, n: Int, c: BlockConfig, shaw: Bool,
        savedCount: Int, output: FPtr
    ) {
        let d = c.d, f = c.f, dropout = c.dropout > 0
        ffn1 = FFN(l, name + ".ffn1", p, g, ar, n: n, d: d, f: f, dropout: dropout, c: c)
        attn = MHSA(l, name + ".attn", p, g, ar, n: n, d: d, savedCount: savedCount, shaw: shaw, dropout: dropout, c: c)
        conv = ConvModule(l, name + ".conv", p, g, ar, n: n, d: d, dropout: dropout, c: c)
        ffn2 = FFN(l, name + ".ffn2", p, g, ar, n: n, d: d, f: f, dropout: dropout, c: c)
        norm = NormPG(l, name + ".norm", p, g)
        x1 = ar.take(n * d)
        x2 = ar.take(n * d)
        x3 = ar.take(n * d)
        x4 = ar.take(n * d)
        mean = ar.take(n)
        rstd = ar.take(n)
        y = output
    }

    func forward(
        x: CFPtr, s: BlockScratch, lengths: UnsafePointer<Int32>, shape: AttentionShape, c: BlockConfig,
        rng: inout DropoutSource
    ) {
        let n = shape.b * shape.t, d = shape.d, f = c.f, p = c.dropout
        ffn1.forward(y: x1, x: x, s: s, n: n, d: d, f: f, p: p, rng: &rng)
        attn.forward(y: x2, x: x1, s: s, lengths: lengths, shape: shape, p: p, rng: &rng)
        conv.forward(
            y: x3, x: x2, s: s, lengths: lengths, b: shape.b, t: shape.t, d: d, k: c.kernel,
            causal: c.causal, p: p, rng: &rng)
        ffn2.forward(y: x4, x: x3, s: s, n: n, d: d, f: f, p: p, rng: &rng)
        norm.forward(y: y, mean: mean, rstd: rstd, x: x4, n: n, c: d)
    }

    /// dY: gradient of the block output (read only). On exit s.dRes holds the gradient of the block input x.
    func backward(
        dY: CFPtr, x: CFPtr, s: BlockScratch, lengths: UnsafePointer<Int32>, shape: AttentionShape,
        c: BlockConfig
    ) {
        let n = shape.b * shape.t, d = shape.d, f = c.f
        norm.backward(dx: s.dRes, dy: dY, x: x4, mean: mean, rstd: rstd, n: n, c: d, write: .overwrite)
        ffn2.backward(s: s, x: x3, n: n, d: d, f: f)
        conv.backward(s: s, x: x2, lengths: lengths, b: shape.b, t: shape.t, d: d, k: c.kernel, causal: c.causal)
        attn.backward(s: s, x: x1, lengths: lengths, shape: shape)
        ffn1.backward(s: s, x: x, n: n, d: d, f: f)
    }
}
