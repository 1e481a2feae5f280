// Shared test helpers (llm.c's check_tensor, whisper.cpp's test-backend-ops gradient checker).
import XCTest
import Tensor

/// Deterministic test data from the project's own RNG.
public struct TestRNG {
    var stream: RandomStream
    public init(_ seed: UInt64) { stream = RandomStream(seed: seed, purpose: .test) }
    public mutating func uniform(_ n: Int, _ lo: Double = -1, _ hi: Double = 1) -> [Double] {
        (0..<n).map { _ in lo + (hi - lo) * stream.nextUniformDouble() }
    }
    public mutating func normal(_ n: Int, std: Double = 1) -> [Double] {
        (0..<n).map { _ in Double(stream.nextNormal()) * std }
    }
    public mutating func int(_ n: Int) -> Int { stream.nextInt(n) }
}

public extension Array where Element == Double {
    var floats: [Float] { map { Float($0) } }
}
public extension Array where Element == Float {
    var doubles: [Double] { map { Double($0) } }
}

/// max |a − b| / (atol + rtol·|b|) ≤ 1, with shapes checked first; prints the worst element.
public func assertClose(
    _ a: [Double], _ b: [Double], rtol: Double, atol: Double, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(a.count, b.count, "\(what): sizes differ", file: file, line: line)
    guard a.count == b.count else { return }
    var worst = 0.0, wi = -1
    for i in 0..<a.count {
        if !a[i].isFinite || !b[i].isFinite {
            if a[i] != b[i] {
                XCTFail("\(what)[\(i)]: \(a[i]) vs \(b[i])", file: file, line: line)
                return
            }
            continue
        }
        let r = abs(a[i] - b[i]) / (atol + rtol * abs(b[i]))
        if r > worst {
            worst = r
            wi = i
        }
    }
    if worst > 1 {
        XCTFail(
            "\(what): worst at [\(wi)] \(a[wi]) vs \(b[wi]) (|diff| \(abs(a[wi] - b[wi])), rtol \(rtol), atol \(atol))",
            file: file, line: line)
    }
}
public func assertClose(
    _ a: [Float], _ b: [Double], rtol: Double, atol: Double, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    assertClose(a.doubles, b, rtol: rtol, atol: atol, what, file: file, line: line)
}

/// The finite-difference gradient checker.
///
/// loss(x) = Σ reference(x) ⊙ w with random w; numerical gradient by central differences in Double;
/// the analytic gradient comes from the Float op's backward with dy = w. `analytic(inputs, dy, times)`
/// runs forward once and backward `times` times into zeroed gradients and returns them (one array per
/// checked input) — it is called with times 1 and 2, and the second must be exactly twice the first.
/// `maxPerTensor` caps how many elements of each input are perturbed (spread evenly).
public func checkGradients(
    inputs: [[Double]], checked: [Int]? = nil, outputCount: Int,
    reference: ([[Double]]) -> [Double],
    analytic: ([[Float]], [Float], Int) -> [[Float]],
    eps: Double = 1e-5, rtol: Double = 1e-3, atol: Double = 1e-4,
    maxPerTensor: Int = 400, seed: UInt64 = 7, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    var rng = TestRNG(seed)
    let w = rng.uniform(outputCount)
    let which = checked ?? Array(inputs.indices)
    let floats = inputs.map { $0.floats }
    let g1 = analytic(floats, w.floats, 1)
    let g2 = analytic(floats, w.floats, 2)
    XCTAssertEqual(g1.count, which.count, "\(what): analytic returned \(g1.count) gradients", file: file, line: line)
    // The Double reference is evaluated on the Float-rounded inputs, so both sides see the same point.
    let base = floats.map { $0.doubles }
    func loss(_ x: [[Double]]) -> Double {
        let y = reference(x)
        precondition(y.count == outputCount, "\(what): reference returned \(y.count) outputs, expected \(outputCount)")
        return zip(y, w).reduce(0) { $0 + $1.0 * $1.1 }
    }
    for (slot, ti) in which.enumerated() {
        let n = inputs[ti].count
        let stride = max(1, n / maxPerTensor)
        var num: [Double] = [], ana: [Double] = [], twice: [Double] = [], once2: [Double] = []
        var i = 0
        while i < n {
            var xp = base, xm = base
            xp[ti][i] += eps
            xm[ti][i] -= eps
            num.append((loss(xp) - loss(xm)) / (2 * eps))
            ana.append(Double(g1[slot][i]))
            twice.append(Double(g2[slot][i]))
            once2.append(2 * Double(g1[slot][i]))
            i += stride
        }
        assertClose(
            ana, num, rtol: rtol, atol: atol, "\(what): d input \(ti) vs finite differences", file: file, line: line)
        assertClose(
            twice, once2, rtol: 1e-5, atol: 1e-6, "\(what): d input \(ti) backward twice != 2× once", file: file,
            line: line)
    }
}

/// Copies Float arrays into FloatBuffers for the kernel calls.
public func buffers(_ arrays: [[Float]]) -> [FloatBuffer] { arrays.map { FloatBuffer($0) } }
