import XCTest
import Tensor
import TestSupport

/// The GEMM engines behind `gemm` (oneDNN f32, OpenBLAS f32, oneDNN bf16) against the Double reference for
/// every transpose, alpha/beta and padded strides; threaded products and kernels against one thread.
final class EngineTests: XCTestCase {
    override func tearDown() { _ = Compute.fp32() }  // the pool back to one thread

    /// The values a product in `precision` multiplies: x itself, or (bf16) X rounded to bf16.
    func asOperand(_ x: [Double], _ X: FloatBuffer, _ precision: Precision) -> [Double] {
        if precision != .bf16 { return x }
        let r = FloatBuffer(count: x.count)
        roundToBF16(r.ptr, X.ptr, count: x.count)
        return r.array.doubles
    }

    static let shapes = [
        (1, 1, 1), (7, 5, 3), (17, 33, 9), (64, 31, 128), (130, 70, 300), (9, 1, 13), (1, 9, 13),
        (
            13,
            9, 1
        ), (40, 1, 64)
    ]

    func checkEngine(_ precision: Precision, _ engine: GemmEngine) throws {
        if precision == .bf16 && !Compute.hasNativeBF16 { throw XCTSkip("no native bf16 on this CPU") }
        let compute = Compute(precision: precision, threads: 1, f32Engine: engine)
        XCTAssertEqual(compute.precision, precision)
        var rng = TestRNG(11)
        var largestBF16Effect = 0.0
        for (m, n, k) in EngineTests.shapes {
            for ta in [false, true] {
                for (tb, pad) in [(false, 1), (true, 1), (false, 0), (true, 0)] {
                    let lda = (ta ? m : k) + 2 * pad, ldb = (tb ? k : n) + pad, ldc = n + 3 * pad
                    let a = rng.uniform((ta ? k : m) * lda), b = rng.uniform((tb ? n : k) * ldb)
                    let c0 = rng.uniform(m * ldc)
                    for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
                        // bf16: the products of bf16-rounded operands are exact in f32, so the result must match
                        // the Double reference on rounded operands to f32 accumulation accuracy.
                        let A = FloatBuffer(a.floats), B = FloatBuffer(b.floats), C = FloatBuffer(c0.floats)
                        let ar = asOperand(a, A, precision), br = asOperand(b, B, precision)
                        var ref = c0, exact = c0
                        gemmReference(
                            transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: ar, lda: lda,
                            b: br, ldb: ldb, beta: beta, c: &ref, ldc: ldc)
                        gemmReference(
                            transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                            b: b, ldb: ldb, beta: beta, c: &exact, ldc: ldc)
                        gemm(
                            compute, transA: ta, transB: tb, m: m, n: n, k: k, alpha: Float(alpha), a: A.ptr, lda: lda,
                            b: B.ptr, ldb: ldb, beta: Float(beta), c: C.ptr, ldc: ldc)
                        // Only the m×n window is written; the row padding must be untouched.
                        assertClose(
                            C.array, ref, rtol: 1e-5, atol: 1e-5 * Double(k),
                            "\(precision) \(engine) \(m)x\(n)x\(k) ta=\(ta) tb=\(tb) alpha=\(alpha) beta=\(beta)")
                        for i in 0..<ref.count { largestBF16Effect = max(largestBF16Effect, abs(ref[i] - exact[i])) }
                    }
                }
            }
        }
        // The bf16 path must really round its operands (an f32 product would match `exact` to 1e-5·k).
        if precision == .bf16 { XCTAssertGreaterThan(largestBF16Effect, 1e-2) }
    }

    func testOneDNNF32MatchesReference() throws { try checkEngine(.fp32, .onednn) }
    func testOpenBLASF32MatchesReference() throws { try checkEngine(.fp32, .openblas) }
    func testOneDNNBF16MatchesReferenceOnRoundedOperands() throws { try checkEngine(.bf16, .onednn) }

    /// Threads split C into row (or column) blocks; every element is still one call over the whole K: exact in
    /// fp32, within f32 round-off in bf16.
    func testThreadedGemmEqualsOneThread() throws {
        var rng = TestRNG(12)
        for precision in Precision.allCases where precision == .fp32 || Compute.hasNativeBF16 {
            // Row splits, and one short wide product split by columns.
            for (m, n, k, ta, tb) in [
                (300, 200, 96, false, true), (200, 400, 64, true, false),
                (
                    257, 129, 200, false,
                    false
                ),
                (40, 3000, 64, false, false)
            ] {
                let a = FloatBuffer(rng.uniform(m * k).floats), b = FloatBuffer(rng.uniform(k * n).floats)
                let c0 = rng.uniform(m * n).floats
                var results: [[Float]] = []
                for threads in [1, 2, 3] {
                    let compute = Compute(precision: precision, threads: threads)
                    let c = FloatBuffer(c0)
                    gemm(
                        compute, transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.7, a: a.ptr, lda: ta ? m : k,
                        b: b.ptr, ldb: tb ? k : n, beta: 1, c: c.ptr, ldc: n)
                    results.append(c.array)
                }
                for t in 1...2 {
                    let diff = zip(results[0], results[t]).map { abs($0 - $1) }.max()!
                    if precision == .bf16 {
                        // oneDNN's bf16 kernels block M differently for different block heights: f32 round-off.
                        XCTAssertLessThan(diff, 1e-4, "\(precision) \(m)x\(n)x\(k) \(t + 1) threads")
                    } else {
                        XCTAssertEqual(diff, 0, "\(precision) \(m)x\(n)x\(k) \(t + 1) threads")
                    }
                }
            }
        }
    }

    /// gemm's bias (C = op(A)·op(B) + bias on every row): every engine, 1 and 2 threads (row and column splits),
    /// against the Double reference (bf16: on rounded operands); C's old contents must not leak in.
    func testBiasEveryEngineAndSplit() throws {
        var rng = TestRNG(13)
        for (precision, engine) in [(Precision.fp32, GemmEngine.onednn), (.fp32, .openblas), (.bf16, .onednn)]
        where precision == .fp32 || Compute.hasNativeBF16 {
            for threads in [1, 2] {
                let compute = Compute(precision: precision, threads: threads, f32Engine: engine)
                for (m, n, k, ta, tb) in [
                    (300, 200, 96, false, true), (40, 3000, 64, false, true),
                    (
                        7, 5, 3, true,
                        false
                    ),
                    (9, 1, 13, false, false)
                ] {
                    let a = rng.uniform(m * k), b = rng.uniform(k * n), bias = rng.uniform(n)
                    let A = FloatBuffer(a.floats), B = FloatBuffer(b.floats), Bias = FloatBuffer(bias.floats)
                    let ar = asOperand(a, A, precision), br = asOperand(b, B, precision)
                    var ref = (0..<m).flatMap { _ in bias }
                    gemmReference(
                        transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: ar, lda: ta ? m : k,
                        b: br, ldb: tb ? k : n, beta: 1, c: &ref, ldc: n)
                    let C = FloatBuffer(rng.uniform(m * n, 50, 60).floats)
                    gemm(
                        compute, transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: A.ptr, lda: ta ? m : k,
                        b: B.ptr, ldb: tb ? k : n, beta: 0, c: C.ptr, ldc: n, bias: Bias.ptr)
                    assertClose(
                        C.array, ref, rtol: 1e-5, atol: 1e-5 * Double(k),
                        "bias \(precision) \(engine) \(threads) threads \(m)x\(n)x\(k)")
                }
            }
        }
    }

    /// A sliding-window operand (row stride smaller than the row, rows overlapping), as the positional
    /// convolution passes its padded input: the same as the product of the dense copy, on 1 and 2 threads.
    func testSlidingWindowOperands() throws {
        var rng = TestRNG(13)
        for precision in Precision.allCases where precision == .fp32 || Compute.hasNativeBF16 {
            for engine in GemmEngine.allCases where precision == .fp32 || engine == .onednn {
                for threads in [1, 2] {
                    let compute = Compute(precision: precision, threads: threads, f32Engine: engine)
                    for (m, n, k, step, windowB) in [
                        (200, 16, 512, 16, false), (16, 512, 200, 16, true),
                        (
                            300, 24, 96,
                            8, false
                        )
                    ] {
                        // A [m×k] (or B [k×n]) row r = xs[r·step ..< r·step + row]
                        let rows = windowB ? k : m, row = windowB ? n : k
                        let xs = rng.uniform((rows - 1) * step + row).floats
                        var dense = [Float]()
                        for r in 0..<rows { dense += xs[(r * step)..<(r * step + row)] }
                        let other = FloatBuffer(rng.uniform(windowB ? m * k : k * n).floats)
                        let X = FloatBuffer(xs), D = FloatBuffer(dense)
                        let c1 = FloatBuffer(count: m * n), c2 = FloatBuffer(count: m * n)
                        if windowB {
                            gemm(
                                compute, transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: other.ptr,
                                lda: k, b: X.ptr, ldb: step, beta: 0, c: c1.ptr, ldc: n)
                            gemm(
                                compute, transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: other.ptr,
                                lda: k, b: D.ptr, ldb: n, beta: 0, c: c2.ptr, ldc: n)
                        } else {
                            gemm(
                                compute, transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: X.ptr, lda: step,
                                b: other.ptr, ldb: n, beta: 0, c: c1.ptr, ldc: n)
                            gemm(
                                compute, transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: D.ptr, lda: k,
                                b: other.ptr, ldb: n, beta: 0, c: c2.ptr, ldc: n)
                        }
                        XCTAssertEqual(
                            c1.array, c2.array,
                            "\(precision) \(engine) \(threads) threads \(m)x\(n)x\(k) window \(windowB ? "B" : "A")")
                    }
                }
            }
        }
    }

    /// withSharedOperand converts a matrix once for several bf16 products: the same results as converting it
    /// per product, and a later scope over the same pointer sees new contents.
    func testSharedOperandIsExactAndScoped() throws {
        if !Compute.hasNativeBF16 { throw XCTSkip("no native bf16 on this CPU") }
        var rng = TestRNG(14)
        for threads in [1, 2] {
            let compute = Compute(precision: .bf16, threads: threads)
            let n = 300, inDim = 64, outDim = 96
            let dy = FloatBuffer(rng.uniform(n * outDim).floats), x = FloatBuffer(rng.uniform(n * inDim).floats)
            let w = FloatBuffer(rng.uniform(outDim * inDim).floats)
            func separate() -> [Float] {
                let dx = FloatBuffer(count: n * inDim), dw = FloatBuffer(count: outDim * inDim)
                gemm(
                    compute, transA: false, transB: false, m: n, n: inDim, k: outDim, alpha: 1, a: dy.ptr, lda: outDim,
                    b: w.ptr, ldb: inDim, beta: 1, c: dx.ptr, ldc: inDim)
                gemm(
                    compute, transA: true, transB: false, m: outDim, n: inDim, k: n, alpha: 1, a: dy.ptr, lda: outDim,
                    b: x.ptr, ldb: inDim, beta: 1, c: dw.ptr, ldc: inDim)
                return dx.array + dw.array
            }
            func shared() -> [Float] {
                let dx = FloatBuffer(count: n * inDim), dw = FloatBuffer(count: outDim * inDim)
                withSharedOperand(compute, x.ptr, rows: n, cols: inDim, ld: inDim) {
                    linearBackward(
                        compute, dx: dx.ptr, dWeight: dw.ptr, dBias: nil, dy: dy.ptr, x: x.ptr,
                        weight: w.ptr, n: n, inDim: inDim, outDim: outDim)
                }
                return dx.array + dw.array
            }
            XCTAssertEqual(separate(), shared(), "\(threads) threads")
            for i in 0..<dy.count { dy[i] = -2 * dy[i] + 0.5 }
            for i in 0..<x.count { x[i] = 3 * x[i] - 0.25 }
            XCTAssertEqual(separate(), shared(), "\(threads) threads, new contents")
        }
    }

    func testParallelForCoversEachIndexOnce() {
        for threads in [1, 2, 4] {
            let compute = Compute(precision: .fp32, threads: threads)
            XCTAssertEqual(compute.threads, threads)
            for count in [0, 1, 2, 3, 17, 1000] {
                let hits = FloatBuffer(count: max(count, 1))
                parallelFor(count) { lo, hi in for i in lo..<hi { hits[i] += 1 } }
                XCTAssertEqual(
                    Array(hits.array.prefix(count)), [Float](repeating: 1, count: count),
                    "threads \(threads) count \(count)")
                let g = FloatBuffer(count: max(count, 1))
                parallelFor(count, grain: 100) { lo, hi in for i in lo..<hi { g[i] += 1 } }
                XCTAssertEqual(
                    Array(g.array.prefix(count)), [Float](repeating: 1, count: count),
                    "grain, threads \(threads) count \(count)")
            }
        }
    }
}

/// Threaded kernels give exactly the one-thread results (each output element is computed by one thread with
/// the same arithmetic; column sums keep their row order).
final class ThreadedKernelTests: XCTestCase {
    override func tearDown() { _ = Compute.fp32() }  // the pool back to one thread

    /// Runs `body` (which fills and returns its outputs) with 1 and with 2 and 3 threads; all must be equal.
    func same(_ what: String, _ body: (Compute) -> [Float]) {
        let one = body(Compute(precision: .fp32, threads: 1))
        for t in [2, 3] {
            let many = body(Compute(precision: .fp32, threads: t))
            XCTAssertEqual(one.count, many.count)
            let diff = zip(one, many).map { abs($0 - $1) }.max() ?? 0
            XCTAssertEqual(diff, 0, "\(what): \(t) threads differ from 1 by \(diff)")
        }
    }

    func testElementwiseAndNorms() {
        var rng = TestRNG(21)
        let n = 300, c = 96, count = 70_000
        let x = rng.uniform(n * c, -3, 3).floats
        let dy = rng.uniform(n * c).floats
        let w = rng.uniform(c).floats
        let bb = rng.uniform(c).floats
        let big = rng.uniform(count, -4, 4).floats, bigDy = rng.uniform(count).floats
        same("swish") { _ in
            let y = FloatBuffer(count: count), dx = FloatBuffer(bigDy)
            let X = FloatBuffer(big), DY = FloatBuffer(bigDy)
            swishForward(y: y.ptr, x: X.ptr, n: count)
            swishBackward(dx: dx.ptr, dy: DY.ptr, x: X.ptr, n: count)
            axpy(dx.ptr, y.ptr, alpha: 0.3, n: count)
            return y.array + dx.array
        }
        same("gelu") { _ in
            let y = FloatBuffer(count: count), dx = FloatBuffer(bigDy), X = FloatBuffer(big), DY = FloatBuffer(bigDy)
            geluForward(y: y.ptr, x: X.ptr, n: count)
            geluBackward(dx: dx.ptr, dy: DY.ptr, x: X.ptr, n: count)
            return y.array + dx.array
        }
        same("cosine") { _ in
            // 40 a rows against 300 b rows, 3000 gathered pairs.
            let A = FloatBuffer(Array(big.prefix(40 * 64))), B = FloatBuffer(Array(big.suffix(300 * 64)))
            let ia = (0..<3000).map { Int32($0 % 40) }, ib = (0..<3000).map { Int32(($0 * 7) % 300) }
            let out = FloatBuffer(count: 3000), nA = FloatBuffer(count: 40), nB = FloatBuffer(count: 300)
            ia.withUnsafeBufferPointer { pa in
                ib.withUnsafeBufferPointer { pb in
                    cosineForward(
                        out: out.ptr, normA: nA.ptr, normB: nB.ptr, a: A.ptr, b: B.ptr, ia: pa.baseAddress!,
                        ib: pb.baseAddress!, n: 3000, na: 40, nb: 300, dim: 64)
                }
            }
            return out.array + nA.array + nB.array
        }
        same("glu") { _ in
            let X = FloatBuffer(x)
            let y = FloatBuffer(count: n * c / 2)
            let dx = FloatBuffer(count: n * c)
            let DY = FloatBuffer(dy)
            gluForward(y: y.ptr, x: X.ptr, n: n, c: c / 2)
            gluBackward(dx: dx.ptr, dy: DY.ptr, x: X.ptr, n: n, c: c / 2)
            return y.array + dx.array
        }
        same("layernorm") { _ in
            let X = FloatBuffer(x)
            let y = FloatBuffer(count: n * c)
            let mean = FloatBuffer(count: n)
            let rstd = FloatBuffer(count: n)
            let W = FloatBuffer(w), B = FloatBuffer(bb), DY = FloatBuffer(dy)
            let dx = FloatBuffer(count: n * c), dw = FloatBuffer(count: c), db = FloatBuffer(count: c)
            layerNormForward(y: y.ptr, mean: mean.ptr, rstd: rstd.ptr, x: X.ptr, weight: W.ptr, bias: B.ptr, n: n, c: c)
            layerNormBackward(
                dx: dx.ptr, dWeight: dw.ptr, dBias: db.ptr, dy: DY.ptr, x: X.ptr, weight: W.ptr,
                mean: mean.ptr, rstd: rstd.ptr, n: n, c: c)
            return y.array + dx.array + dw.array + db.array
        }
        same("column sums") { _ in
            let out = FloatBuffer(Array(bb.prefix(64)) + Array(w.prefix(32))), A = FloatBuffer(x)
            columnSumAccumulate(out.ptr, A.ptr, rows: n * c / 96, cols: 96)
            return out.array
        }
        same("softmax") { _ in
            let X = FloatBuffer(x), y = FloatBuffer(count: n * c), dx = FloatBuffer(count: n * c), DY = FloatBuffer(dy)
            softmaxForward(y: y.ptr, x: X.ptr, n: n, v: c)
            softmaxBackward(dx: dx.ptr, dy: DY.ptr, y: y.ptr, n: n, v: c)
            return y.array + dx.array
        }
    }

    func testConvolutions() {
        var rng = TestRNG(22)
        for (b, t, c, g, p) in [(2, 20, 32, 16, 128), (3, 300, 12, 3, 8)] {
            let x = rng.uniform(b * t * c).floats, dy = rng.uniform(b * t * c).floats
            let w = rng.uniform(c * (c / g) * p).floats, bias = rng.uniform(c).floats
            same("grouped conv1d t \(t) p \(p)") { compute in
                // Workspace for 3 threads, as the model sizes it for its pool.
                let work = FloatBuffer(count: groupedConv1dWorkspaceCount(t: t, c: c, groups: g, p: p, slots: 3))
                let X = FloatBuffer(x)
                let DY = FloatBuffer(dy)
                let W = FloatBuffer(w)
                let B = FloatBuffer(bias)
                let y = FloatBuffer(count: b * t * c)
                let dx = FloatBuffer(count: b * t * c), dw = FloatBuffer(count: w.count), db = FloatBuffer(count: c)
                groupedConv1dForward(
                    compute, y: y.ptr, work: work.ptr, slots: 3, x: X.ptr, weight: W.ptr, bias: B.ptr,
                    b: b, t: t, c: c, groups: g, p: p)
                groupedConv1dBackward(
                    compute, dx: dx.ptr, dWeight: dw.ptr, dBias: db.ptr, work: work.ptr, slots: 3,
                    dy: DY.ptr, x: X.ptr, weight: W.ptr, b: b, t: t, c: c, groups: g, p: p)
                return y.array + dx.array + dw.array + db.array
            }
        }
        for causal in [false, true] {
            let b = 3, t = 150, c = 40, k = 7  // three frame blocks per utterance, the last one short
            let x = rng.uniform(b * t * c).floats, dy = rng.uniform(b * t * c).floats, w = rng.uniform(c * k).floats
            same("depthwise conv1d causal \(causal)") { _ in
                let X = FloatBuffer(x), DY = FloatBuffer(dy), W = FloatBuffer(w), y = FloatBuffer(count: b * t * c)
                let wT = FloatBuffer(count: k * c)
                let dx = FloatBuffer(count: b * t * c), dw = FloatBuffer(count: c * k)
                depthwiseConv1dForward(
                    y: y.ptr, wT: wT.ptr, x: X.ptr, weight: W.ptr, b: b, t: t, c: c, k: k,
                    causal: causal)
                depthwiseConv1dBackward(
                    dx: dx.ptr, dWeight: dw.ptr, wT: wT.ptr, dy: DY.ptr, x: X.ptr, weight: W.ptr,
                    b: b, t: t, c: c, k: k, causal: causal)
                return y.array + dx.array + dw.array
            }
        }
        for s in [Conv2dShape(b: 3, cin: 1, cout: 8, h: 41, w: 80), Conv2dShape(b: 2, cin: 8, cout: 8, h: 20, w: 39)] {
            let x = rng.uniform(s.b * s.cin * s.h * s.w).floats, w = rng.uniform(s.cout * s.cin * 9).floats
            let bias = rng.uniform(s.cout).floats, dy = rng.uniform(s.b * s.cout * s.ho * s.wo).floats
            same("conv2d \(s.cin) → \(s.cout)") { compute in
                let X = FloatBuffer(x), W = FloatBuffer(w), B = FloatBuffer(bias), DY = FloatBuffer(dy)
                let y = FloatBuffer(count: dy.count), cols = FloatBuffer(count: s.colsCount)
                let dx = FloatBuffer(count: x.count), dw = FloatBuffer(count: w.count), db = FloatBuffer(count: s.cout)
                conv2dForward(compute, y: y.ptr, cols: cols.ptr, x: X.ptr, weight: W.ptr, bias: B.ptr, shape: s)
                conv2dBackward(
                    compute, dx: dx.ptr, dWeight: dw.ptr, dBias: db.ptr, cols: cols.ptr, dy: DY.ptr,
                    x: X.ptr, weight: W.ptr, shape: s)
                return y.array + dx.array + dw.array + db.array
            }
        }
    }

    func testAttention() {
        var rng = TestRNG(23)
        for position in [AttentionPosition.none, .rope, .shaw(left: 4, right: 2)] {
            let b = 3, t = 37, d = 32, h = 4
            let q = rng.uniform(b * t * d).floats, k = rng.uniform(b * t * d).floats, v = rng.uniform(b * t * d).floats
            let dO = rng.uniform(b * t * d).floats, rel = rng.uniform(7 * (d / h)).floats
            let lengths: [Int32] = [37, 20, 31]
            same("attention \(position)") { compute in
                // The workspace is sized for the configured thread count, as the model does at start-up.
                let shape = AttentionShape(b: b, t: t, d: d, heads: h, position: position)
                let Q = FloatBuffer(q)
                let K = FloatBuffer(k)
                let V = FloatBuffer(v)
                let DO = FloatBuffer(dO)
                let R = FloatBuffer(rel)
                let out = FloatBuffer(count: b * t * d), saved = FloatBuffer(count: shape.savedCount)
                let work = FloatBuffer(count: shape.workspaceCount(threads: compute.threads))
                let dq = FloatBuffer(count: b * t * d)
                let dk = FloatBuffer(count: b * t * d)
                let dv = FloatBuffer(count: b * t * d)
                let dR = FloatBuffer(count: rel.count)
                let shaw = shape.relCount > 0
                lengths.withUnsafeBufferPointer { lp in
                    attentionForward(
                        compute, out: out.ptr, saved: saved.ptr, work: work.ptr, q: Q.ptr, k: K.ptr,
                        v: V.ptr, relKey: shaw ? CFPtr(R.ptr) : nil, lengths: lp.baseAddress!, shape: shape)
                    attentionBackward(
                        compute, dq: dq.ptr, dk: dk.ptr, dv: dv.ptr, dRelKey: shaw ? dR.ptr : nil,
                        work: work.ptr, dOut: DO.ptr, saved: saved.ptr, q: Q.ptr, k: K.ptr, v: V.ptr,
                        relKey: shaw ? CFPtr(R.ptr) : nil, lengths: lp.baseAddress!, shape: shape)
                }
                return out.array + dq.array + dk.array + dv.array + dR.array
            }
        }
    }
}
