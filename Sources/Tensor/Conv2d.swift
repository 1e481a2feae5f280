/// Conv2d, kernel 3×3, stride 2, no padding (the conv2d frontend, SPEC §3).
/// x [B, Cin, H, W] → y [B, Cout, Ho, Wo], Ho = ⌊(H − 3)/2⌋ + 1, Wo likewise; weight [Cout, Cin, 3, 3].
/// Computed as im2col + GEMM: cols [Cin·9, Ho·Wo] per utterance, plus [Cin·9, Cout] for backward's
/// transposed weight gradient (workspace of `colsCount` floats).
public struct Conv2dShape: Sendable {
    public let b, cin, cout, h, w: Int
    public var ho: Int { h >= 3 ? (h - 3) / 2 + 1 : 0 }
    public var wo: Int { w >= 3 ? (w - 3) / 2 + 1 : 0 }
    public var colsCount: Int { cin * 9 * ho * wo + cin * 9 * cout }
    public init(b: Int, cin: Int, cout: Int, h: Int, w: Int) {
        self.b = b; self.cin = cin; self.cout = cout; self.h = h; self.w = w
    }
}

@inline(__always)
func im2col3x3s2(_ cols: FPtr, _ x: CFPtr, cin: Int, h: Int, w: Int, ho: Int, wo: Int) {
    let hw = ho * wo
    // One row of cols per (c, ky, kx), spread over the threads.
    parallelFor(cin * 9) { lo, hi in
        for r in lo..<hi {
            let c = r / 9, ky = (r % 9) / 3, kx = r % 3
            let row = cols + r * hw
            for oy in 0..<ho {
                let src = x + (c * h + 2 * oy + ky) * w + kx
                let dst = row + oy * wo
                for ox in 0..<wo { dst[ox] = src[2 * ox] }
            }
        }
    }
}

// Intended mirror of im2col3x3s2 (the same loops, gather ↔ scatter-add).
@inline(__always)
func col2im3x3s2Accumulate(_ dx: FPtr, _ cols: CFPtr, cin: Int, h: Int, w: Int, ho: Int, wo: Int, write: GradientWrite) {
    let hw = ho * wo
    // Channels over the threads (the nine rows of one channel overlap in dx); overwrite zeroes the channel's
    // plane just before its rows are added (it is then still in cache).
    parallelFor(cin) { lo, hi in for c in lo..<hi {
        if write == .overwrite { (dx + c * h * w).update(repeating: 0, count: h * w) }
        for ky in 0..<3 {
            for kx in 0..<3 {
                let row = cols + ((c * 3 + ky) * 3 + kx) * hw
                for oy in 0..<ho {
                    let dst = dx + (c * h + 2 * oy + ky) * w + kx
                    let src = row + oy * wo
                    for ox in 0..<wo { dst[2 * ox] += src[ox] }
                }
            }
        }
    } }
}

public func conv2dForward(y: FPtr, cols: FPtr, x: CFPtr, weight: CFPtr, bias: CFPtr, shape s: Conv2dShape) {
    let hw = s.ho * s.wo
    for bi in 0..<s.b {
        let xb = x + bi * s.cin * s.h * s.w, yb = y + bi * s.cout * hw
        im2col3x3s2(cols, xb, cin: s.cin, h: s.h, w: s.w, ho: s.ho, wo: s.wo)
        parallelFor(s.cout) { lo, hi in for o in lo..<hi { (yb + o * hw).update(repeating: bias[o], count: hw) } }
        gemm(transA: false, transB: false, m: s.cout, n: hw, k: s.cin * 9, alpha: 1, a: weight, lda: s.cin * 9,
             b: cols, ldb: hw, beta: 1, c: yb, ldc: hw)
    }
}

/// Accumulates dx (may be nil for the first layer; `write` .overwrite stores it instead), dW, db. `cols` is
/// workspace (recomputed per utterance).
public func conv2dBackward(dx: FPtr?, dWeight: FPtr, dBias: FPtr, cols: FPtr, dy: CFPtr, x: CFPtr,
                           weight: CFPtr, shape s: Conv2dShape, write: GradientWrite = .accumulate) {
    let hw = s.ho * s.wo, k9 = s.cin * 9, dWt = cols + k9 * hw
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
        im2col3x3s2(cols, xb, cin: s.cin, h: s.h, w: s.w, ho: s.ho, wo: s.wo)
        // dWᵀ [Cin·9, Cout] = cols · dyᵀ: the transposed operand is dy, not the 9·Cin/Cout times larger cols
        // (bf16 converts a transposed operand far slower than a plain one); then dW += (dWᵀ)ᵀ.
        // (dWᵀ sums the utterances; added into dW once after the loop.)
        gemm(transA: false, transB: true, m: k9, n: s.cout, k: hw, alpha: 1, a: cols, lda: hw,
             b: dyb, ldb: hw, beta: bi == 0 ? 0 : 1, c: dWt, ldc: s.cout)
        if let dx {
            gemm(transA: true, transB: false, m: s.cin * 9, n: hw, k: s.cout, alpha: 1, a: weight, lda: s.cin * 9,
                 b: dyb, ldb: hw, beta: 0, c: cols, ldc: hw)
            col2im3x3s2Accumulate(dx + bi * s.cin * s.h * s.w, cols, cin: s.cin, h: s.h, w: s.w, ho: s.ho, wo: s.wo,
                                  write: write)
        }
    }
    if s.b > 0 {
        parallelFor(s.cout) { lo, hi in
            for o in lo..<hi { let row = dWeight + o * k9; for j in 0..<k9 { row[j] += dWt[j * s.cout + o] } }
        }
    }
}

public enum Conv2dReference {
    public static func forward(x: [Double], weight: [Double], bias: [Double], shape s: Conv2dShape) -> [Double] {
        var y = [Double](repeating: 0, count: s.b * s.cout * s.ho * s.wo)
        for bi in 0..<s.b { for o in 0..<s.cout { for oy in 0..<s.ho { for ox in 0..<s.wo {
            var acc = bias[o]
            for c in 0..<s.cin { for ky in 0..<3 { for kx in 0..<3 {
                acc += weight[((o * s.cin + c) * 3 + ky) * 3 + kx] * x[((bi * s.cin + c) * s.h + 2 * oy + ky) * s.w + 2 * ox + kx]
            } } }
            y[((bi * s.cout + o) * s.ho + oy) * s.wo + ox] = acc
        } } } }
        return y
    }
}
