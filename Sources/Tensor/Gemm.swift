import CBLAS
import CCompute

/// Smallest product (m·n·k) split over the pool's threads; below it one thread does the whole product.
let gemmSplitWork = 1 << 19

/// The one GEMM entry point. Row-major C[M×N] = alpha·op(A)[M×K]·op(B)[K×N] + beta·C.
/// lda/ldb/ldc are the row strides of A, B, C as stored (before op).
/// Engine: `compute.precision` bf16 → oneDNN with bf16 operands and f32 accumulation; fp32 → `compute.f32Engine`.
/// With more than one thread and enough work, C is cut into one block of rows (of columns when M is small
/// and N > M) per thread; every element of C is still computed by one call over the whole K. In bf16 the
/// operands are converted once (split over the threads too) before the blocks are multiplied.
/// A sliding window is allowed for a non-transposed A or B: a row stride smaller than the row (lda < k,
/// ldb < n), rows overlapping (the positional convolution's im2col without the copy); such an operand is
/// packed (bf16) or copied densely (f32) into the calling thread's buffer before the product.
/// `bias` [N] (only with alpha 1 and beta 0): C = op(A)·op(B) + bias on every row, added by oneDNN as the
/// product is written (OpenBLAS: the rows are set to the bias first and the product added).
@inline(__always)
public func gemm(
    _ compute: Compute, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: CFPtr, lda: Int, b: CFPtr, ldb: Int,
    beta: Float, c: FPtr, ldc: Int, bias: CFPtr? = nil
) {
    if m == 0 || n == 0 { return }
    precondition(bias == nil || (alpha == 1 && beta == 0), "gemm: a bias needs alpha 1 and beta 0")
    var bias = bias, beta = beta
    if k == 0 || (bias != nil && compute.precision == .fp32 && compute.f32Engine == .openblas) {
        // C starts as the bias, or beta·C (BLAS would leave C scaled by beta for k = 0; make that explicit).
        parallelFor(m, grain: max(1, elementChunk / n)) { lo, hi in
            for i in lo..<hi {
                let row = c + i * ldc
                if let bias {
                    row.update(from: bias, count: n)
                } else {
                    for j in 0..<n { row[j] = beta == 0 ? 0 : beta * row[j] }
                }
            }
        }
        if k == 0 { return }
        bias = nil
        beta = 1
    }
    let split = compute.threads > 1 && m * n * k >= gemmSplitWork && w2v_pool_in_task() == 0
    let threads = split ? compute.threads : 1
    if compute.precision == .bf16 {
        gemmBF16(
            compute, threads: threads, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a,
            lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, bias: bias)
        return
    }
    let engine = compute.f32Engine
    var a = a, lda = lda, b = b, ldb = ldb
    if !transA && lda < k {
        a = denseCopy(0, a, ld: lda, rows: m, cols: k, threads: threads)
        lda = k
    }
    if !transB && ldb < n {
        b = denseCopy(1, b, ld: ldb, rows: k, cols: n, threads: threads)
        ldb = n
    }
    if threads == 1 {
        gemmF32(
            engine, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b,
            ldb: ldb, beta: beta, c: c, ldc: ldc, bias: bias)
        return
    }
    splitBlocks(threads: threads, m: m, n: n) { byRows, s, e in
        if byRows {
            gemmF32(
                engine, transA: transA, transB: transB, m: e - s, n: n, k: k, alpha: alpha,
                a: transA ? a + s : a + s * lda, lda: lda, b: b, ldb: ldb, beta: beta, c: c + s * ldc, ldc: ldc,
                bias: bias)
        } else {
            gemmF32(
                engine, transA: transA, transB: transB, m: m, n: e - s, k: k, alpha: alpha, a: a, lda: lda,
                b: transB ? b + s * ldb : b + s, ldb: ldb, beta: beta, c: c + s, ldc: ldc,
                bias: bias.map { $0 + s })
        }
    }
}

/// Splits C over `threads` parts: rows whenever each part gets ≥ 64 of them, columns only for short, wide
/// products. fp32: bit-identical to one call; bf16: within f32 round-off (oneDNN blocks M and N by the
/// block's size). Blocks are multiples of 16 and fixed by the thread count alone (so results are
/// reproducible for a given compute.threads).
@inline(__always)
func splitBlocks(threads: Int, m: Int, n: Int, _ body: (_ byRows: Bool, _ start: Int, _ end: Int) -> Void) {
    let byRows = m >= 64 * threads || m >= n
    let total = byRows ? m : n
    let blocks = (total + 15) / 16
    let parts = min(threads, blocks)
    parallelFor(parts) { lo, hi in
        for p in lo..<hi {
            let s = blocks * p / parts * 16
            let e = min(blocks * (p + 1) / parts * 16, total)
            if s < e { body(byRows, s, e) }
        }
    }
}

/// rows × cols of src (row stride ld, rows may overlap) copied densely into the calling thread's buffer `which`.
@inline(__always)
func denseCopy(_ which: Int32, _ src: CFPtr, ld: Int, rows: Int, cols: Int, threads: Int) -> CFPtr {
    guard let raw = w2v_thread_buffer(which, rows * cols * 4) else {
        fatalError("out of memory for a \(rows)×\(cols) GEMM operand copy")
    }
    let dst = raw.assumingMemoryBound(to: Float.self)
    parallelFor(rows, grain: threads > 1 ? 64 : Int.max) { lo, hi in
        for r in lo..<hi { (dst + r * cols).update(from: src + r * ld, count: cols) }
    }
    return CFPtr(dst)
}

/// A matrix that several products read as stored (A, or a non-transposed B), packed to bf16 once.
struct SharedOperand {
    var source: CFPtr, rows: Int, cols: Int, ld: Int
    var packed: UnsafeMutablePointer<UInt16>?
}

/// Operands shared by the products inside `withSharedOperand`: one list per `Compute` value, used only by
/// top-level products on the thread that runs them (never from pool tasks), hence unchecked Sendable.
final class SharedOperands: @unchecked Sendable {
    var list: [SharedOperand] = []
}

/// Inside body, bf16 products that read x (rows × cols, row stride ld) as stored — as A (either transpose)
/// or as a non-transposed B — convert it once instead of once per product (a Linear's dy for its dx and dW
/// products; the attention's LayerNorm output for q, k and v). x must not change inside body. Scopes nest
/// two deep; fp32 ignores them. Results are identical (the conversion is exact per element).
@inline(__always)
public func withSharedOperand<R>(
    _ compute: Compute, _ x: CFPtr, rows: Int, cols: Int, ld: Int,
    _ body: () throws -> R
) rethrows -> R {
    let shared = compute.shared
    if compute.precision != .bf16 || w2v_pool_in_task() != 0 || shared.list.count >= 2 { return try body() }
    shared.list.append(SharedOperand(source: x, rows: rows, cols: cols, ld: ld, packed: nil))
    defer { shared.list.removeLast() }
    return try body()
}

/// The shared bf16 copy of x as stored (packing it on first use), or nil when x is not shared.
@inline(__always)
func sharedPacked(
    _ shared: SharedOperands, _ x: CFPtr, rows: Int, cols: Int, ld: Int,
    threads: Int
) -> UnsafePointer<UInt16>? {
    if shared.list.isEmpty || w2v_pool_in_task() != 0 { return nil }
    for i in shared.list.indices {
        let e = shared.list[i]
        guard e.source == x && e.rows == rows && e.cols == cols && e.ld == ld else { continue }
        if let p = e.packed { return UnsafePointer(p) }
        guard let raw = w2v_thread_buffer(Int32(2 + i), rows * cols * 2) else {
            fatalError("out of memory for a shared bf16 operand (\(rows)×\(cols))")
        }
        let p = raw.assumingMemoryBound(to: UInt16.self)
        parallelFor(rows, grain: threads > 1 ? 64 : Int.max) { lo, hi in
            w2v_bf16_pack(p, x, ld, rows, cols, 0, lo, hi)
        }
        shared.list[i].packed = p
        return UnsafePointer(p)
    }
    return nil
}

/// bf16 product: A packed as stored and B as [K×N] into the calling thread's buffers (rows split over the
/// threads; shared operands are packed once), then one oneDNN call per block of C.
@inline(__always)
func gemmBF16(
    _ compute: Compute, threads: Int, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: CFPtr, lda: Int, b: CFPtr, ldb: Int, beta: Float, c: FPtr, ldc: Int, bias: CFPtr?
) {
    let ra = transA ? k : m
    let ca = transA ? m : k
    guard let rawA = w2v_thread_buffer(0, ra * ca * 2), let rawB = w2v_thread_buffer(1, k * n * 2) else {
        fatalError("out of memory for the bf16 operands of a \(m)×\(n)×\(k) product")
    }
    let grain = threads > 1 ? 64 : Int.max
    var pa = UnsafePointer(rawA.assumingMemoryBound(to: UInt16.self))
    var pb = UnsafePointer(rawB.assumingMemoryBound(to: UInt16.self))
    if let shared = sharedPacked(compute.shared, a, rows: ra, cols: ca, ld: lda, threads: threads) {
        pa = shared
    } else {
        let dst = rawA.assumingMemoryBound(to: UInt16.self)
        parallelFor(ra, grain: grain) { lo, hi in w2v_bf16_pack(dst, a, lda, ra, ca, 0, lo, hi) }
    }
    let dst = rawB.assumingMemoryBound(to: UInt16.self)
    if transB {
        parallelFor(k, grain: grain) { lo, hi in w2v_bf16_pack(dst, b, ldb, n, k, 1, lo, hi) }
    } else if let shared = sharedPacked(compute.shared, b, rows: k, cols: n, ld: ldb, threads: threads) {
        pb = shared
    } else {
        parallelFor(k, grain: grain) { lo, hi in w2v_bf16_pack(dst, b, ldb, k, n, 0, lo, hi) }
    }
    let ta: Int32 = transA ? 1 : 0
    if threads == 1 {
        let st = w2v_dnnl_gemm_bf16(ta, m, n, k, alpha, pa, ca, pb, n, beta, c, ldc, bias)
        check(st, "bf16", m, n, k, transA, transB)
        return
    }
    splitBlocks(threads: threads, m: m, n: n) { byRows, s, e in
        let st =
            byRows
            ? w2v_dnnl_gemm_bf16(
                ta, e - s, n, k, alpha, transA ? pa + s : pa + s * ca, ca, pb, n, beta, c + s * ldc,
                ldc, bias)
            : w2v_dnnl_gemm_bf16(ta, m, e - s, k, alpha, pa, ca, pb + s, n, beta, c + s, ldc, bias.map { $0 + s })
        check(st, "bf16", byRows ? e - s : m, byRows ? n : e - s, k, transA, transB)
    }
}

@inline(__always)
func check(_ status: Int32, _ what: String, _ m: Int, _ n: Int, _ k: Int, _ transA: Bool, _ transB: Bool) {
    if status != 0 {
        fatalError(
            "oneDNN matmul failed (status \(status)) for \(what) m=\(m) n=\(n) k=\(k) transA=\(transA) "
                + "transB=\(transB)")
    }
}

/// One f32 product on the calling thread with `engine`.
@inline(__always)
func gemmF32(
    _ engine: GemmEngine, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: CFPtr, lda: Int,
    b: CFPtr, ldb: Int, beta: Float, c: FPtr, ldc: Int, bias: CFPtr?
) {
    if engine == .onednn {
        check(
            w2v_dnnl_gemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias),
            "f32", m, n, k, transA, transB)
        return
    }
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Batched strided GEMM: for i in 0..<count, C_i = alpha·op(A_i)·op(B_i) + beta·C_i with
/// A_i = a + i·strideA etc. (Attention heads use it with strides of one head.)
public func gemmBatched(
    _ compute: Compute, count: Int, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: CFPtr, lda: Int, strideA: Int, b: CFPtr, ldb: Int, strideB: Int,
    beta: Float, c: FPtr, ldc: Int, strideC: Int
) {
    parallelFor(count) { lo, hi in
        for i in lo..<hi {
            gemm(
                compute, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a + i * strideA, lda: lda,
                b: b + i * strideB, ldb: ldb, beta: beta, c: c + i * strideC, ldc: ldc)
        }
    }
}

/// f32 → bf16 → f32 (round to nearest even), as the bf16 GEMM sees its operands (tests use it).
public func roundToBF16(_ dst: FPtr, _ src: CFPtr, count: Int) { w2v_bf16_round(dst, src, count) }

/// Naive reference for tests: the same contract in Double.
public func gemmReference(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
    a: [Double], lda: Int, b: [Double], ldb: Int, beta: Double, c: inout [Double], ldc: Int
) {
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

#if canImport(Glibc)
    import Glibc
#endif
