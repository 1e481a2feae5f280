// One-dimensional convolutions over time on channels-last activations x [B, T, C].

// MARK: Grouped Conv1d (the positional convolution, SPEC §6)

/// Grouped Conv1d, C → C channels, kernel P, groups Gp, zero padding P/2 on both sides, the last output
/// frame dropped when P is even, so the output has T frames: y[t] = b + Σ_k W[:, :, k]·x[t + k − P/2].
/// weight [C, C/Gp, P] (PyTorch layout). im2col per group: cols [T, (C/Gp)·P], index i·P + k, which
/// matches a weight row, so each group is one GEMM. Workspace: groupedConv1dColsCount(t:c:groups:p:).
public func groupedConv1dColsCount(t: Int, c: Int, groups: Int, p: Int) -> Int { t * (c / groups) * p }

@inline(__always)
func groupedIm2col(_ cols: FPtr, _ xb: CFPtr, g: Int, t: Int, c: Int, cg: Int, p: Int) {
    let pad = p / 2, width = cg * p
    for ti in 0..<t {
        let row = cols + ti * width
        for i in 0..<cg {
            let ch = g * cg + i
            let dst = row + i * p
            for k in 0..<p {
                let src = ti + k - pad
                dst[k] = (src >= 0 && src < t) ? xb[src * c + ch] : 0
            }
        }
    }
}

public func groupedConv1dForward(y: FPtr, cols: FPtr, x: CFPtr, weight: CFPtr, bias: CFPtr,
                                 b: Int, t: Int, c: Int, groups: Int, p: Int) {
    let cg = c / groups, width = cg * p
    for bi in 0..<b {
        let xb = x + bi * t * c, yb = y + bi * t * c
        for ti in 0..<t { (yb + ti * c).update(from: bias, count: c) }
        for g in 0..<groups {
            groupedIm2col(cols, xb, g: g, t: t, c: c, cg: cg, p: p)
            gemm(transA: false, transB: true, m: t, n: cg, k: width, alpha: 1, a: cols, lda: width,
                 b: weight + g * cg * width, ldb: width, beta: 1, c: yb + g * cg, ldc: c)
        }
    }
}

/// Accumulates dx, dW, db.
public func groupedConv1dBackward(dx: FPtr, dWeight: FPtr, dBias: FPtr, cols: FPtr, dy: CFPtr, x: CFPtr,
                                  weight: CFPtr, b: Int, t: Int, c: Int, groups: Int, p: Int) {
    let cg = c / groups, width = cg * p, pad = p / 2
    columnSumAccumulate(dBias, dy, rows: b * t, cols: c)
    for bi in 0..<b {
        let xb = x + bi * t * c, dyb = dy + bi * t * c, dxb = dx + bi * t * c
        for g in 0..<groups {
            groupedIm2col(cols, xb, g: g, t: t, c: c, cg: cg, p: p)
            gemm(transA: true, transB: false, m: cg, n: width, k: t, alpha: 1, a: dyb + g * cg, lda: c,
                 b: cols, ldb: width, beta: 1, c: dWeight + g * cg * width, ldc: width)
            gemm(transA: false, transB: false, m: t, n: width, k: cg, alpha: 1, a: dyb + g * cg, lda: c,
                 b: weight + g * cg * width, ldb: width, beta: 0, c: cols, ldc: width)
            // col2im: the intended mirror of groupedIm2col (gather ↔ scatter-add).
            for ti in 0..<t {
                let row = cols + ti * width
                for i in 0..<cg {
                    let ch = g * cg + i
                    let src = row + i * p
                    for k in 0..<p {
                        let s = ti + k - pad
                        if s >= 0 && s < t { dxb[s * c + ch] += src[k] }
                    }
                }
            }
        }
    }
}

// MARK: Depthwise Conv1d (the Conformer convolution module, SPEC §5)

/// Depthwise Conv1d, no bias: y[t, c] = Σ_j w[c, j]·x[t + j − left, c], zero outside [0, T).
/// "same": left = ⌊(k − 1)/2⌋; causal: left = k − 1. weight [C, k]; wT is workspace [k, C] (the weight
/// transposed so that the inner loop runs over contiguous channels).
public func depthwiseLeftPad(k: Int, causal: Bool) -> Int { causal ? k - 1 : (k - 1) / 2 }

public func depthwiseConv1dForward(y: FPtr, wT: FPtr, x: CFPtr, weight: CFPtr, b: Int, t: Int, c: Int,
                                   k: Int, causal: Bool) {
    let left = depthwiseLeftPad(k: k, causal: causal)
    for ch in 0..<c { for j in 0..<k { wT[j * c + ch] = weight[ch * k + j] } }
    for bi in 0..<b {
        let xb = x + bi * t * c, yb = y + bi * t * c
        for ti in 0..<t {
            let yr = yb + ti * c
            yr.update(repeating: 0, count: c)
            let j0 = max(0, left - ti), j1 = min(k, t + left - ti)
            if j0 >= j1 { continue }
            for j in j0..<j1 {
                let xr = xb + (ti + j - left) * c, wr = wT + j * c
                for ch in 0..<c { yr[ch] += wr[ch] * xr[ch] }
            }
        }
    }
}

/// Accumulates dx and dW. wT: workspace [k, C] holding the transposed weight (filled here), dwT:
/// workspace [k, C] for the weight gradient (zeroed here, added into dWeight at the end).
public func depthwiseConv1dBackward(dx: FPtr, dWeight: FPtr, wT: FPtr, dwT: FPtr, dy: CFPtr, x: CFPtr,
                                    weight: CFPtr, b: Int, t: Int, c: Int, k: Int, causal: Bool) {
    let left = depthwiseLeftPad(k: k, causal: causal)
    for ch in 0..<c { for j in 0..<k { wT[j * c + ch] = weight[ch * k + j] } }
    dwT.update(repeating: 0, count: k * c)
    for bi in 0..<b {
        let xb = x + bi * t * c, dyb = dy + bi * t * c, dxb = dx + bi * t * c
        for ti in 0..<t {
            let g = dyb + ti * c
            let j0 = max(0, left - ti), j1 = min(k, t + left - ti)
            if j0 >= j1 { continue }
            for j in j0..<j1 {
                let s = ti + j - left
                let xr = xb + s * c, dxr = dxb + s * c, wr = wT + j * c, dwr = dwT + j * c
                for ch in 0..<c {
                    dxr[ch] += wr[ch] * g[ch]
                    dwr[ch] += xr[ch] * g[ch]
                }
            }
        }
    }
    for ch in 0..<c { for j in 0..<k { dWeight[ch * k + j] += dwT[j * c + ch] } }
}

public enum Conv1dReference {
    public static func grouped(x: [Double], weight: [Double], bias: [Double], b: Int, t: Int, c: Int,
                               groups: Int, p: Int) -> [Double] {
        let cg = c / groups, pad = p / 2
        var y = [Double](repeating: 0, count: b * t * c)
        for bi in 0..<b { for ti in 0..<t { for o in 0..<c {
            let g = o / cg
            var acc = bias[o]
            for i in 0..<cg { for k in 0..<p {
                let s = ti + k - pad
                if s >= 0 && s < t { acc += weight[(o * cg + i) * p + k] * x[(bi * t + s) * c + g * cg + i] }
            } }
            y[(bi * t + ti) * c + o] = acc
        } } }
        return y
    }
    public static func depthwise(x: [Double], weight: [Double], b: Int, t: Int, c: Int, k: Int, causal: Bool) -> [Double] {
        let left = causal ? k - 1 : (k - 1) / 2
        var y = [Double](repeating: 0, count: b * t * c)
        for bi in 0..<b { for ti in 0..<t { for ch in 0..<c {
            var acc = 0.0
            for j in 0..<k {
                let s = ti + j - left
                if s >= 0 && s < t { acc += weight[ch * k + j] * x[(bi * t + s) * c + ch] }
            }
            y[(bi * t + ti) * c + ch] = acc
        } } }
        return y
    }
}
