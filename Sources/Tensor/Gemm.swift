import CBLAS

/// The one place that calls `cblas_sgemm`. Row-major C[M×N] = alpha·op(A)[M×K]·op(B)[K×N] + beta·C.
/// lda/ldb/ldc are the row strides of A, B, C as stored (before op).
@inline(__always)
public func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                 alpha: Float, a: CFPtr, lda: Int, b: CFPtr, ldb: Int,
                 beta: Float, c: FPtr, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        // BLAS would leave C scaled by beta; make that explicit.
        for i in 0..<m { let row = c + i * ldc; for j in 0..<n { row[j] = beta == 0 ? 0 : beta * row[j] } }
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Batched strided GEMM: for i in 0..<count, C_i = alpha·op(A_i)·op(B_i) + beta·C_i with
/// A_i = a + i·strideA etc. (Attention heads use it with strides of one head.)
public func gemmBatched(count: Int, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                        alpha: Float, a: CFPtr, lda: Int, strideA: Int, b: CFPtr, ldb: Int, strideB: Int,
                        beta: Float, c: FPtr, ldc: Int, strideC: Int) {
    for i in 0..<count {
        gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a + i * strideA, lda: lda,
             b: b + i * strideB, ldb: ldb, beta: beta, c: c + i * strideC, ldc: ldc)
    }
}

/// Threads OpenBLAS uses (1 per rank under MPI; the cores of the machine in a single process).
public func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
public func blasThreads() -> Int { Int(openblas_get_num_threads()) }

/// Naive reference for tests: the same contract in Double.
public func gemmReference(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
                          a: [Double], lda: Int, b: [Double], ldb: Int, beta: Double, c: inout [Double], ldc: Int) {
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                s += av * bv
            }
            c[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j])
        }
    }
}
