import XCTest
import Tensor
import TestSupport

final class FastMathTests: XCTestCase {
    func testFastExpAgainstDoubleExp() {
        var worst = 0.0
        var x: Float = -87
        while x < 88 {
            let got = Double(fastExp(x)), want = Foundation.exp(Double(x))
            worst = max(worst, abs(got - want) / want)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 3e-7)
        XCTAssertEqual(fastExp(-.infinity), 0)
        XCTAssertEqual(fastExp(-100), 0)
        XCTAssertEqual(fastExp(0), 1)
        // The vector path and its tail agree (softmax rows of odd length use both).
        var rng = TestRNG(40)
        let v = rng.uniform(8, -20, 20).floats
        let e8 = fastExp(F8(v))
        for i in 0..<8 { XCTAssertEqual(e8[i], fastExp(v[i])) }
    }

    /// The C Swish kernels (swish.c, AVX-512 where available) give exactly the bits of the Swift fastExp
    /// formulas they replaced, across the clamps, zeros, tiny, huge and infinite inputs.
    func testSwishKernelsMatchFastExpBitForBit() {
        var rng = TestRNG(8)
        let xs: [Float] =
            stride(from: -100.0, through: 100.0, by: 0.0137).map { Float($0) }
            + [
                -87.3, -87.29, -87.31, 88.3, 88.31, 0, -0, .leastNonzeroMagnitude, 1e-30, -1e-30, 1e30, -1e30,
                .infinity, -.infinity
            ]
        let n = xs.count, dys = rng.uniform(n, -3, 3).floats, start = rng.uniform(n).floats
        let X = FloatBuffer(xs), DY = FloatBuffer(dys), y = FloatBuffer(count: n)
        let dxOver = FloatBuffer(count: n), dxAcc = FloatBuffer(start)
        swishForward(y: y.ptr, x: X.ptr, n: n)
        swishBackward(dx: dxOver.ptr, dy: DY.ptr, x: X.ptr, n: n, write: .overwrite)
        swishBackward(dx: dxAcc.ptr, dy: DY.ptr, x: X.ptr, n: n)
        for i in 0..<n {
            let x = xs[i], s = 1 / (1 + fastExp(-x)), g = dys[i] * s * (1 + x * (1 - s))
            XCTAssertEqual(y[i].bitPattern, (s * x).bitPattern, "forward at \(x)")
            XCTAssertEqual(dxOver[i].bitPattern, g.bitPattern, "backward (overwrite) at \(x)")
            XCTAssertEqual(dxAcc[i].bitPattern, (start[i] + g).bitPattern, "backward (accumulate) at \(x)")
        }
    }
}
