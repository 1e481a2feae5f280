import XCTest
import Tensor
import TestSupport

/// The settings of these tests' products: fp32 on one thread (the references they are checked against).
private let compute = Compute.fp32()

final class GemmTests: XCTestCase {
    func testAllTransposeCasesOddSizes() {
        var rng = TestRNG(1)
        for (m, n, k) in [(1, 1, 1), (7, 5, 3), (17, 33, 9), (64, 31, 128)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3
                    let a = rng.uniform((ta ? k : m) * lda), b = rng.uniform((tb ? n : k) * ldb)
                    let c0 = rng.uniform(m * ldc)
                    for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
                        var ref = c0
                        gemmReference(
                            transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                            b: b, ldb: ldb, beta: beta, c: &ref, ldc: ldc)
                        let A = FloatBuffer(a.floats), B = FloatBuffer(b.floats), C = FloatBuffer(c0.floats)
                        gemm(
                            compute, transA: ta, transB: tb, m: m, n: n, k: k, alpha: Float(alpha), a: A.ptr, lda: lda,
                            b: B.ptr, ldb: ldb, beta: Float(beta), c: C.ptr, ldc: ldc)
                        // Only the m×n window is written; the row padding must be untouched.
                        assertClose(
                            C.array, ref, rtol: 1e-5, atol: 1e-5 * Double(k),
                            "gemm \(m)x\(n)x\(k) ta=\(ta) tb=\(tb)")
                    }
                }
            }
        }
    }

    func testBatchedStridedMatchesLoop() {
        var rng = TestRNG(2)
        let count = 3, m = 5, n = 4, k = 6, d = 2 * k  // two "heads" interleaved in rows of width d
        let a = rng.uniform(count * m * d), b = rng.uniform(count * n * d)
        let A = FloatBuffer(a.floats), B = FloatBuffer(b.floats), C = FloatBuffer(count: count * m * n)
        // head 1 of each batch: offset k, row stride d, batch stride m·d
        gemmBatched(
            compute, count: count, transA: false, transB: true, m: m, n: n, k: k, alpha: 1,
            a: A.ptr + k, lda: d, strideA: m * d, b: B.ptr + k, ldb: d, strideB: n * d,
            beta: 0, c: C.ptr, ldc: n, strideC: m * n)
        for bi in 0..<count {
            let aa = Array(a[(bi * m * d)..<((bi + 1) * m * d)]), bb = Array(b[(bi * n * d)..<((bi + 1) * n * d)])
            var ref = [Double](repeating: 0, count: m * n)
            gemmReference(
                transA: false, transB: true, m: m, n: n, k: k, alpha: 1,
                a: Array(aa.dropFirst(k)) + [Double](repeating: 0, count: k),
                lda: d,
                b: Array(bb.dropFirst(k))
                    + [Double](
                        repeating: 0,
                        count: k), ldb: d, beta: 0, c: &ref, ldc: n)
            assertClose(Array(C.array[(bi * m * n)..<((bi + 1) * m * n)]), ref, rtol: 1e-5, atol: 1e-5, "batched \(bi)")
        }
    }
}

final class RandomTests: XCTestCase {
    /// fillNormal / fillGumbel spread over threads from a block boundary give exactly the serial draws, and
    /// leave the stream where the serial draws would (odd counts, a prefix that breaks alignment, 1 and 3 threads).
    func testThreadedFillsEqualSerialDraws() {
        defer { _ = Compute.fp32() }  // the pool back to one thread
        for threads in [1, 3] {
            _ = Compute(precision: .fp32, threads: threads)  // the pool the fills are spread over
            for (prefix, n) in [(0, 5001), (0, 4000), (3, 2999), (1, 7)] {
                var a = RandomStream(seed: 9, step: 2, microBatch: 1, purpose: .maskNoise), b = a
                let fa = FloatBuffer(count: n), fb = FloatBuffer(count: n)
                for _ in 0..<prefix {
                    _ = a.nextUInt32()
                    _ = b.nextUInt32()
                }
                a.fillNormal(fa.ptr, n, mean: 0.5, std: 2)
                for i in 0..<n { fb[i] = 0.5 + 2 * b.nextNormal() }
                XCTAssertEqual(fa.array, fb.array, "normal, \(threads) threads, prefix \(prefix), n \(n)")
                XCTAssertEqual(a.nextNormal(), b.nextNormal(), "normal stream state")
                a.fillGumbel(fa.ptr, n)
                for i in 0..<n { fb[i] = b.nextGumbel() }
                XCTAssertEqual(fa.array, fb.array, "gumbel, \(threads) threads, prefix \(prefix), n \(n)")
                XCTAssertEqual(a.nextUInt32(), b.nextUInt32(), "gumbel stream state")
            }
        }
    }

    func testPhiloxKnownAnswers() {
        // Random123's kat_vectors for philox4x32_10.
        let z = philox4x32(counter: (0, 0, 0, 0), key: (0, 0))
        XCTAssertEqual([z.0, z.1, z.2, z.3], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        let f = philox4x32(counter: (.max, .max, .max, .max), key: (.max, .max))
        XCTAssertEqual([f.0, f.1, f.2, f.3], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
        let p = philox4x32(
            counter: (0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344),
            key: (
                0xa409_3822,
                0x299f_31d0
            ))
        XCTAssertEqual([p.0, p.1, p.2, p.3], [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1])
    }

    func testStreamsAreKeyed() {
        func draw(_ s: UInt64, _ step: Int, _ mb: Int, _ p: RandomPurpose) -> [UInt32] {
            var r = RandomStream(seed: s, step: step, microBatch: mb, purpose: p)
            return (0..<64).map { _ in r.nextUInt32() }
        }
        XCTAssertEqual(draw(1, 2, 3, .mask), draw(1, 2, 3, .mask))
        let base = draw(1, 2, 3, .mask)
        for other in [
            draw(2, 2, 3, .mask), draw(1, 3, 3, .mask), draw(1, 2, 4, .mask), draw(1, 2, 3, .gumbel),
            draw(1 << 32 | 1, 2, 3, .mask)
        ] {
            XCTAssertNotEqual(other, base)
            XCTAssertLessThan(zip(other, base).filter { $0 == $1 }.count, 3)
        }
    }

    func testMoments() {
        var r = RandomStream(seed: 42, purpose: .test)
        let n = 200_000
        var s1 = 0.0, s2 = 0.0, bins = [Int](repeating: 0, count: 10)
        for _ in 0..<n {
            let u = Double(r.nextUniform())
            XCTAssert(u > 0 && u < 1)
            s1 += u
            s2 += u * u
            bins[min(9, Int(u * 10))] += 1
        }
        XCTAssertEqual(s1 / Double(n), 0.5, accuracy: 0.003)
        XCTAssertEqual(s2 / Double(n) - (s1 / Double(n)) * (s1 / Double(n)), 1.0 / 12, accuracy: 0.002)
        // χ² with 9 degrees of freedom: 99.9th percentile is 27.9.
        let e = Double(n) / 10
        XCTAssertLessThan(bins.reduce(0) { $0 + (Double($1) - e) * (Double($1) - e) / e }, 27.9)
        var m1 = 0.0, m2 = 0.0, m3 = 0.0, m4 = 0.0
        for _ in 0..<n {
            let z = Double(r.nextNormal())
            m1 += z
            m2 += z * z
            m3 += z * z * z
            m4 += z * z * z * z
        }
        XCTAssertEqual(m1 / Double(n), 0, accuracy: 0.01)
        XCTAssertEqual(m2 / Double(n), 1, accuracy: 0.015)
        XCTAssertEqual(m3 / Double(n), 0, accuracy: 0.03)
        XCTAssertEqual(m4 / Double(n), 3, accuracy: 0.08)
        var g = 0.0
        for _ in 0..<n { g += Double(r.nextGumbel()) }
        XCTAssertEqual(g / Double(n), 0.5772156649, accuracy: 0.01)  // Euler–Mascheroni
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<70_000 { counts[r.nextInt(7)] += 1 }
        XCTAssert(counts.allSatisfy { abs($0 - 10_000) < 500 }, "\(counts)")
    }
}
