/// Cosine similarity of row pairs: out[n] = ⟨a_i, b_j⟩ / (max(‖a_i‖, eps)·max(‖b_j‖, eps)) with
/// i = ia[n], j = ib[n] (gathered rows of a [Na, D] and b [Nb, D]); each norm is clamped separately.
/// The contrastive loss uses it with one a row against K + 1 b rows.
/// Saves normA[Na], normB[Nb] (the clamped norms) for backward.
public func cosineForward(
    out: FPtr, normA: FPtr, normB: FPtr, a: CFPtr, b: CFPtr, ia: UnsafePointer<Int32>,
    ib: UnsafePointer<Int32>, n: Int, na: Int, nb: Int, dim: Int, eps: Float = 1e-8
) {
    // Every output is computed by one thread with the serial arithmetic (rows, then pairs, over the threads).
    let grain = max(1, 8192 / max(dim, 1))
    parallelFor(na, grain: grain) { lo, hi in
        for i in lo..<hi { normA[i] = max((sumOfSquaresF(a + i * dim, dim)).squareRoot(), eps) }
    }
    parallelFor(nb, grain: grain) { lo, hi in
        for j in lo..<hi { normB[j] = max((sumOfSquaresF(b + j * dim, dim)).squareRoot(), eps) }
    }
    parallelFor(n, grain: grain) { lo, hi in
        for p in lo..<hi {
            let i = Int(ia[p]), j = Int(ib[p])
            let ar = a + i * dim, br = b + j * dim
            var dot: Float = 0
            for e in 0..<dim { dot += ar[e] * br[e] }
            out[p] = dot / (normA[i] * normB[j])
        }
    }
}

@inline(__always) func sumOfSquaresF(_ x: CFPtr, _ n: Int) -> Float {
    var s: Float = 0
    for i in 0..<n { s += x[i] * x[i] }
    return s
}

/// Accumulates da, db. For an unclamped norm, ∂cos/∂a = b/(‖a‖‖b‖) − cos·a/‖a‖²; a clamped norm is a
/// constant (eps), so its second term vanishes.
public func cosineBackward(
    da: FPtr, db: FPtr, dOut: CFPtr, out: CFPtr, normA: CFPtr, normB: CFPtr,
    a: CFPtr, b: CFPtr, ia: UnsafePointer<Int32>, ib: UnsafePointer<Int32>,
    n: Int, dim: Int, eps: Float = 1e-8
) {
    for p in 0..<n {
        let g = dOut[p]
        if g == 0 { continue }
        let i = Int(ia[p]), j = Int(ib[p])
        let ar = a + i * dim, br = b + j * dim, dar = da + i * dim, dbr = db + j * dim
        let nA = normA[i], nB = normB[j], c = out[p]
        let inv = g / (nA * nB)
        let ca = nA > eps ? g * c / (nA * nA) : 0
        let cb = nB > eps ? g * c / (nB * nB) : 0
        for e in 0..<dim {
            dar[e] += inv * br[e] - ca * ar[e]
            dbr[e] += inv * ar[e] - cb * br[e]
        }
    }
}

public enum CosineReference {
    public static func forward(
        a: [Double], b: [Double], ia: [Int32], ib: [Int32], dim: Int, eps: Double = 1e-8
    ) -> [Double] {
        zip(ia, ib).map { (i, j) in
            let ar = a[(Int(i) * dim)..<(Int(i) * dim + dim)], br = b[(Int(j) * dim)..<(Int(j) * dim + dim)]
            let dot = zip(ar, br).reduce(0) { $0 + $1.0 * $1.1 }
            let na = max(ar.reduce(0) { $0 + $1 * $1 }.squareRoot(), eps)
            let nb = max(br.reduce(0) { $0 + $1 * $1 }.squareRoot(), eps)
            return dot / (na * nb)
        }
    }
}
