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
}
