// One-dimensional convolutions over time on channels-last activations x [B, T, C].

// MARK: Grouped Conv1d (the positional convolution)

/// Grouped Conv1d, C → C channels, kernel P, groups Gp, zero padding P/2 on both sides, the last output
/// frame dropped when P is even, so the output has T frames: y[t] = b + Σ_k W[:, :, k]·x[t + k − P/2].
/// weight [C, C/Gp, P] (PyTorch layout).
///
/// Per utterance and group, the input is copied once into a zero-padded, group-contiguous buffer
/// xg [(T + P), Cg] (Cg = C/Gp). The im2col row of output frame t is then the contiguous slice
/// xg[t·Cg ..< t·Cg + Cg·P] (taps outer, channels inner), so the columns matrix is a sliding window over
/// xg with row stride Cg that `gemm` reads directly; the weight is used in the same tap-major order
/// (wk [C, P·Cg], permuted once per call). Backward: dW_g += dy_gᵀ·window, and the window's gradient
/// dy_g·wk_g is added row by row into dxg, one contiguous run of Cg·P per frame.
///
/// Work is split over the rank's threads: forward by (utterance, group), backward by group (each group's
/// weight gradient is summed over the utterances in order, so results do not depend on the thread count).
/// Workspace: groupedConv1dWorkspaceCount(t:c:groups:p:slots:) floats for up to `slots` threads.
public func groupedConv1dWorkspaceCount(t: Int, c: Int, groups: Int, p: Int, slots: Int) -> Int {
    let cg = c / groups
    return 2 * c * cg * p + max(1, slots) * groupedSlotCount(t: t, cg: cg, p: p)
}

/// Frames per GEMM call (bounds the window's packed copy and the backward's column gradient).
let groupedChunk = 256

@inline(__always) func groupedSlotCount(t: Int, cg: Int, p: Int) -> Int {
    2 * (t + p) * cg + min(t, groupedChunk) * cg * p
}

/// wk[o, k·Cg + i] = weight[o, i, k] (rows split over the threads).
@inline(__always)
func groupedTapMajor(_ wk: FPtr, _ weight: CFPtr, c: Int, cg: Int, p: Int) {
    parallelFor(c, grain: 16) { lo, hi in
        for o in lo..<hi {
            let src = weight + o * cg * p, dst = wk + o * cg * p
            for i in 0..<cg { for k in 0..<p { dst[k * cg + i] = src[i * p + k] } }
        }
    }
}

/// xg[(s + P/2)·Cg + i] = x[s, g·Cg + i] for s in [0, T), zero elsewhere.
@inline(__always)
func groupedPad(_ xg: FPtr, _ xb: CFPtr, g: Int, t: Int, c: Int, cg: Int, p: Int) {
    let pad = p / 2
    xg.update(repeating: 0, count: pad * cg)
    for s in 0..<t { (xg + (s + pad) * cg).update(from: xb + s * c + g * cg, count: cg) }
    (xg + (t + pad) * cg).update(repeating: 0, count: (p - pad) * cg)
}

/// Runs task(slot, i) for i in 0..<count, task i on slot i mod slots (slots ≤ the workspace's).
@inline(__always)
func groupedTasks(_ compute: Compute, _ count: Int, slots: Int, _ task: (Int, Int) -> Void) {
    let n = max(1, min(slots, compute.threads, count))
    parallelFor(n) { lo, hi in
        for slot in lo..<hi { for i in stride(from: slot, to: count, by: n) { task(slot, i) } }
    }
}

public func groupedConv1dForward(
    _ compute: Compute, y: FPtr, work: FPtr, slots: Int, x: CFPtr, weight: CFPtr,
    bias: CFPtr, b: Int, t: Int, c: Int, groups: Int, p: Int
) {
    let cg = c / groups, width = cg * p, wk = work, slotBase = work + 2 * c * width
    let per = groupedSlotCount(t: t, cg: cg, p: p)
    groupedTapMajor(wk, weight, c: c, cg: cg, p: p)
    groupedTasks(compute, b * groups, slots: slots) { slot, task in
        let bi = task / groups, g = task % groups, xg = slotBase + slot * per
        groupedPad(xg, x + bi * t * c, g: g, t: t, c: c, cg: cg, p: p)
        let yb = y + bi * t * c + g * cg
        for ti in 0..<t { (yb + ti * c).update(from: bias + g * cg, count: cg) }
        for t0 in stride(from: 0, to: t, by: groupedChunk) {
            gemm(
                compute, transA: false, transB: true, m: min(groupedChunk, t - t0), n: cg, k: width, alpha: 1,
                a: xg + t0 * cg, lda: cg, b: wk + g * cg * width, ldb: width, beta: 1, c: yb + t0 * c, ldc: c)
        }
    }
}

/// Accumulates dx, dW, db.
public func groupedConv1dBackward(
    _ compute: Compute, dx: FPtr, dWeight: FPtr, dBias: FPtr, work: FPtr, slots: Int,
    dy: CFPtr, x: CFPtr, weight: CFPtr, b: Int, t: Int, c: Int, groups: Int, p: Int
) {
    let cg = c / groups, width = cg * p, pad = p / 2, wk = work, dwk = work + c * width, slotBase = work + 2 * c * width
    let per = groupedSlotCount(t: t, cg: cg, p: p)
    columnSumAccumulate(dBias, dy, rows: b * t, cols: c)
    groupedTapMajor(wk, weight, c: c, cg: cg, p: p)
    groupedTasks(compute, groups, slots: slots) { slot, g in
        let xg = slotBase + slot * per, dxg = xg + (t + p) * cg, dcols = dxg + (t + p) * cg
        let dwg = dwk + g * cg * width
        dwg.update(repeating: 0, count: cg * width)
        for bi in 0..<b {
            groupedPad(xg, x + bi * t * c, g: g, t: t, c: c, cg: cg, p: p)
            dxg.update(repeating: 0, count: (t + p) * cg)
            let dyb = dy + bi * t * c + g * cg
            for t0 in stride(from: 0, to: t, by: groupedChunk) {
                let rows = min(groupedChunk, t - t0)
                gemm(
                    compute, transA: true, transB: false, m: cg, n: width, k: rows, alpha: 1, a: dyb + t0 * c, lda: c,
                    b: xg + t0 * cg, ldb: cg, beta: 1, c: dwg, ldc: width)
                gemm(
                    compute, transA: false, transB: false, m: rows, n: width, k: cg, alpha: 1, a: dyb + t0 * c, lda: c,
                    b: wk + g * cg * width, ldb: width, beta: 0, c: dcols, ldc: width)
                // The window's gradient back onto xg: row r covers xg[(t0 + r)·Cg ..< +Cg·P].
                for r in 0..<rows {
                    let dst = dxg + (t0 + r) * cg, src = dcols + r * width
                    for j in 0..<width { dst[j] += src[j] }
                }
            }
            let dxb = dx + bi * t * c + g * cg
            for s in 0..<t {
                let dst = dxb + s * c, src = dxg + (s + pad) * cg
                for i in 0..<cg { dst[i] += src[i] }
            }
        }
    }
    // dW[o, i, k] += dwk[o, k·Cg + i]
    parallelFor(c, grain: 16) { lo, hi in
        for o in lo..<hi {
            let src = dwk + o * width, dst = dWeight + o * width
            for i in 0..<cg { for k in 0..<p { dst[i * p + k] += src[k * cg + i] } }
        }
    }
}

// MARK: Depthwise Conv1d (the Conformer convolution module)

/// Depthwise Conv1d, no bias: y[t, c] = Σ_j w[c, j]·x[t + j − left, c], zero outside [0, T).
/// "same": left = ⌊(k − 1)/2⌋; causal: left = k − 1. weight [C, k]; wT is workspace [k, C] (the weight
/// transposed so that the inner loop runs over contiguous channels).
public func depthwiseLeftPad(k: Int, causal: Bool) -> Int { causal ? k - 1 : (k - 1) / 2 }

public func depthwiseConv1dForward(
    y: FPtr, wT: FPtr, x: CFPtr, weight: CFPtr, b: Int, t: Int, c: Int,
    k: Int, causal: Bool
) {
    let left = depthwiseLeftPad(k: k, causal: causal)
    for ch in 0..<c { for j in 0..<k { wT[j * c + ch] = weight[ch * k + j] } }
    frameBlocks(b: b, t: t) { bi, t0, t1 in
        let xb = x + bi * t * c, yb = y + bi * t * c
        for ti in t0..<t1 {
            let yr = yb + ti * c
            yr.update(repeating: 0, count: c)
            let j0 = max(0, left - ti), j1 = min(k, t + left - ti)
            if j0 >= j1 { continue }
            for j in j0..<j1 {
                let xr = xb + (ti + j - left) * c, wr = wT + j * c
                lanes8(
                    0, c, { store8(load8(yr + $0) + load8(wr + $0) * load8(xr + $0), yr + $0) },
                    { yr[$0] += wr[$0] * xr[$0] })
            }
        }
    }
}

/// lo..<hi, empty when hi < lo (a kernel tap window cut by both ends of a short utterance).
@inline(__always)
func clampedRange(_ lo: Int, _ hi: Int) -> Range<Int> { lo..<max(lo, hi) }

/// Blocks of `reductionRows` frames of one utterance: how many an utterance of t frames has, and block blk's
/// (utterance, first frame, end frame).
@inline(__always)
func frameBlocksPerUtterance(_ t: Int) -> Int { (t + reductionRows - 1) / reductionRows }
@inline(__always)
func frameBlock(_ blk: Int, t: Int) -> (Int, Int, Int) {
    let per = frameBlocksPerUtterance(t), t0 = blk % per * reductionRows
    return (blk / per, t0, min(t0 + reductionRows, t))
}

/// body(utterance, first frame, end frame) over every frame block, spread over the rank's threads by rows
/// (whole rows per thread: see `blockSums` for why not by channels).
@inline(__always)
func frameBlocks(b: Int, t: Int, _ body: (Int, Int, Int) -> Void) {
    parallelFor(b * frameBlocksPerUtterance(t)) { lo, hi in
        for blk in lo..<hi {
            let (bi, t0, t1) = frameBlock(blk, t: t)
            body(bi, t0, t1)
        }
    }
}

/// Accumulates dx and dW. wT: workspace [k, C] holding the transposed weight (filled here). By blocks of
/// frames: a block gathers its dx rows from the dy rows they fed, and sums its own partial dW [k, C]; the
/// partials are added in block order (`blockSums`), the same on any number of threads.
public func depthwiseConv1dBackward(
    dx: FPtr, dWeight: FPtr, wT: FPtr, dy: CFPtr, x: CFPtr, weight: CFPtr, b: Int,
    t: Int, c: Int, k: Int, causal: Bool, write: GradientWrite = .accumulate
) {
    let left = depthwiseLeftPad(k: k, causal: causal)
    for ch in 0..<c { for j in 0..<k { wT[j * c + ch] = weight[ch * k + j] } }
    let sums = blockSums(blocks: b * frameBlocksPerUtterance(t), width: k * c) { dwT, blk in
        let (bi, t0, t1) = frameBlock(blk, t: t)
        let xb = x + bi * t * c, dyb = dy + bi * t * c, dxb = dx + bi * t * c
        for ti in t0..<t1 {
            // dW[j] += x[ti + j − left]·dy[ti]
            let g = dyb + ti * c
            for j in clampedRange(max(0, left - ti), min(k, t + left - ti)) {
                let xr = xb + (ti + j - left) * c, dwr = dwT + j * c
                lanes8(
                    0, c, { store8(load8(dwr + $0) + load8(xr + $0) * load8(g + $0), dwr + $0) },
                    { dwr[$0] += xr[$0] * g[$0] })
            }
        }
        for s in t0..<t1 {
            // dx[s] += Σ_j w[j]·dy[s − j + left] over the frames ti = s − j + left inside [0, T)
            let dxr = dxb + s * c
            if write == .overwrite { dxr.update(repeating: 0, count: c) }
            for j in clampedRange(max(0, s + left - t + 1), min(k, s + left + 1)) {
                let g = dyb + (s - j + left) * c, wr = wT + j * c
                lanes8(
                    0, c, { store8(load8(dxr + $0) + load8(wr + $0) * load8(g + $0), dxr + $0) },
                    { dxr[$0] += wr[$0] * g[$0] })
            }
        }
    }
    for ch in 0..<c { for j in 0..<k { dWeight[ch * k + j] += sums[j * c + ch] } }
}

public enum Conv1dReference {
    public static func grouped(
        x: [Double], weight: [Double], bias: [Double], b: Int, t: Int, c: Int,
        groups: Int, p: Int
    ) -> [Double] {
        let cg = c / groups, pad = p / 2
        var y = [Double](repeating: 0, count: b * t * c)
        for bi in 0..<b {
            for ti in 0..<t {
                for o in 0..<c {
                    let g = o / cg
                    var acc = bias[o]
                    for i in 0..<cg {
                        for k in 0..<p {
                            let s = ti + k - pad
                            if s >= 0 && s < t {
                                acc += weight[(o * cg + i) * p + k] * x[(bi * t + s) * c + g * cg + i]
                            }
                        }
                    }
                    y[(bi * t + ti) * c + o] = acc
                }
            }
        }
        return y
    }
    public static func depthwise(
        x: [Double], weight: [Double], b: Int, t: Int, c: Int, k: Int,
        causal: Bool
    ) -> [Double] {
        let left = causal ? k - 1 : (k - 1) / 2
        var y = [Double](repeating: 0, count: b * t * c)
        for bi in 0..<b {
            for ti in 0..<t {
                for ch in 0..<c {
                    var acc = 0.0
                    for j in 0..<k {
                        let s = ti + j - left
                        if s >= 0 && s < t { acc += weight[ch * k + j] * x[(bi * t + s) * c + ch] }
                    }
                    y[(bi * t + ti) * c + ch] = acc
                }
            }
        }
        return y
    }
}
