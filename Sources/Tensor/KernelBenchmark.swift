import Foundation

/// The kernels timed at a model's sizes (`w2vbert bench kernels`): raw matrix-product throughput in both
/// precisions, and forward + backward of Linear, LayerNorm, softmax, attention and the Conformer conv
/// module, each compared with the time its matrix products alone take. Every measurement is the median of
/// `repeats` runs after a warm-up.
public struct KernelBenchmark {
    /// Model width, heads, FFN width, depthwise kernel; utterances per batch and frames per utterance
    /// (after the feature encoder); N = batch·t rows.
    public let d: Int, heads: Int, ffn: Int, kernel: Int, batch: Int, t: Int
    public var n: Int { batch * t }
    /// The settings of the composite kernels' products (the matmul peaks are measured in both precisions
    /// with its threads); timed repeats.
    public let compute: Compute, repeats: Int
    public var threads: Int { compute.threads }

    public init(d: Int, heads: Int, ffn: Int, kernel: Int, batch: Int, t: Int, compute: Compute, repeats: Int) {
        self.d = d
        self.heads = heads
        self.ffn = ffn
        self.kernel = kernel
        self.batch = batch
        self.t = t
        self.compute = compute
        self.repeats = repeats
    }

    /// A buffer of `count` uniform values in [-1, 1) from a test stream.
    static func buffer(_ count: Int, _ seed: UInt64) -> FloatBuffer {
        let b = FloatBuffer(count: count, zeroed: false)
        var r = RandomStream(seed: seed, purpose: .test)
        r.fillUniform(b.ptr, count, low: -1, high: 1)
        return b
    }

    /// Runs every measurement; `emit` gets each record as it is measured, `log` the compute set-up lines.
    public func run(emit: (BenchmarkRecord) -> Void, log: (String) -> Void) {
        let rawGF = matmulPeaks(emit: emit, log: log)
        let x = Self.buffer(n * d, 5), g = Self.buffer(d, 6), be = Self.buffer(d, 7)
        let tLinear = linear(rawGF: rawGF, emit: emit)
        layerNormAndSoftmax(x: x, g: g, be: be, tLinear: tLinear, emit: emit)
        emit(attention())
        convModule(x: x, g: g, be: be, emit: emit)
    }

    /// The machine's matmul peaks in both precisions at the model's shapes: the FFN's products [N, d]·[d, f]
    /// (forward), [N, f]·[f, d] (input gradient), and one attention head's [T, dh]·[dh, T]. Returns the
    /// forward peak in the benchmark's precision, which the composite kernels are compared with.
    func matmulPeaks(emit: (BenchmarkRecord) -> Void, log: (String) -> Void) -> Double {
        let buf = Self.buffer
        let a = buf(n * d, 1), w = buf(ffn * d, 2), c = FloatBuffer(count: n * ffn)
        let a2 = buf(n * ffn, 20), dx = FloatBuffer(count: n * d)
        let dh = d / heads, qh = buf(t * d, 21), ph = FloatBuffer(count: t * t)
        let flops = 2.0 * Double(n) * Double(d) * Double(ffn)
        var peak: [Precision: Double] = [:]
        for p in Precision.allCases {
            let compute = Compute(precision: p, threads: threads)
            if let warning = compute.warning {
                emit(BenchmarkRecord([("kernel", "matmul"), ("precision", p.rawValue), ("skipped", warning)]))
                continue
            }
            log(compute.description)
            let tFwd = medianTime(repeats: repeats) {
                gemm(
                    compute, transA: false, transB: false, m: n, n: ffn, k: d, alpha: 1, a: a.ptr, lda: d, b: w.ptr,
                    ldb: ffn, beta: 0, c: c.ptr, ldc: ffn)
            }
            let tBwd = medianTime(repeats: repeats) {
                gemm(
                    compute, transA: false, transB: false, m: n, n: d, k: ffn, alpha: 1, a: a2.ptr, lda: ffn, b: w.ptr,
                    ldb: d, beta: 0, c: dx.ptr, ldc: d)
            }
            let tHead = medianTime(repeats: repeats) {
                for _ in 0..<16 {
                    gemm(
                        compute, transA: false, transB: true, m: t, n: t, k: dh, alpha: 1, a: qh.ptr, lda: d,
                        b: qh.ptr, ldb: d, beta: 0, c: ph.ptr, ldc: t)
                }
            }
            peak[p] = flops / tFwd / 1e9
            emit(
                BenchmarkRecord([
                    ("kernel", "matmul"), ("precision", p.rawValue), ("threads", threads),
                    ("shape", "\(n)x\(d)x\(ffn)"), ("seconds", tFwd), ("gflops", flops / tFwd / 1e9),
                    ("gflops_\(n)x\(ffn)x\(d)", flops / tBwd / 1e9),
                    ("gflops_head_\(t)x\(dh)x\(t)", 16 * 2.0 * Double(t * t * dh) / tHead / 1e9)
                ]))
        }
        return peak[compute.precision] ?? peak[.fp32] ?? .nan
    }

    /// Linear d → f, forward + backward (three products plus the bias and its gradient). Returns its time.
    func linear(rawGF: Double, emit: (BenchmarkRecord) -> Void) -> Double {
        let buf = Self.buffer
        let a = buf(n * d, 1), w = buf(ffn * d, 2), c = FloatBuffer(count: n * ffn)
        let bias = buf(ffn, 3), dy = buf(n * ffn, 4)
        let dx = FloatBuffer(count: n * d), dw = FloatBuffer(count: ffn * d), db = FloatBuffer(count: ffn)
        let seconds = medianTime(repeats: repeats) {
            linearForward(compute, y: c.ptr, x: a.ptr, weight: w.ptr, bias: bias.ptr, n: n, inDim: d, outDim: ffn)
            linearBackward(
                compute, dx: dx.ptr, dWeight: dw.ptr, dBias: db.ptr, dy: dy.ptr, x: a.ptr, weight: w.ptr,
                n: n, inDim: d, outDim: ffn)
        }
        let gflops = 3 * 2.0 * Double(n) * Double(d) * Double(ffn) / seconds / 1e9
        emit(
            BenchmarkRecord([
                ("kernel", "linear_fwd_bwd"), ("shape", "\(n)x\(d)->\(ffn)"), ("seconds", seconds),
                ("gflops", gflops), ("precision", compute.precision.rawValue),
                ("fraction_of_raw_matmul", gflops / rawGF)
            ]))
        return seconds
    }

    /// LayerNorm over [N, d], forward + backward (no matrix product: compared with the d→f Linear's time), and
    /// the row softmax over the attention scores' shape [B·h·T, T] (exp is the cost).
    func layerNormAndSoftmax(
        x: FloatBuffer, g: FloatBuffer, be: FloatBuffer, tLinear: Double,
        emit: (BenchmarkRecord) -> Void
    ) {
        let buf = Self.buffer
        let y = FloatBuffer(count: n * d), mean = FloatBuffer(count: n), rstd = FloatBuffer(count: n)
        let dy = buf(n * d, 8), dx = FloatBuffer(count: n * d), dg = FloatBuffer(count: d), db = FloatBuffer(count: d)
        let tLN = medianTime(repeats: repeats) {
            layerNormForward(
                y: y.ptr, mean: mean.ptr, rstd: rstd.ptr, x: x.ptr, weight: g.ptr, bias: be.ptr, n: n,
                c: d)
            layerNormBackward(
                dx: dx.ptr, dWeight: dg.ptr, dBias: db.ptr, dy: dy.ptr, x: x.ptr, weight: g.ptr,
                mean: mean.ptr, rstd: rstd.ptr, n: n, c: d)
        }
        emit(
            BenchmarkRecord([
                ("kernel", "layernorm_fwd_bwd"), ("shape", "\(n)x\(d)"), ("seconds", tLN),
                ("fraction_of_linear_d_to_f", tLN / tLinear),
                ("gbytes_per_s", Double(n * d * 4 * 5) / tLN / 1e9)
            ]))
        let rows = batch * heads * t
        let sx = buf(rows * t, 17), sy = FloatBuffer(count: rows * t)
        let tSoft = medianTime(repeats: repeats) { softmaxForward(y: sy.ptr, x: sx.ptr, n: rows, v: t) }
        emit(
            BenchmarkRecord([
                ("kernel", "softmax_fwd"), ("shape", "\(rows)x\(t)"), ("seconds", tSoft),
                ("ns_per_element", tSoft / Double(rows * t) * 1e9)
            ]))
    }
}

extension KernelBenchmark {
    /// The attention core (scores, softmax, weighted sum; the q/k/v/out projections are Linears), forward +
    /// backward, against its six matrix products alone (2 forward, 4 backward per head, same shapes).
    func attention() -> BenchmarkRecord {
        let buf = Self.buffer
        // Probabilities kept: the matrix products below read them from `saved`.
        let shape = AttentionShape(b: batch, t: t, d: d, heads: heads, position: .none, memory: .probabilities)
        let q = buf(n * d, 9), k = buf(n * d, 10), v = buf(n * d, 11), o = FloatBuffer(count: n * d)
        let saved = FloatBuffer(count: shape.savedCount)
        let work = FloatBuffer(count: shape.workspaceCount(threads: compute.threads))
        let dO = buf(n * d, 12), dq = FloatBuffer(count: n * d), dk = FloatBuffer(count: n * d)
        let dv = FloatBuffer(count: n * d)
        let lengths = [Int32](repeating: Int32(t), count: batch)
        let seconds = lengths.withUnsafeBufferPointer { lp in
            medianTime(repeats: repeats) {
                attentionForward(
                    compute, out: o.ptr, saved: saved.ptr, work: work.ptr, q: q.ptr, k: k.ptr, v: v.ptr,
                    relKey: nil, lengths: lp.baseAddress!, shape: shape)
                attentionBackward(
                    compute, dq: dq.ptr, dk: dk.ptr, dv: dv.ptr, dRelKey: nil, work: work.ptr,
                    dOut: dO.ptr,
                    saved: saved.ptr, q: q.ptr, k: k.ptr, v: v.ptr, relKey: nil, lengths: lp.baseAddress!,
                    shape: shape)
            }
        }
        let dh = d / heads
        let matmul = medianTime(repeats: repeats) {
            for bh in 0..<(batch * heads) {
                let off = bh / heads * t * d + bh % heads * dh
                let p = saved.ptr + bh * t * t
                gemm(
                    compute, transA: false, transB: true, m: t, n: t, k: dh, alpha: 1, a: q.ptr + off, lda: d,
                    b: k.ptr + off, ldb: d, beta: 0, c: p, ldc: t)
                gemm(
                    compute, transA: false, transB: false, m: t, n: dh, k: t, alpha: 1, a: p, lda: t, b: v.ptr + off,
                    ldb: d, beta: 0, c: o.ptr + off, ldc: d)
                gemm(
                    compute, transA: false, transB: true, m: t, n: t, k: dh, alpha: 1, a: dO.ptr + off, lda: d,
                    b: v.ptr + off, ldb: d, beta: 0, c: work.ptr, ldc: t)
                gemm(
                    compute, transA: true, transB: false, m: t, n: dh, k: t, alpha: 1, a: p, lda: t, b: dO.ptr + off,
                    ldb: d, beta: 1, c: dv.ptr + off, ldc: d)
                gemm(
                    compute, transA: false, transB: false, m: t, n: dh, k: t, alpha: 1, a: work.ptr, lda: t,
                    b: k.ptr + off, ldb: d, beta: 1, c: dq.ptr + off, ldc: d)
                gemm(
                    compute, transA: true, transB: false, m: t, n: dh, k: t, alpha: 1, a: work.ptr, lda: t,
                    b: q.ptr + off, ldb: d, beta: 1, c: dk.ptr + off, ldc: d)
            }
        }
        return BenchmarkRecord([
            ("kernel", "attention_fwd_bwd"), ("shape", "B\(batch) T\(t) d\(d) h\(heads)"),
            ("seconds", seconds), ("matmul_seconds", matmul),
            ("matmul_fraction", matmul / seconds)
        ])
    }

    /// The Conformer conv module's buffers: LN → pw1 d→2d → GLU → depthwise k → LN → Swish → pw2 d→d, and
    /// the gradients of each.
    struct ConvBuffers {
        let ln1, m1, r1, pw1, h1, gl, dwW, wT, h2, ln2, m2, r2, sw, pw2, out: FloatBuffer
        let dOut, dsw, dln2, dh2, dgl, dh1, dln1, dx, dpw1, dpw2, ddw, dg1, db1, dg2, db2: FloatBuffer

        init(n: Int, d: Int, k: Int) {
            func zero(_ c: Int) -> FloatBuffer { FloatBuffer(count: c) }
            ln1 = zero(n * d)
            m1 = zero(n)
            r1 = zero(n)
            pw1 = KernelBenchmark.buffer(2 * d * d, 13)
            h1 = zero(n * 2 * d)
            gl = zero(n * d)
            dwW = KernelBenchmark.buffer(d * k, 14)
            wT = zero(k * d)
            h2 = zero(n * d)
            ln2 = zero(n * d)
            m2 = zero(n)
            r2 = zero(n)
            sw = zero(n * d)
            pw2 = KernelBenchmark.buffer(d * d, 15)
            out = zero(n * d)
            dOut = KernelBenchmark.buffer(n * d, 16)
            (dsw, dln2, dh2, dgl, dln1, dx) = (
                zero(n * d), zero(n * d), zero(n * d), zero(n * d), zero(n * d),
                zero(n * d)
            )
            dh1 = zero(n * 2 * d)
            (dpw1, dpw2, ddw) = (zero(2 * d * d), zero(d * d), zero(d * k))
            (dg1, db1, dg2, db2) = (zero(d), zero(d), zero(d), zero(d))
        }
    }

    /// The Conformer conv module forward + backward, its matrix products alone, and the depthwise
    /// convolution alone (split by frame blocks over the threads).
    func convModule(x: FloatBuffer, g: FloatBuffer, be: FloatBuffer, emit: (BenchmarkRecord) -> Void) {
        let z = ConvBuffers(n: n, d: d, k: kernel)
        let seconds = medianTime(repeats: repeats) {
            convForward(z, x: x, g: g, be: be)
            convBackward(z, x: x, g: g)
        }
        let matmul = medianTime(repeats: repeats) { convProducts(z) }
        let dwBackward = medianTime(repeats: repeats) {
            depthwiseConv1dBackward(
                dx: z.dgl.ptr, dWeight: z.ddw.ptr, wT: z.wT.ptr, dy: z.dh2.ptr, x: z.gl.ptr,
                weight: z.dwW.ptr, b: batch, t: t, c: d, k: kernel, causal: false)
        }
        let dwForward = medianTime(repeats: repeats) {
            depthwiseConv1dForward(
                y: z.h2.ptr, wT: z.wT.ptr, x: z.gl.ptr, weight: z.dwW.ptr, b: batch, t: t, c: d,
                k: kernel, causal: false)
        }
        let shape = "B\(batch) T\(t) d\(d) k\(kernel)"
        emit(
            BenchmarkRecord([
                ("kernel", "depthwise_conv"), ("shape", shape), ("forward_seconds", dwForward),
                ("backward_seconds", dwBackward)
            ]))
        emit(
            BenchmarkRecord([
                ("kernel", "conv_module_fwd_bwd"), ("shape", shape), ("seconds", seconds),
                ("matmul_seconds", matmul), ("matmul_fraction", matmul / seconds)
            ]))
    }

    func convForward(_ z: ConvBuffers, x: FloatBuffer, g: FloatBuffer, be: FloatBuffer) {
        layerNormForward(
            y: z.ln1.ptr, mean: z.m1.ptr, rstd: z.r1.ptr, x: x.ptr, weight: g.ptr, bias: be.ptr, n: n,
            c: d)
        linearForward(compute, y: z.h1.ptr, x: z.ln1.ptr, weight: z.pw1.ptr, bias: nil, n: n, inDim: d, outDim: 2 * d)
        gluForward(y: z.gl.ptr, x: z.h1.ptr, n: n, c: d)
        depthwiseConv1dForward(
            y: z.h2.ptr, wT: z.wT.ptr, x: z.gl.ptr, weight: z.dwW.ptr, b: batch, t: t, c: d,
            k: kernel, causal: false)
        layerNormForward(
            y: z.ln2.ptr, mean: z.m2.ptr, rstd: z.r2.ptr, x: z.h2.ptr, weight: g.ptr, bias: be.ptr, n: n,
            c: d)
        swishForward(y: z.sw.ptr, x: z.ln2.ptr, n: n * d)
        linearForward(compute, y: z.out.ptr, x: z.sw.ptr, weight: z.pw2.ptr, bias: nil, n: n, inDim: d, outDim: d)
    }

    func convBackward(_ z: ConvBuffers, x: FloatBuffer, g: FloatBuffer) {
        for b in [z.dsw, z.dln2, z.dh2, z.dgl, z.dh1, z.dln1] { b.zero() }
        linearBackward(
            compute, dx: z.dsw.ptr, dWeight: z.dpw2.ptr, dBias: nil, dy: z.dOut.ptr, x: z.sw.ptr,
            weight: z.pw2.ptr, n: n, inDim: d, outDim: d)
        swishBackward(dx: z.dln2.ptr, dy: z.dsw.ptr, x: z.ln2.ptr, n: n * d)
        layerNormBackward(
            dx: z.dh2.ptr, dWeight: z.dg2.ptr, dBias: z.db2.ptr, dy: z.dln2.ptr, x: z.h2.ptr,
            weight: g.ptr, mean: z.m2.ptr, rstd: z.r2.ptr, n: n, c: d)
        depthwiseConv1dBackward(
            dx: z.dgl.ptr, dWeight: z.ddw.ptr, wT: z.wT.ptr, dy: z.dh2.ptr, x: z.gl.ptr,
            weight: z.dwW.ptr, b: batch, t: t, c: d, k: kernel, causal: false)
        gluBackward(dx: z.dh1.ptr, dy: z.dgl.ptr, x: z.h1.ptr, n: n, c: d)
        linearBackward(
            compute, dx: z.dln1.ptr, dWeight: z.dpw1.ptr, dBias: nil, dy: z.dh1.ptr, x: z.ln1.ptr,
            weight: z.pw1.ptr, n: n, inDim: d, outDim: 2 * d)
        layerNormBackward(
            dx: z.dx.ptr, dWeight: z.dg1.ptr, dBias: z.db1.ptr, dy: z.dln1.ptr, x: x.ptr, weight: g.ptr,
            mean: z.m1.ptr, rstd: z.r1.ptr, n: n, c: d)
    }

    /// The conv module's six matrix products (two pointwise convolutions, forward and both gradients).
    func convProducts(_ z: ConvBuffers) {
        gemm(
            compute, transA: false, transB: true, m: n, n: 2 * d, k: d, alpha: 1, a: z.ln1.ptr, lda: d, b: z.pw1.ptr,
            ldb: d, beta: 0, c: z.h1.ptr, ldc: 2 * d)
        gemm(
            compute, transA: false, transB: true, m: n, n: d, k: d, alpha: 1, a: z.sw.ptr, lda: d, b: z.pw2.ptr,
            ldb: d, beta: 0, c: z.out.ptr, ldc: d)
        gemm(
            compute, transA: false, transB: false, m: n, n: d, k: d, alpha: 1, a: z.dOut.ptr, lda: d, b: z.pw2.ptr,
            ldb: d, beta: 1, c: z.dsw.ptr, ldc: d)
        gemm(
            compute, transA: true, transB: false, m: d, n: d, k: n, alpha: 1, a: z.dOut.ptr, lda: d, b: z.sw.ptr,
            ldb: d, beta: 1, c: z.dpw2.ptr, ldc: d)
        gemm(
            compute, transA: false, transB: false, m: n, n: d, k: 2 * d, alpha: 1, a: z.dh1.ptr, lda: 2 * d,
            b: z.pw1.ptr, ldb: d, beta: 1, c: z.dln1.ptr, ldc: d)
        gemm(
            compute, transA: true, transB: false, m: 2 * d, n: d, k: n, alpha: 1, a: z.dh1.ptr, lda: 2 * d,
            b: z.ln1.ptr, ldb: d, beta: 1, c: z.dpw1.ptr, ldc: d)
    }
}

/// Raw matrix-product throughput in GFLOP/s at one shape with the given compute settings
/// (C = A·B, e.g. the FFN's first product [N, d]·[d, f]): best of 3 single calls after a warm-up.
public func matmulGflops(_ compute: Compute, m: Int, n: Int, k: Int) -> Double {
    let a = FloatBuffer(count: m * k), b = FloatBuffer(count: n * k), c = FloatBuffer(count: m * n)
    var rng = RandomStream(seed: 1, purpose: .test)
    rng.fillNormal(a.ptr, a.count)
    rng.fillNormal(b.ptr, b.count)
    var best = Double.infinity
    for _ in 0..<4 {
        let s = monotonicSeconds()
        gemm(
            compute, transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a.ptr, lda: k, b: b.ptr, ldb: n,
            beta: 0, c: c.ptr, ldc: n)
        best = min(best, monotonicSeconds() - s)
    }
    return 2 * Double(m) * Double(n) * Double(k) / best / 1e9
}
