/// LoRA (Hu et al. 2021) on a Linear layer: y[N, out] += s · (x[N, in] · A[r, in]ᵀ) · B[out, r]ᵀ with
/// s = α / r. The low-rank product u = x·Aᵀ [N, r] is saved by forward for backward.
/// Backward (accumulating, like every op): du = s·dy·B [N, r] (into the caller's scratch, overwritten),
/// dB += s·dyᵀ·u, dA += duᵀ·x, dx += du·A. `dA`/`dB` nil skip those products (not used by the model).
public func loraForward(
    _ compute: Compute, y: FPtr, u: FPtr, x: CFPtr, a: CFPtr, b: CFPtr, scale: Float, n: Int,
    inDim: Int, outDim: Int, rank: Int
) {
    gemm(
        compute, transA: false, transB: true, m: n, n: rank, k: inDim, alpha: 1, a: x, lda: inDim, b: a, ldb: inDim,
        beta: 0, c: u, ldc: rank)
    gemm(
        compute, transA: false, transB: true, m: n, n: outDim, k: rank, alpha: scale, a: u, lda: rank, b: b, ldb: rank,
        beta: 1, c: y, ldc: outDim)
}

public func loraBackward(
    _ compute: Compute, dx: FPtr?, dA: FPtr?, dB: FPtr?, du: FPtr, dy: CFPtr, x: CFPtr, u: CFPtr,
    a: CFPtr, b: CFPtr, scale: Float, n: Int, inDim: Int, outDim: Int, rank: Int
) {
    if let dB {
        gemm(
            compute, transA: true, transB: false, m: outDim, n: rank, k: n, alpha: scale, a: dy, lda: outDim, b: u,
            ldb: rank, beta: 1, c: dB, ldc: rank)
    }
    gemm(
        compute, transA: false, transB: false, m: n, n: rank, k: outDim, alpha: scale, a: dy, lda: outDim, b: b,
        ldb: rank, beta: 0, c: du, ldc: rank)
    if let dA {
        gemm(
            compute, transA: true, transB: false, m: rank, n: inDim, k: n, alpha: 1, a: du, lda: rank, b: x,
            ldb: inDim, beta: 1, c: dA, ldc: inDim)
    }
    if let dx {
        gemm(
            compute, transA: false, transB: false, m: n, n: inDim, k: rank, alpha: 1, a: du, lda: rank, b: a,
            ldb: inDim, beta: 1, c: dx, ldc: inDim)
    }
}

public enum LoRAReference {
    /// y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ in Double (the adapted Linear as a whole).
    public static func forward(
        x: [Double], weight: [Double], bias: [Double]?, a: [Double], b: [Double], scale: Double,
        n: Int, inDim: Int, outDim: Int, rank: Int
    ) -> [Double] {
        var y = LinearReference.forward(x: x, weight: weight, bias: bias, n: n, inDim: inDim, outDim: outDim)
        for i in 0..<n {
            var u = [Double](repeating: 0, count: rank)
            for r in 0..<rank { for j in 0..<inDim { u[r] += x[i * inDim + j] * a[r * inDim + j] } }
            for o in 0..<outDim {
                var s = 0.0
                for r in 0..<rank { s += u[r] * b[o * rank + r] }
                y[i * outDim + o] += scale * s
            }
        }
        return y
    }
}
