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
/// Σ x[i]² in Double (gradient norms): f32 sums over blocks of 4096 (spread over the threads), added in
/// block order in Double, so the result does not depend on the thread count.
public func sumOfSquares(_ x: CFPtr, n: Int) -> Double {
    let block = 4096, blocks = (n + block - 1) / block
    if blocks <= 64 { return sumOfSquaresBlocks(x, n: n, block: block, 0, blocks) }
    return withUnsafeTemporaryAllocation(of: Float.self, capacity: blocks) { partial in
        let part = partial.baseAddress!
        parallelFor(blocks, grain: 16) { lo, hi in
            for j in lo..<hi {
                var f: Float = 0
                for i in (j * block)..<min(n, (j + 1) * block) { f += x[i] * x[i] }
                part[j] = f
            }
        }
        var s = 0.0
        for j in 0..<blocks { s += Double(part[j]) }
        return s
    }
}

@inline(__always)
func sumOfSquaresBlocks(_ x: CFPtr, n: Int, block: Int, _ lo: Int, _ hi: Int) -> Double {
    var s = 0.0
    for j in lo..<hi {
        var f: Float = 0
        for i in (j * block)..<min(n, (j + 1) * block) { f += x[i] * x[i] }
        s += Double(f)
    }
    return s
}
