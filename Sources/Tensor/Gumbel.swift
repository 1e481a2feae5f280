/// Gumbel-softmax, straight-through, rows of V logits (one row per frame and codebook).
/// Forward: ids[n] = argmax(l + γ), y = one-hot(ids); saves soft = softmax((l + γ)/τ).
/// Backward: the gradient of the tempered soft sample with the same noise:
///   dl += (1/τ)·soft ⊙ (dy − Σ dy⊙soft).
/// Evaluation (no noise): pass noise = nil; ids = argmax l, soft = softmax(l/τ).
public func gumbelSoftmaxForward(
    y: FPtr, ids: UnsafeMutablePointer<Int32>, soft: FPtr, logits: CFPtr,
    noise: CFPtr?, tau: Float, n: Int, v: Int
) {
    let invTau = 1 / tau
    for i in 0..<n {
        let lr = logits + i * v, sr = soft + i * v, yr = y + i * v
        var best = 0
        var bestVal = -Float.infinity
        for j in 0..<v {
            let z = lr[j] + (noise?[i * v + j] ?? 0)
            sr[j] = z * invTau
            if z > bestVal {
                bestVal = z
                best = j
            }
        }
        softmaxForward(y: sr, x: sr, n: 1, v: v)
        yr.update(repeating: 0, count: v)
        yr[best] = 1
        ids[i] = Int32(best)
    }
}

public func gumbelSoftmaxBackward(dLogits: FPtr, dy: CFPtr, soft: CFPtr, tau: Float, n: Int, v: Int) {
    let invTau = 1 / tau
    for i in 0..<n {
        let sr = soft + i * v, dyr = dy + i * v, dr = dLogits + i * v
        var dot: Float = 0
        for j in 0..<v { dot += dyr[j] * sr[j] }
        for j in 0..<v { dr[j] += invTau * sr[j] * (dyr[j] - dot) }
    }
}

public enum GumbelReference {
    /// The soft path whose gradient the straight-through estimator uses.
    public static func soft(logits: [Double], noise: [Double], tau: Double, n: Int, v: Int) -> [Double] {
        SoftmaxReference.softmax(zip(logits, noise).map { ($0 + $1) / tau }, n: n, v: v)
    }
    public static func ids(logits: [Double], noise: [Double], n: Int, v: Int) -> [Int32] {
        (0..<n).map { i in
            var best = 0
            for j in 0..<v where logits[i * v + j] + noise[i * v + j] > logits[i * v + best] + noise[i * v + best] {
                best = j
            }
            return Int32(best)
        }
    }
}
