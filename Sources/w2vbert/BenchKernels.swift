import ArgumentParser
import Tensor
import Foundation

/// Kernel benchmark at a preset's sizes: raw sgemm throughput, and forward+backward of Linear,
/// LayerNorm, attention and the Conformer conv module against the time their matrix products alone take.
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kernels",
        abstract: "Time the kernels at a preset's sizes (one thread by default) and print one JSON line per measurement.")

    @Option(help: "Preset whose sizes to use: tiny, small, base, xl.") var preset = "base"
    @Option(help: "Utterances per batch.") var batch = 8
    @Option(help: "Seconds of audio per utterance (T = seconds·25 frames after the feature encoder).") var seconds = 10.0
    @Option(help: "Threads (GEMMs and kernels split over the rank's pool).") var threads = 1
    @Option(help: "Precision of the composite kernels' matrix products: fp32 or bf16 (the matmul peaks are printed for both).")
    var precision = "fp32"
    @Option(help: "Timed repeats per measurement (median reported).") var repeats = 5

    func validate() throws {
        guard BenchKernels.sizes[preset] != nil else { throw ValidationError("unknown preset '\(preset)' (tiny, small, base, xl)") }
        guard Precision(rawValue: precision) != nil else { throw ValidationError("--precision must be fp32 or bf16, not '\(precision)'") }
        guard batch > 0, seconds > 0.5, threads > 0, repeats > 0 else { throw ValidationError("batch, seconds, threads and repeats must be positive") }
    }

    /// (d, heads, f, depthwise kernel) per SPEC §12.
    static let sizes: [String: (d: Int, h: Int, f: Int, k: Int)] = [
        "tiny": (144, 4, 576, 15), "small": (256, 4, 1024, 15), "base": (512, 8, 2048, 31), "xl": (1024, 8, 4096, 5)]

    func emit(_ fields: [(String, Any)]) {
        let body = fields.map { k, v -> String in
            if let s = v as? String { return "\"\(k)\": \"\(s)\"" }
            if let d = v as? Double { return "\"\(k)\": \(String(format: "%.4g", d))" }
            return "\"\(k)\": \(v)"
        }.joined(separator: ", ")
        print("{\(body)}")
    }

    /// Sizes at the preset: T frames after the feature encoder, N = B·T rows.
    struct Dims { let d, h, f, k, t, n: Int }

    static func buf(_ count: Int, _ seed: UInt64) -> FloatBuffer {
        let b = FloatBuffer(count: count, zeroed: false)
        var r = RandomStream(seed: seed, purpose: .test)
        r.fillUniform(b.ptr, count, low: -1, high: 1)
        return b
    }

    func run() throws {
        let (d, h, f, k) = BenchKernels.sizes[preset]!
        let t = Int(seconds * 25)
        let z = Dims(d: d, h: h, f: f, k: k, t: t, n: batch * t)
        let x = BenchKernels.buf(z.n * d, 5), g = BenchKernels.buf(d, 6), be = BenchKernels.buf(d, 7)
        let rawGF = matmulPeaks(z)
        linearAndNorm(z, rawGF: rawGF, x: x, g: g, be: be)
        attention(z)
        convModule(z, x: x, g: g, be: be)
    }

    /// 1. The machine's matmul peaks in both precisions at the model's shapes; returns the f32 (or, with
    /// --precision bf16, the bf16) forward peak the composite kernels are compared with.
    func matmulPeaks(_ z: Dims) -> Double {
        let (d, h, f, k, t, n) = (z.d, z.h, z.f, z.k, z.t, z.n)
        let buf = BenchKernels.buf
        // 1. The machine's matmul peaks in both precisions at the model's shapes: the FFN's products
        //    [N, d]·[d, f] (forward), [N, f]·[f, d] (input gradient), and one attention head's [T, dh]·[dh, T].
        _ = k
        let a = buf(n * d, 1), w = buf(f * d, 2), c = FloatBuffer(count: n * f)
        let flopsFC = 2.0 * Double(n) * Double(d) * Double(f)
        let a2 = buf(n * f, 20), dxx2 = FloatBuffer(count: n * d)
        let dhh = d / h, qh = buf(t * d, 21), ph = FloatBuffer(count: t * t)
        var rawGF = 0.0
        for p in [Precision.fp32, .bf16] {
            let (log, warning) = Compute.configure(precision: p, threads: threads)
            if let warning { emit([("kernel", "matmul"), ("precision", p.rawValue), ("skipped", warning)]); continue }
            FileHandle.standardError.write(Data("bench-kernels: \(log)\n".utf8))
            let tFwd = medianTime(repeats: repeats) {
                gemm(transA: false, transB: false, m: n, n: f, k: d, alpha: 1, a: a.ptr, lda: d, b: w.ptr, ldb: f, beta: 0, c: c.ptr, ldc: f)
            }
            let tBwd = medianTime(repeats: repeats) {
                gemm(transA: false, transB: false, m: n, n: d, k: f, alpha: 1, a: a2.ptr, lda: f, b: w.ptr, ldb: d, beta: 0, c: dxx2.ptr, ldc: d)
            }
            let tHead = medianTime(repeats: repeats) {
                for _ in 0..<16 {
                    gemm(transA: false, transB: true, m: t, n: t, k: dhh, alpha: 1, a: qh.ptr, lda: d, b: qh.ptr, ldb: d, beta: 0, c: ph.ptr, ldc: t)
                }
            }
            let gf = flopsFC / tFwd / 1e9
            if p == .fp32 { rawGF = gf }
            emit([("kernel", "matmul"), ("precision", p.rawValue), ("preset", preset), ("threads", threads),
                  ("shape", "\(n)x\(d)x\(f)"), ("seconds", tFwd), ("gflops", gf),
                  ("gflops_\(n)x\(f)x\(d)", flopsFC / tBwd / 1e9),
                  ("gflops_head_\(t)x\(dhh)x\(t)", 16 * 2.0 * Double(t * t * dhh) / tHead / 1e9)])
        }
        Compute.configure(precision: Precision(rawValue: precision)!, threads: threads)
        if Compute.precision == .bf16 {
            rawGF = flopsFC / medianTime(repeats: repeats) {
                gemm(transA: false, transB: false, m: n, n: f, k: d, alpha: 1, a: a.ptr, lda: d, b: w.ptr, ldb: f, beta: 0, c: c.ptr, ldc: f)
            } / 1e9
        }
        return rawGF
    }

    /// 2–3b. Linear, LayerNorm and softmax.
    func linearAndNorm(_ z: Dims, rawGF: Double, x: FloatBuffer, g: FloatBuffer, be: FloatBuffer) {
        let (d, h, f, k, t, n) = (z.d, z.h, z.f, z.k, z.t, z.n)
        let buf = BenchKernels.buf
        let a = buf(n * d, 1), w = buf(f * d, 2), c = FloatBuffer(count: n * f)
        let flopsFC = 2.0 * Double(n) * Double(d) * Double(f)
        _ = (h, k, t)
        // 2. Linear d → f, forward + backward (three products plus bias and its gradient).
        let bias = buf(f, 3), dy = buf(n * f, 4), dx = FloatBuffer(count: n * d), dw = FloatBuffer(count: f * d), db = FloatBuffer(count: f)
        let tLinear = medianTime(repeats: repeats) {
            linearForward(y: c.ptr, x: a.ptr, weight: w.ptr, bias: bias.ptr, n: n, inDim: d, outDim: f)
            linearBackward(dx: dx.ptr, dWeight: dw.ptr, dBias: db.ptr, dy: dy.ptr, x: a.ptr, weight: w.ptr, n: n, inDim: d, outDim: f)
        }
        let linGF = 3 * flopsFC / tLinear / 1e9
        emit([("kernel", "linear_fwd_bwd"), ("shape", "\(n)x\(d)->\(f)"), ("seconds", tLinear), ("gflops", linGF),
              ("precision", Compute.precision.rawValue), ("fraction_of_raw_matmul", linGF / rawGF)])

        // 3. LayerNorm over [N, d], forward + backward (no matrix product: compared with the d→f Linear's).
        let y = FloatBuffer(count: n * d), mean = FloatBuffer(count: n), rstd = FloatBuffer(count: n)
        let dyl = buf(n * d, 8), dxl = FloatBuffer(count: n * d), dg = FloatBuffer(count: d), dbe = FloatBuffer(count: d)
        let tLN = medianTime(repeats: repeats) {
            layerNormForward(y: y.ptr, mean: mean.ptr, rstd: rstd.ptr, x: x.ptr, weight: g.ptr, bias: be.ptr, n: n, c: d)
            layerNormBackward(dx: dxl.ptr, dWeight: dg.ptr, dBias: dbe.ptr, dy: dyl.ptr, x: x.ptr, weight: g.ptr, mean: mean.ptr, rstd: rstd.ptr, n: n, c: d)
        }
        emit([("kernel", "layernorm_fwd_bwd"), ("shape", "\(n)x\(d)"), ("seconds", tLN),
              ("fraction_of_linear_d_to_f", tLN / tLinear), ("gbytes_per_s", Double(n * d * 4 * 5) / tLN / 1e9)])

        // 3b. Row softmax over the attention scores' shape [B·h·T, T] (exp is the cost).
        let rows = batch * h * t
        let sx = buf(rows * t, 17), sy = FloatBuffer(count: rows * t)
        let tSoft = medianTime(repeats: repeats) { softmaxForward(y: sy.ptr, x: sx.ptr, n: rows, v: t) }
        emit([("kernel", "softmax_fwd"), ("shape", "\(rows)x\(t)"), ("seconds", tSoft), ("ns_per_element", tSoft / Double(rows * t) * 1e9)])
    }

    func attention(_ z: Dims) {
        let (d, h, f, k, t, n) = (z.d, z.h, z.f, z.k, z.t, z.n)
        let buf = BenchKernels.buf
        _ = (f, k)
        // 4. Attention core (scores, softmax, weighted sum; the q/k/v/out projections are Linears).
        let shape = AttentionShape(b: batch, t: t, d: d, heads: h, position: .none)
        let q = buf(n * d, 9), kk = buf(n * d, 10), v = buf(n * d, 11), o = FloatBuffer(count: n * d)
        let saved = FloatBuffer(count: shape.savedCount), work = FloatBuffer(count: shape.workspaceCount)
        let dO = buf(n * d, 12), dq = FloatBuffer(count: n * d), dk = FloatBuffer(count: n * d), dv = FloatBuffer(count: n * d)
        let lengths = [Int32](repeating: Int32(t), count: batch)
        let tAtt = lengths.withUnsafeBufferPointer { lp in
            medianTime(repeats: repeats) {
                attentionForward(out: o.ptr, saved: saved.ptr, work: work.ptr, q: q.ptr, k: kk.ptr, v: v.ptr, relKey: nil, lengths: lp.baseAddress!, shape: shape)
                attentionBackward(dq: dq.ptr, dk: dk.ptr, dv: dv.ptr, dRelKey: nil, work: work.ptr, dOut: dO.ptr, saved: saved.ptr,
                                  q: q.ptr, k: kk.ptr, v: v.ptr, relKey: nil, shape: shape)
            }
        }
        // Its six matrix products alone (2 forward, 4 backward per head), same shapes and strides.
        let dh = d / h
        let tAttMM = medianTime(repeats: repeats) {
            for bi in 0..<batch { for hh in 0..<h {
                let off = bi * t * d + hh * dh, p = saved.ptr + (bi * h + hh) * t * t
                gemm(transA: false, transB: true, m: t, n: t, k: dh, alpha: 1, a: q.ptr + off, lda: d, b: kk.ptr + off, ldb: d, beta: 0, c: p, ldc: t)
                gemm(transA: false, transB: false, m: t, n: dh, k: t, alpha: 1, a: p, lda: t, b: v.ptr + off, ldb: d, beta: 0, c: o.ptr + off, ldc: d)
                gemm(transA: false, transB: true, m: t, n: t, k: dh, alpha: 1, a: dO.ptr + off, lda: d, b: v.ptr + off, ldb: d, beta: 0, c: work.ptr, ldc: t)
                gemm(transA: true, transB: false, m: t, n: dh, k: t, alpha: 1, a: p, lda: t, b: dO.ptr + off, ldb: d, beta: 1, c: dv.ptr + off, ldc: d)
                gemm(transA: false, transB: false, m: t, n: dh, k: t, alpha: 1, a: work.ptr, lda: t, b: kk.ptr + off, ldb: d, beta: 1, c: dq.ptr + off, ldc: d)
                gemm(transA: true, transB: false, m: t, n: dh, k: t, alpha: 1, a: work.ptr, lda: t, b: q.ptr + off, ldb: d, beta: 1, c: dk.ptr + off, ldc: d)
            } }
        }
        emit([("kernel", "attention_fwd_bwd"), ("shape", "B\(batch) T\(t) d\(d) h\(h)"), ("seconds", tAtt), ("matmul_seconds", tAttMM),
              ("matmul_fraction", tAttMM / tAtt)])
    }

    func convModule(_ z: Dims, x: FloatBuffer, g: FloatBuffer, be: FloatBuffer) {
        let (d, h, f, k, t, n) = (z.d, z.h, z.f, z.k, z.t, z.n)
        let buf = BenchKernels.buf
        _ = (h, f)
        // 5. Conformer conv module: LN → pw1 d→2d → GLU → depthwise k → LN → Swish → pw2 d→d.
        let ln1 = FloatBuffer(count: n * d), m1 = FloatBuffer(count: n), r1 = FloatBuffer(count: n)
        let pw1 = buf(2 * d * d, 13), h1 = FloatBuffer(count: n * 2 * d), gl = FloatBuffer(count: n * d)
        let dwW = buf(d * k, 14), wT = FloatBuffer(count: k * d), h2 = FloatBuffer(count: n * d)
        let ln2 = FloatBuffer(count: n * d), m2 = FloatBuffer(count: n), r2 = FloatBuffer(count: n), sw = FloatBuffer(count: n * d)
        let pw2 = buf(d * d, 15), out = FloatBuffer(count: n * d)
        let dOut = buf(n * d, 16), dsw = FloatBuffer(count: n * d), dln2 = FloatBuffer(count: n * d), dh2 = FloatBuffer(count: n * d)
        let dgl = FloatBuffer(count: n * d), dh1 = FloatBuffer(count: n * 2 * d), dln1 = FloatBuffer(count: n * d), dxx = FloatBuffer(count: n * d)
        let dpw1 = FloatBuffer(count: 2 * d * d), dpw2 = FloatBuffer(count: d * d), ddw = FloatBuffer(count: d * k)
        let dg1 = FloatBuffer(count: d), db1 = FloatBuffer(count: d), dg2 = FloatBuffer(count: d), db2 = FloatBuffer(count: d)
        let tConv = medianTime(repeats: repeats) {
            layerNormForward(y: ln1.ptr, mean: m1.ptr, rstd: r1.ptr, x: x.ptr, weight: g.ptr, bias: be.ptr, n: n, c: d)
            linearForward(y: h1.ptr, x: ln1.ptr, weight: pw1.ptr, bias: nil, n: n, inDim: d, outDim: 2 * d)
            gluForward(y: gl.ptr, x: h1.ptr, n: n, c: d)
            depthwiseConv1dForward(y: h2.ptr, wT: wT.ptr, x: gl.ptr, weight: dwW.ptr, b: batch, t: t, c: d, k: k, causal: false)
            layerNormForward(y: ln2.ptr, mean: m2.ptr, rstd: r2.ptr, x: h2.ptr, weight: g.ptr, bias: be.ptr, n: n, c: d)
            swishForward(y: sw.ptr, x: ln2.ptr, n: n * d)
            linearForward(y: out.ptr, x: sw.ptr, weight: pw2.ptr, bias: nil, n: n, inDim: d, outDim: d)
            for z in [dsw, dln2, dh2, dgl, dh1, dln1] { z.zero() }
            linearBackward(dx: dsw.ptr, dWeight: dpw2.ptr, dBias: nil, dy: dOut.ptr, x: sw.ptr, weight: pw2.ptr, n: n, inDim: d, outDim: d)
            swishBackward(dx: dln2.ptr, dy: dsw.ptr, x: ln2.ptr, n: n * d)
            layerNormBackward(dx: dh2.ptr, dWeight: dg2.ptr, dBias: db2.ptr, dy: dln2.ptr, x: h2.ptr, weight: g.ptr, mean: m2.ptr, rstd: r2.ptr, n: n, c: d)
            depthwiseConv1dBackward(dx: dgl.ptr, dWeight: ddw.ptr, wT: wT.ptr, dy: dh2.ptr, x: gl.ptr, weight: dwW.ptr, b: batch, t: t, c: d, k: k, causal: false)
            gluBackward(dx: dh1.ptr, dy: dgl.ptr, x: h1.ptr, n: n, c: d)
            linearBackward(dx: dln1.ptr, dWeight: dpw1.ptr, dBias: nil, dy: dh1.ptr, x: ln1.ptr, weight: pw1.ptr, n: n, inDim: d, outDim: 2 * d)
            layerNormBackward(dx: dxx.ptr, dWeight: dg1.ptr, dBias: db1.ptr, dy: dln1.ptr, x: x.ptr, weight: g.ptr, mean: m1.ptr, rstd: r1.ptr, n: n, c: d)
        }
        let tConvMM = medianTime(repeats: repeats) {
            gemm(transA: false, transB: true, m: n, n: 2 * d, k: d, alpha: 1, a: ln1.ptr, lda: d, b: pw1.ptr, ldb: d, beta: 0, c: h1.ptr, ldc: 2 * d)
            gemm(transA: false, transB: true, m: n, n: d, k: d, alpha: 1, a: sw.ptr, lda: d, b: pw2.ptr, ldb: d, beta: 0, c: out.ptr, ldc: d)
            gemm(transA: false, transB: false, m: n, n: d, k: d, alpha: 1, a: dOut.ptr, lda: d, b: pw2.ptr, ldb: d, beta: 1, c: dsw.ptr, ldc: d)
            gemm(transA: true, transB: false, m: d, n: d, k: n, alpha: 1, a: dOut.ptr, lda: d, b: sw.ptr, ldb: d, beta: 1, c: dpw2.ptr, ldc: d)
            gemm(transA: false, transB: false, m: n, n: d, k: 2 * d, alpha: 1, a: dh1.ptr, lda: 2 * d, b: pw1.ptr, ldb: d, beta: 1, c: dln1.ptr, ldc: d)
            gemm(transA: true, transB: false, m: 2 * d, n: d, k: n, alpha: 1, a: dh1.ptr, lda: 2 * d, b: ln1.ptr, ldb: d, beta: 1, c: dpw1.ptr, ldc: d)
        }
        // The depthwise convolution alone (split by frame blocks over the threads).
        let tDw = medianTime(repeats: repeats) {
            depthwiseConv1dBackward(dx: dgl.ptr, dWeight: ddw.ptr, wT: wT.ptr, dy: dh2.ptr, x: gl.ptr, weight: dwW.ptr, b: batch, t: t, c: d, k: k, causal: false)
        }
        let tDwF = medianTime(repeats: repeats) {
            depthwiseConv1dForward(y: h2.ptr, wT: wT.ptr, x: gl.ptr, weight: dwW.ptr, b: batch, t: t, c: d, k: k, causal: false)
        }
        emit([("kernel", "depthwise_conv"), ("shape", "B\(batch) T\(t) d\(d) k\(k)"), ("forward_seconds", tDwF), ("backward_seconds", tDw)])
        emit([("kernel", "conv_module_fwd_bwd"), ("shape", "B\(batch) T\(t) d\(d) k\(k)"), ("seconds", tConv), ("matmul_seconds", tConvMM),
              ("matmul_fraction", tConvMM / tConv)])
    }
}
