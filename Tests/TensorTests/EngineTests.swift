import XCTest
import Tensor
import TestSupport

/// The GEMM engines behind `gemm` (oneDNN f32, OpenBLAS f32, oneDNN bf16) against the Double reference for
/// every transpose, alpha/beta and padded strides; threaded products and kernels against one thread.
final class EngineTests: XCTestCase {
    override func tearDown() { Compute.configure(precision: .fp32, threads: 1) }

    static let shapes = [(1, 1, 1), (7, 5, 3), (17, 33, 9), (64, 31, 128), (130, 70, 300)]

    func checkEngine(_ precision: Precision, _ engine: GemmEngine) throws {
        if precision == .bf16 && !Compute.hasNativeBF16 { throw XCTSkip("no native bf16 on this CPU") }
        Compute.configure(precision: precision, threads: 1, f32Engine: engine)
        XCTAssertEqual(Compute.precision, precision)
        var rng = TestRNG(11)
        var largestBF16Effect = 0.0
        for (m, n, k) in EngineTests.shapes {
            for ta in [false, true] {
                for tb in [false, true] {
                    let lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3
                    let a = rng.uniform((ta ? k : m) * lda), b = rng.uniform((tb ? n : k) * ldb)
                    let c0 = rng.uniform(m * ldc)
                    for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
                        // bf16: the products of bf16-rounded operands are exact in f32, so the result must match
                        // the Double reference on rounded operands to f32 accumulation accuracy.
                        let A = FloatBuffer(a.floats), B = FloatBuffer(b.floats), C = FloatBuffer(c0.floats)
                        var ar = a, br = b
                        if precision == .bf16 {
                            let Ar = FloatBuffer(count: a.count), Br = FloatBuffer(count: b.count)
                            roundToBF16(Ar.ptr, A.ptr, count: a.count); roundToBF16(Br.ptr, B.ptr, count: b.count)
                            ar = Ar.array.doubles; br = Br.array.doubles
                        }
                        var ref = c0, exact = c0
                        gemmReference(transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: ar, lda: lda,
                                      b: br, ldb: ldb, beta: beta, c: &ref, ldc: ldc)
                        gemmReference(transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                                      b: b, ldb: ldb, beta: beta, c: &exact, ldc: ldc)
                        gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: Float(alpha), a: A.ptr, lda: lda,
                             b: B.ptr, ldb: ldb, beta: Float(beta), c: C.ptr, ldc: ldc)
                        // Only the m×n window is written; the row padding must be untouched.
                        assertClose(C.array, ref, rtol: 1e-5, atol: 1e-5 * Double(k),
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

    /// Two threads split C into row (or column) blocks; every element is still one call over the whole K.
    func testThreadedGemmEqualsOneThread() throws {
        var rng = TestRNG(12)
        for precision in Precision.allCases where precision == .fp32 || Compute.hasNativeBF16 {
            // Row splits, and one short wide product split by columns.
            for (m, n, k, ta, tb) in [(300, 200, 96, false, true), (200, 400, 64, true, false), (257, 129, 200, false, false),
                                      (40, 3000, 64, false, false)] {
                let a = FloatBuffer(rng.uniform(m * k).floats), b = FloatBuffer(rng.uniform(k * n).floats)
                let c0 = rng.uniform(m * n).floats
                var results: [[Float]] = []
                for threads in [1, 2, 3] {
                    Compute.configure(precision: precision, threads: threads)
                    let c = FloatBuffer(c0)
                    gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.7, a: a.ptr, lda: ta ? m : k,
                         b: b.ptr, ldb: tb ? k : n, beta: 1, c: c.ptr, ldc: n)
                    results.append(c.array)
                }
                let columnSplit = m < 64 * 3 && n > m
                for t in 1...2 {
                    let diff = zip(results[0], results[t]).map { abs($0 - $1) }.max()!
                    if precision == .bf16 && columnSplit && !(m >= 64 * (t + 1)) {
                        XCTAssertLessThan(diff, 1e-4, "\(precision) \(m)x\(n)x\(k) \(t + 1) threads (column split)")
                    } else {
                        XCTAssertEqual(diff, 0, "\(precision) \(m)x\(n)x\(k) \(t + 1) threads")
                    }
                }
            }
        }
    }

    func testParallelForCoversEachIndexOnce() {
        for threads in [1, 2, 4] {
            Compute.configure(precision: .fp32, threads: threads)
            XCTAssertEqual(Compute.threads, threads)
            for count in [0, 1, 2, 3, 17, 1000] {
                let hits = FloatBuffer(count: max(count, 1))
                parallelFor(count) { lo, hi in for i in lo..<hi { hits[i] += 1 } }
                XCTAssertEqual(Array(hits.array.prefix(count)), [Float](repeating: 1, count: count), "threads \(threads) count \(count)")
                let g = FloatBuffer(count: max(count, 1))
                parallelFor(count, grain: 100) { lo, hi in for i in lo..<hi { g[i] += 1 } }
                XCTAssertEqual(Array(g.array.prefix(count)), [Float](repeating: 1, count: count), "grain, threads \(threads) count \(count)")
            }
        }
    }
}
