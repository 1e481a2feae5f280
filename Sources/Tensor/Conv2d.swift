/// Conv2d, kernel 3×3, stride 2, no padding (the conv2d frontend).
/// x [B, Cin, H, W] → y [B, Cout, Ho, Wo], Ho = ⌊(H − 3)/2⌋ + 1, Wo likewise; weight [Cout, Cin, 3, 3].
/// Computed as im2col + GEMM by utterance and chunk of output rows: cols [Cin·9, rows·Wo], plus [Cin·9, Cout]
/// for backward's transposed weight gradient right after one chunk (workspace of `colsCount(budget:)` floats;
/// `colsCount` is enough for any budget).
public struct Conv2dShape: Sendable {
    public let b, cin, cout, h, w: Int
    public var ho: Int { h >= 3 ? (h - 3) / 2 + 1 : 0 }
    public var wo: Int { w >= 3 ? (w - 3) / 2 + 1 : 0 }
    public var colsCount: Int { cin * 9 * ho * wo + cin * 9 * cout }
    public init(b: Int, cin: Int, cout: Int, h: Int, w: Int) {
        self.b = b
        self.cin = cin
        self.cout = cout
        self.h = h
        self.w = w
    }
}

/// Floats of `cols` filled at a time: output rows are taken in chunks whose columns fit in about half of a
/// core's L2 (1 MB on Zen 5), so im2col's copy is still in cache when the GEMM reads it. Whole utterances at
/// once (11 MB per utterance for small's second layer) had every pass over `cols` go to L3 or memory.
public let conv2dColsBudget = 1 << 17

extension Conv2dShape {
    /// Output rows per chunk for a cols budget (at least one).
    func chunkRows(_ budget: Int) -> Int { max(1, budget / max(cin * 9 * wo, 1)) }
    /// Workspace floats for chunks of `budget` cols: one chunk, then backward's transposed dW [Cin·9, Cout]. Never
    /// grows as H shrinks, so a workspace sized for the longest input fits every shorter one.
    public func colsCount(budget: Int) -> Int { cin * 9 * min(ho, chunkRows(budget)) * wo + cin * 9 * cout }
}

/// cols [Cin·9, rows·Wo] (row stride rows·Wo) for output rows oy0 ..< oy0 + rows.
@inline(__always)
func im2col3x3s2(_ cols: FPtr, _ x: CFPtr, cin: Int, h: Int, w: Int, wo: Int, oy0: Int, rows: Int) {
    let nn = rows * wo
    // One row of cols per (c, ky, kx), spread over the threads.
    parallelFor(cin * 9, grain: max(1, elementChunk / max(nn, 1))) { lo, hi in
        for r in lo..<hi {
            let c = r / 9, ky = (r % 9) / 3, kx = r % 3
            let row = cols + r * nn
            for oy in oy0..<(oy0 + rows) {
                let src = x + (c * h + 2 * oy + ky) * w + kx
                let dst = row + (oy - oy0) * wo
                for ox in 0..<wo { dst[ox] = src[2 * ox] }
            }
        }
    }
}

// Intended mirror of im2col3x3s2 (the same loops, gather ↔ scatter-add).
@inline(__always)
func col2im3x3s2Accumulate(
    _ dx: FPtr, _ cols: CFPtr, cin: Int, h: Int, w: Int, wo: Int, oy0: Int, rows: Int,
    zeroFirst: Bool
) {
    let nn = rows * wo
    // Channels over the threads (the nine rows of one channel overlap in dx); `zeroFirst` zeroes the
    // channel's plane just before the first chunk's rows are added (it is then still in cache).
    parallelFor(cin, grain: max(1, elementChunk / max(9 * nn, 1))) { lo, hi in
        for c in lo..<hi {
            if zeroFirst { (dx + c * h * w).update(repeating: 0, count: h * w) }
            for ky in 0..<3 {
                for kx in 0..<3 {
                    let row = cols + ((c * 3 + ky) * 3 + kx) * nn
                    for oy in oy0..<(oy0 + rows) {
                        let dst = dx + (c * h + 2 * oy + ky) * w + kx
                        let src = row + (oy - oy0) * wo
                        for ox in 0..<wo { dst[2 * ox] += src[ox] }
                    }
                }
            }
        }
    }
}

/// y = conv(x) + bias, by utterance and by chunks of output rows (`colsBudget` floats of cols at a time).
public func conv2dForward(
    _ compute: Compute, y: FPtr, cols: FPtr, x: CFPtr, weight: CFPtr, bias: CFPtr,
    shape s: Conv2dShape, colsBudget: Int = conv2dColsBudget
) {
    let hw = s.ho * s.wo, k9 = s.cin * 9, step = s.chunkRows(colsBudget)
    for bi in 0..<s.b {
        let xb = x + bi * s.cin * s.h * s.w, yb = y + bi * s.cout * hw
        parallelFor(s.cout) { lo, hi in for o in lo..<hi { (yb + o * hw).update(repeating: bias[o], count: hw) } }
        for oy0 in stride(from: 0, to: s.ho, by: step) {
            let rows = min(step, s.ho - oy0), nn = rows * s.wo
            im2col3x3s2(cols, xb, cin: s.cin, h: s.h, w: s.w, wo: s.wo, oy0: oy0, rows: rows)
            gemm(
                compute, transA: false, transB: false, m: s.cout, n: nn, k: k9, alpha: 1, a: weight, lda: k9,
                b: cols, ldb: nn, beta: 1, c: yb + oy0 * s.wo, ldc: hw)
        }
    }
}

/// Accumulates dx (may be nil for the first layer; `write` .overwrite stores it instead), dW, db. `cols` is
/// workspace (recomputed per utterance and chunk of output rows, as in forward).
public func conv2dBackward(
    _ compute: Compute, dx: FPtr?, dWeight: FPtr, dBias: FPtr, cols: FPtr, dy: CFPtr, x: CFPtr,
    weight: CFPtr, shape s: Conv2dShape, write: GradientWrite = .accumulate,
    colsBudget: Int = conv2dColsBudget
) {
    let hw = s.ho * s.wo, k9 = s.cin * 9, step = s.chunkRows(colsBudget)
    let dWt = cols + k9 * min(s.ho, step) * s.wo  // after one chunk of cols
    for bi in 0..<s.b {
        let xb = x + bi * s.cin * s.h * s.w, dyb = dy + bi * s.cout * hw
        parallelFor(s.cout) { lo, hi in
            for o in lo..<hi {
                var acc: Float = 0
                let r = dyb + o * hw
                for j in 0..<hw { acc += r[j] }
                dBias[o] += acc
            }
        }
        for oy0 in stride(from: 0, to: s.ho, by: step) {
            let rows = min(step, s.ho - oy0), nn = rows * s.wo, dyc = dyb + oy0 * s.wo
            im2col3x3s2(cols, xb, cin: s.cin, h: s.h, w: s.w, wo: s.wo, oy0: oy0, rows: rows)
            // dWᵀ [Cin·9, Cout] += cols · dyᵀ: the transposed operand is dy, not the 9·Cin/Cout times larger cols
            // (bf16 converts a transposed operand far slower than a plain one); dWᵀ sums every utterance and
            // chunk and is added into dW once after the loop.
            gemm(
                compute, transA: false, transB: true, m: k9, n: s.cout, k: nn, alpha: 1, a: cols, lda: nn,
                b: dyc, ldb: hw, beta: bi == 0 && oy0 == 0 ? 0 : 1, c: dWt, ldc: s.cout)
            if let dx {
                gemm(
                    compute, transA: true, transB: false, m: k9, n: nn, k: s.cout, alpha: 1, a: weight, lda: k9,
                    b: dyc, ldb: hw, beta: 0, c: cols, ldc: nn)
                col2im3x3s2Accumulate(
                    dx + bi * s.cin * s.h * s.w, cols, cin: s.cin, h: s.h, w: s.w, wo: s.wo, oy0: oy0,
                    rows: rows, zeroFirst: write == .overwrite && oy0 == 0)
            }
        }
    }
    if s.b > 0 {
        parallelFor(s.cout) { lo, hi in
            for o in lo..<hi {
                let row = dWeight + o * k9
                for j in 0..<k9 { row[j] += dWt[j * s.cout + o] }
            }
        }
    }
}

public enum Conv2dReference {
    public static func forward(x: [Double], weight: [Double], bias: [Double], shape s: Conv2dShape) -> [Double] {
        var y = [Double](repeating: 0, count: s.b * s.cout * s.ho * s.wo)
        for bi in 0..<s.b {
            for o in 0..<s.cout {
                for oy in 0..<s.ho {
                    for ox in 0..<s.wo {
                        var acc = bias[o]
                        for c in 0..<s.cin {
                            for ky in 0..<3 {
                                for kx in 0..<3 {
                                    let input = x[((bi * s.cin + c) * s.h + 2 * oy + ky) * s.w + 2 * ox + kx]
                                    acc += weight[((o * s.cin + c) * 3 + ky) * 3 + kx] * input
                                }
                            }
                        }
                        y[((bi * s.cout + o) * s.ho + oy) * s.wo + ox] = acc
                    }
                }
            }
        }
        return y
    }
}
