// A faster backward for the grouped Conv1d (the positional convolution, SPEC §6), behind the clear
// version in Conv1d.swift (same contract; tests check one against the other).
//
// The clear version scatters every column of the im2col gradient into dx with stride C, P adds per
// (frame, channel): cache-hostile for P = 128. Here the column gradient is produced transposed,
// dcolsᵀ [(C/Gp)·P, T] = W_gᵀ·dy_gᵀ (one GEMM), so that for each input channel i and tap k the update
// dxᵀ[i, s] += dcolsᵀ[i·P + k, s − k + P/2] is a contiguous, vectorisable loop; dxᵀ [C/Gp, T] is then
// added into dx once per group.

/// Workspace floats for groupedConv1dBackwardFast: columns [T, (C/Gp)·P] plus dxᵀ [C/Gp, T].
public func groupedConv1dFastWorkspaceCount(t: Int, c: Int, groups: Int, p: Int) -> Int {
    t * (c / groups) * p + (c / groups) * t
}

/// Accumulates dx, dW, db (same results as groupedConv1dBackward up to summation order). Intended mirror of
/// groupedConv1dBackward (STYLE: the fast variant beside the clear reference, checked against it).
public func groupedConv1dBackwardFast(dx: FPtr, dWeight: FPtr, dBias: FPtr, work: FPtr, dy: CFPtr, x: CFPtr,
                                      weight: CFPtr, b: Int, t: Int, c: Int, groups: Int, p: Int) {
    let cg = c / groups, width = cg * p, pad = p / 2
    let cols = work, dxT = work + t * width
    columnSumAccumulate(dBias, dy, rows: b * t, cols: c)
    for bi in 0..<b {
        let xb = x + bi * t * c, dyb = dy + bi * t * c, dxb = dx + bi * t * c
        for g in 0..<groups {
            groupedIm2col(cols, xb, g: g, t: t, c: c, cg: cg, p: p)
            gemm(transA: true, transB: false, m: cg, n: width, k: t, alpha: 1, a: dyb + g * cg, lda: c,
                 b: cols, ldb: width, beta: 1, c: dWeight + g * cg * width, ldc: width)
            // dcolsᵀ [width, T] = W_gᵀ [width, cg] · dy_gᵀ [cg, T]   (reuses the columns' storage)
            let dcolsT = cols
            gemm(transA: true, transB: true, m: width, n: t, k: cg, alpha: 1, a: weight + g * cg * width, lda: width,
                 b: dyb + g * cg, ldb: c, beta: 0, c: dcolsT, ldc: t)
            dxT.update(repeating: 0, count: cg * t)
            for i in 0..<cg {
                let acc = dxT + i * t
                for k in 0..<p {
                    // s = ti + k − pad for ti in [0, T), clipped to [0, T).
                    let src = dcolsT + (i * p + k) * t
                    let s0 = max(0, k - pad), s1 = min(t, t + k - pad)
                    if s0 >= s1 { continue }
                    let off = pad - k
                    for s in s0..<s1 { acc[s] += src[s + off] }
                }
            }
            for s in 0..<t {
                let row = dxb + s * c + g * cg
                for i in 0..<cg { row[i] += dxT[i * t + s] }
            }
        }
    }
}
