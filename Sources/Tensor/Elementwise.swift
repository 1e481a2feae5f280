// Residual and scale helpers. All accumulate or write as their names say.

/// y[i] += alpha·x[i]   (residual add with a branch scale, e.g. ½·FFN).
@inline(__always)
public func axpy(_ y: FPtr, _ x: CFPtr, alpha: Float = 1, n: Int) {
    parallelChunks(n) { lo, cnt in for i in lo..<(lo + cnt) { y[i] += alpha * x[i] } }
}
/// y[i] = a[i] + alpha·b[i]
@inline(__always)
public func addScaled(_ y: FPtr, _ a: CFPtr, _ b: CFPtr, alpha: Float = 1, n: Int) {
    parallelChunks(n) { lo, cnt in for i in lo..<(lo + cnt) { y[i] = a[i] + alpha * b[i] } }
}
/// x[i] *= alpha
@inline(__always)
public func scale(_ x: FPtr, _ alpha: Float, n: Int) {
    parallelChunks(n) { lo, cnt in for i in lo..<(lo + cnt) { x[i] *= alpha } }
}
/// x[i] = 0
@inline(__always)
public func zeroFill(_ x: FPtr, n: Int) {
    parallelChunks(n) { lo, cnt in (x + lo).update(repeating: 0, count: cnt) }
}
/// y[i] = x[i]
@inline(__always)
public func copy(_ y: FPtr, _ x: CFPtr, n: Int) {
    parallelChunks(n) { lo, cnt in (y + lo).update(from: x + lo, count: cnt) }
}
/// x[i] *= m[i]   (a dropout mask, already scaled by 1/(1 − p))
@inline(__always)
public func multiply(_ x: FPtr, by m: CFPtr, n: Int) {
    parallelChunks(n) { lo, cnt in for i in lo..<(lo + cnt) { x[i] *= m[i] } }
}
/// y[i] = alpha·x[i]·m[i], or alpha·x[i] without a mask
@inline(__always)
public func scaledCopy(_ y: FPtr, _ x: CFPtr, alpha: Float = 1, mask m: CFPtr?, n: Int) {
    if let m {
        parallelChunks(n) { lo, cnt in for i in lo..<(lo + cnt) { y[i] = alpha * x[i] * m[i] } }
    } else {
        parallelChunks(n) { lo, cnt in for i in lo..<(lo + cnt) { y[i] = alpha * x[i] } }
    }
}
/// Zeroes rows t ≥ length[b] of a [B, T, C] tensor (padded frames never leak into real ones).
public func zeroPadding(_ x: FPtr, lengths: UnsafePointer<Int32>, b: Int, t: Int, c: Int) {
    for bi in 0..<b {
        let len = Int(lengths[bi])
        if len < t { (x + (bi * t + len) * c).update(repeating: 0, count: (t - len) * c) }
    }
}
/// Σ x[i]² in Double (gradient norms): f32 sums over blocks of 4096 (eight lanes, then the lanes in order;
/// blocks spread over the threads), added in block order in Double, so the result does not depend on the
/// thread count.
public func sumOfSquares(_ x: CFPtr, n: Int) -> Double {
    let blocks = (n + sumBlock - 1) / sumBlock
    if blocks <= 64 {
        var s = 0.0
        for j in 0..<blocks { s += Double(blockSumOfSquares(x, n: n, j)) }
        return s
    }
    return withUnsafeTemporaryAllocation(of: Float.self, capacity: blocks) { partial in
        let part = partial.baseAddress!
        parallelFor(blocks, grain: 16) { lo, hi in for j in lo..<hi { part[j] = blockSumOfSquares(x, n: n, j) } }
        var s = 0.0
        for j in 0..<blocks { s += Double(part[j]) }
        return s
    }
}

let sumBlock = 4096

@inline(__always)
func blockSumOfSquares(_ x: CFPtr, n: Int, _ j: Int) -> Float {
    let p = x + j * sumBlock
    return laneSum(min(sumBlock, n - j * sumBlock)) {
        let v = load8(p + $0)
        return v * v
    } tail: {
        p[$0] * p[$0]
    }
}
