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
/// Zeroes rows t ≥ length[b] of a [B, T, C] tensor (padded frames never leak into real ones).
public func zeroPadding(_ x: FPtr, lengths: UnsafePointer<Int32>, b: Int, t: Int, c: Int) {
    for bi in 0..<b {
        let len = Int(lengths[bi])
        if len < t { (x + (bi * t + len) * c).update(repeating: 0, count: (t - len) * c) }
    }
}
/// Σ x[i]² in Double (gradient norms).
public func sumOfSquares(_ x: CFPtr, n: Int) -> Double {
    var s = 0.0
    var i = 0
    while i < n {
        let end = min(n, i + 4096)
        var f: Float = 0
        for j in i..<end { f += x[j] * x[j] }
        s += Double(f)
        i = end
    }
    return s
}
