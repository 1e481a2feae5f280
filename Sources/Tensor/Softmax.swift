#if canImport(Glibc)
    import Glibc
#endif

/// Row softmax: y[N, V] = softmax(x[N, V]) per row, numerically stable. −∞ entries get probability 0
/// (a row of all −∞ gets all zeros).
public func softmaxForward(y: FPtr, x: CFPtr, n: Int, v: Int) {
    parallelFor(n, grain: max(1, 4096 / max(v, 1))) { lo, hi in
        for i in lo..<hi {
            let xr = x + i * v, yr = y + i * v
            let mx = vectorMax(xr, v)
            if mx == -.infinity {
                yr.update(repeating: 0, count: v)
                continue
            }
            let inv = 1 / expShiftSum(yr, xr, v, shift: mx)
            for j in 0..<v { yr[j] *= inv }
        }
    }
}

/// Accumulates dx += y ⊙ (dy − Σ dy⊙y) per row (y = saved softmax output).
public func softmaxBackward(dx: FPtr, dy: CFPtr, y: CFPtr, n: Int, v: Int) {
    parallelFor(n, grain: max(1, 4096 / max(v, 1))) { lo, hi in
        for i in lo..<hi {
            let yr = y + i * v, dyr = dy + i * v, dxr = dx + i * v
            let d = dot(dyr, yr, v)
            for j in 0..<v { dxr[j] += yr[j] * (dyr[j] - d) }
        }
    }
}

/// Cross-entropy from logits per row: loss[i] = logsumexp(x_i) − x_i[target_i]; rows with target < 0
/// are ignored (loss 0, no gradient). Saves probs[N, V] = softmax(x). Returns the sum of the losses.
@discardableResult
public func crossEntropyForward(
    losses: FPtr, probs: FPtr, logits: CFPtr, targets: UnsafePointer<Int32>,
    n: Int, v: Int
) -> Float {
    softmaxForward(y: probs, x: logits, n: n, v: v)
    var total: Float = 0
    for i in 0..<n {
        let t = Int(targets[i])
        if t < 0 {
            losses[i] = 0
            continue
        }
        let xr = logits + i * v
        var mx = -Float.infinity
        for j in 0..<v { mx = max(mx, xr[j]) }
        var s: Float = 0
        for j in 0..<v { s += expf(xr[j] - mx) }
        losses[i] = logf(s) + mx - xr[t]
        total += losses[i]
    }
    return total
}

/// Accumulates dlogits[i] += dloss[i]·(probs_i − onehot(target_i)) for non-ignored rows.
public func crossEntropyBackward(
    dLogits: FPtr, dLosses: CFPtr, probs: CFPtr, targets: UnsafePointer<Int32>,
    n: Int, v: Int
) {
    for i in 0..<n {
        let t = Int(targets[i])
        if t < 0 { continue }
        let g = dLosses[i], pr = probs + i * v, dr = dLogits + i * v
        for j in 0..<v { dr[j] += g * pr[j] }
        dr[t] -= g
    }
}

public enum SoftmaxReference {
    public static func softmax(_ x: [Double], n: Int, v: Int) -> [Double] {
        var y = x
        for i in 0..<n {
            let row = x[(i * v)..<(i * v + v)]
            let m = row.max()!
            if m == -.infinity {
                for j in 0..<v { y[i * v + j] = 0 }
                continue
            }
            let s = row.reduce(0) { $0 + exp($1 - m) }
            for j in 0..<v { y[i * v + j] = exp(x[i * v + j] - m) / s }
        }
        return y
    }
    public static func crossEntropy(_ x: [Double], targets: [Int32], n: Int, v: Int) -> [Double] {
        (0..<n).map { i in
            let t = Int(targets[i])
            if t < 0 { return 0 }
            let row = x[(i * v)..<(i * v + v)]
            let m = row.max()!
            return log(row.reduce(0) { $0 + exp($1 - m) }) + m - x[i * v + t]
        }
    }
}
