import XCTest
import Tensor
import TestSupport

/// `write: .overwrite` stores exactly what zeroing the gradient and accumulating into it would (the model
/// relies on that for its bit-identical runs): checked for every kernel that offers it, with the gradient
/// buffer holding garbage before the overwrite, on one and on two threads, in fp32 and bf16.
final class GradientWriteTests: XCTestCase {
    override func tearDown() { _ = Compute.fp32() }  // the pool back to one thread

    /// run(dx, write, compute) fills dx (count floats) and returns any other outputs; overwrite over garbage must equal
    /// accumulate over zeros, bit for bit (both the gradient and the other outputs).
    func same(_ what: String, count: Int, _ run: (FPtr, GradientWrite, Compute) -> [Float]) {
        for (precision, threads) in [
            (Precision.fp32, 1), (.fp32, 2),
            (
                .bf16,
                1
            )
        ] where precision == .fp32 || Compute.hasNativeBF16 {
            let compute = Compute(precision: precision, threads: threads)
            let zeroed = FloatBuffer(count: count)
            let accumulated = run(zeroed.ptr, .accumulate, compute)
            let garbage = FloatBuffer((0..<count).map { Float($0 % 7) * 1e3 - 3e3 })
            let overwritten = run(garbage.ptr, .overwrite, compute)
            XCTAssertEqual(zeroed.array, garbage.array, "\(what) (\(precision), \(threads) threads): dx differs")
            XCTAssertEqual(accumulated, overwritten, "\(what) (\(precision), \(threads) threads): other outputs differ")
        }
    }

    func testOverwriteEqualsZeroThenAccumulate() {
        var rng = TestRNG(31)
        let n = 150, c = 40, o = 24
        let x = FloatBuffer(rng.uniform(n * c).floats), dy = FloatBuffer(rng.uniform(n * 2 * c).floats)
        let w = FloatBuffer(rng.uniform(2 * c * c).floats), g = FloatBuffer(rng.uniform(c, 0.5, 1.5).floats)
        same("linear", count: n * c) { dx, write, compute in
            let dW = FloatBuffer(count: o * c), db = FloatBuffer(count: o)
            linearBackward(
                compute, dx: dx, dWeight: dW.ptr, dBias: db.ptr, dy: dy.ptr, x: x.ptr, weight: w.ptr, n: n,
                inDim: c, outDim: o, write: write)
            return dW.array + db.array
        }
        same("layernorm", count: n * c) { dx, write, compute in
            let y = FloatBuffer(count: n * c), mean = FloatBuffer(count: n), rstd = FloatBuffer(count: n)
            let dg = FloatBuffer(count: c), dbe = FloatBuffer(count: c)
            layerNormForward(y: y.ptr, mean: mean.ptr, rstd: rstd.ptr, x: x.ptr, weight: g.ptr, bias: g.ptr, n: n, c: c)
            layerNormBackward(
                dx: dx, dWeight: dg.ptr, dBias: dbe.ptr, dy: dy.ptr, x: x.ptr, weight: g.ptr,
                mean: mean.ptr, rstd: rstd.ptr, n: n, c: c, write: write)
            return dg.array + dbe.array
        }
        same("swish", count: n * c) { dx, write, compute in
            swishBackward(dx: dx, dy: dy.ptr, x: x.ptr, n: n * c, write: write)
            return []
        }
        same("glu", count: n * c) { dx, write, compute in
            gluBackward(dx: dx, dy: dy.ptr, x: x.ptr, n: n, c: c / 2, write: write)
            return []
        }
        for causal in [false, true] {
            same("depthwise causal \(causal)", count: n * c) { dx, write, compute in
                let wT = FloatBuffer(count: 7 * c), dW = FloatBuffer(count: c * 7)
                depthwiseConv1dBackward(
                    dx: dx, dWeight: dW.ptr, wT: wT.ptr, dy: dy.ptr, x: x.ptr, weight: w.ptr, b: 2,
                    t: n / 2, c: c, k: 7, causal: causal, write: write)
                return dW.array
            }
        }
        for position in [AttentionPosition.none, .shaw(left: 3, right: 2), .rope] {
            let shape = AttentionShape(b: 2, t: 30, d: 16, heads: 2, position: position)
            let q = FloatBuffer(rng.uniform(2 * 30 * 16).floats), k = FloatBuffer(rng.uniform(2 * 30 * 16).floats)
            let v = FloatBuffer(rng.uniform(2 * 30 * 16).floats), dOut = FloatBuffer(rng.uniform(2 * 30 * 16).floats)
            let rel = FloatBuffer(rng.uniform(6 * 8).floats), shaw = shape.relCount > 0
            // dq is the checked gradient; dk and dv start as garbage too when overwritten.
            same("attention \(position)", count: 2 * 30 * 16) { dq, write, compute in
                // The workspace is sized for the configured thread count.
                let saved = FloatBuffer(count: shape.savedCount)
                let work = FloatBuffer(count: shape.workspaceCount(threads: compute.threads))
                let out = FloatBuffer(count: 2 * 30 * 16), lengths: [Int32] = [30, 21]
                let fill: [Float] =
                    write == .overwrite
                    ? (0..<(2 * 30 * 16)).map { Float($0 % 5) - 2 } : [Float](repeating: 0, count: 2 * 30 * 16)
                let dk = FloatBuffer(fill), dv = FloatBuffer(fill), dRel = FloatBuffer(count: 6 * 8)
                lengths.withUnsafeBufferPointer { lp in
                    attentionForward(
                        compute, out: out.ptr, saved: saved.ptr, work: work.ptr, q: q.ptr, k: k.ptr,
                        v: v.ptr,
                        relKey: shaw ? CFPtr(rel.ptr) : nil, lengths: lp.baseAddress!, shape: shape)
                    attentionBackward(
                        compute, dq: dq, dk: dk.ptr, dv: dv.ptr, dRelKey: shaw ? dRel.ptr : nil,
                        work: work.ptr, dOut: dOut.ptr, saved: saved.ptr, q: q.ptr, k: k.ptr, v: v.ptr,
                        relKey: shaw ? CFPtr(rel.ptr) : nil, lengths: lp.baseAddress!, shape: shape, write: write)
                }
                return dk.array + dv.array + dRel.array
            }
        }
        let s = Conv2dShape(b: 2, cin: 3, cout: 4, h: 20, w: 12)
        let cx = FloatBuffer(rng.uniform(s.b * s.cin * s.h * s.w).floats)
        let cdy = FloatBuffer(rng.uniform(s.b * s.cout * s.ho * s.wo).floats)
        same("conv2d", count: s.b * s.cin * s.h * s.w) { dx, write, compute in
            let cols = FloatBuffer(count: s.colsCount)
            let dW = FloatBuffer(count: s.cout * s.cin * 9)
            let db = FloatBuffer(count: s.cout)
            conv2dBackward(
                compute, dx: dx, dWeight: dW.ptr, dBias: db.ptr, cols: cols.ptr, dy: cdy.ptr, x: cx.ptr,
                weight: w.ptr, shape: s, write: write, colsBudget: 60)  // one output row per chunk
            return dW.array + db.array
        }
    }
}
